"""``load_splits``: a run's splits loaded into memory or read in place (``--in-memory``), by the
memory each process may use; the same images either way."""

import numpy as np
import pytest

from metahyper.data import load_splits, open_split
from metahyper.errors import UserError
from metahyper.limits import ENV, GB


def _splits(root):
    return [open_split("miniimagenet", s, root=root) for s in ("train", "val")]


def test_auto_loads_what_fits_in_half_the_memory_of_each_process(tagged_root, monkeypatch):
    train, val = _splits(tagged_root)
    total = train.nbytes + val.nbytes
    monkeypatch.setenv(ENV, str(2 * total / GB))  # exactly half of the limit each, in one process
    assert load_splits([train, val, train], "auto") and train.in_memory and val.in_memory
    train, val = _splits(tagged_root)
    assert not load_splits([train, val], "auto", processes=2)  # two copies do not fit in half
    assert not train.in_memory and not val.in_memory
    monkeypatch.setenv(ENV, str((2 * total - 1) / GB))
    assert not load_splits(_splits(tagged_root), "auto")


def test_yes_and_no_decide_and_read_the_same_images(tagged_root, monkeypatch):
    monkeypatch.setenv(ENV, str(1e-9))  # auto would read in place; yes is refused in one line
    with pytest.raises(UserError, match="free memory"):
        load_splits(_splits(tagged_root), "yes")
    monkeypatch.delenv(ENV)
    loaded, in_place = _splits(tagged_root), _splits(tagged_root)
    assert load_splits(loaded, "yes") and not load_splits(in_place, "no")
    assert loaded[0].in_memory and not in_place[0].in_memory
    indices = np.array([[3, 1, 0], [29, 2, 2]])
    for a, b in zip(loaded, in_place):
        np.testing.assert_array_equal(
            a.read_many([0, a.num_classes - 1], indices), b.read_many([0, b.num_classes - 1], indices)
        )
    with pytest.raises(UserError, match="unknown --in-memory 'maybe'"):
        load_splits(in_place, "maybe")
