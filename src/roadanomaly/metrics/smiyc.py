"""The pixel metrics of the SegmentMeIfYouCan toolkit ("PixBinaryClass"): per-frame quantile bins, pooled curves.

Per frame (one :meth:`SmiycPixelMetric.update`), as the toolkit does:

1. Scores are stored as float16 (the toolkit saves every frame's anomaly map so); void pixels (label 255) dropped.
2. Bin edges are 0, 1 and ``numpy.quantile`` of the anomaly scores and of the in-distribution scores, each at
   ``min(384, n)`` evenly spaced levels from 0 to 1 (768 quantiles at most), without duplicates.
3. Each class is counted per bin (``numpy.histogram``: half-open bins, the top one closed). A bin's threshold is its
   lower edge: at that threshold the pixels of this bin and all bins above it are predicted anomalous.

Over a dataset the (threshold, anomaly count, in-distribution count) entries of all frames are sorted by threshold,
from high to low, and accumulated; entries with the same threshold form one point of the curve. A point (0, 0) is
put first. Then

- AP is the step sum ``sum_k (R_k - R_{k-1}) * P_k`` (precision 1 where nothing is predicted),
- FPR95 is the FPR of the first point whose TPR is >= 0.95,
- AUROC is the trapezoidal area under (FPR, TPR),
- the best-F1 threshold is the threshold of the first point of maximal ``2TP / (2TP + FP + FN)``.

The state is the list of entries (frames' entries are concatenated, not summed: bins differ per frame); empty bins
are not stored, as they add no point that changes any of the values above.

Two toolkit details are deliberately not reproduced: it keeps its first sorted entry as a point even when more
frames share that highest threshold (that partial point depends on numpy's unspecified order of ties and moves AP
by far less than 1e-4), and it reads the best-F1 threshold at the point's index in the *uncollapsed* threshold list
(an off-by-some threshold); here the threshold of the best point itself is returned.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from roadanomaly.metrics._distributed import all_gather_cat, all_reduce_sum_
from roadanomaly.metrics._inputs import (
    ANOMALY,
    VOID,
    ArrayLike,
    anomaly_labels_as_uint8,
    as_flat_tensors,
    check_no_nan,
)

#: The toolkit's ``num_bins``: up to half of it quantile levels per class.
NUM_BINS = 768
TPR_TARGET = 0.95
_STATE_KEYS = ("thresholds", "positives", "negatives", "totals")


def frame_bins(scores: np.ndarray, is_anomaly: np.ndarray, num_bins: int = NUM_BINS) -> tuple[np.ndarray, ...]:
    """Thresholds (float64, descending) and per-bin anomaly / in-distribution counts of one frame's valid pixels.

    Equal to ``numpy.quantile`` + ``numpy.histogram`` on the float16 ``scores`` as the toolkit calls them, but each
    class is sorted once (as float32, exact for float16 values) and the quantiles and counts are read from it.
    """
    classes = [np.sort(scores[mask].astype(np.float32)) for mask in (is_anomaly, ~is_anomaly)]
    edges = [np.array([0.0, 1.0])]
    for ordered in classes:
        if ordered.size:
            levels = np.linspace(0.0, 1.0, min(num_bins // 2, ordered.size))
            edges.append(linear_quantiles(ordered.astype(np.float16), levels))
    edges = np.unique(np.concatenate(edges))
    pos, neg = (_histogram_sorted(ordered.astype(np.float64), edges)[::-1] for ordered in classes)
    return edges[:-1][::-1].astype(np.float64), pos, neg


def linear_quantiles(ordered: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """``numpy.quantile(values, levels)`` (method "linear") from the sorted ``values``, bit for bit: the virtual
    index ``(n - 1) * q``, the two neighbours, and their lerp (difference in the values' dtype, from the upper
    neighbour when the weight is >= 0.5)."""
    n = ordered.size
    virtual = (n - 1) * levels
    below = np.floor(virtual)
    weight = virtual - below
    below = below.astype(np.intp)
    lower, upper = ordered[below], ordered[np.minimum(below + 1, n - 1)]
    step = upper - lower
    result = lower + step * weight
    high = weight >= 0.5
    result[high] = (upper - step * (1 - weight))[high]
    return result


def _histogram_sorted(ordered: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``numpy.histogram(values, edges)`` counts from the sorted values: half-open bins, the last one closed."""
    cumulative = np.searchsorted(ordered, edges, side="left")
    cumulative[-1] = np.searchsorted(ordered, edges[-1], side="right")
    return np.diff(cumulative).astype(np.int64)


def curve_from_entries(
    thresholds: np.ndarray, positives: np.ndarray, negatives: np.ndarray
) -> dict[str, np.ndarray]:
    """The curve points (``thresholds``, cumulative ``tp`` and ``fp``, in float64) from unsorted entries."""
    order = np.argsort(-thresholds, kind="stable")
    ordered = thresholds[order]
    tp = np.cumsum(positives[order].astype(np.float64))
    fp = np.cumsum(negatives[order].astype(np.float64))
    last = np.flatnonzero(np.append(ordered[1:] != ordered[:-1], True))
    point_thresholds, tp, fp = ordered[last], tp[last], fp[last]
    if tp[0] != 0 or fp[0] != 0:
        point_thresholds = np.concatenate([[np.inf], point_thresholds])
        tp, fp = np.concatenate([[0.0], tp]), np.concatenate([[0.0], fp])
    return {"thresholds": point_thresholds, "tp": tp, "fp": fp}


def curve_metrics(curve: dict[str, np.ndarray]) -> dict[str, float]:
    """AP (step sum), FPR at the first TPR >= 0.95, trapezoidal AUROC, best F1 and its threshold of a curve."""
    tp, fp = curve["tp"], curve["fp"]
    num_pos, num_neg = tp[-1], fp[-1]
    tpr, fpr = tp / num_pos, fp / num_neg
    predicted = tp + fp
    precision = np.ones_like(tp)
    precision[predicted > 0] = tp[predicted > 0] / predicted[predicted > 0]
    at95 = int(np.searchsorted(tpr, TPR_TARGET))
    f1 = 2 * tp / (tp + fp + num_pos)
    best = int(np.argmax(f1))
    return {
        "auprc": float(np.sum(np.diff(tpr) * precision[1:])),
        "fpr95": float(fpr[at95]) if at95 < len(fpr) else 1.0,
        "auroc": float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)),
        "best_f1": float(f1[best]),
        "best_f1_threshold": float(curve["thresholds"][best]),
    }


class SmiycPixelMetric:
    """AP / FPR95 / AUROC as the SMIYC toolkit computes them, fed one frame per :meth:`update`.

    ``compute()`` returns ``{"auprc", "fpr95", "auroc", "pixels", "anomaly_pixels"}`` like
    :class:`~roadanomaly.metrics.AnomalyMetric`; :meth:`best_f1_threshold` feeds the component metric.
    """

    def __init__(self, num_bins: int = NUM_BINS) -> None:
        if num_bins < 2:
            raise ValueError(f"num_bins must be >= 2, got {num_bins}")
        self.num_bins = num_bins
        self.reset()

    def reset(self) -> None:
        """Forget every frame."""
        self._entries: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.totals = torch.zeros(2, dtype=torch.int64)  # valid pixels, anomaly pixels
        self._frames = 0

    def update(self, scores: ArrayLike, labels: ArrayLike) -> None:
        """Add one frame: 2-D ``scores`` (stored as float16, no NaN; or a leading batch dimension of 1) and
        ``labels`` (0, 1, 255) of the same shape."""
        shape = tuple(np.shape(scores))
        if len(shape) != 2 and not (len(shape) == 3 and shape[0] == 1):
            raise ValueError(f"the SMIYC pixel metric bins each frame: give one 2-D frame per update, got {shape}")
        flat_scores, flat_labels = as_flat_tensors(scores, labels, ("scores", "labels"))
        check_no_nan(flat_scores)
        flat_labels, has_void = anomaly_labels_as_uint8(flat_labels)
        half = flat_scores.to(torch.float16)
        if not bool(torch.isfinite(half).all()):
            raise ValueError("scores outside the float16 range (|score| > 65504) cannot be stored as SMIYC does")
        values, labels_np = half.numpy(), flat_labels.numpy()
        if has_void:
            valid = labels_np != VOID
            values, labels_np = values[valid], labels_np[valid]
        if values.size == 0:
            return
        is_anomaly = labels_np == ANOMALY
        thresholds, pos, neg = frame_bins(values, is_anomaly, self.num_bins)
        keep = (pos + neg) > 0
        self._entries.append((thresholds[keep], pos[keep], neg[keep]))
        self.totals += torch.tensor([values.size, int(is_anomaly.sum())], dtype=torch.int64)

    @property
    def pixels(self) -> int:
        """Valid (non-void) pixels added so far."""
        return int(self.totals[0])

    @property
    def anomaly_pixels(self) -> int:
        """Anomaly pixels added so far."""
        return int(self.totals[1])

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self._entries:
            return np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64)
        if len(self._entries) > 1:
            self._entries = [tuple(np.concatenate(parts) for parts in zip(*self._entries))]  # type: ignore[misc]
        return self._entries[0]

    def _metrics(self) -> dict[str, float]:
        pixels, anomalies = self.pixels, self.anomaly_pixels
        if anomalies == 0 or anomalies == pixels:
            missing = "anomaly (label 1)" if anomalies == 0 else "in-distribution (label 0)"
            raise ValueError(f"cannot compute anomaly metrics: no {missing} pixels among the {pixels} valid pixels "
                             "(AP, FPR95 and AUROC need both classes)")
        return curve_metrics(curve_from_entries(*self._arrays()))

    def compute(self) -> dict[str, float | int]:
        """The metrics of all frames so far; ``ValueError`` when anomaly or in-distribution pixels lack."""
        values = self._metrics()
        return {"auprc": values["auprc"], "fpr95": values["fpr95"], "auroc": values["auroc"],
                "pixels": self.pixels, "anomaly_pixels": self.anomaly_pixels}

    def best_f1_threshold(self) -> float:
        """The threshold (a bin's lower edge) of the curve point with the best pixel F1."""
        return self._metrics()["best_f1_threshold"]

    def merge(self, other: "SmiycPixelMetric") -> "SmiycPixelMetric":
        """Add the frames of ``other`` (same ``num_bins``); returns self."""
        if not isinstance(other, SmiycPixelMetric) or other.num_bins != self.num_bins:
            raise ValueError(f"can only merge a SmiycPixelMetric with num_bins={self.num_bins}")
        self._entries.extend(other._entries)
        self.totals += other.totals
        return self

    def state_dict(self) -> dict[str, Tensor]:
        """The state as plain tensors (a copy): every stored (threshold, anomaly, in-distribution) entry and totals."""
        thresholds, pos, neg = self._arrays()
        return {"thresholds": torch.tensor(thresholds, dtype=torch.float64),
                "positives": torch.tensor(pos, dtype=torch.int64),
                "negatives": torch.tensor(neg, dtype=torch.int64),
                "totals": self.totals.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Replace the state by one returned from :meth:`state_dict`."""
        if set(state) != set(_STATE_KEYS):
            raise ValueError(f"a SMIYC pixel state has the keys {list(_STATE_KEYS)}, got keys {sorted(state)}")
        arrays = [torch.as_tensor(state[k]) for k in _STATE_KEYS[:3]]
        if any(a.dim() != 1 or a.shape != arrays[0].shape for a in arrays) or tuple(state["totals"].shape) != (2,):
            raise ValueError("state 'thresholds', 'positives' and 'negatives' must be 1-D of equal length, "
                             "'totals' of shape (2,)")
        self._entries = [(arrays[0].double().numpy().copy(), arrays[1].long().numpy().copy(),
                          arrays[2].long().numpy().copy())]
        self.totals = torch.as_tensor(state["totals"]).to(torch.int64, copy=True)

    def sync(self) -> None:
        """Gather the entries and sum the totals of all ``torch.distributed`` processes (no-op otherwise)."""
        thresholds, pos, neg = (torch.from_numpy(np.ascontiguousarray(a)) for a in self._arrays())
        self._entries = [(all_gather_cat(thresholds).numpy(), all_gather_cat(pos).numpy(),
                          all_gather_cat(neg).numpy())]
        all_reduce_sum_(self.totals)

    def __repr__(self) -> str:
        return f"SmiycPixelMetric(num_bins={self.num_bins})"


def smiyc_pixel_metrics(frames: list[tuple[ArrayLike, ArrayLike]]) -> dict[str, float | int]:
    """One-shot SMIYC pixel metrics of ``[(scores, labels), ...]``, one entry per frame."""
    metric = SmiycPixelMetric()
    for scores, labels in frames:
        metric.update(scores, labels)
    return metric.compute()
