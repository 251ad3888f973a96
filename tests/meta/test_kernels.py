"""metahyper.meta.kernels: MetaKernels routes exactly the BatchNorms and convolutions it documents
through our double backwards, with the same values, and changes nothing outside its block."""

from __future__ import annotations

import torch
from torch import nn

import metahyper.meta.kernels as kernels
from metahyper.meta.batchnorm import batchnorm_mode
from metahyper.meta.kernels import MetaKernels
from metahyper.models.layers import HyperConv2d, HyperNetwork


def _counting(monkeypatch):
    calls = {"bn": 0, "conv": 0}
    bn, conv = kernels.batch_norm_train, kernels.conv2d_train

    def count_bn(*a):
        calls["bn"] += 1
        return bn(*a)

    def count_conv(*a):
        calls["conv"] += 1
        return conv(*a)

    monkeypatch.setattr(kernels, "batch_norm_train", count_bn)
    monkeypatch.setattr(kernels, "conv2d_train", count_conv)
    return calls


def test_batchnorm_in_transductive_mode_only(monkeypatch):
    calls = _counting(monkeypatch)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2)
    ).double()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    x = torch.randn(6, 3, 7, 7, dtype=torch.float64)
    for mode, expected_calls in (("transductive", 2), ("frozen", 0)):
        with batchnorm_mode(model, mode):
            expected = model(x)
            calls["bn"] = 0
            with MetaKernels(conv=False):
                torch.testing.assert_close(model(x), expected, rtol=1e-12, atol=1e-12)
            assert calls["bn"] == expected_calls and calls["conv"] == 0, mode
            calls["bn"] = 0
            with MetaKernels(batchnorm=False):
                model(x)
            assert calls["bn"] == 0 and calls["conv"] > 0, mode
            calls["conv"] = 0
    model.train()  # tracking running statistics: PyTorch's kernel, which updates them
    before = model[1].running_mean.clone()
    with MetaKernels():
        model(x)
    assert calls["bn"] == 0 and not torch.equal(before, model[1].running_mean)


def test_convolutions_larger_than_their_kernel(monkeypatch):
    calls = _counting(monkeypatch)
    torch.manual_seed(0)
    hyper = HyperConv2d(4, 6, 3, HyperNetwork(4, 5).double(), stride=2, padding=1)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=True),
        nn.ReLU(),
        hyper,
        nn.Conv2d(6, 2, 1),
        nn.Conv2d(2, 2, 3, padding="same"),  # string padding: PyTorch's
    ).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    expected = model(x)
    with MetaKernels():
        torch.testing.assert_close(model(x), expected, rtol=1e-12, atol=1e-12)
        assert calls["conv"] == 3  # two nn.Conv2d and the hyper layer; not its 3x3 hypernetwork conv, not "same"
        calls["conv"] = 0
        model[0](x[0])  # unbatched input
        with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast: F.conv2d, which casts
            model(x)
        assert calls["conv"] == 0
    with MetaKernels(conv=False):
        model(x)
    model(x)
    assert calls["conv"] == 0
