import pytest
import torch

from metahyper.models import build_from_config, build_model, count_parameters, hyper_layers, to_plain
from metahyper.models.catalog import CATALOG


def _train_a_little(model):
    """Make BN statistics and weights non-trivial so equality is a real check."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(8, 3, 16, 16)).logsumexp(1).mean().backward()
        opt.step()


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("hyper-wrn-10-2", {"variant": 1}),
        ("hyper-wrn-10-2", {"variant": 2}),
        ("hyper-wrn-10-2", {"variant": 1, "compressed": True}),
        ("hyper-resnet-12", {"variant": 1}),
        ("hyper-resnet-12", {"variant": 2}),
        ("hyper-wrn-10-1", {"variant": 2, "hyper_bias": True}),
    ],
)
def test_to_plain_gives_same_outputs(name, kwargs):
    model = build_model(name, num_classes=5, **kwargs)
    _train_a_little(model)
    model.eval()
    plain = to_plain(model)
    x = torch.randn(4, 3, 24, 24)
    with torch.no_grad():
        assert torch.allclose(model(x), plain(x), atol=1e-5, rtol=0)
    assert count_parameters(plain) == count_parameters(build_model(model.config.base_name, num_classes=5))
    assert plain.config.name == model.config.base_name and len(plain.hypernets) == 0


def test_export_of_every_catalogued_architecture_builds():
    # every architecture in the model table exports to its plain counterpart
    for entry in CATALOG:
        if entry.config.is_hyper and entry.config.base_name in ("wrn-28-4", "wrn-16-4", "wrn-40-2"):
            cfg = entry.config
            small = build_model(
                cfg.name.replace(cfg.base_name, "wrn-10-1"),
                variant=cfg.variant,
                compressed=cfg.compressed,
                num_classes=3,
            )
            plain = to_plain(small)
            assert plain.config.name == "wrn-10-1"
    for name in ("resnet-18", "resnet-34", "resnet-12"):
        model = build_model("hyper-" + name, variant=2, num_classes=3).eval()
        plain = to_plain(model)
        x = torch.randn(1, 3, 16, 16)
        with torch.no_grad():
            assert torch.allclose(model(x), plain(x), atol=1e-5, rtol=0)


def test_compression_roundtrip_regenerates_embeddings_bit_identically():
    model = build_model("hyper-wrn-10-2", variant=1, compressed=True, embedding_seed=123, num_classes=5)
    _train_a_little(model)
    state = model.state_dict()
    assert not any(k.endswith(".embedding") for k in state), "compressed state must not store embeddings"
    assert all(not p.endswith(".embedding") for p, _ in model.named_parameters())
    rebuilt = build_from_config(model.config)
    rebuilt.load_state_dict(state)
    for (n, a), (_, b) in zip(hyper_layers(model).items(), hyper_layers(rebuilt).items()):
        assert torch.equal(a.embedding, b.embedding), n
    model.eval(), rebuilt.eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), rebuilt(x))
    other = build_model("hyper-wrn-10-2", variant=1, compressed=True, embedding_seed=124, num_classes=5)
    assert not torch.equal(
        next(iter(hyper_layers(other).values())).embedding, next(iter(hyper_layers(model).values())).embedding
    )
