"""Fixed-size state for the binned anomaly metrics: per-bin counts of anomaly and in-distribution pixels."""

from __future__ import annotations

import torch
from torch import Tensor

from roadanomaly.metrics._curves import curve_metrics
from roadanomaly.metrics._distributed import all_reduce_sum_
from roadanomaly.metrics._float_bins import bins_in_place, check_bits
from roadanomaly.metrics._inputs import VOID

#: Pixels processed per step; bounds the scratch memory whatever the size of one update.
SLICE = 1 << 20


class BinnedState:
    """Counts per score bin, in one int64 histogram of ``2 * 2**bits`` entries.

    Entries ``[0, 2**bits)`` count in-distribution pixels, ``[2**bits, 2 * 2**bits)`` anomaly pixels, bin ``b``
    holding the scores whose order-preserving key starts with ``b`` (see ``_float_bins``). Void pixels are sent to
    the last in-distribution bin, which only NaN bit patterns can reach (and NaN scores are rejected), and are
    dropped when computing. The state is summed to combine processes.
    """

    def __init__(self, bits: int) -> None:
        self.bits = check_bits(bits)
        self.num_bins = 1 << bits
        self.hist = torch.zeros(2 * self.num_bins, dtype=torch.int64)
        self._scratch: tuple[Tensor, Tensor, Tensor] | None = None

    @property
    def _void_sink(self) -> int:
        return self.num_bins - 1

    def _workspace(self, size: int) -> tuple[Tensor, Tensor, Tensor]:
        if self._scratch is None or self._scratch[0].numel() < size:
            self._scratch = (
                torch.empty(size, dtype=torch.float32),
                torch.empty(size, dtype=torch.int32),
                torch.empty(size, dtype=torch.bool),
            )
        return self._scratch

    def update(self, scores: Tensor, labels: Tensor) -> None:
        """Count flat, already validated scores (any real dtype, no NaN) and uint8 labels in {0, 1, 255}."""
        n = scores.numel()
        if n == 0:
            return
        values, scratch, void = self._workspace(min(n, SLICE))
        ones = torch.ones(1, dtype=torch.int64).expand(min(n, SLICE))
        for start in range(0, n, SLICE):
            stop = min(start + SLICE, n)
            m = stop - start
            value, work, is_void = values[:m], scratch[:m], void[:m]
            torch.add(scores[start:stop], 0.0, out=value)  # to float32, and -0.0 becomes +0.0
            index = bins_in_place(value, self.bits, work)
            label = labels[start:stop]
            index.add_(label, alpha=self.num_bins)  # anomalies to the upper half (void fixed just below)
            torch.eq(label, VOID, out=is_void)
            if bool(is_void.any()):
                index.masked_fill_(is_void, self._void_sink)
            self.hist.index_add_(0, index, ones[:m])

    def counts(self) -> tuple[Tensor, Tensor]:
        """Anomaly and in-distribution counts of the non-empty bins, from the highest score down."""
        negatives = self.hist[: self.num_bins].clone()
        negatives[self._void_sink] = 0
        positives = self.hist[self.num_bins :]
        occupied = torch.nonzero(positives + negatives).squeeze(1).flip(0)
        return positives[occupied], negatives[occupied]

    def compute(self) -> dict[str, float | int]:
        """The metrics of everything counted so far."""
        positives, negatives = self.counts()
        return curve_metrics(positives, negatives)

    def reset(self) -> None:
        """Forget everything counted."""
        self.hist.zero_()

    def merge(self, other: "BinnedState") -> None:
        """Add the counts of ``other`` (same ``bits``) to this state."""
        if other.bits != self.bits:
            raise ValueError(f"cannot merge binned states with {self.bits} and {other.bits} bits")
        self.hist += other.hist

    def state_dict(self) -> dict[str, Tensor]:
        """A copy of the state as plain tensors."""
        return {"hist": self.hist.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Replace the state by one returned from :meth:`state_dict` (same ``bits``)."""
        if set(state) != {"hist"}:
            raise ValueError(f"a binned state has the single key 'hist', got keys {sorted(state)}")
        hist = torch.as_tensor(state["hist"])
        if tuple(hist.shape) != tuple(self.hist.shape):
            raise ValueError(
                f"state 'hist' has shape {tuple(hist.shape)}, expected {tuple(self.hist.shape)} "
                f"(bits={self.bits})"
            )
        self.hist = hist.to(dtype=torch.int64, device="cpu", copy=True)

    def sync(self) -> None:
        """Sum the state over all processes (when ``torch.distributed`` is initialised)."""
        all_reduce_sum_(self.hist)
