"""Residual networks and their hyper variants: small blocks, one configurable builder.

Families (variants as data in :mod:`metahyper.models.registry`):

* WRN-d-k (Zagoruyko & Komodakis 2016): pre-activation basic blocks, widths 16, 16k, 32k, 64k.
* ResNet-18/34, CIFAR variant (DeVries & Taylor 2017): 3x3 stem, no max-pool, basic blocks
  64-128-256-512; with the ImageNet stem (``STEMS["imagenet"]``), He et al. (2016)'s ImageNet
  ResNet: 7x7 stride-2 conv, BN, ReLU, 3x3 stride-2 max-pool (torchvision's resnet18/34).
* ResNet-12 (MetaOptNet/TADAM style, paper Table 7): four blocks of three 3x3 convs, widths
  64-160-320-640, leaky ReLU, 2x2 max-pool after each block.

Every 3x3 conv inside the residual stages is built by an injected ``make_conv`` factory, which
returns a plain :class:`~torch.nn.Conv2d` or a :class:`~metahyper.models.layers.HyperConv2d`
(paper section 3, Figure 1); the stem and the 1x1 shortcuts are always plain. Module paths are
the same for a hyper network and its plain counterpart (``stages.<stage>.<block>.conv<j>``),
which is what makes export (:mod:`metahyper.models.convert`) a renaming.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import torch
from torch import nn

from metahyper.models.layers import init_conv_


class ConvFactory(Protocol):
    """Builds a stage's 3x3 conv; ``stage_width`` is the output width of the stage it belongs to."""

    def __call__(
        self, in_channels: int, out_channels: int, stride: int, *, stage: int, stage_width: int
    ) -> nn.Module: ...


def plain_conv3x3(in_channels: int, out_channels: int, stride: int = 1, **_: int) -> nn.Conv2d:
    """The default :class:`ConvFactory`: a bias-free Kaiming-initialised 3x3 conv."""
    conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
    init_conv_(conv)
    return conv


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
    init_conv_(conv)
    return conv


class PreActBlock(nn.Module):
    """WRN basic block, pre-activation: BN-ReLU-conv3x3-BN-ReLU-conv3x3 (+ 1x1 shortcut)."""

    def __init__(
        self, in_ch: int, out_ch: int, stride: int, make_conv: ConvFactory, stage: int, stage_width: int
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = make_conv(in_ch, out_ch, stride, stage=stage, stage_width=stage_width)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv2 = make_conv(out_ch, out_ch, 1, stage=stage, stage_width=stage_width)
        self.relu = nn.ReLU(inplace=False)
        self.shortcut = conv1x1(in_ch, out_ch, stride) if (stride != 1 or in_ch != out_ch) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.relu(self.bn1(x))
        identity = x if self.shortcut is None else self.shortcut(o)
        out = self.conv1(o)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + identity


class BasicBlock(nn.Module):
    """ResNet-18/34 basic block, post-activation: conv-BN-ReLU-conv-BN (+ 1x1 conv-BN shortcut), ReLU."""

    def __init__(
        self, in_ch: int, out_ch: int, stride: int, make_conv: ConvFactory, stage: int, stage_width: int
    ) -> None:
        super().__init__()
        self.conv1 = make_conv(in_ch, out_ch, stride, stage=stage, stage_width=stage_width)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = make_conv(out_ch, out_ch, 1, stage=stage, stage_width=stage_width)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=False)
        self.shortcut = None
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet12Block(nn.Module):
    """ResNet-12 block: three conv-BN(-LeakyReLU) layers, 1x1 conv-BN shortcut, LeakyReLU, 2x2 max-pool."""

    def __init__(
        self, in_ch: int, out_ch: int, stride: int, make_conv: ConvFactory, stage: int, stage_width: int
    ) -> None:
        super().__init__()
        self.conv1 = make_conv(in_ch, out_ch, 1, stage=stage, stage_width=stage_width)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = make_conv(out_ch, out_ch, 1, stage=stage, stage_width=stage_width)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv3 = make_conv(out_ch, out_ch, 1, stage=stage, stage_width=stage_width)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.LeakyReLU(0.1)
        self.shortcut = nn.Sequential(conv1x1(in_ch, out_ch), nn.BatchNorm2d(out_ch))
        self.pool = nn.MaxPool2d(stride) if stride > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.pool(self.relu(out + self.shortcut(x)))


@dataclass(frozen=True)
class Stem:
    """The first conv (``kernel`` x ``kernel``, ``stride``, padding ``kernel // 2``), optionally
    followed (after its BN-ReLU, where the family has one) by a 3x3 stride-2 max-pool."""

    kernel: int
    stride: int
    max_pool: bool


STEMS: dict[str, Stem] = {
    "cifar": Stem(3, 1, False),  # CIFAR ResNets (DeVries & Taylor 2017) and WRN (Zagoruyko & Komodakis 2016)
    "imagenet": Stem(7, 2, True),  # He et al. 2016, Table 1 (conv1, then max-pool)
}


@dataclass(frozen=True)
class ArchSpec:
    """An architecture as data. ``stem_width=None`` means no stem (ResNet-12)."""

    family: str
    block: type[nn.Module]
    stem_width: int | None
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    strides: tuple[int, ...]
    stem_bn_relu: bool  # post-activation nets normalise the stem output
    final_bn_relu: bool  # pre-activation nets normalise the last stage output
    stem: Stem = STEMS["cifar"]


class ResNet(nn.Module):
    """One builder for every family: stem -> stages of blocks -> (BN-ReLU) -> global pool -> fc.

    Global average pooling makes every model accept any input size.
    """

    def __init__(self, spec: ArchSpec, num_classes: int, make_conv: ConvFactory = plain_conv3x3) -> None:
        super().__init__()
        self.spec = spec
        in_ch = 3
        if spec.stem_width is None:
            self.stem: nn.Module = nn.Identity()
        else:
            k = spec.stem.kernel
            layers: list[nn.Module] = [
                nn.Conv2d(3, spec.stem_width, k, stride=spec.stem.stride, padding=k // 2, bias=False)
            ]
            init_conv_(layers[0])
            if spec.stem_bn_relu:
                layers += [nn.BatchNorm2d(spec.stem_width), nn.ReLU(inplace=False)]
            if spec.stem.max_pool:
                layers.append(nn.MaxPool2d(3, stride=2, padding=1))
            self.stem = nn.Sequential(*layers)
            in_ch = spec.stem_width
        stages = []
        for s, (width, depth, stride) in enumerate(zip(spec.widths, spec.depths, spec.strides)):
            blocks = []
            for b in range(depth):
                block_stride = stride if (b == 0 or spec.block is ResNet12Block) else 1
                blocks.append(spec.block(in_ch, width, block_stride, make_conv, s, width))
                in_ch = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.final = (
            nn.Sequential(nn.BatchNorm2d(in_ch), nn.ReLU(inplace=False)) if spec.final_bn_relu else nn.Identity()
        )
        self.num_features = in_ch
        self.fc = nn.Linear(in_ch, num_classes)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.final(self.stages(self.stem(x))).mean(
            (2, 3)
        )  # global average pool (vmap-friendly in channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head by a fresh linear layer (section 4.2: after pretraining)."""
        ref = self.fc.weight
        self.fc = nn.Linear(self.num_features, num_classes).to(device=ref.device, dtype=ref.dtype)
        if hasattr(self, "config"):  # keep the saved config in step, so checkpoints rebuild
            self.config = replace(self.config, num_classes=num_classes)
