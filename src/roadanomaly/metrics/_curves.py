"""AP, FPR at 95% TPR and AUROC from per-threshold counts, following scikit-learn's definitions exactly."""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: True-positive rate at which the false-positive rate is reported.
TPR_TARGET = 0.95


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
