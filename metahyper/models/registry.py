"""Model names, the registry of architecture families and the one builder, :func:`build_model`.

Names: each :class:`Family` of :data:`FAMILIES` declares the names it builds (``wrn-<6n+4>-<k>``,
``resnet-18|34``, ``resnet-12``), and each name also exists with a ``hyper-`` prefix. Adding a
family is one :func:`register_family` line with its name pattern, description and a function from
the name's match to an :class:`~metahyper.models.resnet.ArchSpec` (``docs/models.md``, "Adding a
model"). Hyper variants (paper section 3, Figure 1):

* variant 1: one hypernetwork per stage, shared by the stage's 3x3 convs whose input width equals
  the stage width; the stage's first conv (other input width), the stem and shortcuts stay plain.
* variant 2: one hypernetwork per 3x3 conv of the residual stages.
* ``compressed`` (section 5.3, variant 1 only): embeddings drawn from ``embedding_seed`` and
  frozen; only hypernetworks and plain layers are trained and stored.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import torch
from torch import nn

from metahyper.errors import UserError
from metahyper.models.layers import BIAS_INITS, HyperConv2d, HyperNetwork, embedding_init_std
from metahyper.models.per_step_bn import per_step_batchnorm
from metahyper.models.resnet import STEMS, ArchSpec, BasicBlock, PreActBlock, ResNet, ResNet12Block, plain_conv3x3


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; saved in checkpoints and run directories."""

    name: str
    variant: int = 1
    num_classes: int = 100
    compressed: bool = False
    d: int | None = None
    hyper_bias: bool = False
    embedding_seed: int = 0
    stem: str = "cifar"  # a key of metahyper.models.resnet.STEMS
    bn_steps: int = 0  # 0: BatchNorm; S > 0: per-step BatchNorm of S slots (metahyper.models.per_step_bn)
    hyper_bias_init: str = "uniform"  # with hyper_bias: one of metahyper.models.layers.BIAS_INITS

    @property
    def is_hyper(self) -> bool:
        return self.name.startswith("hyper-")

    @property
    def base_name(self) -> str:
        """The plain architecture this model exports to."""
        return self.name.removeprefix("hyper-")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise UserError(
                f"unknown model config keys {sorted(unknown)}; the checkpoint was written by a newer metahyper"
            )
        for key, value in data.items():
            default = cls.__dataclass_fields__[key].default
            kind = (
                type(default)
                if default is not None and not isinstance(default, type(dataclasses.MISSING))
                else (str if key == "name" else int)
            )
            if not (value is None and key == "d") and (type(value) is not kind):
                raise UserError(f"model config {key}={value!r} is not a {kind.__name__}; the checkpoint is damaged")
        return cls(**data)

    def label(self) -> str:
        """Human-readable name in the paper's style, e.g. ``Hyper-WRN-28-4 (1, C)``."""
        base = self.base_name.upper().replace("RESNET", "ResNet")
        stem = ["ImageNet stem"] if self.stem == "imagenet" else []
        if not self.is_hyper:
            return f"{base} ({stem[0]})" if stem else base
        tags = [str(self.variant)] + (["C"] if self.compressed else []) + stem
        return f"Hyper{'-' if base.startswith('WRN') else ''}{base} ({', '.join(tags)})"


@dataclass(frozen=True)
class Family:
    """A family of plain architectures addressed by name: names that fully match ``pattern`` (a
    regular expression) are built by ``arch(match)``, which returns the :class:`ArchSpec` (or a
    one-line :class:`UserError` for a name of the family it cannot build). ``usage`` is the
    pattern as users write it; ``description`` says what the family is. Every family also exists
    as ``hyper-<name>`` (variant 1 or 2, :func:`build_model`)."""

    name: str
    usage: str
    pattern: str
    description: str
    arch: Callable[[re.Match], ArchSpec]


FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Add ``family`` to :data:`FAMILIES` (returned); its name must be new."""
    if family.name in FAMILIES:
        raise ValueError(f"model family {family.name} is already registered")
    FAMILIES[family.name] = family
    return family


def arch_spec(base_name: str) -> ArchSpec:
    """The :class:`ArchSpec` of a plain architecture name, from the first family whose pattern
    matches it; else a one-line :class:`UserError` listing every family's usage."""
    for family in FAMILIES.values():
        if match := re.fullmatch(family.pattern, base_name):
            return family.arch(match)
    usages = ", ".join(family.usage for family in FAMILIES.values())
    raise UserError(f"unknown model {base_name!r}; use one of {usages}, optionally with 'hyper-' in front")


MAX_WRN_DEPTH = 1000  # building (even shapes only) takes seconds per thousand layers
_RESNET_DEPTHS = {"18": (2, 2, 2, 2), "34": (3, 4, 6, 3)}


def _wrn(match: re.Match) -> ArchSpec:
    depth, k = int(match[1]), int(match[2])
    if (depth - 4) % 6 or not 10 <= depth <= MAX_WRN_DEPTH or k < 1:
        raise UserError(f"WRN depth must be 6n+4 in [10, {MAX_WRN_DEPTH}] and width k >= 1, got wrn-{depth}-{k}")
    n = (depth - 4) // 6
    return ArchSpec("wrn", PreActBlock, 16, (16 * k, 32 * k, 64 * k), (n, n, n), (1, 2, 2), False, True)


def _resnet(match: re.Match) -> ArchSpec:
    return ArchSpec("resnet", BasicBlock, 64, (64, 128, 256, 512), _RESNET_DEPTHS[match[1]], (1, 2, 2, 2), True, False)


def _resnet12(match: re.Match) -> ArchSpec:
    return ArchSpec("resnet12", ResNet12Block, None, (64, 160, 320, 640), (1, 1, 1, 1), (2, 2, 2, 2), False, False)


register_family(
    Family(
        "wrn",
        "wrn-<6n+4>-<k>",
        r"wrn-(\d+)-(\d+)",
        "wide residual network (Zagoruyko & Komodakis 2016): pre-activation blocks, widths 16, 16k, 32k, 64k",
        _wrn,
    )
)
register_family(
    Family(
        "resnet",
        "resnet-18|34",
        r"resnet-(18|34)",
        "ResNet, CIFAR variant (3x3 stem, no max-pool); with --stem imagenet, He et al.'s ImageNet ResNet",
        _resnet,
    )
)
register_family(
    Family(
        "resnet12",
        "resnet-12",
        r"resnet-12",
        "the few-shot backbone (MetaOptNet, TADAM): widths 64-160-320-640, max-pool after each block",
        _resnet12,
    )
)


@dataclass
class HyperConvFactory:
    """The :class:`~metahyper.models.resnet.ConvFactory` of hyper models: decides which convs are
    generated and by which hypernetwork (variant as data), and collects the hypernetworks."""

    variant: int
    d: int | None = None
    bias: bool = False
    bias_init: str = "uniform"
    generator: torch.Generator | None = None  # set for compressed models: frozen, seeded embeddings
    hypernets: list[HyperNetwork] = field(default_factory=list)
    _per_stage: dict[int, HyperNetwork] = field(default_factory=dict)

    def __call__(self, in_channels: int, out_channels: int, stride: int, *, stage: int, stage_width: int) -> nn.Module:
        if self.variant == 1:
            if in_channels != stage_width:
                return plain_conv3x3(in_channels, out_channels, stride)
            hypernet = self._per_stage.get(stage)
            if hypernet is None:
                hypernet = self._per_stage[stage] = self._new_hypernet(in_channels)
        else:
            hypernet = self._new_hypernet(in_channels)
        frozen = None
        if self.generator is not None:
            std = embedding_init_std(in_channels, hypernet.d, 3)
            frozen = torch.randn((out_channels, hypernet.d, 3, 3), generator=self.generator) * std
        return HyperConv2d(in_channels, out_channels, 3, hypernet, stride=stride, padding=1, frozen_embedding=frozen)

    def _new_hypernet(self, in_channels: int) -> HyperNetwork:
        hypernet = HyperNetwork(in_channels, self.d or in_channels, 3, bias=self.bias, bias_init=self.bias_init)
        self.hypernets.append(hypernet)
        return hypernet


def build_model(
    name: str,
    *,
    variant: int = 1,
    num_classes: int = 100,
    compressed: bool = False,
    d: int | None = None,
    hyper_bias: bool = False,
    embedding_seed: int = 0,
    stem: str = "cifar",
    bn_steps: int = 0,
    hyper_bias_init: str = "uniform",
) -> ResNet:
    """Build any architecture by name, e.g. ``build_model("hyper-wrn-28-4", variant=2)``;
    ``stem="imagenet"``: He et al. (2016)'s 7x7 stride-2 stem with max-pool (ImageNet, Table 4);
    ``bn_steps=S``: every BatchNorm per-step with S slots (MAML++; what meta-training with
    per-step BatchNorm saves, :func:`metahyper.meta.per_step_batchnorm`); ``hyper_bias_init``: how
    the Table 1 hypernetwork bias starts, ``uniform`` (PyTorch's convolution default) or ``zero``.

    The returned model carries ``model.config`` (a :class:`ModelConfig`), ``model.hypernets``
    (empty for plain models) and ``model.reset_classifier(num_classes)``.
    """
    config = ModelConfig(
        name, variant, num_classes, compressed, d, hyper_bias, embedding_seed, stem, bn_steps, hyper_bias_init
    )
    if hyper_bias_init not in BIAS_INITS:
        raise UserError(
            f"unknown hypernetwork bias initialisation {hyper_bias_init!r}; use one of {', '.join(BIAS_INITS)}"
        )
    spec = arch_spec(config.base_name)
    if stem not in STEMS:
        raise UserError(f"unknown stem {stem!r}; use one of {', '.join(STEMS)}")
    if spec.stem_width is None and stem != "cifar":
        raise UserError(f"{config.base_name} has no stem; build it without stem={stem!r}")
    spec = replace(spec, stem=STEMS[stem])
    if num_classes < 1:
        raise UserError(f"num_classes must be >= 1, got {num_classes}")
    if bn_steps < 0:
        raise UserError(f"bn_steps must be >= 0 (0: ordinary BatchNorm), got {bn_steps}")
    if config.is_hyper:
        if variant not in (1, 2):
            raise UserError(f"hypernetwork variant must be 1 (shared per stage) or 2 (one per layer), got {variant}")
        if compressed and variant != 1:
            raise UserError("compression (paper section 5.3) is defined for variant 1; use --variant 1")
        if d is not None and d < 1:
            raise UserError(f"embedding depth d must be >= 1, got {d}")
        generator = torch.Generator().manual_seed(embedding_seed) if compressed else None
        factory = HyperConvFactory(variant, d, hyper_bias, hyper_bias_init, generator)
        model = ResNet(spec, num_classes, factory)
        model.hypernets = nn.ModuleList(factory.hypernets)
    else:
        if compressed or hyper_bias or d is not None:
            raise UserError(f"{name} is a plain network: compressed/d/hyper_bias apply only to hyper-* models")
        model = ResNet(spec, num_classes)
        model.hypernets = nn.ModuleList()
    if bn_steps:
        per_step_batchnorm(model, bn_steps)
    model.config = config
    return model


def build_from_config(config: ModelConfig | dict) -> ResNet:
    """Rebuild a model from a saved :class:`ModelConfig` (or its dict)."""
    if isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    return build_model(**config.to_dict())


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of parameters (shared hypernetworks counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
