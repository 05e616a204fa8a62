"""Turning user inputs (torch tensors or numpy arrays) into flat CPU tensors, with the checks all metrics share."""

from __future__ import annotations

from typing import Union

import numpy as np
import torch
from torch import Tensor

ArrayLike = Union[Tensor, np.ndarray]

#: Label values accepted by the anomaly metrics.
IN_DISTRIBUTION = 0
ANOMALY = 1
VOID = 255

_MAX_LISTED = 10

#: Pixels per step of the per-pixel passes. torch runs an element-wise op on at most this many elements (its
#: parallel grain size) on the calling thread, without an OpenMP parallel region. On a busy machine (data-loader
#: workers, other jobs) every parallel region can wait a whole scheduler time slice for its threads: with larger
#: steps, 50 M pixels took 4-18 s instead of 0.7-2.3 s on 2 busy cores. The steps' buffers also stay in L1/L2.
STEP = 1 << 15


def steps(n: int) -> range:
    """Start offsets of the steps over ``n`` elements."""
    return range(0, n, STEP)


def as_cpu_tensor(x: ArrayLike, name: str) -> Tensor:
    """Return ``x`` as a CPU tensor of the same shape, sharing memory when possible (numpy arrays are not copied)."""
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "biuf":
            raise TypeError(f"{name}: unsupported numpy dtype {x.dtype}")
        if not x.dtype.isnative or not x.flags.c_contiguous or not x.flags.writeable:
            # torch shares only native, C-ordered memory; read-only arrays are copied rather than shared (nothing
            # here writes to inputs, but torch warns about them)
            x = np.array(x, dtype=x.dtype.newbyteorder("="), order="C")
        t = torch.from_numpy(x)
    elif isinstance(x, Tensor):
        t = x.detach()
    else:
        raise TypeError(f"{name}: expected a torch.Tensor or numpy.ndarray, got {type(x).__name__}")
    if t.is_complex():
        raise TypeError(f"{name}: complex dtype {t.dtype} is not supported")
    return t.cpu()


def as_flat_tensors(a: ArrayLike, b: ArrayLike, names: tuple[str, str]) -> tuple[Tensor, Tensor]:
    """Both inputs as 1-D CPU tensors, after checking that they have the same shape."""
    ta, tb = as_cpu_tensor(a, names[0]), as_cpu_tensor(b, names[1])
    check_same_shape(ta, tb, names)
    return ta.reshape(-1), tb.reshape(-1)


def check_same_shape(a: Tensor, b: Tensor, names: tuple[str, str]) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` have the same shape."""
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def check_no_nan(scores: Tensor) -> None:
    """Raise ``ValueError`` if any score is NaN."""
    if not scores.is_floating_point() or scores.numel() == 0:
        return
    # One pass, no temporary: a sum is NaN iff there is a NaN (or both +inf and -inf: then look closer).
    sums = torch.stack([torch.sum(scores[i : i + STEP]) for i in steps(scores.numel())])
    if not bool(torch.isnan(sums).any()):
        return
    count = int(torch.isnan(scores).sum())
    if count:
        raise ValueError(f"scores contain {count} NaN value(s); every score must be a number")


def describe_values(values: Tensor) -> str:
    """A short, readable list of the distinct values in ``values`` (at most a few)."""
    distinct = torch.unique(values)
    shown = ", ".join(_format_number(v) for v in distinct[:_MAX_LISTED].tolist())
    if distinct.numel() > _MAX_LISTED:
        shown += f", ... ({distinct.numel()} distinct values)"
    return shown


def _format_number(v: float | int | bool) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def anomaly_labels_as_uint8(labels: Tensor) -> tuple[Tensor, bool]:
    """Check that ``labels`` only holds 0, 1 and 255; return them as ``uint8`` (no copy if already) and whether
    any is void."""
    if labels.numel() == 0 or labels.dtype == torch.bool:
        return labels.to(torch.uint8), False
    if labels.dtype == torch.uint8:
        # Read as int8, the valid values 0, 1 and 255 are exactly those in [-1, 1]: one pass, no temporary.
        as_int8 = labels.view(torch.int8)
        ranges = torch.stack([torch.stack(torch.aminmax(as_int8[i : i + STEP])) for i in steps(labels.numel())])
        low, high = int(ranges[:, 0].min()), int(ranges[:, 1].max())
        if low >= -1 and high <= 1:
            return labels, low == -1
    bad = (labels != IN_DISTRIBUTION) & (labels != ANOMALY) & (labels != VOID)
    if bool(bad.any()):
        raise ValueError(
            "labels must be 0 (in-distribution), 1 (anomaly) or 255 (void); "
            f"found {describe_values(labels[bad])}"
        )
    return labels.to(torch.uint8), bool((labels == VOID).any())
