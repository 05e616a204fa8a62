"""Pixel-level anomaly segmentation metrics: AP (AUPRC), FPR at 95% TPR and AUROC.

Labels: 0 = in-distribution, 1 = anomaly (the positive class), 255 = void (ignored). Higher score = more anomalous.
All three metrics follow scikit-learn's definitions (``average_precision_score``, ``roc_curve`` and
``roc_auc_score``), tied scores forming a single threshold.

Two modes:

- ``"binned"`` (default): fixed-size histograms over order-preserving float32 cells. Every score falls in one of
  ``2**bits`` coarse bins (relative width ``2**-(bits - 9)``, equal scores always in the same bin). Up to
  ``2**(bits - 10)`` coarse bins, those holding the largest shares of the error bound (below), judged from the first
  ``2**22`` pixels (held back until then), are refined into ``2**10`` sub-bins each: at the default 22 bits, one per
  float32 value. So scores that crowd into a narrow range (the max softmax of an untrained network, MSP at a high
  temperature, an entropy near 1) are still told apart. Scores whose coarse bins are exact already (float16) or fine
  enough for a bound within ``5e-5`` are not refined, and cost no more than before.
  Memory does not depend on the number of pixels: at 22 bits a 64 MiB state, 128 MiB once it refines, plus the first
  ``2**22`` pixels held back (20 MiB); :meth:`AnomalyMetric.compute` needs temporaries in the number of non-empty
  cells (at most ``2**bits`` coarse bins plus ``2**bits`` sub-bins). States from several processes combine by
  summation once their refined bins agree (:meth:`AnomalyMetric.merge`, :meth:`AnomalyMetric.sync`: the union of
  their choices; a bin that one side counted coarsely is then read as one coarse cell, and the bound says so).
- ``"exact"``: every valid pixel is stored and sorted at :meth:`AnomalyMetric.compute` time (float64); for small
  data and for checking.

Besides ``auprc``, ``fpr95``, ``auroc``, ``pixels`` and ``anomaly_pixels``, :meth:`AnomalyMetric.compute` returns
``exact`` (bool: every cell that matters holds a single score value, so the three metrics equal scikit-learn's
up to float64 rounding) and ``max_error_bound`` (float: a bound on ``|ours - scikit-learn's|`` that holds for each of
the three metrics, whatever the order of the scores within the cells; 0.0 when ``exact``). A cell can only be
trusted to hold one value when the input dtype has no more significant bits than the cell resolves: float16,
bfloat16 and 8-bit inputs in every cell, float32 (and float64 or integer values that float32 represents exactly) in
sub-bins at 22 bits; other float64 values are rounded to float32 and then no cell counts as single-valued. When
``max_error_bound`` is too large for a purpose, use ``mode="exact"``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from roadanomaly.metrics._binned import BinnedState, state_bytes
from roadanomaly.metrics._float_bins import MIN_BITS
from roadanomaly.metrics._exact import ExactState
from roadanomaly.metrics._inputs import (
    ArrayLike,
    anomaly_labels_as_uint8,
    as_flat_tensors,
    check_no_nan,
)
from roadanomaly.metrics._reports import best_f1, curves, histogram

MODES = ("binned", "exact")

#: Key bits kept as the coarse bin index in binned mode: 2**22 bins, relative bin width 2**-13, a 64 / 128 MiB state.
DEFAULT_BITS = 22


def binned_state_bytes(bits: int = DEFAULT_BITS) -> int:
    """The most memory one binned :class:`AnomalyMetric` of ``bits`` holds (refined histogram + held-back pixels)."""
    return state_bytes(bits)


def bits_for_memory(states: int, budget: int, most: int = DEFAULT_BITS) -> int:
    """The most key bits (at most ``most``) with which ``states`` binned metrics fit in ``budget`` bytes.

    Each bit less halves a state and doubles the relative width of its cells (``2**-(bits - 9)`` coarse,
    ``2**-(bits + 1)`` once refined): the reported ``max_error_bound`` says what that costs. ``ValueError`` when
    even ``MIN_BITS`` does not fit.
    """
    for bits in range(most, MIN_BITS - 1, -1):
        if states * state_bytes(bits) <= budget:
            return bits
    raise ValueError(f"{states} binned metrics need at least {states * state_bytes(MIN_BITS) / 2**20:.1f} MiB, "
                     f"more than the {budget / 2**20:.1f} MiB allowed")


class AnomalyMetric:
    """Streaming AP / FPR95 / AUROC over pixels, fed image by image with :meth:`update`.

    ``compute()`` returns ``{"auprc", "fpr95", "auroc", "pixels", "anomaly_pixels", "exact", "max_error_bound"}``. ``merge``, ``state_dict`` /
    ``load_state_dict`` and ``sync`` combine, save and all-reduce evaluations. :meth:`curve_counts`,
    :meth:`curves`, :meth:`best_f1_threshold` and :meth:`histogram` give the curves behind the metrics, for plots
    and reports.
    """

    def __init__(self, mode: str = "binned", *, bits: int = DEFAULT_BITS) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.bits = bits
        self._state: BinnedState | ExactState = BinnedState(bits) if mode == "binned" else ExactState()

    def update(self, scores: ArrayLike, labels: ArrayLike) -> None:
        """Add pixels: ``scores`` (any real dtype, no NaN) and ``labels`` (0, 1 or 255) of the same shape."""
        flat_scores, flat_labels = as_flat_tensors(scores, labels, ("scores", "labels"))
        check_no_nan(flat_scores)
        self._state.update(flat_scores, *anomaly_labels_as_uint8(flat_labels))

    def compute(self) -> dict[str, float | int | bool]:
        """The metrics of all pixels added so far; ``ValueError`` when anomaly or in-distribution pixels lack."""
        return self._state.compute()

    def curve_counts(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(thresholds, positives, negatives)``: float64, int64 and int64 tensors, one entry per distinct threshold
        from the highest score down, counting the anomaly and in-distribution pixels at it.

        In exact mode the thresholds are the distinct scores. In binned mode each entry is a cell of the histogram
        and its threshold the lowest float32 value the cell can hold: the score itself for a cell that holds one
        value (see ``exact`` in :meth:`compute`), the lower edge of its bin otherwise.
        """
        cells = self._state.cells()
        return cells.thresholds.clone(), cells.positives.clone(), cells.negatives.clone()

    def curves(self, max_points: int = 512) -> dict[str, Any]:
        """PR and ROC curves for plotting: ``{"pr": {"recall", "precision"}, "roc": {"fpr", "tpr"}, "thresholds"}``,
        lists of equal length, at most ``max_points``.

        Point ``i`` counts the pixels scoring at least ``thresholds[i]`` as anomalies (thresholds from the highest
        down; scikit-learn's ``roc_curve`` adds a first point (0, 0) and ``precision_recall_curve`` a last one
        (recall 0, precision 1), not repeated here). Beyond ``max_points`` thresholds, the kept ones are spread
        evenly in ``(tpr + fpr) / 2``, the first and last always kept. ``ValueError`` without both classes.
        """
        return curves(self._state.cells(), max_points)

    def best_f1_threshold(self) -> tuple[float, float]:
        """``(threshold, f1)``: the threshold of the highest pixel-level F1 over all thresholds (pixels scoring at
        least it are anomalies; the highest threshold on ties), and that F1. ``ValueError`` without both classes."""
        return best_f1(self._state.cells())

    def histogram(self, bins: int = 100, value_range: tuple[float, float] | None = None) -> dict[str, list]:
        """Score histograms for reports: ``{"edges": bins + 1 floats, "inlier": counts, "anomaly": counts}``.

        ``value_range`` defaults to the 0.1th to 99.9th percentile of all valid scores (numpy's ``inverted_cdf``
        percentile), so that a few extreme scores do not squash the plot; scores outside the range count in the
        first or last bin (the counts add up to :attr:`pixels` and :attr:`anomaly_pixels`). Bins are
        ``[edges[i], edges[i + 1])``, the last one closed. In binned mode each cell counts at its threshold (see
        :meth:`curve_counts`).
        """
        return histogram(self._state.cells(), bins, value_range)

    @property
    def pixels(self) -> int:
        """Valid (non-void) pixels added so far."""
        return self._state.pixel_counts()[0]

    @property
    def anomaly_pixels(self) -> int:
        """Anomaly pixels added so far."""
        return self._state.pixel_counts()[1]

    def reset(self) -> None:
        """Forget all pixels added so far."""
        self._state.reset()

    def merge(self, other: "AnomalyMetric") -> "AnomalyMetric":
        """Add the pixels of ``other`` (same mode, and same ``bits`` in binned mode) to this metric; returns self."""
        if not isinstance(other, AnomalyMetric) or other.mode != self.mode:
            raise ValueError(f"can only merge an AnomalyMetric of mode {self.mode!r}")
        self._state.merge(other._state)  # type: ignore[arg-type]
        return self

    def state_dict(self, copy: bool = True) -> dict[str, Tensor]:
        """The state as plain tensors (a copy), to save and later :meth:`load_state_dict`. ``copy=False`` returns
        the state's own tensors where it can, for a caller that writes them out at once (a progress file)."""
        return self._state.state_dict(copy)

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Replace the state by one from :meth:`state_dict` of a metric built with the same mode (and bits)."""
        self._state.load_state_dict(state)

    def sync(self) -> None:
        """Combine the state over all ``torch.distributed`` processes: a sum in binned mode, a gather in exact mode.

        Afterwards every process holds the global state; call it once, right before :meth:`compute`. No-op when
        ``torch.distributed`` is not initialised.
        """
        self._state.sync()

    def __repr__(self) -> str:
        extra = f", bits={self.bits}" if self.mode == "binned" else ""
        return f"AnomalyMetric(mode={self.mode!r}{extra})"


def anomaly_metrics(scores: ArrayLike, labels: ArrayLike, mode: str = "exact") -> dict[str, float | int | bool]:
    """One-shot AP / FPR95 / AUROC of ``scores`` against ``labels`` (0, 1, 255 = void); see :class:`AnomalyMetric`."""
    metric = AnomalyMetric(mode)
    metric.update(scores, labels)
    return metric.compute()
