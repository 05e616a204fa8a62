"""AP, FPR at 95% TPR and AUROC from per-threshold counts, following scikit-learn's definitions exactly."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from scipy.special import digamma
from torch import Tensor

#: True-positive rate at which the false-positive rate is reported.
TPR_TARGET = 0.95


class Cells:
    """Pixel counts per cell of tied (or binned together) scores, from the highest score down.

    ``single[i]`` says that cell ``i`` can only hold equal scores (then it is exactly one of scikit-learn's
    thresholds); ``thresholds[i]`` (float64) is the score standing for the cell: the score itself for such a cell.
    ``thresholds`` may be given as a function, called once when first needed (the metrics do not need it).
    """

    def __init__(self, positives: Tensor, negatives: Tensor, single: Tensor,
                 thresholds: Tensor | Callable[[], Tensor]) -> None:
        self.positives, self.negatives, self.single = positives, negatives, single
        self._thresholds = thresholds

    @property
    def thresholds(self) -> Tensor:
        if callable(self._thresholds):
            self._thresholds = self._thresholds()
        return self._thresholds


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
    _, shares, _, fpr95 = _loose_shares(positives, negatives, single)
    return {"auprc": float(shares["auprc"].sum()), "fpr95": fpr95, "auroc": float(shares["auroc"].sum())}


def error_shares(positives: Tensor, negatives: Tensor, single: Tensor) -> dict[str, Tensor]:
    """Each cell's share (float64, one per cell) of the error bounds of AP, FPR95 and AUROC.

    Per cell not ``single``, with ``p`` positives, ``n`` negatives and ``T0`` / ``F0`` of them above it: AUROC counts
    each of its ``p * n`` pairs as half a tie, off by at most 1/2 each. FPR95 is off by at most ``n / N`` when the
    95 % TPR point falls inside the cell. For AP, each of its positives' precision is at most
    ``(T0 + p) / (T0 + p + F0)`` and the ``j``-th one's at least ``(T0 + j) / (T0 + j + F0 + n)``; the share is the
    larger distance from ours, ``p * (T0 + p) / (T0 + p + F0 + n)``, over ``P``.
    """
    at, shares, first, fpr95 = _loose_shares(positives, negatives, single)
    dense = {key: torch.zeros(positives.numel(), dtype=torch.float64) for key in ("auprc", "fpr95", "auroc")}
    dense["auprc"][at], dense["auroc"][at] = shares["auprc"], shares["auroc"]
    dense["fpr95"][first] = fpr95
    return dense


def _loose_shares(positives: Tensor, negatives: Tensor, single: Tensor) -> tuple[Tensor, dict[str, Tensor], int, float]:
    """The cells with AP / AUROC shares (not single, with positives), their shares, the FPR95 cell and its share.

    The per-cell arithmetic runs in numpy: single-threaded, it does not wait for busy OpenMP threads (see
    ``_inputs.STEP``) at each of its dozen operations.
    """
    tps, fps = torch.cumsum(positives, 0), torch.cumsum(negatives, 0)
    num_pos, num_neg = int(tps[-1]), int(fps[-1])
    first = int(torch.searchsorted(tps, _min_count_reaching(TPR_TARGET, num_pos)))
    fpr95 = 0.0 if bool(single[first]) else float(negatives[first]) / num_neg

    at = torch.nonzero(~single & (positives > 0)).squeeze(1)
    p, n = positives[at].numpy().astype(np.float64), negatives[at].numpy().astype(np.float64)
    t0, f0 = tps[at].numpy() - p, fps[at].numpy() - n
    del tps, fps
    auroc = p * n / (2.0 * num_pos * num_neg)
    ours = p * (t0 + p) / (t0 + p + f0 + n)
    upper = p * (t0 + p) / (t0 + p + f0)
    c = f0 + n
    # sum_{x = T0+1}^{T0+p} x / (x + c) = p - c * (H(T0 + p + c) - H(T0 + c)), H(k) = digamma(k + 1) + gamma
    lower = p - c * (digamma(t0 + p + c + 1.0) - digamma(t0 + c + 1.0))
    auprc = np.maximum(np.maximum(upper - ours, ours - lower), 0.0) / num_pos
    return at, {"auprc": torch.from_numpy(auprc), "auroc": torch.from_numpy(auroc)}, first, fpr95


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
