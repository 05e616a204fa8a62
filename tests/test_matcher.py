"""Hungarian matcher: costs against a direct numpy formula, assignments against brute force over permutations."""

from itertools import permutations

import numpy as np
import pytest
import torch

from roadanomaly.training.eomt.matcher import MatchCosts, cost_matrix, hungarian_match
from roadanomaly.training.eomt.points import point_sample


def numpy_costs(x, t, class_logits, labels, w=(5.0, 2.0, 5.0)):
    """Cost of every (query, target) pair, one pair at a time."""
    x, t, class_logits = (np.asarray(a, np.float64) for a in (x, t, class_logits))
    probs = np.exp(class_logits - class_logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    out = np.zeros((len(x), len(t)))
    for q in range(len(x)):
        s = 1 / (1 + np.exp(-x[q]))
        for j in range(len(t)):
            bce = np.mean(-t[j] * np.log(s) - (1 - t[j]) * np.log(1 - s))
            dice = 1 - (2 * np.sum(s * t[j]) + 1) / (np.sum(s) + np.sum(t[j]) + 1)
            out[q, j] = w[0] * bce - w[1] * probs[q, labels[j]] + w[2] * dice
    return out


def brute_force(cost):
    """Least total cost over every injective map of targets to queries."""
    q, t = cost.shape
    best = min(permutations(range(q), t), key=lambda qs: sum(cost[qq, j] for j, qq in enumerate(qs)))
    return sum(cost[qq, j] for j, qq in enumerate(best)), dict(zip(best, range(t)))


def random_case(seed, q, t, points=40, classes=5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(q, points, generator=g) * 2
    targets = (torch.rand(t, points, generator=g) > 0.5).float()
    class_logits = torch.randn(q, classes + 1, generator=g)
    labels = torch.randperm(classes, generator=g)[:t]
    return x, targets, class_logits, labels


@pytest.mark.parametrize("seed", range(3))
def test_cost_matrix_is_the_direct_formula(seed):
    x, targets, class_logits, labels = random_case(seed, 5, 3)
    costs = MatchCosts(mask=1.5, cls=0.7, dice=3.0)
    got = cost_matrix(x, targets, class_logits, labels, costs).double().numpy()
    np.testing.assert_allclose(got, numpy_costs(x, targets, class_logits, labels, (1.5, 0.7, 3.0)), rtol=1e-5)


@pytest.mark.parametrize("q,t", [(4, 4), (5, 3), (6, 2), (3, 1)])
@pytest.mark.parametrize("seed", range(4))
def test_assignment_is_the_brute_force_optimum(q, t, seed):
    x, targets, class_logits, labels = random_case(100 * q + 10 * t + seed, q, t)
    query_idx, target_idx = hungarian_match(x, class_logits, targets, labels)
    cost = numpy_costs(x, targets, class_logits, labels)
    best_cost, best = brute_force(cost)
    assert query_idx.dtype == target_idx.dtype == torch.long and len(query_idx) == t
    assert query_idx.tolist() == sorted(query_idx.tolist()) and sorted(target_idx.tolist()) == list(range(t))
    assert dict(zip(query_idx.tolist(), target_idx.tolist())) == best
    assert sum(cost[a, b] for a, b in zip(query_idx.tolist(), target_idx.tolist())) == pytest.approx(best_cost)


def test_maps_at_different_resolutions_are_read_at_the_same_points():
    """Query maps constant per query and full/empty targets read the same at any point: the cost must be the
    point-wise one, whatever points were drawn, and target masks may be 4x larger than the logits."""
    values = torch.tensor([3.0, -2.0, 0.5, -4.0])
    logits = values[:, None, None].expand(4, 8, 16).clone()
    full, empty = torch.ones(32, 64, dtype=torch.bool), torch.zeros(32, 64, dtype=torch.bool)
    targets = torch.stack([full, empty, full])
    class_logits = torch.randn(4, 4, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 2, 1])
    got = hungarian_match(logits, class_logits, targets, labels, num_points=64,
                          generator=torch.Generator().manual_seed(5))
    points = torch.ones(3, 10)
    points[1] = 0
    expected = hungarian_match(values[:, None].expand(4, 10), class_logits, points, labels)
    assert [v.tolist() for v in got] == [v.tolist() for v in expected]
    _, best = brute_force(numpy_costs(values[:, None].expand(4, 10), points, class_logits, labels))
    assert dict(zip(*(v.tolist() for v in got))) == best


def test_no_targets_gives_empty_indices():
    q, t = hungarian_match(torch.randn(3, 4, 4), torch.randn(3, 5), torch.zeros(0, 8, 8, dtype=torch.bool),
                           torch.zeros(0, dtype=torch.long))
    assert q.shape == t.shape == (0,)


def test_point_sample_reads_pixel_centres_exactly_and_interpolates_between():
    maps = torch.arange(12.0).reshape(1, 3, 4)
    # centre of pixel (row 1, col 2) is x = 2.5 / 4, y = 1.5 / 3; halfway between cols 0 and 1 of row 0
    coords = torch.tensor([[[2.5 / 4, 1.5 / 3], [1.0 / 4, 0.5 / 3]]])
    np.testing.assert_allclose(point_sample(maps, coords).numpy(), [[6.0, 0.5]], rtol=1e-6)
