"""Click options generated from the config dataclasses (:mod:`metahyper.config`): each field
declares its option once with :func:`metahyper.options.option`; :func:`config_options` adds them to
a command, whose function takes them as ``**options`` and builds its config with
:func:`build_config` (``--config RUN``: a stored run's ``config.json`` under the options given on
the command line). Click parses text into the field's type; the config checks values (choices,
bounds), so the CLI and Python give the same one-line errors.

The options of ``prepare`` are generated the same way from the registered datasets
(:func:`prepare_options`, :mod:`metahyper.data.registry`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from metahyper.data.registry import DatasetSpec
from metahyper.errors import UserError
from metahyper.io import read_json
from metahyper.options import Spec, specs
from metahyper.train.run import CONFIG_FILE


class _Choice(click.Choice):
    """Lists the allowed values in --help; the config checks the value (one-line error)."""

    def __init__(self, choices: tuple, kind: type) -> None:
        super().__init__([str(c) for c in choices])
        self.kind = kind

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return self.kind(value)
        except ValueError:
            self.fail(f"{value!r} is not a valid {self.kind.__name__}", param, ctx)


class _Comma(click.ParamType):
    """Comma-separated values (``60,120,160``, ``embeddings,classifier``) into a list."""

    def __init__(self, kind: type, choices: tuple | None) -> None:
        self.kind, self.choices = kind, choices
        self.name = f"comma-separated {kind.__name__}"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return ("[" + "|".join(map(str, self.choices)) + "]" if self.choices else self.kind.__name__.upper()) + ",..."

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, (list, tuple)):
            return list(value)
        items = [t for t in str(value).replace(" ", "").split(",") if t]
        try:
            return [self.kind(t) for t in items]
        except ValueError:
            name = param.opts[-1] if param is not None else "option"
            raise UserError(f"{name} expects comma-separated {self.kind.__name__} values, got {value!r}") from None


_PATHS = {"dir": {"file_okay": False}, "file": {"dir_okay": False}, "any": {}}


def _option(spec: Spec) -> click.Option:
    """The click option of one config field (bools: flags; lists: comma-separated; required ones
    are checked by :func:`build_config` after ``--config`` is merged)."""
    opt = spec.opt
    default = None if spec.required else spec.default
    kw: dict[str, Any] = {"default": default, "show_default": default is not None}
    flag = spec.flag
    if spec.kind is bool and not spec.is_list:
        if opt.invert:  # the flag's value; the field is its negation
            kw.update(is_flag=True, default=False, show_default=False)
        elif default:
            flag = f"{flag}/--no-{flag[2:]}"
        else:
            kw.update(is_flag=True, default=False)
    elif spec.is_list:
        kw.update(
            type=_Comma(spec.kind, opt.choices),
            default=None if default is None else ",".join(map(str, default)),
            show_default=bool(default),
        )
    elif opt.choices is not None:
        kw["type"] = _Choice(opt.choices, spec.kind)
    elif opt.path is not None:
        kw["type"] = click.Path(path_type=str, **_PATHS[opt.path])
    else:
        kw["type"] = spec.kind
    help = f"{opt.help}  [required]" if spec.required else opt.help
    decls = [*([opt.short] if opt.short else []), flag, *opt.aliases, spec.name]
    return _Option(decls, help=help, hidden_opts=opt.aliases, **kw)


class _Option(click.Option):
    """A click option whose former spellings (``hidden_opts``) work but are not shown by --help."""

    def __init__(self, *args: Any, hidden_opts: tuple[str, ...] = (), **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.hidden_opts = hidden_opts

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        shown = self.opts
        self.opts = [o for o in shown if o not in self.hidden_opts]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown


def config_options(cls: type, from_file: bool = False) -> Callable:
    """Decorator: the options of every field of ``cls`` (``opt.cli``), in field order, at the
    decorator's place; ``from_file``: also ``--config``."""
    params = [_option(s) for s in specs(cls) if s.opt.cli]
    if from_file:
        params.append(
            click.Option(
                ["--config", "config_file"],
                type=click.Path(path_type=str),
                default=None,
                help=f"Start from a stored {cls.stage} run (its directory or config.json); "
                "options given here override it.",
            )
        )

    def decorate(fn: Callable) -> Callable:
        fn.__click_params__ = [*getattr(fn, "__click_params__", []), *reversed(params)]  # click reverses them
        return fn

    return decorate


def _read_config_file(path: str, cls: type) -> dict:
    """The ``config.json`` of a run directory, the file itself, or a result JSON that stores its
    config under ``"config"`` (``eval``'s); it must be of ``cls.stage``."""

    given = Path(path)
    file = given / CONFIG_FILE if given.is_dir() else given
    fix = f"pass a {cls.stage} run directory or its {CONFIG_FILE}"
    if not file.is_file():
        raise UserError(
            f"--config {path}: {'no ' + CONFIG_FILE + ' in it' if given.is_dir() else 'no such file'}; {fix}"
        )
    data = read_json(file, "--config", fix)
    if isinstance(data, dict) and "stage" not in data and isinstance(data.get("config"), dict):
        data = data["config"]
    stage = data.get("stage") if isinstance(data, dict) else None
    if stage != cls.stage:
        what = f"a {stage} config" if stage else 'not a run config (no "stage")'
        raise UserError(f"--config {file} is {what}, not {cls.stage}; {fix}")
    cls.check_keys(data, f"--config {file}")
    return data


def build_config(cls: type, options: dict, adjust: Callable[[dict, set], None] | None = None) -> Any:
    """The config of a command from its ``**options``: the ``--config`` file's values (if given),
    then every option given on the command line, then the defaults; ``adjust(values, given)`` may
    fill in defaults that depend on other values. The config checks itself when built."""
    ctx = click.get_current_context()
    config_file = options.pop("config_file", None)
    stored = cls.upgrade(_read_config_file(config_file, cls)) if config_file else {}
    unset = (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)
    given = {name for name in options if ctx.get_parameter_source(name) not in unset}
    values, missing = {}, []
    for spec in specs(cls):
        if spec.name in stored and spec.opt.from_file and spec.name not in given:
            values[spec.name] = stored[spec.name]
        elif spec.opt.cli:
            value = options[spec.name]
            if spec.opt.invert:
                value = not value
            elif spec.is_list and spec.optional and value == []:
                value = None
            if value is None and spec.required:
                missing.append(spec.flag)
            else:
                values[spec.name] = value
    if missing:
        hint = "; pass it, or --config with a run that sets it" if "config_file" in ctx.params else ""
        raise UserError(f"missing option {', '.join(missing)}{hint}")
    if adjust is not None:
        adjust(values, given)
    return cls.from_dict(values)


def _option_help(offered: list[tuple[DatasetSpec, Any]], help: str) -> str:
    """``glyphs (default 32), omniglot (28): image side in pixels.``: the datasets that offer an
    option with this help text, each with its builder's default where it has one."""
    names = []
    for spec, default in offered:
        shown = default not in (None, False, inspect.Parameter.empty)
        names.append(f"{spec.name} ({'default ' if shown and not names else ''}{default})" if shown else spec.name)
    return f"{', '.join(names)}: {help}."


def prepare_options(specs: list[DatasetSpec]) -> list[click.Option]:
    """One ``--keyword`` option per builder keyword that some of ``specs`` offers
    (:attr:`DatasetSpec.options`), in registration order: typed by the builder's signature
    (``bool``: a flag), unset by default (each builder's own default applies; ``prepare`` drops
    unset options), its help listing the datasets that take it with their defaults."""
    offered: dict[str, dict[str, list]] = {}  # keyword -> help text -> [(spec, default)]
    for spec in specs:
        keywords = spec.keywords()
        for keyword, option in spec.options.items():
            offered.setdefault(keyword, {}).setdefault(option.help, []).append((spec, keywords[keyword].default))
    params = []
    for keyword, by_help in offered.items():
        spec = next(iter(by_help.values()))[0][0]
        kind = spec.option_type(keyword)
        kw: dict[str, Any] = {"is_flag": True, "default": None} if kind is bool else {"default": None}
        if kind is not bool:
            kw["type"] = click.Path(path_type=str) if kind is Path else kind
        help = " ".join(_option_help(offered_by, text) for text, offered_by in by_help.items())
        params.append(click.Option(["--" + keyword.replace("_", "-"), keyword], help=help, **kw))
    return params
