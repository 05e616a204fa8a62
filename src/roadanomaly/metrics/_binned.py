"""Fixed-size state for the binned anomaly metrics: per-cell counts of anomaly and in-distribution pixels.

Cells are coarse order-preserving float32 bins (``_float_bins``), and, inside the coarse bins where the scores
concentrate, sub-bins down to single float32 values. Which coarse bins are *refined* is decided once, from the first
``WARMUP`` pixels (held back until then), see ``_refine``. Merging keeps the bins of largest mass among both states'
refined ones.
"""

from __future__ import annotations

import mmap
import threading
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from roadanomaly.metrics._curves import Cells, cell_metrics
from roadanomaly.metrics._distributed import (
    all_gather_cat,
    all_reduce_sum_,
    is_distributed,
)
from roadanomaly.metrics._float_bins import (
    check_bits,
    coarse_bins,
    float_keys,
    significant_bits,
    sub_bits_for,
    zero_bin,
)
from roadanomaly.metrics._inputs import STEP, VOID
from roadanomaly.metrics._refine import bins_to_refine, largest_mass, occupied_bins

#: Pixels processed per step (see ``_inputs.STEP``); also bounds the scratch memory whatever the size of an update.
SLICE = STEP
#: Pixels per step of the refined counting, in numpy (single-threaded whatever the size).
COUNT_SLICE = 1 << 16
#: Pixels held back (float32 score + uint8 label, 20 MiB) before the refined coarse bins are chosen.
WARMUP = 1 << 22
#: ``precision`` entries: pixels by significant bits their input scores could need (index 25: not float32-exact).
INEXACT = 25
_INT_BITS = {torch.bool: 1, torch.uint8: 8, torch.int8: 8, torch.int16: 16}
_FLOAT_BITS = {torch.bfloat16: 8, torch.float16: 11, torch.float32: 24}
UNDECIDED = -1


_SCRATCH = threading.local()
"""Per thread, the scratch buffers of the states' passes over pixels (see ``BinnedState._buffer``)."""


def warmup_pixels(bits: int) -> int:
    """Pixels held back before the refined bins are chosen: ``WARMUP``, or ``2**(bits + 2)`` for smaller states
    (their held-back pixels stay within a third of the histogram's size)."""
    return min(WARMUP, 1 << (bits + 2))


def lazy_zeros(size: int) -> Tensor:
    """An int64 tensor of zeros whose memory is touched only where it is written.

    The memory is an anonymous mapping: fresh pages from the operating system, zero until written and not resident
    until then (``torch.zeros`` writes, and so faults in, every page, and a heap block reused from the allocator
    must be cleared). A histogram whose refined sub-bins are mostly never reached thus holds, and costs the time
    of, only the pages its pixels reach. The tensor keeps the mapping alive; copies of it are ordinary tensors.
    """
    return torch.from_numpy(np.frombuffer(mmap.mmap(-1, max(size, 1) * 8), dtype=np.int64)[:size])


def state_bytes(bits: int) -> int:
    """The most memory a state of ``bits`` holds: its refined histogram (two labels x ``2**(bits + 1)`` int64
    entries) plus its held-back pixels (float32 score + uint8 label each)."""
    return 2 * (1 << (bits + 1)) * 8 + 5 * warmup_pixels(bits)


class BinnedState:
    """Counts per cell, in one int64 histogram of ``2 * region + 1`` entries.

    Each label (0, then 1) has a region of ``region`` entries: the ``2**bits`` coarse bins, then, once some bin is
    refined, ``capacity`` slots of ``2**sub_bits`` sub-bins, slot ``i`` refining coarse bin ``refined[i]`` (sorted;
    ``None`` until chosen, while pixels are held back in ``_pending``). A pixel's entry is
    ``base[coarse] + sub * refined_flag + label * region``; void pixels (label 255) land past the end and are clamped
    into the last entry, the sink. The coarse entry of a refined bin counts its pixels added before it was refined
    (only when merging states refined differently). ``precision`` counts pixels by the significant bits of their
    input dtype, which tells which cells can only hold equal scores. States combine by summation once their refined
    bins agree (:meth:`merge`, :meth:`sync`).
    """

    def __init__(self, bits: int) -> None:
        self.bits = check_bits(bits)
        self.num_bins = 1 << bits
        self.sub_bits = sub_bits_for(bits)
        self.capacity = self.num_bins >> self.sub_bits
        self.region = self.num_bins  # entries per label: the coarse bins, then (once refined) capacity slots
        self.hist = lazy_zeros(2 * self.region + 1)
        self.precision = torch.zeros(INEXACT + 1, dtype=torch.int64)
        self.refined: Tensor | None = None  # None: not decided yet
        self._base: Tensor | None = None
        self.warmup = warmup_pixels(bits)
        self._pending: list[tuple[Tensor, Tensor, bool]] = []
        self._pending_pixels = 0
        self._cells: dict[bool, Cells] = {}  # cells() by ``compact`` until the counts change

    # --- adding pixels --------------------------------------------------------------------------------------------

    def _buffer(self, name: str, size: int, dtype: torch.dtype) -> Tensor:
        """A reusable scratch tensor of at least ``size`` elements (not part of the state), shared by every state
        of the calling thread: a sweep of many states holds one set, not one each."""
        scratch = _SCRATCH.__dict__.setdefault("buffers", {})
        buffer = scratch.get((name, dtype))
        if buffer is None or buffer.numel() < size:
            buffer = scratch[name, dtype] = torch.empty(size, dtype=dtype)
        return buffer[:size]

    def update(self, scores: Tensor, labels: Tensor, has_void: bool) -> None:
        """Count flat, already validated scores (any real dtype, no NaN) and uint8 labels in {0, 1, 255}."""
        self._cells.clear()
        if scores.numel() == 0:
            return
        self._note_precision(scores)
        if self.refined is None:
            self._hold(scores.to(torch.float32, copy=True), labels.clone(), has_void)
        else:
            self._count(scores, labels, has_void)

    def _hold(self, scores: Tensor, labels: Tensor, has_void: bool) -> None:
        """Hold back float32 ``scores`` and their labels (taken over, not copied) until the refined bins are chosen."""
        self._pending.append((scores, labels, has_void))
        self._pending_pixels += scores.numel()
        if self._pending_pixels >= self.warmup:
            self.flush()

    def _note_precision(self, scores: Tensor) -> None:
        """Count the pixels of ``scores`` by the significant bits they may need (``INEXACT``: float32 rounds them)."""
        n = scores.numel()
        dtype = scores.dtype
        if dtype in _FLOAT_BITS or dtype in _INT_BITS:
            self.precision[_FLOAT_BITS.get(dtype, _INT_BITS.get(dtype))] += n
            return
        inexact = 0
        for start in range(0, n, SLICE):
            part = scores[start : start + SLICE]
            rounded = torch.add(part, 0.0, out=self._buffer("values", part.numel(), torch.float32))
            inexact += int(torch.ne(rounded, part).sum())
        self.precision[INEXACT] += inexact
        self.precision[24] += n - inexact

    def _count(self, scores: Tensor, labels: Tensor, has_void: bool) -> None:
        """Add pixels to the histogram with the refined bins decided (``self._base`` built).

        Counting runs in numpy over slices of ``COUNT_SLICE`` pixels: its operations never start parallel regions
        and cost a fraction of torch's per-call overhead (at ~12 operations a slice: 16 % less time at 512x1024).
        """
        if self._base is None:
            self._count_coarse(scores, labels, has_void)
            return
        hist, base, label_values = self.hist.numpy(), self._base.numpy(), labels.numpy()
        sub_shift, sub_mask = 32 - self.bits - self.sub_bits, (1 << self.sub_bits) - 1
        for start, stop, keys in self._slice_keys(scores):
            m = stop - start
            coarse = coarse_bins(keys, self.bits, self._array("coarse", m, torch.int32))
            entry = np.take(base, coarse, out=self._array("entry", m, torch.int32))
            sub = np.bitwise_and(np.right_shift(keys, sub_shift, out=keys), sub_mask, out=keys)
            sub *= np.greater_equal(entry, self.num_bins, out=self._array("refined", m, torch.bool))
            index = np.add(entry, sub, out=self._array("index", m, torch.int64), dtype=np.int64)
            self._add(hist, index, label_values[start:stop], has_void)

    def _count_coarse(self, scores: Tensor, labels: Tensor, has_void: bool) -> None:
        """Add pixels by coarse bin only (no bin refined)."""
        hist, label_values = self.hist.numpy(), labels.numpy()
        for start, stop, keys in self._slice_keys(scores):
            index = coarse_bins(keys, self.bits, self._array("index", stop - start, torch.int64))
            self._add(hist, index, label_values[start:stop], has_void)

    def _add(self, hist: np.ndarray, index: np.ndarray, labels: np.ndarray, has_void: bool) -> None:
        """Count one slice of histogram entries (of in-distribution pixels): anomalies go to the second region,
        void pixels (255 * region + entry, past the end) are clamped into the sink."""
        index += np.multiply(labels, self.region, out=self._array("label", index.size, torch.int64), dtype=np.int64)
        if has_void:
            np.minimum(index, hist.size - 1, out=index)
        np.add.at(hist, index, 1)

    def _array(self, name: str, size: int, dtype: torch.dtype) -> np.ndarray:
        """A reusable scratch array of ``size`` elements, the numpy view of a :meth:`_buffer`."""
        return self._buffer(name, size, dtype).numpy()

    def _slice_keys(self, scores: Tensor) -> Iterator[tuple[int, int, np.ndarray]]:
        """``(start, stop, keys)`` per slice of ``COUNT_SLICE`` scores: their int32 order-preserving keys (see
        ``_float_bins``) in the reusable ``keys`` array (valid until the next slice, free to overwrite)."""
        n = scores.numel()
        for start in range(0, n, COUNT_SLICE):
            stop = min(start + COUNT_SLICE, n)
            m = stop - start
            values = scores[start:stop]
            if values.dtype != torch.float32:
                values = torch.add(values, 0.0, out=self._buffer("values", m, torch.float32))
            keys = float_keys(values.numpy(), self._array("keys", m, torch.int32), self._array("flip", m, torch.int32))
            yield start, stop, keys

    def flush(self) -> None:
        """Choose the refined bins from the pixels held back (if not chosen yet) and count those pixels."""
        self._cells.clear()
        if self.refined is not None or not self._pending:
            return
        pending, self._pending, self._pending_pixels = self._pending, [], 0
        for scores, labels, has_void in pending:  # coarse counts first: the refined bins are chosen from them
            self._count_coarse(scores, labels, has_void)
        chosen = self._worth_refining(self._span_of(pending))
        if chosen.numel() == 0:
            self._set_refined_layout(chosen)
            return
        # a fresh histogram: zeroing the old one in place faulted in all of its pages (0.15 s per state)
        self._set_refined_layout(chosen, keep_counts=False)
        for scores, labels, has_void in pending:
            self._count(scores, labels, has_void)

    # --- refinement -----------------------------------------------------------------------------------------------

    def _worth_refining(self, span: tuple[int, int] | None = None) -> Tensor:
        """The coarse bins to refine, judged from the coarse counts alone (see ``_refine``); ``span``: the coarse
        bins ``[first, stop)`` that hold every pixel counted, when known."""
        if self._coarse_single():
            return torch.empty(0, dtype=torch.int64)
        return bins_to_refine(self._coarse(), zero_bin(self.bits), self.capacity, span)

    def _span_of(self, pending: list[tuple[Tensor, Tensor, bool]]) -> tuple[int, int]:
        """The coarse bins ``[first, stop)`` of the held-back scores, widened by one bin each way (their least and
        greatest may be +0.0 where -0.0 also occurs). Choosing the refined bins then reads only those: the first
        read of a page of the histogram that no pixel reached maps it (~80 ms for the 64 MiB of 22-bit coarse
        counts)."""
        low = min(float(scores.min()) for scores, _, _ in pending)
        high = max(float(scores.max()) for scores, _, _ in pending)
        values = np.array([low, high], np.float32)
        keys = float_keys(values, np.empty(2, np.int32), np.empty(2, np.int32))
        first, last = coarse_bins(keys, self.bits, np.empty(2, np.int64)).tolist()
        return max(0, first - 1), min(self.num_bins, last + 2)

    def _coarse_single(self) -> bool:
        """Whether every coarse cell can only hold equal scores (the inputs have few enough significant bits)."""
        return self._widest_input() <= significant_bits(self.bits)

    def _widest_input(self) -> int:
        """The most significant bits any score added may need (``INEXACT``: more than float32 holds)."""
        return int(torch.nonzero(self.precision).max()) if bool(self.precision.any()) else 0

    def _choose(self, counts: Tensor, candidates: Tensor, totals: Tensor) -> Tensor:
        """The ``capacity`` candidate bins of largest class-balanced mass (see ``_refine.largest_mass``)."""
        return largest_mass(counts, candidates, totals, self.capacity)

    def _set_refined(self, refined: Tensor) -> None:
        """Adopt a new list of refined bins: slots of bins that stay move, those of dropped bins fold back."""
        refined = refined.to(torch.int64)
        if self.refined is not None and self.refined.numel():
            coarse, fine = self._coarse(), self._fine()
            old = self.refined
            stays = torch.isin(old, refined)
            kept = fine[:, stays].clone()
            coarse[:, old[~stays]] += fine[:, ~stays].sum(2)
            fine.zero_()
            self._set_refined_layout(refined)
            self._fine()[:, torch.searchsorted(refined, old[stays])] = kept
        else:
            self._set_refined_layout(refined)

    def _coarse(self) -> Tensor:
        """``(2, 2**bits)`` view of the coarse counts: in-distribution, then anomaly."""
        return self.hist[:-1].view(2, self.region)[:, : self.num_bins]

    def _fine(self) -> Tensor:
        """``(2, len(refined), 2**sub_bits)`` view of the refined bins' sub-bin counts."""
        used = 0 if self.refined is None else self.refined.numel()
        fine = self.hist[:-1].view(2, self.region)[:, self.num_bins : self.num_bins + (used << self.sub_bits)]
        return fine.view(2, used, 1 << self.sub_bits)

    def _region_for(self, refined: Tensor) -> int:
        return self.num_bins + (self.capacity << self.sub_bits if refined.numel() else 0)

    def _class_totals(self) -> Tensor:
        """In-distribution and anomaly pixels counted (held-back ones excluded)."""
        return self.hist[:-1].view(2, self.region).sum(1)

    def _bin_counts(self, ids: Tensor) -> Tensor:
        """``(2, len(ids))`` pixels per class in coarse bins ``ids`` (coarse entry plus refined sub-bins)."""
        counts = self._coarse()[:, ids].clone()
        if self.refined is not None and self.refined.numel():
            at = torch.isin(ids, self.refined)
            counts[:, at] += self._fine().sum(2)[:, torch.searchsorted(self.refined, ids[at])]
        return counts

    # --- reading ---------------------------------------------------------------------------------------------------

    def cells(self, compact: bool = False) -> Cells:
        """Counts of the non-empty cells from the highest score down, with which of them hold a single value.

        ``compact``: consecutive sub-bins without anomalies form one cell, which changes none of the three metrics
        nor their bounds (negatives ranked alike count alike; such a cell holds no FPR95 point), for fewer cells.
        While pixels are held back, a scratch state chooses the refined bins from them: this one stays as it is.
        The cells are kept until the counts change (compute, curves and histograms of one state read them once).
        """
        if compact not in self._cells:
            self._cells[compact] = self._make_cells(compact)
        return self._cells[compact]

    def _make_cells(self, compact: bool) -> Cells:
        if self.refined is None and self._pending:
            scratch = BinnedState(self.bits)
            scratch.precision = self.precision
            scratch._pending = list(self._pending)
            scratch.flush()
            return scratch.cells(compact)
        coarse = self._coarse()
        sub_size = 1 << self.sub_bits
        zero = zero_bin(self.bits)
        widest = self._widest_input()
        coarse_single = widest <= significant_bits(self.bits)
        fine_single = widest <= significant_bits(self.bits) + self.sub_bits

        occupied = occupied_bins(coarse)
        coarse_neg, coarse_pos = coarse[:, occupied]
        refined = self.refined if self.refined is not None else torch.empty(0, dtype=torch.int64)
        fine = self._fine()
        # A refined bin whose coarse entry holds pixels (added before it was refined) is read as one coarse cell.
        unresolved = torch.isin(refined, occupied)
        if bool(unresolved.any()):
            at = torch.searchsorted(occupied, refined[unresolved])
            coarse_neg[at] += fine[0, unresolved].sum(1)
            coarse_pos[at] += fine[1, unresolved].sum(1)
            fine, refined = fine[:, ~unresolved], refined[~unresolved]

        # Keys ordering all cells: coarse bin c covers [c * sub_size, (c + 1) * sub_size); -0.0's cell is put at
        # the top of bin zero - 1 so that it sits right below +0.0's (the bottom of bin zero) and merges with it.
        # Both lists are sorted: each cell's place is its index plus the count of the other list's cells below it.
        coarse_keys = occupied * sub_size + (occupied == zero - 1) * (sub_size - 1)
        if compact:
            slot, sub, fine_neg, fine_pos = self._fine_runs(fine, refined)
        else:
            fine_occupied = torch.nonzero(fine.any(0))
            slot, sub = fine_occupied[:, 0], fine_occupied[:, 1]
            fine_neg, fine_pos = fine[0, slot, sub], fine[1, slot, sub]
            del fine_occupied
        fine_keys = refined[slot] * sub_size + sub
        total = coarse_keys.numel() + fine_keys.numel()
        at_coarse = total - 1 - (torch.arange(coarse_keys.numel()) + torch.searchsorted(fine_keys, coarse_keys))
        at_fine = total - 1 - (torch.arange(fine_keys.numel()) + torch.searchsorted(coarse_keys, fine_keys))

        def placed(coarse_part: Tensor, fine_part: Tensor) -> Tensor:
            out = torch.empty(total, dtype=coarse_part.dtype)
            out[at_coarse], out[at_fine] = coarse_part, fine_part
            return out

        def position(key: int) -> int | None:
            """Where the cell of ``key`` went, if there is one."""
            for keys, at in ((coarse_keys, at_coarse), (fine_keys, at_fine)):
                found = torch.nonzero(keys == key).squeeze(1)
                if found.numel():
                    return int(at[found[0]])
            return None

        pos = placed(coarse_pos, fine_pos)
        neg = placed(coarse_neg, fine_neg)
        single = placed(torch.full((occupied.numel(),), coarse_single), torch.full((slot.numel(),), fine_single))
        merged: list[int] = []
        i, j = position(zero * sub_size), position(zero * sub_size - 1)
        if i is not None and j is not None:  # -0.0 and +0.0: one cell
            pos[i] += pos[j]
            neg[i] += neg[j]
            single[i] &= bool(single[j])
            keep = torch.ones(total, dtype=torch.bool)
            keep[j] = False
            pos, neg, single = pos[keep], neg[keep], single[keep]
            merged = [j]

        def thresholds() -> Tensor:
            values = placed(self._values(occupied * sub_size, sub_size), self._values(fine_keys, 1))
            if merged:
                values = torch.cat([values[: merged[0]], values[merged[0] + 1 :]])
            return values

        return Cells(pos, neg, single, thresholds)

    def _values(self, keys: Tensor, width: int) -> Tensor:
        """The float64 value standing for each cell ``[keys, keys + width)`` (in sub-bin units): its edge nearest
        zero, i.e. its scores truncated to the cell's precision; the score itself when the cell holds one value."""
        shift = 32 - self.bits - self.sub_bits
        offset = zero_bin(self.bits) << self.sub_bits
        low = _key_values(((keys - offset) << shift).to(torch.int32))
        high = _key_values((((keys + width - offset) << shift) - 1).to(torch.int32))
        return torch.where(low >= 0, low, high)  # -0.0 >= 0: the -0.0 cell stands for zero

    def _fine_runs(self, fine: Tensor, refined: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Slot, first sub-bin, negatives and positives of the non-empty runs of sub-bins in ``fine`` (``(2, slots,
        sub-bins)``): each sub-bin with anomalies alone, the others in runs within a slot; -0.0's and +0.0's alone."""
        sub_size = 1 << self.sub_bits
        negatives, positives = fine[0].reshape(-1), fine[1].reshape(-1)
        has_pos = positives > 0
        start = has_pos.clone()
        start[1:] |= has_pos[:-1]
        start[::sub_size] = True
        zero = zero_bin(self.bits)
        for bin_, sub in ((zero - 1, sub_size - 1), (zero, 1)):  # -0.0 and +0.0 (merged later) each stay alone
            slot = torch.nonzero(refined == bin_).squeeze(1)
            if slot.numel() and sub < sub_size:
                start[int(slot) * sub_size + sub] = True
        run = torch.cumsum(start, 0) - 1
        count = int(run[-1]) + 1 if run.numel() else 0
        run_neg = torch.zeros(count, dtype=torch.int64).index_add_(0, run, negatives)
        run_pos = torch.zeros(count, dtype=torch.int64).index_add_(0, run, positives)
        del run
        first = torch.nonzero(start).squeeze(1)
        keep = (run_neg + run_pos) > 0
        first = first[keep]
        return first // sub_size, first % sub_size, run_neg[keep], run_pos[keep]

    def compute(self) -> dict[str, float | int | bool]:
        """The metrics of everything counted so far, with ``exact`` and ``max_error_bound``."""
        return cell_metrics(self.cells(compact=True))

    def pixel_counts(self) -> tuple[int, int]:
        """Valid and anomaly pixels counted so far, held-back pixels included."""
        cells = self._cells.get(True, self._cells.get(False))
        if cells is not None:  # read off the cells already made (summing the whole histogram reads all of it)
            anomalies = int(cells.positives.sum())
            return int(cells.negatives.sum()) + anomalies, anomalies
        valid = int(self.hist[:-1].sum())
        anomalies = int(self.hist[self.region : -1].sum())
        for _, labels, _ in self._pending:
            valid += int((labels != VOID).sum())
            anomalies += int((labels == 1).sum())
        return valid, anomalies

    # --- state ------------------------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything counted, and the choice of refined bins."""
        self._cells.clear()
        self.region = self.num_bins
        self.hist = lazy_zeros(2 * self.region + 1)
        self.precision.zero_()
        self.refined, self._base = None, None
        self._pending, self._pending_pixels = [], 0

    def _check_same_bits(self, other: "BinnedState") -> None:
        if other.bits != self.bits:
            raise ValueError(f"cannot merge binned states with {self.bits} and {other.bits} bits")

    def merge(self, other: "BinnedState") -> None:
        """Add the counts of ``other`` (same ``bits``) to this state.

        Pixels ``other`` still holds back are added as if given to :meth:`update` (so merging states that have not
        chosen their refined bins yet equals one state fed all their pixels). When both have chosen, this state
        refines the union of both choices, or its ``capacity`` bins of largest class-balanced mass; pixels counted
        coarsely in a bin the other state refined make that bin read as one coarse cell.
        """
        self._check_same_bits(other)
        self._cells.clear()
        self.precision += other.precision
        if other.refined is None:  # nothing counted yet, only held back
            for scores, labels, has_void in other._pending:
                if self.refined is None:
                    self._hold(scores.clone(), labels.clone(), has_void)
                else:
                    self._count(scores, labels, has_void)
            return
        if self.refined is None:  # nothing counted yet: take the other's choice, then count what is held back
            self._set_refined_layout(other.refined)
            pending, self._pending, self._pending_pixels = self._pending, [], 0
            for scores, labels, has_void in pending:
                self._count(scores, labels, has_void)
        assert self.refined is not None
        union = torch.unique(torch.cat([self.refined, other.refined]))
        chosen = union if union.numel() <= self.capacity else self._choose(
            self._bin_counts(union) + other._bin_counts(union), union, self._class_totals() + other._class_totals())
        self._set_refined(chosen)
        if torch.equal(other.refined, chosen):
            self.hist += other.hist
        else:
            copy = BinnedState(self.bits)
            copy.hist, copy.region = other.hist.clone(), other.region
            copy._set_refined_layout(other.refined)
            copy._set_refined(chosen)
            self.hist += copy.hist

    def state_dict(self, copy: bool = True) -> dict[str, Tensor]:
        """The state as plain tensors, held-back pixels included (at most ``WARMUP`` of them): a copy, or with
        ``copy=False`` the histogram itself (to be written out at once, before any more pixels: copying a 22-bit
        state's 128 MiB faults in every page of the copy)."""
        if self._pending:
            pending_scores = torch.cat([scores for scores, _, _ in self._pending])
            pending_labels = torch.cat([labels for _, labels, _ in self._pending])
        else:
            pending_scores, pending_labels = torch.zeros(0), torch.zeros(0, dtype=torch.uint8)
        return {
            "hist": self.hist.clone() if copy else self.hist,
            "refined": self.refined.clone() if self.refined is not None else torch.tensor([UNDECIDED]),
            "precision": self.precision.clone(),
            "pending_scores": pending_scores,
            "pending_labels": pending_labels,
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Replace the state by one returned from :meth:`state_dict` (same ``bits``)."""
        self._cells.clear()
        keys = {"hist", "refined", "precision", "pending_scores", "pending_labels"}
        if set(state) != keys:
            raise ValueError(f"a binned state has the keys {sorted(keys)}, got keys {sorted(state)}")
        hist = torch.as_tensor(state["hist"])
        precision = torch.as_tensor(state["precision"])
        if tuple(precision.shape) != tuple(self.precision.shape):
            raise ValueError(
                f"state 'precision' has shape {tuple(precision.shape)}, expected {tuple(self.precision.shape)}"
            )
        refined = torch.as_tensor(state["refined"]).to(torch.int64)
        undecided = refined.numel() == 1 and int(refined[0]) == UNDECIDED
        if not undecided and (
            refined.dim() != 1 or refined.numel() > self.capacity or bool((refined < 0).any())
            or bool((refined >= self.num_bins).any()) or bool((refined[1:] <= refined[:-1]).any())
        ):
            raise ValueError(
                f"state 'refined' must list at most {self.capacity} increasing coarse bins in [0, {self.num_bins})"
            )
        region = self._region_for(torch.empty(0) if undecided else refined)
        if tuple(hist.shape) != (2 * region + 1,):
            raise ValueError(
                f"state 'hist' has shape {tuple(hist.shape)}, expected {(2 * region + 1,)} (bits={self.bits}, "
                f"{0 if undecided else refined.numel()} refined bins)"
            )
        hist = hist.to(dtype=torch.int64, device="cpu", copy=True)
        slots = 0 if undecided else refined.numel()
        if bool(hist[:-1].view(2, region)[:, self.num_bins + (slots << self.sub_bits) :].any()):
            raise ValueError("state 'hist' counts pixels in sub-bins of no refined bin")
        if undecided and bool(hist.any()):
            raise ValueError("state 'hist' counts pixels before the refined bins were chosen")
        scores = torch.as_tensor(state["pending_scores"]).to(dtype=torch.float32, device="cpu", copy=True)
        labels = torch.as_tensor(state["pending_labels"]).to(dtype=torch.uint8, device="cpu", copy=True)
        if scores.dim() != 1 or scores.shape != labels.shape or (scores.numel() and not undecided):
            raise ValueError("state 'pending_scores' and 'pending_labels' must be 1-D of equal length, and empty "
                             "once the refined bins are chosen")
        self.hist, self.region = hist, region
        self.precision = precision.to(dtype=torch.int64, device="cpu", copy=True)
        self._pending, self._pending_pixels = [], 0
        self.refined, self._base = None, None
        if not undecided:
            self._set_refined_layout(refined)
        elif scores.numel():
            self._hold(scores, labels, bool((labels == VOID).any()))

    def _set_refined_layout(self, refined: Tensor, keep_counts: bool = True) -> None:
        """Adopt ``refined`` as the list of refined bins whose slots the histogram already follows; the histogram
        grows room for the slots at the first refined bin (its counts kept unless ``keep_counts`` is false)."""
        self.refined = refined.to(torch.int64).clone()
        region = self._region_for(refined)
        if region != self.region or not keep_counts:
            hist = lazy_zeros(2 * region + 1)
            if keep_counts:
                width = min(region, self.region)
                hist[:-1].view(2, region)[:, :width] = self.hist[:-1].view(2, self.region)[:, :width]
                hist[-1] = self.hist[-1]
            self.hist, self.region = hist, region
        if refined.numel() == 0:
            self._base = None
            return
        base = torch.arange(self.num_bins, dtype=torch.int32)
        base[refined] = self.num_bins + (torch.arange(refined.numel(), dtype=torch.int32) << self.sub_bits)
        self._base = base

    def sync(self) -> None:
        """Sum the state over all processes (when ``torch.distributed`` is initialised).

        While no process has chosen its refined bins, all held-back pixels are gathered (every process then holds
        them all and chooses alike); otherwise every process refines the union of the choices (or its
        ``capacity`` bins of largest class-balanced mass) before the histograms are summed.
        """
        if not is_distributed():
            return
        self._cells.clear()
        decided = torch.tensor([int(self.refined is not None)], dtype=torch.int64)
        all_reduce_sum_(decided)
        if int(decided) == 0:
            held = self.state_dict()
            scores, labels = all_gather_cat(held["pending_scores"]), all_gather_cat(held["pending_labels"])
            all_reduce_sum_(self.precision)
            self._pending, self._pending_pixels = [], 0
            if scores.numel():
                self._hold(scores, labels, bool((labels == VOID).any()))
            return
        self.flush()
        if self.refined is None:  # no pixel here
            self._set_refined_layout(torch.empty(0, dtype=torch.int64))
        assert self.refined is not None
        union = torch.unique(all_gather_cat(self.refined))
        if union.numel() > self.capacity:
            counts = all_reduce_sum_(torch.cat([self._bin_counts(union), self._class_totals().unsqueeze(1)], 1))
            union = self._choose(counts[:, :-1], union, counts[:, -1])
        self._set_refined(union)
        all_reduce_sum_(self.hist)
        all_reduce_sum_(self.precision)


def _key_values(keys: Tensor) -> Tensor:
    """The float32 values (as float64) of int32 order-preserving keys (see ``_float_bins``)."""
    flip = torch.bitwise_right_shift(keys, 31) & 0x7FFFFFFF
    return torch.bitwise_xor(keys, flip).view(torch.float32).double()
