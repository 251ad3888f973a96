"""The memory estimate of one task covers the episode it is given (a 500-image support set) and
what the inner loop holds of it: a chunk of the support set without graph, the prototypes' graph
of Proto-MAML's head in training."""

from __future__ import annotations

import pytest

from metahyper.errors import UserError
from metahyper.models import build_model
from metahyper.train.memory import ENV, GB, check_step, estimate, footprint, task_alive


def test_task_alive_counts_the_chunk_held_and_the_prototypes():
    assert task_alive(500, 100, 2) == 2 * 600
    assert task_alive(500, 100, 2, chunk=50) == 2 * (50 + 100)
    assert task_alive(30, 100, 2, chunk=50) == 2 * (30 + 100)  # a chunk larger than the support set
    assert task_alive(500, 100, 2, prototypes=True) == 2 * 600 + 500


def test_a_500_image_support_set_is_refused_unless_chunked(monkeypatch):
    config = build_model("wrn-10-1", num_classes=50).config
    size, support, query = 84, 500, 100
    full, chunked = (
        estimate(config, size, support + query, alive=task_alive(support, query, 2, chunk=c)) for c in (0, 50)
    )
    assert full - chunked == pytest.approx(4 * footprint(config, size).activations * 2 * 450)
    monkeypatch.setenv(ENV, str((full + chunked) / 2 / GB))
    args = ("evaluating", config, size, support + query, "episodes of 600 images", "use --support-chunk", "cpu")
    with pytest.raises(UserError, match=r"evaluating wrn-10-1 .* on episodes of 600 images of 84px needs about"):
        check_step(*args, alive=task_alive(support, query, 2))
    check_step(*args, alive=task_alive(support, query, 2, chunk=50))
