"""Hungarian matching of predicted queries to target segments (Mask2Former's matcher, as EoMT trains with it).

Per image, the cost of giving target t to query q is

    mask * BCE(q, t) + cls * (-softmax(class_q)[label_t]) + dice * (1 - (2 <s_q, m_t> + 1) / (|s_q| + |m_t| + 1))

with s_q = sigmoid(mask logits of q) and m_t the target mask, both read at the same ``num_points`` uniform random
points for every pair; BCE is the mean over those points. ``scipy.optimize.linear_sum_assignment`` gives the
assignment of least total cost (each target to one query, min(Q, T) pairs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from roadanomaly.training.eomt.points import point_sample, random_points


@dataclass(frozen=True)
class MatchCosts:
    """Weights of the three matching costs (EoMT / Mask2Former: 5, 2, 5)."""

    mask: float = 5.0
    """sigmoid binary cross-entropy, mean over the points"""
    cls: float = 2.0
    """minus the predicted probability of the target's class"""
    dice: float = 5.0
    """1 - soft dice (with +1 smoothing)"""


def cost_matrix(
    point_logits: Tensor, point_targets: Tensor, class_logits: Tensor, target_labels: Tensor, costs: MatchCosts
) -> Tensor:
    """(Q, T) matching costs from mask logits (Q, P) and target values (T, P) read at the same P points."""
    x, t = point_logits.float(), point_targets.float()
    num_points = x.shape[1]
    # BCE(x, t) = t * softplus(-x) + (1 - t) * softplus(x), averaged over the points, for every (q, t) pair
    bce = (F.softplus(-x) @ t.T + F.softplus(x) @ (1 - t).T) / num_points
    s = x.sigmoid()
    dice = 1 - (2 * (s @ t.T) + 1) / (s.sum(-1)[:, None] + t.sum(-1)[None, :] + 1)
    prob = class_logits.float().softmax(-1)[:, target_labels.long()]
    return costs.mask * bce + costs.cls * (-prob) + costs.dice * dice


@torch.no_grad()
def hungarian_match(
    mask_logits: Tensor,
    class_logits: Tensor,
    target_masks: Tensor,
    target_labels: Tensor,
    costs: MatchCosts = MatchCosts(),
    num_points: int = 12544,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """(query indices, target indices), int64 and sorted by query, of one image's least-cost assignment.

    ``mask_logits`` (Q, h, w) and ``target_masks`` (T, H, W) bool are read at ``num_points`` uniform points drawn
    from ``generator`` (the same for all pairs; the two resolutions may differ). Alternatively give values already
    read at shared points: ``mask_logits`` (Q, P) and ``target_masks`` (T, P). ``class_logits`` is (Q, C + 1).
    """
    device = class_logits.device
    if target_labels.numel() == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty.clone()
    if mask_logits.dim() == 3:
        coords = random_points(1, num_points, mask_logits.device, generator)
        point_logits = point_sample(mask_logits[None].float(), coords)[0]
        point_targets = point_sample(target_masks[None].float(), coords.to(target_masks.device))[0]
    elif mask_logits.dim() == 2:
        point_logits, point_targets = mask_logits, target_masks
    else:
        raise ValueError(f"mask_logits must be (Q, h, w) or (Q, P), got {tuple(mask_logits.shape)}")
    with torch.autocast(device_type=device.type, enabled=False):
        cost = cost_matrix(point_logits, point_targets.to(point_logits.device), class_logits, target_labels, costs)
    matrix = np.nan_to_num(cost.cpu().numpy(), nan=1e8, posinf=1e8, neginf=-1e8)
    rows, cols = linear_sum_assignment(matrix)
    as_index = lambda a: torch.as_tensor(a, dtype=torch.long, device=device)  # noqa: E731
    return as_index(rows), as_index(cols)
