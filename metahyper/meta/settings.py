"""What a meta-trained checkpoint records of its MAML, so that evaluation and ``--resume`` rebuild
the same meta-learner without repeating any default: :class:`MamlSettings`.

Stored as ``extra["maml"]`` of a checkpoint (:meth:`MamlSettings.to_dict`, with a ``version``);
:meth:`MamlSettings.from_dict` reads every version written so far (version 1: no ``version`` key,
the evaluation steps under ``inner_steps_eval``, no inner rule) and refuses a newer one in one
line naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from metahyper.errors import UserError

_RENAMED_IN_2 = {"inner_steps_eval": "eval_inner_steps"}
# Inner steps of one task (and evaluation's --head-steps): MAML uses 5-10, fine-tuning baselines
# 100-300; more is a typo (or a crafted checkpoint) that would make every episode's work unbounded.
MAX_INNER_STEPS = 1000


@dataclass(frozen=True)
class MamlSettings:
    """The meta-learner of a run: parameter groups (names of :data:`metahyper.models.GROUPS`),
    the inner rule and its steps and rate, the derivative order, BatchNorm mode, the inner-loop
    recompute interval, the head, the support chunk, and the task shape it was meta-trained on."""

    VERSION: ClassVar[int] = 2

    inner: tuple[str, ...]
    outer: tuple[str, ...]
    inner_rule: str = "sgd"
    inner_lr: float = 0.01
    inner_steps: int = 5
    eval_inner_steps: int = 10
    first_order: bool = False
    bn: str = "transductive"
    inner_checkpoint: int = 0
    ways: int = 5
    shots: int = 1
    head: str = "learned"  # "zero" / "proto": the classifier is built at each task's width (metahyper.meta.heads)
    algorithm: str = "maml"  # the preset the run was configured by (its options are the fields above)
    support_chunk: int = 0  # images per chunk of the inner loop's support gradient (0: all at once)

    def maml_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :class:`~metahyper.meta.MAML` these settings fix (the parameter
        names of the groups, the backend and autocast are the caller's)."""
        keys = ("inner_rule", "inner_lr", "inner_steps", "eval_inner_steps", "first_order", "bn", "inner_checkpoint",
                "support_chunk")  # fmt: skip
        return {k: getattr(self, k) for k in keys}

    def to_dict(self) -> dict[str, Any]:
        """JSON- and ``torch.load(weights_only=True)``-safe: lists, numbers, strings."""
        out = asdict(self)
        out["inner"], out["outer"] = list(self.inner), list(self.outer)
        return {"version": self.VERSION, **out}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "checkpoint") -> MamlSettings:
        """The settings stored by :meth:`to_dict` (any version so far), or a one-line
        :class:`UserError` naming ``where``."""
        if not isinstance(data, Mapping):
            raise UserError(f"{where} has no MAML settings (extra['maml'] is {type(data).__name__}); it is damaged")
        version = data.get("version", 1)
        if not isinstance(version, int) or not 1 <= version <= cls.VERSION:
            raise UserError(
                f"{where} holds MAML settings of version {version!r}, this metahyper reads versions 1 to "
                f"{cls.VERSION}; upgrade metahyper"
            )
        known = {f.name for f in fields(cls)}
        values = {_RENAMED_IN_2.get(k, k): v for k, v in data.items()}
        values = {k: tuple(v) if k in ("inner", "outer") else v for k, v in values.items() if k in known}
        try:
            return cls(**values)
        except TypeError as err:
            raise UserError(f"{where} has incomplete MAML settings ({err}); it is damaged") from None
