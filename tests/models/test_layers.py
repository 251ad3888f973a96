import math

import pytest
import torch
import torch.nn.functional as F

from metahyper.models.layers import HyperConv2d, HyperNetwork, conv_init_std, embedding_init_std


def test_generated_weight_is_conv_of_embedding_with_hypernetwork_filter():
    h = HyperNetwork(in_channels=6, d=4, kernel_size=3)
    layer = HyperConv2d(6, 5, 3, h, padding=1)
    assert layer.embedding.shape == (5, 4, 3, 3) and h.weight.shape == (6, 4, 3, 3)
    expected = F.conv2d(layer.embedding, h.weight, padding=1)
    assert torch.equal(layer.generated_weight(), expected)
    assert layer.generated_weight().shape == (5, 6, 3, 3)
    x = torch.randn(2, 6, 8, 8)
    assert torch.allclose(layer(x), F.conv2d(x, expected, padding=1))


@pytest.mark.parametrize("cin,cout", [(16, 16), (64, 64), (64, 128), (256, 256)])
def test_generated_weights_have_kaiming_scale(cin, cout):
    torch.manual_seed(1)
    layer = HyperConv2d(cin, cout, 3, HyperNetwork(cin, cin, 3), padding=1)
    plain = torch.nn.Conv2d(cin, cout, 3, bias=False)
    torch.nn.init.kaiming_normal_(plain.weight, mode="fan_in", nonlinearity="relu")
    std = layer.generated_weight().std().item()
    assert abs(std / plain.weight.std().item() - 1) < 0.2
    assert abs(std / conv_init_std(cin, 3) - 1) < 0.2


def test_bias_only_on_request():
    assert HyperNetwork(4, 4).bias is None
    assert HyperNetwork(4, 4, bias=True).bias.shape == (4,)


def test_bias_starts_as_pytorch_conv_bias_by_default_and_at_zero_on_request():
    torch.manual_seed(0)
    h = HyperNetwork(64, 64, 3, bias=True)
    bound = 1 / math.sqrt(64 * 9)  # nn.Conv2d(64, 64, 3)'s bias bound: 1/sqrt(fan_in)
    assert h.bias.abs().max() <= bound and h.bias.abs().max() > 0.8 * bound
    assert h.bias.std() > 0.4 * bound  # spread over the interval, not a constant
    conv = torch.nn.Conv2d(64, 64, 3)
    assert conv.bias.abs().max() <= bound and conv.bias.abs().max() > 0.8 * bound
    assert torch.equal(HyperNetwork(64, 64, 3, bias=True, bias_init="zero").bias, torch.zeros(64))
    with pytest.raises(ValueError, match="bias_init"):
        HyperNetwork(4, 4, bias=True, bias_init="normal")


def test_embedding_init_std_positive_for_any_d():
    assert embedding_init_std(64, 8, 3) > 0 and embedding_init_std(64, 64, 1) > 0


def test_mismatched_hypernetwork_is_rejected():
    with pytest.raises(ValueError, match="hypernetwork generates"):
        HyperConv2d(8, 8, 3, HyperNetwork(4, 4))
