"""The ratio ``||P|| / ||grad P||`` of Figure 2 (paper section 3, "Correcting the Scale of
HyperNetwork's Gradients"): per parameter group and stage, accumulated over a pretraining epoch's
steps on the device (:class:`RatioMeter`) and logged per epoch."""

from __future__ import annotations

import torch
from torch import nn

from metahyper.models import group_of, hyper_layers


def ratio_keys(model: nn.Module) -> list[str]:
    """For each parameter (``named_parameters`` order) its Figure-2 key ``group/where``:
    ``where`` is ``stage<s>`` (1-based; a hypernetwork belongs to the stage of its layers),
    ``stem``, ``final`` or ``fc``."""
    stage_of_hypernet: dict[int, int] = {}
    for path, layer in hyper_layers(model).items():
        stage_of_hypernet[id(layer.hypernet)] = int(path.split(".")[1]) + 1
    hypernet_stage = {
        f"hypernets.{i}": stage_of_hypernet.get(id(h)) for i, h in enumerate(getattr(model, "hypernets", []))
    }
    keys = []
    for name, _ in model.named_parameters():
        parts = name.split(".")
        if parts[0] == "stages":
            where = f"stage{int(parts[1]) + 1}"
        elif parts[0] == "hypernets":
            where = f"stage{hypernet_stage[f'hypernets.{parts[1]}']}"
        elif parts[0] in ("stem", "fc"):
            where = parts[0]
        else:
            where = "final"
        keys.append(f"{group_of(name)}/{where}")
    return keys


class RatioMeter:
    """Accumulates ``||P|| / ||grad P||`` per key (norms over all the key's parameters) on the
    device, synchronising only when read (Figure 2)."""

    def __init__(self, model: nn.Module) -> None:
        keys = ratio_keys(model)
        self.names = sorted(set(keys))
        index = {k: i for i, k in enumerate(self.names)}
        self.params = [p for p in model.parameters()]
        self.index = torch.tensor([index[k] for k in keys], device=self.params[0].device)
        self.reset()

    def reset(self) -> None:
        self.total = torch.zeros(len(self.names), dtype=torch.float64, device=self.index.device)
        self.count = 0

    @torch.no_grad()
    def update(self) -> None:
        pairs = [(p, p.grad) for p in self.params if p.grad is not None]
        if not pairs:
            return
        idx = self.index[[i for i, p in enumerate(self.params) if p.grad is not None]]
        pn = torch.stack(torch._foreach_norm([p for p, _ in pairs])).double().pow(2)
        gn = torch.stack(torch._foreach_norm([g for _, g in pairs])).double().pow(2)
        psum = torch.zeros_like(self.total).index_add_(0, idx, pn).sqrt()
        gsum = torch.zeros_like(self.total).index_add_(0, idx, gn).sqrt()
        self.total += psum / gsum.clamp_min(1e-30)
        self.count += 1

    def read(self) -> dict[str, float]:
        if not self.count:
            return {}
        values = (self.total / self.count).tolist()
        return {f"ratio/{k}": v for k, v in zip(self.names, values)}
