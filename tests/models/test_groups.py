import torch

from metahyper.models import (
    GENERATED_L2,
    build_model,
    generated_weight_penalty,
    hyper_layers,
    optimizer_param_groups,
    record_generated_weights,
    stage_conv_weights,
)


def test_optimizer_groups_no_decay_on_embeddings_and_hypernetworks():
    model = build_model("hyper-wrn-10-2", variant=1, num_classes=5)
    groups = optimizer_param_groups(model, weight_decay=5e-4)
    decay = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    params = dict(model.named_parameters())
    for name, p in params.items():
        expect_decay = not (name.endswith(".embedding") or name.startswith("hypernets."))
        assert (id(p) in decay) == expect_decay, name
    assert sum(len(g["params"]) for g in groups) == len(params)


def test_penalty_uses_recorded_generated_weights():
    model = build_model("hyper-wrn-10-2", variant=2, num_classes=5)
    with record_generated_weights(model) as weights:
        model(torch.randn(2, 3, 8, 8))
    layers = hyper_layers(model)
    assert len(weights) == len(layers)
    expected = 0.5 * GENERATED_L2 * sum(layer.generated_weight().pow(2).sum() for layer in layers.values())
    assert torch.allclose(generated_weight_penalty(weights), expected)
    # recording stops outside the block
    model(torch.randn(2, 3, 8, 8))
    assert len(weights) == len(layers)
    assert generated_weight_penalty([]) == 0.0


def test_stage_conv_weights_generated_and_raw():
    hyper = build_model("hyper-wrn-10-2", variant=1, num_classes=5)
    fns = stage_conv_weights(hyper)
    layers = hyper_layers(hyper)
    assert set(layers) < set(fns)  # plain stage-first convs are included as raw weights
    for name, layer in layers.items():
        assert torch.equal(fns[name]({}), layer.generated_weight())
    emb = f"{next(iter(layers))}.embedding"
    moved = {emb: dict(hyper.named_parameters())[emb] + 1.0}
    assert not torch.equal(fns[next(iter(layers))](moved), layers[next(iter(layers))].generated_weight())
    plain = build_model("wrn-10-2", num_classes=5)
    pfns = stage_conv_weights(plain)
    assert set(pfns) == set(fns)
    assert torch.equal(pfns["stages.0.0.conv1"]({}), plain.stages[0][0].conv1.weight)
