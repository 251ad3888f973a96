"""The ImageNet stem (He et al. 2016): ResNet-18/34 equal torchvision's, Table 4's hyper overheads."""

from __future__ import annotations

import pytest
import torch
import torchvision

from metahyper.errors import UserError
from metahyper.models import build_from_config, build_model, count_parameters, to_plain

# Table 4: train / test parameters (millions, truncated) of HyperResNet-18/34 (2)
PAPER = {18: (21.4, 11.1), 34: (41.6, 21.3)}


@pytest.mark.parametrize("depth", [18, 34])
def test_imagenet_resnets_have_torchvisions_shapes_and_table4_overhead(depth):
    with torch.device("meta"):  # shapes and counts only: no memory, no initialisation cost
        reference = getattr(torchvision.models, f"resnet{depth}")(num_classes=1000)
        plain = build_model(f"resnet-{depth}", num_classes=1000, stem="imagenet")
        hyper = build_model(f"hyper-resnet-{depth}", variant=2, num_classes=1000, stem="imagenet")
        cifar_hyper = build_model(f"hyper-resnet-{depth}", variant=2, num_classes=100)
        cifar_plain = build_model(f"resnet-{depth}", num_classes=100)
        features = plain.stages(plain.stem(torch.zeros(1, 3, 224, 224)))
    # same parameter tensors, in the same order, as torchvision's ImageNet ResNet
    assert [tuple(p.shape) for p in plain.parameters()] == [tuple(p.shape) for p in reference.parameters()]
    assert count_parameters(plain) == count_parameters(reference)
    assert tuple(features.shape) == (1, 512, 7, 7)  # overall stride 32
    # Table 4's counts are the CIFAR models'; the hypernetworks' overhead does not depend on the stem
    # or head, and it lies in the interval the paper's truncated counts allow
    overhead = count_parameters(hyper) - count_parameters(plain)
    assert overhead == count_parameters(cifar_hyper) - count_parameters(cifar_plain)
    train, test = PAPER[depth]
    assert train - test - 0.1 < overhead / 1e6 < train - test + 0.1


def test_stem_is_saved_exported_and_checked():
    model = build_model("hyper-wrn-10-1", variant=1, num_classes=10, stem="imagenet")  # any family with a stem
    assert model.config.label() == "Hyper-WRN-10-1 (1, ImageNet stem)"
    again = build_from_config(model.config.to_dict())
    assert isinstance(again.stem[-1], torch.nn.MaxPool2d) and again.stem[0].kernel_size == (7, 7)
    assert again.stem[0].stride == (2, 2)
    plain = to_plain(model.eval())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert plain.config.stem == "imagenet" and torch.allclose(plain(x), model(x), atol=1e-5, rtol=0)
    old = {k: v for k, v in model.config.to_dict().items() if k != "stem"}  # checkpoints written before stems
    assert build_from_config(old).config.stem == "cifar"
    with pytest.raises(UserError, match="unknown stem 'big'"):
        build_model("wrn-10-1", stem="big")
    with pytest.raises(UserError, match="resnet-12 has no stem"):
        build_model("resnet-12", stem="imagenet")
