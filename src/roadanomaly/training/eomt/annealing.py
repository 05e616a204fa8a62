"""Mask annealing: the probability that block j's masked attention is applied, as a function of the step.

p_j(step) = 1 before ``starts[j]``, 0 from ``ends[j]`` on, and (1 - (step - start) / (end - start)) ** power in
between. Per (image, query) the mask is dropped with probability 1 - p_j; at p_j = 0 no mask is built at all.
"""

from __future__ import annotations

from typing import Sequence


def mask_probability(step: int, start: int, end: int, power: float = 0.9) -> float:
    """p(step) for one block."""
    if step < start:
        return 1.0
    if step >= end:
        return 0.0
    return (1.0 - (step - start) / (end - start)) ** power


def mask_probabilities(step: int, starts: Sequence[int], ends: Sequence[int], power: float = 0.9) -> list[float]:
    """p_j(step) for every query block j."""
    if len(starts) != len(ends):
        raise ValueError(f"{len(starts)} annealing starts but {len(ends)} ends")
    for start, end in zip(starts, ends):
        if end <= start:
            raise ValueError(f"annealing must end after it starts, got start {start} end {end}")
    return [mask_probability(step, s, e, power) for s, e in zip(starts, ends)]
