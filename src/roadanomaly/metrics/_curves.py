"""AP, FPR at 95% TPR and AUROC from per-threshold counts, following scikit-learn's definitions exactly."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

#: True-positive rate at which the false-positive rate is reported.
TPR_TARGET = 0.95


@dataclass
class Cells:
    """Pixel counts per cell of tied (or binned together) scores, from the highest score down.

    ``single[i]`` says that cell ``i`` can only hold equal scores (then it is exactly one of scikit-learn's
    thresholds); ``thresholds[i]`` is the lowest score the cell can hold (float64).
    """

    positives: Tensor
    negatives: Tensor
    single: Tensor
    thresholds: Tensor


def cell_metrics(cells: Cells) -> dict[str, float | int | bool]:
    """:func:`curve_metrics` of the cells, plus ``exact`` and ``max_error_bound`` (see :func:`error_bounds`)."""
    result: dict[str, float | int | bool] = dict(curve_metrics(cells.positives, cells.negatives))
    bounds = error_bounds(cells.positives, cells.negatives, cells.single)
    result["max_error_bound"] = max(bounds.values())
    result["exact"] = result["max_error_bound"] == 0.0  # no cell that matters may hold distinct scores
    return result


def error_bounds(positives: Tensor, negatives: Tensor, single: Tensor) -> dict[str, float]:
    """Bounds on ``|ours - scikit-learn's|`` for AP, FPR95 and AUROC when cells not ``single`` may hold distinct
    scores in any order (whatever that order, scikit-learn's value lies within the bound of ours); the sums of
    :func:`error_shares`.
    """
    return {key: float(share.sum()) for key, share in error_shares(positives, negatives, single).items()}


def error_shares(positives: Tensor, negatives: Tensor, single: Tensor) -> dict[str, Tensor]:
    """Each cell's share (float64, one per cell) of the error bounds of AP, FPR95 and AUROC.

    Per cell not ``single``, with ``p`` positives, ``n`` negatives and ``T0`` / ``F0`` of them above it: AUROC counts
    each of its ``p * n`` pairs as half a tie, off by at most 1/2 each. FPR95 is off by at most ``n / N`` when the
    95 % TPR point falls inside the cell. For AP, each of its positives' precision is at most
    ``(T0 + p) / (T0 + p + F0)`` and the ``j``-th one's at least ``(T0 + j) / (T0 + j + F0 + n)``; the share is the
    larger distance from ours, ``p * (T0 + p) / (T0 + p + F0 + n)``, over ``P``.
    """
    tps, fps = torch.cumsum(positives, 0), torch.cumsum(negatives, 0)
    num_pos, num_neg = int(tps[-1]), int(fps[-1])
    auroc, fpr95, auprc = (torch.zeros(positives.numel(), dtype=torch.float64) for _ in range(3))

    first = int(torch.searchsorted(tps, _min_count_reaching(TPR_TARGET, num_pos)))
    if not bool(single[first]):
        fpr95[first] = float(negatives[first]) / num_neg

    at = torch.nonzero(~single & (positives > 0)).squeeze(1)  # only these cells have AP or AUROC shares
    p, n = positives[at].double(), negatives[at].double()
    t0, f0 = (tps[at] - positives[at]).double(), (fps[at] - negatives[at]).double()
    auroc[at] = p * n / (2.0 * num_pos * num_neg)
    ours = p * (t0 + p) / (t0 + p + f0 + n)
    upper = p * (t0 + p) / (t0 + p + f0)
    c = f0 + n
    # sum_{x = T0+1}^{T0+p} x / (x + c) = p - c * (H(T0 + p + c) - H(T0 + c)), H(k) = digamma(k + 1) + gamma
    lower = p - c * (torch.digamma(t0 + p + c + 1.0) - torch.digamma(t0 + c + 1.0))
    auprc[at] = torch.maximum(upper - ours, ours - lower).clamp(min=0.0) / num_pos
    return {"auprc": auprc, "fpr95": fpr95, "auroc": auroc}


def curve_metrics(positives: Tensor, negatives: Tensor) -> dict[str, float | int]:
    """Metrics from int64 counts of positives/negatives per distinct threshold, ordered from the highest score down.

    Each entry is one threshold (a group of tied scores) and must hold at least one pixel.
    Returns ``auprc``, ``fpr95``, ``auroc``, ``pixels`` and ``anomaly_pixels``; raises ``ValueError`` when
    there are no positives or no negatives.
    """
    tps = torch.cumsum(positives, 0)
    fps = torch.cumsum(negatives, 0)
    num_pos = int(tps[-1]) if tps.numel() else 0
    num_neg = int(fps[-1]) if fps.numel() else 0
    pixels = num_pos + num_neg
    if num_pos == 0 or num_neg == 0:
        missing = "anomaly (label 1)" if num_pos == 0 else "in-distribution (label 0)"
        raise ValueError(
            f"cannot compute anomaly metrics: no {missing} pixels among the {pixels} valid pixels "
            "(AP, FPR95 and AUROC need both classes)"
        )

    # Average precision: sum over thresholds of (R_n - R_{n-1}) * P_n. Every entry holds pixels, so
    # tps + fps > 0; entries without positives add 0.
    tps_f, pos_f = tps.double(), positives.double()
    auprc = float(torch.dot(pos_f, tps_f / (tps + fps).double())) / num_pos

    # FPR at the first threshold (high to low) whose TPR (tps / num_pos, in float64 as scikit-learn) reaches 95%.
    first = int(torch.searchsorted(tps, _min_count_reaching(TPR_TARGET, num_pos)))
    fpr95 = float(fps[first]) / num_neg

    # Trapezoidal AUROC: each negative counts the positives ranked above it, plus half of those tied with it.
    twice_area = float(torch.dot(negatives.double(), 2.0 * tps_f - pos_f))
    auroc = twice_area / (2.0 * num_pos * num_neg)

    return {"auprc": auprc, "fpr95": fpr95, "auroc": auroc, "pixels": pixels, "anomaly_pixels": num_pos}


def _min_count_reaching(rate: float, total: int) -> int:
    """The smallest integer ``k`` with ``k / total >= rate`` evaluated in float64 (``0 < rate <= 1``)."""
    k = max(0, min(total, math.ceil(rate * total)))
    while k > 0 and (k - 1) / total >= rate:
        k -= 1
    while k / total < rate:
        k += 1
    return k
