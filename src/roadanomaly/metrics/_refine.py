"""Which coarse bins of the binned anomaly metrics to refine into sub-bins, judged from coarse counts."""

from __future__ import annotations

import torch
from torch import Tensor

from roadanomaly.metrics._curves import TPR_TARGET, error_shares

#: Error bound of the coarse cells (estimated from the held-back pixels) above which bins are refined.
TARGET_BOUND = 5e-5
#: Bins whose TPR range comes this close to 95 % count as near the FPR95 point when choosing the refined bins.
FPR95_BAND = 0.03


def occupied_bins(counts: Tensor) -> Tensor:
    """Indices of the columns of ``counts`` (two rows: in-distribution, anomaly) where either row is non-zero.

    ``logical_or`` of the rows: a reduction over the 2-long first dimension (``any(0)``) is 1.6x slower over the
    4 M columns of a 22-bit state."""
    return torch.nonzero(torch.logical_or(counts[0], counts[1])).squeeze(1)


def bins_to_refine(coarse: Tensor, zero: int, capacity: int, span: tuple[int, int] | None = None) -> Tensor:
    """The coarse bins to refine (sorted), from ``coarse``: ``(2, bins)`` in-distribution and anomaly counts;
    ``zero`` is the bin of +0.0 (bin ``zero - 1``, holding -0.0, belongs with it). ``span``: the bins
    ``[first, stop)`` outside which every count is zero, when known (only they are read).

    Nothing when the error bounds of the coarse cells (``_curves.error_shares``) all stay within ``TARGET_BOUND``:
    refining costs cache misses on every pixel. Otherwise up to ``capacity`` bins with a share of the bounds, the
    largest first (a bin's share: the largest of its three; FPR95's spread over the bins near the 95 % TPR point),
    then bins of largest class-balanced mass. Without both classes, a bin's share is taken as ``m**2 / 8``, ``m`` its
    fraction of the pixels (AUROC's share were the missing class spread like the present one).
    """
    nothing = torch.empty(0, dtype=torch.int64)
    first, stop = span or (0, coarse.shape[1])
    occupied = (occupied_bins(coarse[:, first:stop]) + first).flip(0)  # from the highest score down
    negatives, positives = coarse[:, occupied]
    below_zero = torch.nonzero(occupied == zero - 1).squeeze(1)
    if below_zero.numel() and bool((occupied == zero).any()):  # -0.0 and +0.0 are one cell: bin zero's
        j = int(below_zero)
        negatives[j - 1] += negatives[j]
        positives[j - 1] += positives[j]
        keep = occupied != zero - 1
        occupied, negatives, positives = occupied[keep], negatives[keep], positives[keep]
    num_pos, num_neg = int(positives.sum()), int(negatives.sum())
    if num_pos and num_neg:
        shares = error_shares(positives, negatives, torch.zeros(occupied.numel(), dtype=torch.bool))
        if max(float(share.sum()) for share in shares.values()) <= TARGET_BOUND:
            return nothing
        # Where the 95 % TPR point falls moves with more pixels: FPR95's share goes to every bin near it.
        tpr = torch.cumsum(positives, 0).double() / num_pos
        near = (tpr >= TPR_TARGET - FPR95_BAND) & (tpr - positives / num_pos < TPR_TARGET + FPR95_BAND)
        shares["fpr95"] = near * negatives.double() / num_neg
        share = torch.stack(list(shares.values())).amax(0)
    else:
        fraction = (positives + negatives).double() / float(num_pos + num_neg)
        share = fraction**2 / 8.0
        if float(share.sum()) <= TARGET_BOUND:
            return nothing
    # Refining anything costs about as much as refining all we can: take up to capacity bins, largest share
    # first, then (bins that may gain a share with more pixels) largest class-balanced mass.
    mass = negatives.double() / max(num_neg, 1) + positives.double() / max(num_pos, 1)
    by_mass = torch.sort(mass, descending=True, stable=True).indices
    by_share = torch.sort(share, descending=True, stable=True).indices[: int((share > 0).sum())]
    chosen = occupied[torch.cat([by_share, by_mass[share[by_mass] == 0]])[: capacity - 1]]
    if bool((chosen == zero).any()):
        chosen = torch.cat([chosen, torch.tensor([zero - 1])])
    return torch.sort(chosen).values


def largest_mass(counts: Tensor, candidates: Tensor, totals: Tensor, capacity: int) -> Tensor:
    """The ``capacity`` bins of largest class-balanced mass among ``candidates`` (sorted), given their
    ``(2, len(candidates))`` counts of in-distribution and anomaly pixels and the ``totals`` of each class. A bin's
    class-balanced mass is the sum over both classes of its pixels over the class total."""
    mass = (counts.double() / totals.clamp(min=1).double().unsqueeze(1)).sum(0)
    order = torch.sort(mass, descending=True, stable=True).indices[:capacity]
    return torch.sort(candidates[order].to(torch.int64)).values
