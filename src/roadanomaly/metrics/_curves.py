"""AP, FPR at 95% TPR and AUROC from per-threshold counts, following scikit-learn's definitions exactly."""

from __future__ import annotations

import torch
from torch import Tensor

#: True-positive rate at which the false-positive rate is reported.
TPR_TARGET = 0.95


def curve_metrics(positives: Tensor, negatives: Tensor) -> dict[str, float | int]:
    """Metrics from int64 counts of positives/negatives per distinct threshold, ordered from the highest score down.

    Each entry is one threshold (a group of tied scores); entries with no pixels are allowed and ignored.
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

    # Average precision: sum over thresholds of (R_n - R_{n-1}) * P_n; thresholds without positives add 0.
    has_pos = positives > 0
    tp_at = tps[has_pos].double()
    precision = tp_at / (tp_at + fps[has_pos].double())
    auprc = float(torch.sum(positives[has_pos].double() / num_pos * precision))

    # FPR at the first threshold (high to low) whose TPR reaches 95%; TPR computed as scikit-learn does.
    tpr = tps.double() / num_pos
    first = int(torch.nonzero(tpr >= TPR_TARGET)[0, 0])
    fpr95 = float(fps[first].double() / num_neg)

    # Trapezoidal AUROC: each negative counts the positives ranked above it, plus half of those tied with it.
    tps_before = tps - positives
    twice_area = torch.sum(negatives.double() * (2 * tps_before + positives).double())
    auroc = float(twice_area / (2.0 * num_pos * num_neg))

    return {"auprc": auprc, "fpr95": fpr95, "auroc": auroc, "pixels": pixels, "anomaly_pixels": num_pos}
