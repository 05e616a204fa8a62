"""The EoMT training loss: per prediction set (each query block's and the final one), match queries to targets
and add class cross-entropy, mask BCE and dice with their coefficients; the sets count equally."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from roadanomaly.training.eomt.data import SemanticTarget
from roadanomaly.training.eomt.losses import class_loss, mask_losses, num_masks_across_processes
from roadanomaly.training.eomt.matcher import MatchCosts, hungarian_match


@dataclass(frozen=True)
class LossConfig:
    """Coefficients and point sampling (EoMT: 2 / 5 / 5, no-object 0.1, 12544 points, x3, 75 %)."""

    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1
    num_points: int = 12544
    oversample: float = 3.0
    importance: float = 0.75

    @property
    def costs(self) -> MatchCosts:
        """The matcher weighs its costs as the losses."""
        return MatchCosts(mask=self.mask_weight, cls=self.class_weight, dice=self.dice_weight)


def mask_classification_loss(
    mask_logits: list[Tensor],
    class_logits: list[Tensor],
    targets: list[SemanticTarget],
    config: LossConfig = LossConfig(),
    generator: torch.Generator | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """(total loss, its parts by name) over every prediction set; parts of block j are suffixed ``_block{j}``."""
    device = mask_logits[-1].device
    num_masks = num_masks_across_processes(sum(len(t.labels) for t in targets), device)
    total = mask_logits[-1].new_zeros((), dtype=torch.float32)
    parts: dict[str, float] = {}
    last = len(mask_logits) - 1
    for j, (masks, classes) in enumerate(zip(mask_logits, class_logits)):
        matches = [
            hungarian_match(masks[b].detach(), classes[b].detach(), t.masks, t.labels, config.costs,
                            config.num_points, generator)
            for b, t in enumerate(targets)
        ]  # fmt: skip
        matched = torch.cat([masks[b][q] for b, (q, _) in enumerate(matches)])
        wanted = torch.cat([t.masks.to(device)[i] for t, (_, i) in zip(targets, matches)])
        bce, dice = mask_losses(matched, wanted, num_masks, config.num_points, config.oversample, config.importance,
                                generator)  # fmt: skip
        ce = class_loss(classes, matches, [t.labels for t in targets], config.no_object_weight)
        total = total + config.class_weight * ce + config.mask_weight * bce + config.dice_weight * dice
        suffix = "" if j == last else f"_block{j}"
        parts.update({f"class{suffix}": float(ce.detach()), f"mask{suffix}": float(bce.detach()),
                      f"dice{suffix}": float(dice.detach())})
    return total, parts
