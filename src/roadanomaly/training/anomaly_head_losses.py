"""Losses of the anomaly head and of the RbA-OE baseline, on what a frozen EoMT gives per sample.

Both read a :class:`QueryBatch`: the final query embeddings, class logits and mask logits at each sample's points,
with the targets at those points. The full path builds it from images with a forward pass, the cached path from
stored tensors; the losses cannot tell the difference.

- Anomaly head: Hungarian matching of queries to the target segments (Normal segments and pasted Anomaly
  instances) with cost ``mask * BCE + dice * dice + class * (-P_head(label))``, then weighted cross-entropy over
  [normal, anomaly, no-object], unmatched queries learning no-object (weight ``no_object_weight``).
- RbA-OE (Nayal et al. 2023, fine-tuning the class head with outlier supervision): the usual mask-classification
  cross-entropy on the Normal segments (their train ids; pasted pixels are ignored, not a class), plus the outlier
  loss on the pixel score s(x) = -sum_c tanh(P_c(x)), P_c(x) = sum_q softmax(class'_q)_c sigmoid(mask_q(x)):
  mean(relu(s - inlier_upper)^2) over inlier pixels + mean(relu(outlier_lower - s)^2) over pasted pixels.
- Pixel term of the head (``pixel_weight``): the head's normalised pixel score at the sampled points,
  a(x) = sum_q sigmoid(mask_q(x)) P_q(anomaly) / sum_q sigmoid(mask_q(x)), under a class-balanced binary
  cross-entropy against pasted (1) / inlier (0) pixels. The query-level cross-entropy alone cannot see that a query
  it calls Normal also covers pasted pixels, or that a query it calls Anomaly spills over the road; this term scores
  what the evaluation scores. Off by default (with an MLP-only head it fitted the pasted outliers better and the
  SynthRoads test families worse); the SynthRoads recipe, whose head runs its own blocks, weights it 1.
- With trainable mask parameters: BCE and dice of the head's matched masks at the same points.
- A head with its own masks is matched, scored and taught on its own masks (read at the points each step; the
  mask costs are recomputed from them), with BCE and dice of its matched masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from roadanomaly.training.eomt.losses import (
    class_loss,
    dice_loss,
    num_masks_across_processes,
    sigmoid_bce_loss,
)
from roadanomaly.training.eomt.matcher import MatchCosts, cost_matrix

Matches = list[tuple[Tensor, Tensor]]


@dataclass
class QueryBatch:
    """``queries`` (B, Q, D), ``class_logits`` (B, Q, C + 1), ``point_logits`` (B, Q, P) final mask logits at the
    points, ``point_labels`` (B, P) 0 / 1 / 255; per sample ``point_targets`` (T, P), ``anomaly`` (T,) bool and
    ``classes`` (T,) train ids (-1 for pasted objects), and ``mask_costs`` (Q, T) from
    :func:`mask_cost_matrices`; ``block_input`` (B, N, D), the tokens a head with its own blocks reads (else None);
    ``coords`` (B, P, 2), the points' positions in [0, 1] (where a head with its own masks reads them)."""

    queries: Tensor
    class_logits: Tensor
    point_logits: Tensor
    point_labels: Tensor
    point_targets: list[Tensor]
    anomaly: list[Tensor]
    classes: list[Tensor]
    mask_costs: list[Tensor]
    block_input: Tensor | None = None
    coords: Tensor | None = None


def mask_cost_matrices(batch_point_logits: Tensor, point_targets: list[Tensor], costs: MatchCosts) -> list[Tensor]:
    """Per sample, the (Q, T) mask part of the matching cost (``mask * BCE + dice * dice``, the matcher's
    :func:`cost_matrix` with no class term): fixed while the masks are frozen, so computed once per sample."""
    no_class = MatchCosts(mask=costs.mask, cls=0.0, dice=costs.dice)
    with torch.no_grad():
        return [
            cost_matrix(logits.float(), targets.float(), logits.new_zeros(len(logits), 1),
                        logits.new_zeros(len(targets), dtype=torch.long), no_class)
            for logits, targets in zip(batch_point_logits, point_targets)
        ]  # fmt: skip


def match_all(logits: Tensor, batch: QueryBatch, labels: list[Tensor], keep: list[Tensor], costs: MatchCosts) -> Matches:
    """Per sample, the least-cost matches of queries to the targets selected by ``keep`` (target indices count
    within those): the sample's mask cost plus ``cls * (-softmax(logits)[label])``, as the Hungarian matcher."""
    matches = []
    with torch.no_grad():
        for i in range(logits.shape[0]):
            labels_i = labels[i][keep[i]].long()
            if labels_i.numel() == 0:
                empty = torch.zeros(0, dtype=torch.long, device=logits.device)
                matches.append((empty, empty.clone()))
                continue
            prob = logits[i].float().softmax(-1)[:, labels_i]
            cost = batch.mask_costs[i][:, keep[i]] - costs.cls * prob
            matrix = np.nan_to_num(cost.cpu().numpy(), nan=1e8, posinf=1e8, neginf=-1e8)
            rows, cols = linear_sum_assignment(matrix)
            matches.append((torch.as_tensor(rows, device=logits.device), torch.as_tensor(cols, device=logits.device)))
    return matches


def head_loss(
    head_logits: Tensor, batch: QueryBatch, costs: MatchCosts, no_object_weight: float, anomaly_weight: float = 1.0
) -> tuple[Tensor, Matches]:
    """Cross-entropy of the head's logits (B, Q, 3) after matching; returns (loss, matches)."""
    labels = [a.long() for a in batch.anomaly]
    keep = [torch.ones_like(a, dtype=torch.bool) for a in batch.anomaly]
    matches = match_all(head_logits, batch, labels, keep, costs)
    b, q, k = head_logits.shape
    targets = torch.full((b, q), k - 1, dtype=torch.long, device=head_logits.device)
    for i, (qi, ti) in enumerate(matches):
        targets[i, qi] = labels[i].to(targets.device)[ti]
    weight = torch.tensor([1.0, anomaly_weight, no_object_weight], device=head_logits.device)
    return F.cross_entropy(head_logits.float().transpose(1, 2), targets, weight=weight), matches


def pixel_anomaly_loss(head_logits: Tensor, point_logits: Tensor, point_labels: Tensor) -> Tensor:
    """Class-balanced BCE of the normalised pixel anomaly score at the points against the pasted-pixel labels.

    ``head_logits`` (B, Q, 3), ``point_logits`` (B, Q, P) mask logits, ``point_labels`` (B, P) 0 / 1 / 255; each
    class present is averaged on its own and the two means added (void points count in neither).
    """
    anomaly = head_logits.float().softmax(dim=-1)[..., 1]
    masks = point_logits.float().sigmoid()
    score = torch.einsum("bq,bqp->bp", anomaly, masks) / masks.sum(dim=1).clamp_min(1e-6)
    score = score.clamp(1e-6, 1.0 - 1e-6)
    loss = head_logits.sum() * 0.0
    for value, log_likelihood in ((0, torch.log1p(-score)), (1, torch.log(score))):
        selected = point_labels == value
        if bool(selected.any()):
            loss = loss - log_likelihood[selected].mean()
    return loss


def normal_class_loss(class_logits: Tensor, batch: QueryBatch, costs: MatchCosts, no_object_weight: float) -> Tensor:
    """Mask-classification cross-entropy over the C + 1 classes, matched to the Normal segments only."""
    keep = [~a for a in batch.anomaly]
    matches = match_all(class_logits, batch, batch.classes, keep, costs)
    labels = [c[k] for c, k in zip(batch.classes, keep)]
    return class_loss(class_logits, matches, labels, no_object_weight)


def rba_pixel_scores(class_logits: Tensor, point_logits: Tensor) -> Tensor:
    """s = -sum_c tanh(sum_q softmax(class_q)_c sigmoid(mask_q)) at the points: (B, Q, C+1), (B, Q, P) -> (B, P)."""
    probs = class_logits.float().softmax(dim=-1)[..., :-1]
    per_class = torch.einsum("bqc,bqp->bcp", probs, point_logits.float().sigmoid())
    return -torch.tanh(per_class).sum(dim=1)


def rba_outlier_loss(scores: Tensor, point_labels: Tensor, inlier_upper: float, outlier_lower: float) -> Tensor:
    """RbA's squared hinge: inlier scores pushed below ``inlier_upper``, outlier scores above ``outlier_lower``."""
    inlier, outlier = scores[point_labels == 0], scores[point_labels == 1]
    loss = F.relu(inlier - inlier_upper).pow(2).mean() if inlier.numel() else scores.sum() * 0.0
    if outlier.numel():
        loss = loss + F.relu(outlier_lower - outlier).pow(2).mean()
    return loss


def rba_oe_loss(
    class_logits: Tensor,
    batch: QueryBatch,
    costs: MatchCosts,
    no_object_weight: float,
    outlier_weight: float,
    inlier_upper: float,
    outlier_lower: float,
) -> Tensor:
    """The RbA-OE objective on fine-tuned class logits (B, Q, C + 1)."""
    ce = normal_class_loss(class_logits, batch, costs, no_object_weight)
    scores = rba_pixel_scores(class_logits, batch.point_logits)
    return ce + outlier_weight * rba_outlier_loss(scores, batch.point_labels, inlier_upper, outlier_lower)


def matched_mask_loss(batch: QueryBatch, matches: Matches) -> Tensor:
    """BCE + dice of the matched queries' mask logits against their targets, at the samples' points."""
    logits = torch.cat([batch.point_logits[i][qi] for i, (qi, _) in enumerate(matches)])
    targets = torch.cat([batch.point_targets[i][ti] for i, (_, ti) in enumerate(matches)])
    n = num_masks_across_processes(sum(len(t) for t in batch.anomaly), batch.point_logits.device)
    return sigmoid_bce_loss(logits, targets, n) + dice_loss(logits, targets, n)

