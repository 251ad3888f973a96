"""Models (paper section 3): hyper residual networks, their plain counterparts, groups, export.

``build_model`` is the one builder; ``param_groups`` names the parameters the optimisers and the
meta-learner select; ``to_plain`` exports a hyper network to its plain architecture;
``per_step_batchnorm`` gives a model MAML++'s per-step BatchNorm (slots chosen by the inner step).
"""

from metahyper.models.convert import to_plain
from metahyper.models.groups import (
    GENERATED_L2,
    GROUP_NAMES,
    GROUPS,
    WEIGHT_DECAY,
    default_groups,
    generated_weight_penalty,
    group_of,
    hyper_layers,
    layer_label,
    optimizer_param_groups,
    param_groups,
    record_generated_weights,
    resolve_groups,
    stage_conv_weights,
)
from metahyper.models.layers import HyperConv2d, HyperNetwork
from metahyper.models.movement import WeightMovement
from metahyper.models.per_step_bn import PerStepBatchNorm2d, at_inner_step, per_step_batchnorm
from metahyper.models.registry import ModelConfig, build_from_config, build_model, count_parameters
from metahyper.models.resnet import STEMS, ResNet

__all__ = [
    "GENERATED_L2",
    "GROUP_NAMES",
    "GROUPS",
    "STEMS",
    "WEIGHT_DECAY",
    "HyperConv2d",
    "HyperNetwork",
    "ModelConfig",
    "PerStepBatchNorm2d",
    "ResNet",
    "WeightMovement",
    "at_inner_step",
    "build_from_config",
    "build_model",
    "count_parameters",
    "default_groups",
    "generated_weight_penalty",
    "group_of",
    "hyper_layers",
    "layer_label",
    "optimizer_param_groups",
    "param_groups",
    "per_step_batchnorm",
    "record_generated_weights",
    "resolve_groups",
    "stage_conv_weights",
    "to_plain",
]
