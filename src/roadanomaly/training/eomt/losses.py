"""Mask-classification losses (Mask2Former's, as EoMT trains with them), as plain torch functions.

- :func:`class_loss`: cross-entropy over C + 1 classes; unmatched queries learn "no object" (index C), whose
  weight is ``no_object_weight`` (0.1); the mean is weighted (sum w_i ce_i / sum w_i).
- :func:`mask_losses`: for matched (query, target) pairs, sigmoid BCE and dice on ``num_points`` points per mask
  chosen by uncertainty (:func:`~roadanomaly.training.eomt.points.uncertain_points`), summed over the masks and
  divided by ``num_masks``, the number of target masks in the batch (:func:`num_masks_across_processes` averages it
  across DDP processes so every process divides by the same number).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from roadanomaly.training.eomt.points import point_sample, uncertain_points


def class_loss(
    class_logits: Tensor,
    matches: list[tuple[Tensor, Tensor]],
    target_labels: list[Tensor],
    no_object_weight: float = 0.1,
) -> Tensor:
    """Weighted cross-entropy of ``class_logits`` (B, Q, C + 1); ``matches[b]`` = (query idx, target idx)."""
    b, q, classes = class_logits.shape
    targets = torch.full((b, q), classes - 1, dtype=torch.long, device=class_logits.device)
    for i, ((query_idx, target_idx), labels) in enumerate(zip(matches, target_labels)):
        targets[i, query_idx] = labels.to(targets.device)[target_idx].long()
    weight = torch.ones(classes, device=class_logits.device)
    weight[-1] = no_object_weight
    return F.cross_entropy(class_logits.float().transpose(1, 2), targets, weight=weight)


def sigmoid_bce_loss(point_logits: Tensor, point_labels: Tensor, num_masks: float) -> Tensor:
    """Sum over masks of the mean BCE over the points, / ``num_masks``; inputs (N, P)."""
    loss = F.binary_cross_entropy_with_logits(point_logits.float(), point_labels.float(), reduction="none")
    return loss.mean(1).sum() / num_masks


def dice_loss(point_logits: Tensor, point_labels: Tensor, num_masks: float) -> Tensor:
    """Sum over masks of 1 - (2 sum(s t) + 1) / (sum s + sum t + 1), s = sigmoid(logits), / ``num_masks``."""
    s, t = point_logits.float().sigmoid(), point_labels.float()
    dice = 1 - (2 * (s * t).sum(-1) + 1) / (s.sum(-1) + t.sum(-1) + 1)
    return dice.sum() / num_masks


def mask_losses(
    mask_logits: Tensor,
    target_masks: Tensor,
    num_masks: float,
    num_points: int = 12544,
    oversample: float = 3.0,
    importance: float = 0.75,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """(BCE, dice) of matched mask logits (N, h, w) against their target masks (N, H, W), on uncertain points."""
    if mask_logits.shape[0] == 0:
        zero = mask_logits.sum() * 0.0
        return zero, zero.clone()
    coords = uncertain_points(mask_logits.detach(), num_points, oversample, importance, generator)
    point_logits = point_sample(mask_logits.float(), coords)
    with torch.no_grad():
        point_labels = point_sample(target_masks.float(), coords.to(target_masks.device)).to(point_logits.device)
    return sigmoid_bce_loss(point_logits, point_labels, num_masks), dice_loss(point_logits, point_labels, num_masks)


def num_masks_across_processes(count: int, device: torch.device | str = "cpu") -> float:
    """The batch's number of target masks, averaged over DDP processes when distributed, at least 1."""
    total = torch.tensor(float(count), device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(total)
        total = total / dist.get_world_size()
    return max(float(total), 1.0)
