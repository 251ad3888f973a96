"""Options declared once, on the fields of the config dataclasses.

A field carries everything the command line and the checks need::

    epochs: int = option(200, "Training epochs.", min=1)
    dataset: str = required("Dataset to train on.", choices=DATASETS)

Every float option must be finite (nan and inf are refused whatever its bounds).

:class:`Opt` holds the help text, the option's name when it is not ``--field-name``, the allowed
values (``choices``: a tuple owned by the code that implements them), bounds, and how a bool
appears on the command line. :mod:`metahyper.cli` turns a config's fields into its command's
options (:func:`specs` gives each field's option name, type and default); :meth:`Options.validate`
checks the same metadata, so a bad value raises the same one-line
:class:`~metahyper.errors.UserError` from Python and from the command line.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field
from typing import Any, ClassVar

from metahyper.errors import UserError


@dataclass(frozen=True)
class Opt:
    """How one config field appears as a command-line option and what values it accepts."""

    help: str
    flag: str | None = None  # option name; default ``--field-name``
    short: str | None = None  # e.g. "-o"
    choices: tuple | None = None  # allowed values (of each element, for list fields)
    min: float | None = None  # inclusive lower bound
    above: float | None = None  # exclusive lower bound
    max: float | None = None  # inclusive upper bound
    below: float | None = None  # exclusive upper bound
    invert: bool = False  # a bool set to False by the flag (``progress`` <- ``--quiet``)
    path: str | None = None  # "dir", "file" or "any": shown and completed as a path
    required: bool = False  # the command line requires it although Python has a default
    cli: bool = True  # False: settable from Python only
    from_file: bool = True  # False: never taken from ``--config`` (``resume``: a new run by default)
    aliases: tuple[str, ...] = ()  # former spellings (``--inner-steps-eval``): hidden flags, old config keys


def option(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with a default (lists: a fresh copy per instance) and its :class:`Opt`."""
    meta = {"opt": Opt(help, **kw)}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def required(help: str, **kw: Any) -> Any:
    """A dataclass field without a default, and its :class:`Opt`."""
    return field(metadata={"opt": Opt(help, **kw)})


@dataclass(frozen=True)
class Spec:
    """A field as the command line sees it: ``kind`` is bool, int, float or str (the element type
    of a list field); ``default`` is ``MISSING`` for fields without one."""

    name: str
    opt: Opt
    kind: type
    is_list: bool
    optional: bool
    default: Any

    @property
    def flag(self) -> str:
        return self.opt.flag or "--" + self.name.replace("_", "-")

    @property
    def required(self) -> bool:
        return self.default is MISSING or self.opt.required

    @property
    def old_keys(self) -> tuple[str, ...]:
        """The field names of the former spellings (keys of configs written before a rename)."""
        return tuple(a.removeprefix("--").replace("-", "_") for a in self.opt.aliases)

    @property
    def label(self) -> str:
        """How messages name it: the option (and the field when they differ)."""
        if not self.opt.cli:
            return self.name
        return self.flag if self.flag == "--" + self.name.replace("_", "-") else f"{self.flag} ({self.name})"


@functools.cache
def specs(cls: type) -> tuple[Spec, ...]:
    """The :class:`Spec` of every field of config dataclass ``cls``, in field order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        opt = f.metadata.get("opt")
        if opt is None:
            raise TypeError(f"{cls.__name__}.{f.name} is declared without option(...) / required(...)")
        tp, optional = hints[f.name], False
        if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp):
            optional = True
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        is_list = typing.get_origin(tp) is list
        kind = typing.get_args(tp)[0] if is_list else tp
        default = (
            f.default
            if f.default is not MISSING
            else (f.default_factory() if f.default_factory is not MISSING else MISSING)
        )
        out.append(Spec(f.name, opt, kind, is_list, optional, default))
    return tuple(out)


def _type_ok(kind: type, value: Any) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def check_value(spec: Spec, value: Any) -> None:
    """Raise a one-line :class:`UserError` unless ``value`` fits ``spec``."""
    opt, label = spec.opt, spec.label
    if value is None:
        if spec.optional:
            return
        raise UserError(f"{label} must be set, got None")
    if spec.is_list and not isinstance(value, (list, tuple)):
        raise UserError(f"{label} must be a list of {spec.kind.__name__}, got {value!r}")
    for item in value if spec.is_list else [value]:
        if not _type_ok(spec.kind, item):
            raise UserError(
                f"{label} must be {'a list of ' if spec.is_list else 'a '}{spec.kind.__name__}, got {value!r}"
            )
        if opt.path and item == "":
            raise UserError(f"{label} must be a path, got an empty string")
        if opt.choices is not None and item not in opt.choices:
            unset = " (or unset)" if spec.optional and not spec.is_list else ""
            raise UserError(f"{label} must be one of {', '.join(map(str, opt.choices))}{unset}, got {item!r}")
        if spec.kind is float and not math.isfinite(item):
            raise UserError(f"{label} must be a finite number, got {item}")
        if opt.min is not None and item < opt.min:
            raise UserError(f"{label} must be >= {opt.min}, got {item}")
        if opt.above is not None and item <= opt.above:
            raise UserError(f"{label} must be > {opt.above}, got {item}")
        if opt.max is not None and item > opt.max:
            raise UserError(f"{label} must be <= {opt.max}, got {item}")
        if opt.below is not None and item >= opt.below:
            raise UserError(f"{label} must be < {opt.below}, got {item}")


class Options:
    """Base of the config dataclasses: checked when built (and by the train functions, which call
    :meth:`validate` again), rebuilt from a stored dict by :meth:`from_dict`."""

    stage: ClassVar[str]

    def __post_init__(self) -> None:
        for spec in specs(type(self)):  # paths may be given as Path objects; stored as str (JSON)
            if spec.opt.path and isinstance(getattr(self, spec.name), os.PathLike):
                setattr(self, spec.name, os.fspath(getattr(self, spec.name)))
        self.validate()

    def validate(self) -> None:
        """Check every field against its :class:`Opt`; subclasses add checks across fields."""
        for spec in specs(type(self)):
            check_value(spec, getattr(self, spec.name))

    @classmethod
    def upgrade(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """``data`` (e.g. a stored ``config.json``) with the keys of renamed fields (their
        :attr:`Opt.aliases`) under the current names."""
        out = dict(data)
        for spec in specs(cls):
            for old in spec.old_keys:
                if old in out:
                    value = out.pop(old)
                    out.setdefault(spec.name, value)
        return out

    @classmethod
    def check_keys(cls, data: Mapping[str, Any], where: str) -> None:
        """A one-line :class:`UserError` naming the keys of ``data`` that are neither ``stage`` nor
        a field of ``cls`` (under its current or a former name), with the nearest field names."""
        names = [s.name for s in specs(cls)]
        known = {"stage", *names, *(old for s in specs(cls) for old in s.old_keys)}
        unknown = [str(k) for k in data if k not in known]
        if not unknown:
            return
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, names, n=1)
            hints.append(f"{key} (did you mean {close[0]}?)" if close else key)
        raise UserError(
            f"{where} has {'an unknown key' if len(unknown) == 1 else 'unknown keys'} {', '.join(hints)}: "
            f"{cls.stage} has no such option; correct or remove {'it' if len(unknown) == 1 else 'them'}"
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        """The config from a dict such as a run's ``config.json``: its ``stage`` (if any) must be
        ``cls.stage``; renamed fields are read under their former names too (:meth:`upgrade`);
        a key that is not a field is a :class:`UserError` (:meth:`check_keys`)."""
        stage = data.get("stage", cls.stage)
        if stage != cls.stage:
            raise UserError(f"a {stage} config cannot configure {cls.stage}; pass the config of a {cls.stage} run")
        cls.check_keys(data, f"the {cls.stage} config")
        return cls(**{k: v for k, v in cls.upgrade(data).items() if k != "stage"})
