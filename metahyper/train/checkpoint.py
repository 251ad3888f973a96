"""Checkpoints: model + config (+ optional training state), written atomically, loaded safely.

A checkpoint is one ``torch.save`` dict: ``format``, ``version``, ``model_config`` (a
:class:`~metahyper.models.ModelConfig` dict; for compressed models it holds the embedding seed
instead of the embeddings), ``state_dict`` and ``extra`` (optimiser, scheduler, RNG state, ...).
It is written through :func:`metahyper.io.atomic_path`, so a crash never leaves a half-written
checkpoint, and a full disk is the one-line error of :func:`~metahyper.io.atomic_files` (torch's zip
writer hides the file's ``OSError`` behind a ``RuntimeError``; :class:`_KeptWriteError` keeps it);
it is read with ``torch.load(..., weights_only=True)``.

Integrity: ``checksum`` holds the SHA-256 of every tensor of ``state_dict`` and ``extra`` (names,
dtypes, shapes and bytes, :func:`tensor_checksum`); loading verifies it, so bytes flipped inside a
tensor are a one-line error instead of silently wrong weights. Checkpoints written before the
checksum existed load unverified. A checkpoint whose weights are not all finite (a diverged run)
is refused on load, and a model whose weights alone exceed the memory limit is refused before it
is built (:mod:`metahyper.train.memory`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from metahyper.errors import UserError
from metahyper.io import atomic_path
from metahyper.models import ModelConfig, build_from_config
from metahyper.train.memory import check_model

FORMAT = "metahyper-checkpoint"
VERSION = 1
CHECKPOINT_NAMES = ("best.pt", "last.pt")


@dataclass
class Checkpoint:
    path: Path
    model_config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    extra: dict[str, Any] = field(default_factory=dict)

    def build_model(self) -> nn.Module:
        """Rebuild the model and load the weights (strict: every tensor must match); a model too
        large for the memory limit is refused before it is built."""
        check_model(self.model_config)
        return self.load_into(build_from_config(self.model_config))

    def load_into(self, model: nn.Module) -> nn.Module:
        """Load the weights into ``model`` (strict: every tensor must match; one-line
        :class:`UserError` naming the first mismatch otherwise); returns ``model``."""
        try:
            model.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as err:
            lines = str(err).strip().splitlines()
            first = lines[1].strip() if len(lines) > 1 else lines[0]
            raise UserError(f"checkpoint {self.path} does not match model {self.model_config.name}: {first}") from None
        return model


def tensor_checksum(*objs: Any) -> str:
    """SHA-256 over every tensor inside ``objs`` (dicts, lists and tuples walked in order; dict
    keys, dtypes and shapes included): equal iff the same tensors hold the same bytes."""
    h = hashlib.sha256()

    def walk(obj: Any, where: str) -> None:
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            h.update(f"{where}:{t.dtype}:{tuple(t.shape)};".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{where}/{k}")
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(v, f"{where}/{i}")

    for i, obj in enumerate(objs):
        walk(obj, str(i))
    return h.hexdigest()


def nonfinite_tensors(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors of ``state`` that hold a NaN or an infinity."""
    floats = [(k, v) for k, v in state.items() if v.is_floating_point()]
    if not floats:
        return []
    finite = torch.stack([torch.isfinite(v).all().cpu() for _, v in floats]).tolist()  # one wait for the device
    return [k for (k, _), ok in zip(floats, finite) if not ok]


def save_checkpoint(path: str | os.PathLike, model: nn.Module, **extra: Any) -> Path:
    """Save ``model`` (its ``config`` and ``state_dict``) and ``extra`` atomically to ``path``,
    with the :func:`tensor_checksum` of both."""
    config: ModelConfig = model.config
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": config.to_dict(),
        "state_dict": state,
        "extra": extra,
        "checksum": tensor_checksum(state, extra),
    }
    with atomic_path(path) as tmp, open(tmp, "wb", buffering=0) as raw:
        kept = _KeptWriteError(raw)
        try:
            torch.save(payload, kept)
        except RuntimeError:
            if kept.error is None:
                raise
            raise kept.error from None  # a full disk: atomic_path's one-line error
    return Path(path)


class _KeptWriteError:
    """A binary file for ``torch.save`` that keeps the ``OSError`` of a failed write: torch's zip
    writer turns it into a ``RuntimeError`` that no longer says why (``unexpected pos ...``,
    ``file write failed``), so :func:`save_checkpoint` raises the kept one instead."""

    def __init__(self, raw) -> None:
        self.raw = raw
        self.error: OSError | None = None

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        done = 0
        try:
            while done < len(view):  # a short write (the disk filling up) is retried: it then raises
                done += self.raw.write(view[done:])
        except OSError as err:
            self.error = err
            raise
        return done

    def flush(self) -> None:
        self.raw.flush()


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a run directory (its ``best.pt``, else ``last.pt``)."""
    path = Path(path)
    if path.is_dir():
        for name in CHECKPOINT_NAMES:
            if (path / name).is_file():
                return path / name
        raise UserError(
            f"run directory {path} holds no checkpoint ({' or '.join(CHECKPOINT_NAMES)}); "
            "pass a .pt file or a finished run"
        )
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; pass a .pt file or a run directory")
    return path


def load_checkpoint(
    path: str | os.PathLike, expect_name: str | None = None, map_location: str | torch.device = "cpu"
) -> Checkpoint:
    """Load a checkpoint safely (``weights_only=True``), validating its format and, optionally,
    that it holds the architecture ``expect_name``."""
    path = resolve_checkpoint(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt, truncated or not a torch file
        raise UserError(
            f"cannot read checkpoint {path} ({type(err).__name__}); the file is corrupt or not a metahyper checkpoint"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(
            f"{path} is not a metahyper checkpoint (no '{FORMAT}' header); export/load only files written by metahyper"
        )
    if payload.get("version") != VERSION:
        raise UserError(
            f"checkpoint {path} has format version {payload.get('version')}, this metahyper reads {VERSION}; "
            "upgrade metahyper"
        )
    state, extra, config = payload.get("state_dict"), payload.get("extra", {}), payload.get("model_config")
    if not (
        isinstance(state, dict)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
        and isinstance(extra, dict)
        and isinstance(config, dict)
        and isinstance(config.get("name"), str)
    ):
        raise UserError(
            f"checkpoint {path} lacks a model_config, state_dict or extra of the right type; the file is damaged "
            "or was not written by metahyper"
        )
    if "checksum" in payload and payload["checksum"] != tensor_checksum(state, extra):
        raise UserError(
            f"checkpoint {path} fails its checksum: its tensors changed after it was written (a damaged file); "
            "restore it from a copy or train again"
        )
    bad = nonfinite_tensors(state)
    if bad:
        raise UserError(
            f"checkpoint {path} holds non-finite weights ({len(bad)} tensors, e.g. {bad[0]}): it comes from a diverged "
            "run; train again with a lower learning rate"
        )
    try:
        config = ModelConfig.from_dict(config)
    except TypeError as err:
        raise UserError(
            f"checkpoint {path} has a damaged model_config ({err}); the file was not written by metahyper"
        ) from None
    if expect_name is not None and config.name != expect_name:
        raise UserError(
            f"checkpoint {path} holds a {config.name}, not a {expect_name}; "
            f"pass a checkpoint of {expect_name} or change --model"
        )
    return Checkpoint(path, config, state, extra)


def load_model(path: str | os.PathLike, expect_name: str | None = None) -> nn.Module:
    """Rebuild and return the model stored at ``path`` (file or run directory)."""
    return load_checkpoint(path, expect_name).build_model()
