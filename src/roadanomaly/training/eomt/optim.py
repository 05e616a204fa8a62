"""EoMT optimisation: AdamW with layer-wise lr decay and a two-stage warmup followed by poly decay.

Layer-wise decay: encoder block i of D gets lr * decay ** (D - 1 - i); the embeddings (patch, position, CLS and
register tokens) get the first block's rate; the encoder's final norm, the queries and the heads the full rate.
Two-stage warmup: the heads warm up linearly over ``warmup[0]`` steps while the backbone (every ``encoder.*``
parameter) stays at 0, then the backbone warms up over ``warmup[1]`` steps; each then decays as
(1 - progress) ** power until ``total`` steps.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import torch
from torch import nn

from roadanomaly.models.eomt import EoMT


def layerwise_groups(model: EoMT, lr: float, decay: float) -> list[dict[str, Any]]:
    """Optimizer parameter groups: one per encoder block, the embeddings, the final norm and the rest."""
    depth = len(model.encoder.blocks)
    groups: dict[str, dict[str, Any]] = {}

    def add(name: str, param: nn.Parameter, rate: float, backbone: bool) -> None:
        group = groups.setdefault(name, {"params": [], "lr": rate, "name": name, "backbone": backbone})
        group["params"].append(param)

    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith("encoder.blocks."):
            i = int(name.split(".")[2])
            add(f"encoder.blocks.{i}", param, lr * decay ** (depth - 1 - i), True)
        elif name.startswith("encoder.norm."):
            add("encoder.norm", param, lr, True)
        elif name.startswith("encoder."):
            add("encoder.embeddings", param, lr * decay ** (depth - 1), True)
        else:
            add("heads", param, lr, False)
    return list(groups.values())


def warmup_poly_factor(
    step: int, warmup: tuple[int, int], total: int, power: float = 0.9, backbone: bool = False
) -> float:
    """The lr multiplier at ``step`` of a head (``backbone`` False) or backbone parameter group."""
    head_warmup, backbone_warmup = warmup
    if not backbone:
        if step < head_warmup:
            return step / head_warmup
        done, span = step - head_warmup, total - head_warmup
    else:
        if step < head_warmup:
            return 0.0
        if step < head_warmup + backbone_warmup:
            return (step - head_warmup) / backbone_warmup
        done, span = step - head_warmup - backbone_warmup, total - head_warmup - backbone_warmup
    return max(0.0, 1.0 - done / max(1, span)) ** power


class ScheduleClock:
    """Where the schedules stand: the training step, or, paced by wall time, ``total`` x elapsed / budget."""

    def __init__(self, total: int, minutes: float | None = None) -> None:
        self.total, self.minutes = total, minutes
        self.elapsed_before = 0.0
        """Seconds of earlier runs (a resumed run continues the clock)."""
        self._started = time.perf_counter()

    def start(self) -> None:
        self._started = time.perf_counter()

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self._started

    def step(self, step: int) -> int:
        if self.minutes is None:
            return step
        return min(self.total, int(self.total * self.elapsed() / (60 * self.minutes)))


def _factor_at(clock: ScheduleClock | None, step: int, **options: Any) -> float:
    return warmup_poly_factor(step if clock is None else clock.step(step), **options)


def build_optimizer(
    model: EoMT,
    lr: float = 1e-4,
    weight_decay: float = 0.05,
    llrd: float = 0.8,
    warmup: tuple[int, int] = (500, 1000),
    total_steps: int = 10000,
    poly_power: float = 0.9,
    clock: ScheduleClock | None = None,
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over :func:`layerwise_groups` and its per-step scheduler (at ``clock``'s step when given)."""
    groups = layerwise_groups(model, lr, llrd)
    optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    factors = [
        functools.partial(_factor_at, clock, warmup=tuple(warmup), total=total_steps, power=poly_power,
                          backbone=group["backbone"])
        for group in groups
    ]  # fmt: skip
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factors)
