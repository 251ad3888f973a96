"""Test-only: repeat a run into another directory and SIGKILL it just before a given step.

    python tests/faults/killed_run.py CONFIG OUT STEP
    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/faults/killed_run.py CONFIG OUT STEP

CONFIG is the ``config.json`` of a pretrain or meta-train run; the run it describes is started
afresh in OUT (same options otherwise) and every process kills itself with SIGKILL when the
training loop reaches epoch / iteration STEP (0-based), through the loops' ``on_step`` hook.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
from pathlib import Path

from metahyper.config import MetaTrainConfig, PretrainConfig
from metahyper.train.distributed import distributed_session
from metahyper.train.meta_train import meta_train
from metahyper.train.pretrain import pretrain

STAGES = {"pretrain": (PretrainConfig, pretrain), "meta-train": (MetaTrainConfig, meta_train)}


def main(config: str, out: str, step: str) -> None:
    saved = json.loads(Path(config).read_text())
    cls, train = STAGES[saved["stage"]]
    fields = {f.name for f in dataclasses.fields(cls)}
    cfg = cls(**{**{k: v for k, v in saved.items() if k in fields}, "out": out, "resume": False})
    kill_at = int(step)

    def on_step(index: int) -> None:
        if index == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    with distributed_session(cfg.device) as ctx:
        train(cfg, ctx, on_step=on_step)


if __name__ == "__main__":
    main(*sys.argv[1:])
