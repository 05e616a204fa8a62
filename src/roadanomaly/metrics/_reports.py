"""Curves, the best-F1 threshold and score histograms from per-cell counts, for plots and reports."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from roadanomaly.metrics._curves import Cells

#: Percentiles (of all valid pixels) bounding the default histogram range: outliers do not squash the plot.
HISTOGRAM_PERCENTILES = (0.1, 99.9)


def _need_both_classes(cells: Cells) -> tuple[int, int]:
    """Total positives and negatives; ``ValueError`` (as from ``compute``) when either is missing."""
    num_pos, num_neg = int(cells.positives.sum()), int(cells.negatives.sum())
    if num_pos == 0 or num_neg == 0:
        missing = "anomaly (label 1)" if num_pos == 0 else "in-distribution (label 0)"
        raise ValueError(
            f"cannot compute curves: no {missing} pixels among the {num_pos + num_neg} valid pixels "
            "(they need both classes)"
        )
    return num_pos, num_neg


def curves(cells: Cells, max_points: int) -> dict[str, object]:
    """PR and ROC points at the thresholds from the highest score down, at most ``max_points`` of them.

    Point ``i`` counts the pixels scoring at least ``thresholds[i]`` as anomalies: ``recall = tpr = TP / P``,
    ``precision = TP / (TP + FP)``, ``fpr = FP / N``. Above ``max_points`` thresholds, the kept ones are spread
    evenly in ``(tpr + fpr) / 2`` (so along both axes), the first and last always kept.
    """
    if not isinstance(max_points, int) or isinstance(max_points, bool) or max_points < 2:
        raise ValueError(f"max_points must be an integer >= 2, got {max_points!r}")
    num_pos, num_neg = _need_both_classes(cells)
    tps, fps = torch.cumsum(cells.positives, 0), torch.cumsum(cells.negatives, 0)
    keep = _spread(tps.double() / num_pos + fps.double() / num_neg, max_points)
    tps, fps = tps[keep].double(), fps[keep].double()
    recall = tps / num_pos
    return {
        "pr": {"recall": recall.tolist(), "precision": (tps / (tps + fps)).tolist()},
        "roc": {"fpr": (fps / num_neg).tolist(), "tpr": recall.tolist()},
        "thresholds": cells.thresholds[keep].tolist(),
    }


def _spread(progress: Tensor, max_points: int) -> Tensor:
    """Indices of at most ``max_points`` entries of the increasing ``progress`` (0 to 2), spread evenly over it,
    the first and the last included."""
    count = progress.numel()
    if count <= max_points:
        return torch.arange(count)
    levels = torch.linspace(float(progress[0]), float(progress[-1]), max_points, dtype=torch.float64)
    index = torch.searchsorted(progress, levels).clamp(max=count - 1)
    index[0], index[-1] = 0, count - 1
    return torch.unique(index)


def best_f1(cells: Cells) -> tuple[float, float]:
    """The threshold (scores ``>=`` it are anomalies) of the highest pixel-level F1, and that F1; the highest such
    threshold on ties. ``F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (TP + FP + P)``."""
    num_pos, _ = _need_both_classes(cells)
    tps, fps = torch.cumsum(cells.positives, 0).double(), torch.cumsum(cells.negatives, 0).double()
    f1 = 2.0 * tps / (tps + fps + num_pos)
    best = int(torch.argmax(f1))  # the first maximum: the highest threshold
    return float(cells.thresholds[best]), float(f1[best])


def histogram(cells: Cells, bins: int, value_range: tuple[float, float] | None) -> dict[str, list]:
    """Counts of in-distribution and anomaly pixels in ``bins`` equal-width bins over ``value_range``.

    The default range runs from the 0.1th to the 99.9th percentile of all valid pixels (the lowest score with at
    least that fraction of the pixels at or below it), so a few extreme scores do not squash the plot. Pixels
    outside the range count in the first or last bin, so the counts add up to the pixel counts. Bins are
    ``[edges[i], edges[i + 1])``, the last one closed; a cell counts where its threshold falls.
    """
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    finite = torch.isfinite(cells.thresholds)
    total = int((cells.positives + cells.negatives).sum())
    if value_range is None:
        if total == 0 or not bool(finite.any()):
            low, high = 0.0, 1.0
        else:
            low, high = (_percentile(cells, q) for q in HISTOGRAM_PERCENTILES)
    else:
        low, high = (float(v) for v in value_range)
        if not low <= high or not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError(f"value_range must be two finite numbers, low <= high, got {value_range!r}")
    if high == low:
        low, high = low - 0.5, high + 0.5
    edges = torch.linspace(low, high, bins + 1, dtype=torch.float64)
    index = torch.searchsorted(edges, cells.thresholds.nan_to_num(posinf=high, neginf=low), right=True) - 1
    index = index.clamp(0, bins - 1)
    inlier = torch.zeros(bins, dtype=torch.int64).index_add_(0, index, cells.negatives)
    anomaly = torch.zeros(bins, dtype=torch.int64).index_add_(0, index, cells.positives)
    return {"edges": edges.tolist(), "inlier": inlier.tolist(), "anomaly": anomaly.tolist()}


def _percentile(cells: Cells, q: float) -> float:
    """The lowest finite threshold with at least ``q`` % of all pixels at or below it (numpy's ``inverted_cdf``)."""
    counts = (cells.positives + cells.negatives).flip(0)  # from the lowest score up
    thresholds = cells.thresholds.flip(0)
    at_or_below = torch.cumsum(counts, 0).double()
    index = int(torch.searchsorted(at_or_below, q / 100.0 * float(at_or_below[-1])))
    value = float(thresholds[min(index, thresholds.numel() - 1)])
    finite = thresholds[torch.isfinite(thresholds)]
    return min(max(value, float(finite[0])), float(finite[-1]))
