"""EoMT mask-classification losses against direct formulas on tiny tensors."""

import math

import numpy as np
import pytest
import torch

from roadanomaly.training.eomt.losses import (
    class_loss,
    dice_loss,
    mask_losses,
    num_masks_across_processes,
    sigmoid_bce_loss,
)
from roadanomaly.training.eomt.points import point_sample, uncertain_points


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_sigmoid_bce_and_dice_are_the_formulas():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, generator=g) * 3
    t = (torch.rand(3, 7, generator=g) > 0.4).float()
    xn, tn = x.double().numpy(), t.double().numpy()
    s = sigmoid(xn)
    bce = np.mean(-tn * np.log(s) - (1 - tn) * np.log(1 - s), axis=1).sum() / 2.5
    dice = (1 - (2 * (s * tn).sum(1) + 1) / (s.sum(1) + tn.sum(1) + 1)).sum() / 2.5
    assert float(sigmoid_bce_loss(x, t, 2.5)) == pytest.approx(bce, rel=1e-5)
    assert float(dice_loss(x, t, 2.5)) == pytest.approx(dice, rel=1e-5)


def test_class_loss_is_weighted_cross_entropy_with_no_object():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 3 + 1, generator=g)
    matches = [(torch.tensor([1, 3]), torch.tensor([1, 0])), (torch.tensor([0]), torch.tensor([0]))]
    labels = [torch.tensor([2, 0]), torch.tensor([1])]
    # hand-written targets: image 0: query 1 -> label 0, query 3 -> label 2; image 1: query 0 -> label 1
    targets = np.array([[3, 0, 3, 2], [1, 3, 3, 3]])
    z = logits.double().numpy()
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    w = np.where(targets == 3, 0.1, 1.0)
    nll = -np.take_along_axis(log_p, targets[..., None], -1)[..., 0]
    expected = (w * nll).sum() / w.sum()
    assert float(class_loss(logits, matches, labels, 0.1)) == pytest.approx(expected, rel=1e-6)


def test_mask_losses_on_constant_maps_match_the_closed_form():
    """Every point of a constant map reads the same logit, so the losses are known whatever points are drawn."""
    logits = torch.tensor([1.5, -0.5])[:, None, None].expand(2, 4, 8).clone().requires_grad_()
    targets = torch.stack([torch.ones(16, 32, dtype=torch.bool), torch.zeros(16, 32, dtype=torch.bool)])
    bce, dice = mask_losses(logits, targets, num_masks=4.0, num_points=50, generator=torch.Generator().manual_seed(0))
    s1, s2 = sigmoid(1.5), sigmoid(-0.5)
    assert float(bce.detach()) == pytest.approx((-math.log(s1) - math.log(1 - s2)) / 4, rel=1e-5)
    dice1 = 1 - (2 * 50 * s1 + 1) / (50 * s1 + 50 + 1)
    dice2 = 1 - 1 / (50 * s2 + 1)
    assert float(dice.detach()) == pytest.approx((dice1 + dice2) / 4, rel=1e-5)
    (bce + dice).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_uncertain_points_keep_the_most_uncertain_share():
    """|logit| is 0 on the left half and 10 on the right: the 75 % important points all lie on the left."""
    logits = torch.full((1, 8, 16), 10.0)
    logits[..., :8] = 0.0
    points = uncertain_points(logits, 400, oversample=3.0, importance=0.75, generator=torch.Generator().manual_seed(2))
    assert points.shape == (1, 400, 2)
    assert (points[0, :300, 0] < 0.5).all()  # read where the map is exactly 0 (interpolation stays left of 7/16)
    left = int((points[0, :, 0] < 0.5).sum())
    assert 300 < left < 400  # the 100 fresh uniform points fall on both halves
    assert float(point_sample(logits, points[:, :300]).abs().max()) < 10.0


def test_num_masks_is_the_count_outside_ddp_and_at_least_one():
    assert num_masks_across_processes(7) == 7.0
    assert num_masks_across_processes(0) == 1.0
