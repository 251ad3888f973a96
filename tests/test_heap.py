import os
import subprocess
import sys

import pytest
import torch

from metahyper import heap
from metahyper.meta import MAML
from metahyper.models import build_model

pytestmark = pytest.mark.skipif(heap._glibc() is None, reason="the policy applies to glibc only")

# Rounds of "a task": 160 touched 1 MB tensors (below PyTorch's 2 MB huge-page size), then all
# freed. Prints the page faults of 5 rounds under glibc's initial thresholds held fixed (its dynamic
# ones depend on the heap's history, so sometimes they keep the memory too), then of 5 rounds under
# retain_heap(), after one round in which the heap grows.
_SCRIPT = """
import resource, sys, torch
from metahyper.heap import _glibc, retain_heap

libc = _glibc()
libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
libc.mallopt(-1, 128 * 1024)  # M_TRIM_THRESHOLD

def faults():
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        tensors = [torch.empty(2**18).fill_(1.0) for _ in range(160)]
        del tensors
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start

faults()  # first touch of the process's pages
before = faults()
applied = retain_heap()
faults()  # the heap grows once
print(before, faults(), applied)
"""


def _run(env_extra: dict[str, str]) -> tuple[int, int, bool]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", "METAHYPER_HEAP")}
    out = subprocess.run([sys.executable, "-c", _SCRIPT], env={**env, **env_extra}, capture_output=True, text=True, check=True)
    before, after, applied = out.stdout.split()
    return int(before), int(after), applied == "True"


def test_retained_heap_stops_the_page_faults_of_repeated_tasks():
    before, after, applied = _run({})
    assert applied
    assert before > 5 * 160  # every round faults again (4 KB pages: 5 * 160 * 256)
    assert after < before / 20


@pytest.mark.parametrize("env", [{"METAHYPER_HEAP": "system"}, {"MALLOC_TRIM_THRESHOLD_": str(2**20)}])
def test_user_settings_win(env):
    before, after, applied = _run(env)
    assert not applied
    assert after > before / 2 > 5 * 160 / 2  # still faulting: the measurement sees the policy missing


def test_maml_applies_the_policy_on_cpu_unless_told_not_to(monkeypatch):
    calls = []
    monkeypatch.setattr(heap, "retain_heap", lambda: calls.append(1) or True)
    model = build_model("wrn-10-1", num_classes=5)
    MAML(model, retain_heap=False)
    assert calls == []
    MAML(model)
    assert calls == [1]
    if torch.cuda.is_available():  # a GPU model leaves the C heap alone
        MAML(model.cuda())
        assert calls == [1]
