"""Memory estimates checked before anything large is allocated.

A model's size comes from its :class:`~metahyper.models.ModelConfig` built on PyTorch's ``meta``
device (shapes only, no storage): the exact parameter count, and the number of activation values
one image of a given size produces (every leaf module's output, from a ``meta`` forward). The
training and evaluation commands add up their parameters, optimiser state, input images and
activations (:func:`estimate`) and refuse, with a one-line :class:`~metahyper.errors.UserError`,
an estimate above the limit (:func:`check_memory`).

The limit is the device's memory (a GPU's total memory; on CPU the machine's physical memory),
or ``$METAHYPER_MAX_MEMORY_GB`` when set: a lower value keeps a run inside a share of a machine, a
higher one overrides the check.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
from torch import nn

from metahyper.errors import UserError
from metahyper.limits import ENV, GB, memory_override
from metahyper.models import ModelConfig, build_from_config

FLOAT = 4  # bytes per float32 value


@dataclass(frozen=True)
class Footprint:
    """Sizes of a model: ``params`` (values; shared tensors once), ``activations`` (values) of one
    image of ``image_size`` pixels (0 when no size is given), ``modules`` (leaf modules: a bound on
    the layers a run logs per step)."""

    params: int
    activations: int
    modules: int


@functools.lru_cache(maxsize=32)
def footprint(config: ModelConfig, image_size: int | None = None) -> Footprint:
    """The :class:`Footprint` of ``config``, computed on the ``meta`` device (nothing allocated)."""
    with torch.device("meta"):
        model = build_from_config(config).eval()  # train-mode BatchNorm refuses one image of 1x1 features
        params = sum(p.numel() for p in model.parameters())
        leaves = [m for m in model.modules() if not any(True for _ in m.children())]
        if not image_size:
            return Footprint(params, 0, len(leaves))
        total = [0]

        def count(module: nn.Module, inputs, output) -> None:
            if isinstance(output, torch.Tensor):
                total[0] += output.numel()

        hooks = [m.register_forward_hook(count) for m in leaves]
        try:
            with torch.no_grad():
                model(torch.empty(1, 3, image_size, image_size))
        except RuntimeError as err:  # e.g. an image too small for the network's strides
            first = str(err).strip().splitlines()[0]
            raise UserError(
                f"{config.name} cannot take {image_size}x{image_size} images ({first}); use another --image-size"
            ) from None
        finally:
            for h in hooks:
                h.remove()
    return Footprint(params, total[0], len(leaves))


def memory_limit(device: torch.device | str = "cpu") -> int:
    """Bytes a run on ``device`` may plan to use: ``$METAHYPER_MAX_MEMORY_GB`` if set, else the
    device's total memory."""
    override = memory_override()
    if override is not None:
        return override
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf: no known limit
        return 2**62


def check_memory(need: float, what: str, fix: str, device: torch.device | str = "cpu") -> None:
    """Raise a one-line :class:`UserError` when ``need`` bytes exceed :func:`memory_limit`."""
    limit = memory_limit(device)
    if need > limit:
        raise UserError(
            f"{what} needs about {need / GB:,.1f} GB, more than the {limit / GB:,.1f} GB of {torch.device(device)}; "
            f"{fix}, or set ${ENV} to override"
        )


def estimate(
    config: ModelConfig,
    image_size: int | None,
    images: int,
    graphs: int = 1,
    states: int = 1,
    held_images: int = 0,
    logged_steps: int = 0,
    alive: int | None = None,
) -> float:
    """Bytes of a step: ``states`` float32 copies of the parameters (weights, gradients, optimiser
    buffers), ``images`` inputs of ``image_size`` whose activations are kept ``graphs`` times (a
    forward, its backward, unrolled inner steps; ``alive``: the number of one image's activations
    alive at once, when it is not ``images * graphs``, e.g. :func:`task_alive`), plus
    ``held_images`` more inputs held at once, plus float64 logs of a few values and every layer for
    ``logged_steps`` steps."""
    fp = footprint(config, image_size)
    pixels = 3 * (image_size or 0) ** 2
    logs = 8 * logged_steps * (3 + fp.modules)
    alive = images * graphs if alive is None else alive
    return FLOAT * (states * fp.params + alive * fp.activations + (images + held_images) * pixels) + logs


def task_alive(support: int, query: int, graphs: int, *, chunk: int = 0, prototypes: bool = False) -> int:
    """One image's activations alive at once in one task of ``support`` and ``query`` images:
    ``graphs`` per image of both sets, but of one ``chunk`` of the support set where its gradient
    is accumulated one chunk's graph at a time (the caller passes ``chunk`` only then: first order,
    evaluation, the checkpointed inner loop of second order), plus one per support image for
    Proto-MAML's head in training (the graph of the prototypes' forward, kept until the
    meta-backward)."""
    held = min(chunk, support) if chunk else support
    return graphs * (held + query) + (support if prototypes else 0)


def check_model(config: ModelConfig, device: torch.device | str = "cpu") -> None:
    """Refuse to build a model whose weights alone do not fit (e.g. a crafted checkpoint)."""
    check_memory(
        estimate(config, None, 0),
        f"model {config.name} ({footprint(config).params:,} parameters)",
        "use a smaller architecture",
        device,
    )


def check_step(
    doing: str,
    config: ModelConfig,
    image_size: int | None,
    images: int,
    batch: str,
    fix: str,
    device: torch.device | str,
    *,
    graphs: int = 1,
    states: int = 1,
    held_images: int = 0,
    logged_steps: int = 0,
    alive: int | None = None,
) -> None:
    """:func:`check_memory` of :func:`estimate`, with a message such as ``pretraining wrn-10-1
    (N parameters) on batches of 64 images of 32px``; ``batch`` describes the images."""
    need = estimate(config, image_size, images, graphs, states, held_images, logged_steps, alive)
    check_memory(
        need,
        f"{doing} {config.name} ({footprint(config).params:,} parameters) on {batch} of {image_size}px",
        fix,
        device,
    )
