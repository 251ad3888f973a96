"""Hyper -> plain conversion (paper section 3, "Converting HyperResNets to ResNets").

The generated weights are collected once and stored in the plain architecture; the result has
the plain parameter count, the same outputs, and loads with no hypernetwork code.
"""

from __future__ import annotations

import torch

from metahyper.models.groups import hyper_layers
from metahyper.models.registry import ModelConfig, build_model
from metahyper.models.resnet import ResNet


@torch.no_grad()
def to_plain(model: ResNet) -> ResNet:
    """Return the plain counterpart of ``model`` holding its generated weights.

    Plain models are returned as an equal copy. BatchNorm statistics (per-step ones too), the
    classifier and every plain layer are copied as they are.
    """
    config: ModelConfig = model.config
    plain = build_model(config.base_name, num_classes=model.fc.out_features, stem=config.stem, bn_steps=config.bn_steps)
    ref = next(model.parameters())
    plain.to(device=ref.device, dtype=ref.dtype)
    state = {
        k: v for k, v in model.state_dict().items() if not k.startswith("hypernets.") and not k.endswith(".embedding")
    }
    for path, layer in hyper_layers(model).items():
        state[f"{path}.weight"] = layer.generated_weight()
    plain.load_state_dict(state, strict=True)
    plain.train(model.training)
    return plain
