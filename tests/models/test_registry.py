import pytest
import torch

from metahyper.errors import UserError
from metahyper.models import HyperConv2d, build_model, count_parameters, hyper_layers, param_groups, to_plain
from metahyper.models.registry import FAMILIES, Family, build_from_config, register_family
from metahyper.models.resnet import ArchSpec, PreActBlock

# (name, kwargs, expected parameters with a 100-class head), as docs/models.md ("Parameter counts") derives them.
COUNTS = [
    ("wrn-40-2", {}, 2.255e6),
    ("wrn-28-4", {}, 5.872e6),
    ("wrn-16-4", {}, 2.772e6),
    ("hyper-wrn-40-2", {"variant": 1}, 2.449e6),
    ("hyper-wrn-28-4", {"variant": 1}, 6.646e6),
    ("hyper-wrn-28-4", {"variant": 1, "compressed": True}, 1.227e6),
    ("hyper-wrn-28-4", {"variant": 2}, 11.478e6),
    ("resnet-18", {}, 11.220e6),
    ("hyper-resnet-18", {"variant": 2}, 21.431e6),
    ("resnet-34", {}, 21.328e6),
    ("hyper-resnet-34", {"variant": 2}, 41.640e6),
]


@pytest.mark.parametrize("name,kwargs,expected", COUNTS)
def test_parameter_counts_match_the_paper_design(name, kwargs, expected):
    model = build_model(name, num_classes=100, **kwargs)
    assert abs(count_parameters(model) / expected - 1) < 0.005


@pytest.mark.parametrize(
    "name,expected", [("hyper-wrn-40-2", 2.255e6), ("hyper-wrn-28-4", 5.872e6), ("hyper-resnet-18", 11.220e6)]
)
def test_test_parameters_after_export_equal_plain(name, expected):
    for variant in (1, 2):
        plain = to_plain(build_model(name, variant=variant))
        assert abs(count_parameters(plain) / expected - 1) < 0.005
        assert not any(isinstance(m, HyperConv2d) for m in plain.modules())


def _generated(name, variant):
    return set(hyper_layers(build_model(name, variant=variant, num_classes=10)))


def test_variant1_generates_stage_convs_with_stage_width_input_only():
    layers = _generated("hyper-wrn-16-2", 1)
    # each stage: block 0 conv1 has a different input width and stays plain
    assert "stages.0.0.conv1" not in layers and "stages.1.0.conv1" not in layers
    assert {"stages.0.0.conv2", "stages.0.1.conv1", "stages.0.1.conv2", "stages.2.1.conv2"} <= layers
    assert len(layers) == 9
    model = build_model("hyper-wrn-16-2", variant=1)
    assert len(model.hypernets) == 3  # one shared hypernetwork per stage
    per_stage = {hyper_layers(model)[n].hypernet for n in layers if n.startswith("stages.1.")}
    assert len(per_stage) == 1


def test_variant2_generates_every_stage_conv_with_own_hypernetwork():
    model = build_model("hyper-resnet-18", variant=2, num_classes=10)
    layers = hyper_layers(model)
    assert len(layers) == 16 and len(model.hypernets) == 16
    assert len({id(m.hypernet) for m in layers.values()}) == 16
    names = dict(model.named_modules())
    assert not isinstance(names["stem.0"], HyperConv2d)
    assert not isinstance(names["stages.1.0.shortcut.0"], HyperConv2d)


@pytest.mark.parametrize(
    "name,variant", [("hyper-wrn-10-2", 1), ("hyper-wrn-10-2", 2), ("hyper-resnet-12", 1), ("hyper-resnet-18", 2)]
)
def test_backward_reaches_every_embedding_and_hypernetwork(name, variant):
    model = build_model(name, variant=variant, num_classes=5)
    model(torch.randn(2, 3, 16, 16)).sum().backward()
    groups = param_groups(model)
    params = dict(model.named_parameters())
    assert groups["embeddings"] and groups["hypernetworks"]
    for n in groups["embeddings"] + groups["hypernetworks"]:
        assert params[n].grad is not None and params[n].grad.abs().sum() > 0, n
    assert all(h.bias is None for h in model.hypernets)


def test_hyper_bias_ablation_adds_bias():
    model = build_model("hyper-wrn-10-1", variant=2, hyper_bias=True)
    assert all(h.bias is not None for h in model.hypernets)


def test_hyper_bias_initialisation_is_recorded_and_rebuilt():
    uniform = build_model("hyper-wrn-10-1", variant=2, hyper_bias=True)
    assert uniform.config.hyper_bias_init == "uniform"
    assert all(h.bias.abs().sum() > 0 for h in uniform.hypernets)
    zero = build_model("hyper-wrn-10-1", variant=2, hyper_bias=True, hyper_bias_init="zero")
    assert all(torch.equal(h.bias, torch.zeros_like(h.bias)) for h in zero.hypernets)
    saved = zero.config.to_dict()
    assert saved["hyper_bias_init"] == "zero"
    assert build_from_config(saved).config == zero.config
    with pytest.raises(UserError, match="bias initialisation"):
        build_model("hyper-wrn-10-1", hyper_bias=True, hyper_bias_init="normal")


def test_groups_partition_parameters():
    model = build_model("hyper-wrn-10-2", variant=1, num_classes=5)
    groups = param_groups(model)
    names = [n for g in groups.values() for n in g]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    assert groups["classifier"] == ["fc.weight", "fc.bias"]
    assert all(n.startswith("hypernets.") for n in groups["hypernetworks"])
    plain = param_groups(build_model("wrn-10-2"))
    assert plain["embeddings"] == [] and plain["hypernetworks"] == []


@pytest.mark.parametrize("name", ["wrn-10-2", "hyper-wrn-10-2", "resnet-12", "hyper-resnet-18"])
@pytest.mark.parametrize("size", [20, 32, 84])
def test_any_input_size_and_reset_classifier(name, size):
    if size == 84 and "resnet-18" in name:
        pytest.skip("large input on the big model is slow and adds nothing")
    model = build_model(name, num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, size, size)).shape == (1, 7)
    model.reset_classifier(5)
    assert model.config.num_classes == 5
    with torch.no_grad():
        assert model(torch.randn(1, 3, size, size)).shape == (1, 5)


@pytest.mark.parametrize("bad", ["wrn-11-2", "vgg-16", "hyper-resnet-50", "resnet"])
def test_unknown_names_give_user_errors(bad):
    with pytest.raises(UserError):
        build_model(bad)


def test_invalid_combinations():
    with pytest.raises(UserError, match="variant"):
        build_model("hyper-wrn-10-1", variant=3)
    with pytest.raises(UserError, match="compression"):
        build_model("hyper-wrn-10-1", variant=2, compressed=True)
    with pytest.raises(UserError, match="plain network"):
        build_model("wrn-10-1", compressed=True)


def test_custom_embedding_depth():
    model = build_model("hyper-wrn-10-2", variant=2, d=8)
    assert all(h.d == 8 for h in model.hypernets)
    assert all(m.embedding.shape[1] == 8 for m in hyper_layers(model).values())


def test_unknown_name_error_lists_every_registered_family():
    with pytest.raises(UserError) as err:
        build_model("vgg-16")
    message = str(err.value)
    assert "\n" not in message and message.startswith("unknown model 'vgg-16'; use one of ")
    assert all(family.usage in message for family in FAMILIES.values())
    assert {"wrn", "resnet", "resnet12"} <= set(FAMILIES)


def test_a_new_family_is_one_register_line_and_gets_its_hyper_version():
    def tiny(match):
        return ArchSpec("tiny", PreActBlock, 8, (8 * int(match[1]),), (1,), (1,), False, True)

    family = register_family(Family("tiny", "tiny-<k>", r"tiny-(\d+)", "one pre-activation block", tiny))
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_family(family)
        plain = build_model("tiny-2", num_classes=3)
        hyper = build_model("hyper-tiny-2", variant=2, num_classes=3)
        assert plain(torch.randn(2, 3, 8, 8)).shape == (2, 3) and len(hyper.hypernets) == 2
        assert count_parameters(to_plain(hyper)) == count_parameters(plain)
        with pytest.raises(UserError, match="tiny-<k>"):
            build_model("tiny")
    finally:
        FAMILIES.pop("tiny")
