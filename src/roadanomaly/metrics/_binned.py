"""Fixed-size state for the binned anomaly metrics: per-bin counts of anomaly and in-distribution pixels."""

from __future__ import annotations

import torch
from torch import Tensor

from roadanomaly.metrics._curves import curve_metrics
from roadanomaly.metrics._distributed import all_reduce_sum_
from roadanomaly.metrics._float_bins import check_bits, float_bins, zero_bin
from roadanomaly.metrics._inputs import STEP

#: Pixels processed per step (see ``_inputs.STEP``); also bounds the scratch memory whatever the size of an update.
SLICE = STEP


class BinnedState:
    """Counts per score bin, in one int64 histogram of ``2 * 2**bits`` entries.

    Entries ``[0, 2**bits)`` count in-distribution pixels and ``[2**bits, 2 * 2**bits)`` anomaly pixels, by the
    order-preserving bin of their score (see ``_float_bins``). The index of a pixel is ``bin + label * 2**bits``;
    void pixels (label 255) are clamped into the last entry, an anomaly bin that only NaN bit patterns reach (and
    NaN scores are rejected), and are dropped when computing. States combine by summation.
    """

    def __init__(self, bits: int) -> None:
        self.bits = check_bits(bits)
        self.num_bins = 1 << bits
        self.hist = torch.zeros(2 * self.num_bins, dtype=torch.int64)
        self._scratch: dict[str, Tensor] = {}

    def _buffer(self, name: str, size: int, dtype: torch.dtype) -> Tensor:
        """A reusable scratch tensor of at least ``size`` elements (not part of the state)."""
        buffer = self._scratch.get(name)
        if buffer is None or buffer.numel() < size:
            buffer = self._scratch[name] = torch.empty(size, dtype=dtype)
        return buffer[:size]

    def update(self, scores: Tensor, labels: Tensor, has_void: bool) -> None:
        """Count flat, already validated scores (any real dtype, no NaN) and uint8 labels in {0, 1, 255}."""
        n = scores.numel()
        ones = torch.ones(1, dtype=torch.int64).expand(min(n, SLICE))
        for start in range(0, n, SLICE):
            stop = min(start + SLICE, n)
            m = stop - start
            values = scores[start:stop]
            if values.dtype != torch.float32:
                values = torch.add(values, 0.0, out=self._buffer("values", m, torch.float32))
            index = float_bins(values, self.bits, self._buffer("index", m, torch.int32),
                               self._buffer("scratch", m, torch.int32))
            index.add_(labels[start:stop], alpha=self.num_bins)  # anomalies to the upper half
            if has_void:
                index.clamp_(max=2 * self.num_bins - 1)  # 255 * 2**bits + bin: out of range, into the sink
            self.hist.index_add_(0, index, ones[:m])

    def counts(self) -> tuple[Tensor, Tensor]:
        """Anomaly and in-distribution counts of the non-empty bins, from the highest score down."""
        negatives, positives = self.hist.view(2, self.num_bins)
        occupied = self.hist.view(2, self.num_bins).any(0)  # the only temporary of the histogram's length
        occupied[-1] = False  # the void sink
        zero = zero_bin(self.bits)
        occupied[zero] |= occupied[zero - 1]  # -0.0 and +0.0 (and subnormals) are one bin
        occupied[zero - 1] = False
        index = torch.nonzero(occupied).squeeze(1).flip(0)
        pos, neg = positives[index], negatives[index]
        at_zero = index == zero
        pos[at_zero] += positives[zero - 1]
        neg[at_zero] += negatives[zero - 1]
        return pos, neg

    def pixel_counts(self) -> tuple[int, int]:
        """Valid and anomaly pixels counted so far (void pixels sit in the last entry, the sink)."""
        sink = int(self.hist[-1])
        return int(self.hist.sum()) - sink, int(self.hist[self.num_bins :].sum()) - sink

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
