import math
from pathlib import Path

import numpy as np
import pytest
import torch

from roadanomaly.metrics.components import (
    SIOU_THRESHOLDS,
    ComponentMetric,
    best_f1_threshold,
    component_metrics,
    frame_components,
)

V = 255


def hand_frames():
    """Two frames whose components are worked out by hand below (threshold 0.5, min sizes: predicted 2, GT 2)."""
    # Frame 1, 6 x 10. Ground truth: A = rows 0-1, cols 0-1 (4 px); B = rows 0-1, cols 4-5 (4 px); C = (5, 9), one
    # pixel, smaller than 2 -> void. Void: (0, 9), (1, 9).
    labels1 = np.zeros((6, 10), np.uint8)
    labels1[0:2, 0:2] = 1
    labels1[0:2, 4:6] = 1
    labels1[5, 9] = 1
    labels1[0:2, 9] = V
    # Predicted (score 1 > 0.5): P1 = rows 0-1, cols 1-4 (8 px: 2 on A, 4 background, 2 on B); P2 = row 4, cols 0-2
    # (3 px, background); P3 = (3, 7), one pixel -> dropped; P4 = row 5, cols 7-9 (3 px, one on the voided C, so 2
    # px in the region of interest, background). The predicted void pixels (0-1, 9) are not predictions.
    scores1 = np.zeros((6, 10), np.float32)
    scores1[0:2, 1:5] = 1
    scores1[4, 0:3] = 1
    scores1[3, 7] = 1
    scores1[5, 7:10] = 1
    scores1[0:2, 9] = 1
    # Frame 2, 5 x 6: D = rows 1-3, cols 1-3 (9 px); P5 = rows 1-3, cols 1-4 (12 px: 9 on D, 3 background).
    labels2 = np.zeros((5, 6), np.uint8)
    labels2[1:4, 1:4] = 1
    scores2 = np.full((5, 6), 0.25, np.float32)
    scores2[1:4, 1:5] = 0.75
    return [(scores1, labels1), (scores2, labels2)]


def test_hand_computed_siou_ppv_and_f1():
    (s1, l1), (s2, l2) = hand_frames()
    # sIoU(A) = |A n P1| / (|A| + |P1 n background|) = 2 / (4 + 4) = 0.25 (the 2 px of P1 on B are not in the
    # union; the plain union would be 10). sIoU(B) = 2 / 8 = 0.25 likewise.
    # PPV(P1) = 4 / 8 = 0.5, PPV(P2) = 0 / 3 = 0, PPV(P4) = 0 / 2 = 0.
    first = frame_components(s1, l1, 0.5, min_pred_size=2, min_gt_size=2)
    np.testing.assert_array_equal(first.siou, [0.25, 0.25])
    np.testing.assert_array_equal(first.ppv, [0.5, 0.0, 0.0])
    # sIoU(D) = 9 / (9 + 3) = 0.75, PPV(P5) = 9 / 12 = 0.75.
    second = frame_components(s2, l2, 0.5, min_pred_size=2, min_gt_size=2)
    np.testing.assert_array_equal(second.siou, [0.75])
    np.testing.assert_array_equal(second.ppv, [0.75])

    metric = ComponentMetric(2, 2, threshold=0.5)
    for scores, labels in hand_frames():
        metric.update(scores, labels)
    result = metric.compute()
    # Dataset: sIoU = (0.25 + 0.25 + 0.75) / 3, PPV = (0.5 + 0 + 0 + 0.75) / 4 = 0.3125.
    # tau = 0.25:        TP = 3 (0.25 >= 0.25), FN = 0, FP = 2 (P2, P4)       -> F1 = 6 / 8 = 0.75
    # tau = 0.30 .. 0.50: TP = 1 (D), FN = 2, FP = 2 (PPV 0.5 is not < 0.5)    -> F1 = 2 / 6 = 1/3 (5 values)
    # tau = 0.55 .. 0.75: TP = 1, FN = 2, FP = 3 (P1 too; 0.75 is not < 0.75) -> F1 = 2 / 7       (5 values)
    assert result["siou"] == pytest.approx(1.25 / 3, abs=1e-12)
    assert result["ppv"] == pytest.approx(0.3125, abs=1e-12)
    assert result["mean_f1"] == pytest.approx((0.75 + 5 / 3 + 10 / 7) / 11, abs=1e-12)
    assert (result["f1_25"], result["f1_50"], result["f1_75"]) == pytest.approx((0.75, 1 / 3, 2 / 7))
    assert (result["gt_components"], result["predicted_components"]) == (3, 4)
    assert result["component_threshold"] == 0.5


def test_sizes_decide_what_counts():
    (s1, l1), _ = hand_frames()
    # With no size filter, P3 (one background pixel) is a false positive and C (one pixel, not predicted but
    # touching P4 at (5, 9)) counts: sIoU(C) = 1 / (1 + 2) since P4 has 2 background pixels; PPV(P4) = 1 / 3.
    free = frame_components(s1, l1, 0.5, min_pred_size=0, min_gt_size=0)
    np.testing.assert_allclose(sorted(free.siou), [0.25, 0.25, 1 / 3])
    np.testing.assert_allclose(sorted(free.ppv), [0.0, 0.0, 1 / 3, 0.5])
    # A minimum of 4 predicted pixels drops P2 (3 px) and P4 (3 px before voiding) too.
    strict = frame_components(s1, l1, 0.5, min_pred_size=4, min_gt_size=2)
    np.testing.assert_array_equal(strict.ppv, [0.5])


def reference_components(scores, labels, threshold, min_pred, min_gt):
    """The definition spelled out pixel set by pixel set, one component at a time (slow, for checking)."""
    from scipy.ndimage import label as connected

    eight = np.ones((3, 3), int)
    gt, n_gt = connected(labels == 1, eight)
    pred, n_pred = connected((scores > threshold) & (labels != V), eight)
    for j in range(1, n_pred + 1):
        if (pred == j).sum() < min_pred:
            pred[pred == j] = 0
    roi = labels != V
    for i in range(1, n_gt + 1):
        if (gt == i).sum() < min_gt:
            roi &= gt != i
    sious = []
    for i in range(1, n_gt + 1):
        g = (gt == i) & roi
        if not g.any():
            continue
        touching = set(np.unique(pred[g])) - {0}
        p = np.isin(pred, list(touching)) & roi
        other_gt = (gt > 0) & (gt != i)
        sious.append((g & p).sum() / (g | (p & ~other_gt)).sum())
    ppvs = []
    for j in range(1, n_pred + 1):
        p = (pred == j) & roi
        if p.any():
            ppvs.append((p & (gt > 0)).sum() / p.sum())
    return np.array(sious), np.array(ppvs)


def random_frames(seed, count=6, shape=(24, 32)):
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        labels = np.zeros(shape, np.uint8)
        for _ in range(rng.integers(1, 5)):
            y, x = rng.integers(0, shape[0] - 3), rng.integers(0, shape[1] - 3)
            labels[y : y + rng.integers(1, 7), x : x + rng.integers(1, 7)] = 1
        labels[rng.random(shape) < 0.03] = V
        scores = rng.random(shape).astype(np.float32) * 0.6 + 0.4 * (labels == 1)
        frames.append((scores, labels))
    return frames


@pytest.mark.parametrize("seed", range(4))
def test_frames_match_the_reference_definition(seed):
    for scores, labels in random_frames(seed):
        for min_pred, min_gt in [(0, 0), (3, 2), (6, 5)]:
            got = frame_components(scores, labels, 0.55, min_pred, min_gt)
            siou, ppv = reference_components(scores, labels, 0.55, min_pred, min_gt)
            np.testing.assert_allclose(np.sort(got.siou), np.sort(siou), rtol=0, atol=1e-15)
            np.testing.assert_allclose(np.sort(got.ppv), np.sort(ppv), rtol=0, atol=1e-15)


def brute_best_f1_threshold(scores, labels):
    candidates = np.concatenate([np.unique(scores), [-np.inf]])
    f1 = [2 * ((scores > t) & (labels == 1)).sum() / ((scores > t).sum() + (labels == 1).sum()) for t in candidates]
    best = max(f1)
    return max(t for t, f in zip(candidates, f1) if f == best)


def test_best_f1_threshold_matches_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(5, 60))
        scores = rng.integers(0, 6, n).astype(np.float64) / 5  # many ties
        labels = (rng.random(n) < 0.3).astype(np.uint8)
        labels[0] = 1
        assert best_f1_threshold(scores, labels) == brute_best_f1_threshold(scores, labels)
    assert best_f1_threshold(np.array([0.0, 1.0]), np.array([1, 1])) == -math.inf
    with pytest.raises(ValueError, match="no anomaly"):
        best_f1_threshold(np.array([0.3]), np.array([0]))


def test_deferred_threshold_equals_the_fixed_best_f1_threshold(tmp_path):
    frames = random_frames(7)
    scores = np.concatenate([s[l != V] for s, l in frames]).astype(np.float64)
    labels = np.concatenate([l[l != V] for s, l in frames])
    threshold = brute_best_f1_threshold(scores, labels)
    expected = component_metrics(frames, threshold=threshold)
    assert component_metrics(frames) == expected  # threshold=None: the exact pixel best F1 of the same frames
    assert expected["component_threshold"] == threshold

    class Source:
        def best_f1_threshold(self):
            return threshold

    as_bf16 = [(torch.from_numpy(s).bfloat16(), l) for s, l in frames]  # exact values of bfloat16 scores
    assert component_metrics(as_bf16, threshold=0.5) == component_metrics(
        [(s.float().numpy(), l) for s, l in as_bf16], threshold=0.5)

    on_disk = ComponentMetric.for_track("anomaly", Source(), memory_limit=0)
    for s, l in frames:
        on_disk.update(torch.from_numpy(s)[None], torch.from_numpy(l)[None])
    folder = Path(on_disk._pending._folder)
    assert len(list(folder.iterdir())) == len(frames)
    assert on_disk.compute() == expected
    assert list(folder.iterdir()) == []  # reduced frames are deleted


def test_state_sums_across_processes_and_round_trips():
    frames = random_frames(11, count=8)
    whole = ComponentMetric(3, 2, threshold=0.6)
    parts = [ComponentMetric(3, 2, threshold=0.6) for _ in range(3)]
    for k, (s, l) in enumerate(frames):
        whole.update(s, l)
        parts[k % 3].update(s, l)
    states = [p.state_dict() for p in parts]
    summed = {key: sum(st[key] for st in states) for key in ("counts", "components", "sums")}
    summed["threshold"] = states[0]["threshold"]
    restored = ComponentMetric(3, 2, threshold=0.6)
    restored.load_state_dict(summed)
    merged = parts[0].merge(parts[1]).merge(parts[2])
    expected = whole.compute()
    for other in (restored.compute(), merged.compute()):
        assert other.keys() == expected.keys()
        for key in expected:
            assert other[key] == pytest.approx(expected[key], abs=1e-12)
    # deferred metrics merge their kept frames and agree with one metric fed everything
    a, b = ComponentMetric(3, 2), ComponentMetric(3, 2)
    all_in = ComponentMetric(3, 2)
    for k, (s, l) in enumerate(frames):
        (a if k < 4 else b).update(s, l)
        all_in.update(s, l)
    assert a.merge(b).compute() == all_in.compute()


def test_mismatches_and_bad_input_are_rejected():
    with pytest.raises(ValueError, match="cannot merge counts made at thresholds 0.5 and 0.6"):
        first, second = ComponentMetric(0, 0, threshold=0.5), ComponentMetric(0, 0, threshold=0.6)
        second.update(np.ones((4, 4)), np.ones((4, 4), np.uint8))
        first.merge(second)
    with pytest.raises(ValueError, match="same component sizes"):
        ComponentMetric(500, 100).merge(ComponentMetric(50, 10))
    metric = ComponentMetric(threshold=0.5)
    with pytest.raises(ValueError, match="one 2-D frame per update"):
        metric.update(np.zeros((2, 4, 4)), np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"found 7"):
        metric.update(np.zeros((4, 4)), np.full((4, 4), 7, np.uint8))
    with pytest.raises(ValueError, match="keys"):
        metric.load_state_dict({"counts": torch.zeros(3, 11)})
    with pytest.raises(ValueError, match="unknown track 'lane'"):
        ComponentMetric.for_track("lane")
    assert len(SIOU_THRESHOLDS) == 11


def test_undefined_values_are_none():
    metric = ComponentMetric(0, 0, threshold=0.5)
    metric.update(np.zeros((4, 4)), np.zeros((4, 4), np.uint8))  # nothing predicted, no anomaly
    result = metric.compute()
    assert result["siou"] is None and result["ppv"] is None and result["mean_f1"] is None
    deferred = ComponentMetric(0, 0)
    deferred.update(np.zeros((4, 4)), np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="no anomaly"):
        deferred.compute()
