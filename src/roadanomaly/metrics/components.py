"""Component-level anomaly metrics as SegmentMeIfYouCan (SMIYC) defines them: sIoU, PPV and mean F1.

Per frame, with a score threshold ``t``:

1. Predicted anomaly = ``score > t`` (strictly, as the SMIYC toolkit) on non-void pixels; ground truth = label 1.
2. Both are split into 8-connected components. Predicted components smaller than ``min_pred_size`` pixels are
   dropped; ground-truth components smaller than ``min_gt_size`` pixels become void (as do their predicted pixels).
   SMIYC uses 500 / 100 pixels on the anomaly track and 50 / 10 on the obstacle track (:data:`TRACK_SIZES`).
3. sIoU of a ground-truth component G: ``|G n P| / |G u P|`` where P is the union of the predicted components that
   touch G, minus their pixels that lie on *other* ground-truth components (the "adjusted" union).
4. PPV of a predicted component: the share of its (non-void) pixels on ground-truth anomaly.

Over a dataset, for each ``tau`` in 0.25, 0.30, ..., 0.75: TP = ground-truth components with sIoU >= tau,
FN = those with sIoU < tau, FP = predicted components with PPV < tau, F1 = 2TP / (2TP + FN + FP).
``mean_f1`` averages the eleven F1; ``siou`` and ``ppv`` are means over all components of the dataset. Every part of
the state is a sum over frames, so evaluations combine by addition.

The threshold. The toolkit first computes the pixel curve of the dataset and uses its best-F1 threshold, so the
component pass needs all data first. :class:`ComponentMetric` therefore works in one of two ways:

- ``threshold=<float>``: streaming; each frame is reduced to counts at once (constant memory).
- ``threshold=None`` or a *threshold source* (an object with a ``best_f1_threshold()`` method, e.g. the pixel
  metric fed the same frames): frames are kept, cropped to their non-void bounding box, in memory up to
  ``memory_limit`` bytes and in a temporary folder beyond, and reduced once the threshold is known, at the first
  :meth:`~ComponentMetric.compute`, :meth:`~ComponentMetric.state_dict` or :meth:`~ComponentMetric.sync`. With
  ``None`` the threshold is the exact pixel best-F1 threshold of the kept frames (:func:`best_f1_threshold`).

Two toolkit details are not reproduced: when fewer than ``min_gt_size`` pixels of a frame are *not* anomaly, the
toolkit voids them all (its size filter also visits the background label; impossible on real frames), and its
best-F1 threshold indexes the uncollapsed threshold list (see :mod:`roadanomaly.metrics.smiyc`).
"""

from __future__ import annotations

import math
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from roadanomaly.metrics._distributed import all_reduce_sum_, is_distributed
from roadanomaly.metrics._inputs import (
    ANOMALY,
    VOID,
    ArrayLike,
    anomaly_labels_as_uint8,
    as_cpu_tensor,
    check_no_nan,
    check_same_shape,
)

#: The sIoU / PPV thresholds of the F1 scores: 0.25, 0.30, ..., 0.75 (the toolkit's ``linspace``, bit for bit).
SIOU_THRESHOLDS: np.ndarray = np.linspace(0.25, 0.75, 11, endpoint=True)

#: (smallest kept predicted component, smallest kept ground-truth component) in pixels, per SMIYC track.
TRACK_SIZES: dict[str, tuple[int, int]] = {"anomaly": (500, 100), "obstacle": (50, 10)}

_EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)
_STATE_KEYS = ("counts", "components", "sums", "threshold")


class ThresholdSource(Protocol):
    """Anything that can tell the pixel-level best-F1 threshold once it has seen all frames."""

    def best_f1_threshold(self) -> float: ...


@dataclass(frozen=True)
class FrameComponents:
    """The components of one frame: sIoU of each ground-truth component, PPV of each predicted one."""

    siou: np.ndarray  # float64, one per kept ground-truth component
    ppv: np.ndarray  # float64, one per predicted component with pixels in the region of interest


def frame_components(
    scores: np.ndarray, labels: np.ndarray, threshold: float, min_pred_size: int, min_gt_size: int
) -> FrameComponents:
    """sIoU and PPV of the components of one frame (2-D ``scores`` and uint8 ``labels`` in {0, 1, 255})."""
    valid = labels != VOID
    gt, _ = ndimage.label(labels == ANOMALY, structure=_EIGHT_NEIGHBOURS)
    pred, _ = ndimage.label((scores > threshold) & valid, structure=_EIGHT_NEIGHBOURS)
    gt_sizes = np.bincount(gt.ravel())
    pred_sizes = np.bincount(pred.ravel())
    kept_pred = pred_sizes >= min_pred_size
    kept_pred[0] = False
    small_gt = gt_sizes < min_gt_size
    small_gt[0] = False
    roi = valid & ~small_gt[gt]
    g = gt[roi].astype(np.int64)
    p = np.where(kept_pred[pred[roi]], pred[roi], 0).astype(np.int64)

    # Overlap counts of (ground-truth id, predicted id) pairs, sparse: only the pairs that occur.
    touched = (g > 0) | (p > 0)
    width = int(p.max(initial=0)) + 1
    pairs, overlap = np.unique(g[touched] * width + p[touched], return_counts=True)
    pair_g, pair_p = pairs // width, pairs % width

    # sIoU of ground-truth component i: the adjusted union |G_i| + sum over the predicted components P touching
    # G_i of |P| - |P n G_i| - |P n other GT| equals |G_i| + sum of |P n background|.
    gt_ids = np.flatnonzero(gt_sizes * ~small_gt)
    gt_ids = gt_ids[gt_ids > 0]
    on_gt = (pair_g > 0) & (pair_p > 0)
    intersection = np.zeros(len(gt_sizes), np.int64)
    np.add.at(intersection, pair_g[on_gt], overlap[on_gt])
    background_of_pred = np.zeros(width, np.int64)
    on_background = (pair_g == 0) & (pair_p > 0)
    background_of_pred[pair_p[on_background]] = overlap[on_background]
    union = gt_sizes.astype(np.int64)
    np.add.at(union, pair_g[on_gt], background_of_pred[pair_p[on_gt]])
    siou = intersection[gt_ids] / union[gt_ids]

    # PPV of predicted component j: its pixels on ground truth over its pixels in the region of interest.
    size_in_roi = np.zeros(width, np.int64)
    hit = np.zeros(width, np.int64)
    np.add.at(size_in_roi, pair_p, overlap)
    np.add.at(hit, pair_p[on_gt], overlap[on_gt])
    pred_ids = np.flatnonzero(size_in_roi)
    pred_ids = pred_ids[pred_ids > 0]
    ppv = hit[pred_ids] / size_in_roi[pred_ids]
    return FrameComponents(siou.astype(np.float64), ppv.astype(np.float64))


def best_f1_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The largest ``t`` for which ``score > t`` is a pixel set of maximal F1 (labels 0/1; void already removed).

    Raises ``ValueError`` without anomaly pixels. When predicting every pixel is best, returns ``-inf``.
    """
    scores, labels = np.asarray(scores).ravel(), np.asarray(labels).ravel()
    positives = int(np.count_nonzero(labels == ANOMALY))
    if positives == 0:
        raise ValueError("cannot choose a best-F1 threshold: no anomaly (label 1) pixels")
    order = np.argsort(-scores.astype(np.float64), kind="stable")
    ordered = scores[order].astype(np.float64)
    tp = np.cumsum(labels[order] == ANOMALY)
    last_of_group = np.flatnonzero(np.append(ordered[1:] != ordered[:-1], True))
    tp_at, predicted_at = tp[last_of_group], last_of_group + 1
    f1 = 2.0 * tp_at / (predicted_at + positives)
    best = int(np.argmax(f1))
    return float(ordered[last_of_group[best] + 1]) if best + 1 < len(last_of_group) else -math.inf


class _FrameStore:
    """Frames (scores, labels) kept until the threshold is known: in memory up to a limit, then in a temp folder."""

    def __init__(self, memory_limit: int) -> None:
        self.memory_limit = memory_limit
        self.frames: list[tuple[np.ndarray, np.ndarray] | Path] = []
        self.in_memory = 0
        self._folder: Path | None = None

    def add(self, scores: np.ndarray, labels: np.ndarray) -> None:
        valid = labels != VOID
        rows, cols = np.flatnonzero(valid.any(1)), np.flatnonzero(valid.any(0))
        if rows.size == 0:
            return  # nothing valid: no component of either kind
        box = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
        scores, labels = np.array(scores[box]), np.array(labels[box])
        size = scores.nbytes + labels.nbytes
        if self.in_memory + size <= self.memory_limit:
            self.frames.append((scores, labels))
            self.in_memory += size
            return
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="roadanomaly-components-"))
            weakref.finalize(self, shutil.rmtree, self._folder, ignore_errors=True)
        path = self._folder / f"{len(self.frames):07d}.npz"
        np.savez(path, scores=scores, labels=labels)
        self.frames.append(path)

    def __iter__(self):
        for frame in self.frames:
            if isinstance(frame, Path):
                with np.load(frame) as data:
                    yield data["scores"], data["labels"]
            else:
                yield frame

    def __len__(self) -> int:
        return len(self.frames)

    def extend(self, other: "_FrameStore") -> None:
        for scores, labels in other:
            self.add(scores, labels)

    def clear(self) -> None:
        for frame in self.frames:
            if isinstance(frame, Path):
                frame.unlink(missing_ok=True)
        self.frames, self.in_memory = [], 0


class ComponentMetric:
    """Streaming SMIYC component metrics (sIoU, PPV, mean F1), fed one frame per :meth:`update`.

    ``compute()`` returns ``{"siou", "ppv", "mean_f1", "f1_25", "f1_50", "f1_75", "gt_components",
    "predicted_components", "component_threshold"}`` (None where undefined: no ground-truth component for
    ``siou``, no predicted one for ``ppv``, neither for the F1 scores). See the module docstring for ``threshold``.
    """

    def __init__(
        self,
        min_pred_size: int = TRACK_SIZES["anomaly"][0],
        min_gt_size: int = TRACK_SIZES["anomaly"][1],
        threshold: float | ThresholdSource | None = None,
        *,
        score_dtype: torch.dtype | None = None,
        memory_limit: int = 256 << 20,
    ) -> None:
        if min_pred_size < 0 or min_gt_size < 0:
            raise ValueError(f"component sizes must be >= 0, got {min_pred_size} and {min_gt_size}")
        self.min_pred_size, self.min_gt_size = int(min_pred_size), int(min_gt_size)
        self.score_dtype = score_dtype
        self._fixed = float(threshold) if isinstance(threshold, (int, float)) else None
        self._source = None if isinstance(threshold, (int, float)) else threshold
        self._pending = _FrameStore(memory_limit)
        self.reset()

    @classmethod
    def for_track(cls, track: str, threshold: float | ThresholdSource | None = None, **kwargs) -> "ComponentMetric":
        """The metric with the component sizes of SMIYC's ``"anomaly"`` or ``"obstacle"`` track."""
        if track not in TRACK_SIZES:
            raise ValueError(f"unknown track {track!r} (known: {', '.join(TRACK_SIZES)})")
        return cls(*TRACK_SIZES[track], threshold, **kwargs)

    # state ----------------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every frame."""
        self.counts = torch.zeros(3, len(SIOU_THRESHOLDS), dtype=torch.int64)  # TP, FN, FP per tau
        self.components = torch.zeros(2, dtype=torch.int64)  # ground-truth, predicted
        self.sums = torch.zeros(2, dtype=torch.float64)  # sum of sIoU, sum of PPV
        self.threshold: float | None = self._fixed  # the threshold the counts were made with
        self._pending.clear()

    def update(self, scores: ArrayLike, labels: ArrayLike) -> None:
        """Add one frame: 2-D ``scores`` (or a leading batch dimension of 1) and ``labels`` in {0, 1, 255}."""
        score_t, label_t = as_cpu_tensor(scores, "scores"), as_cpu_tensor(labels, "labels")
        check_same_shape(score_t, label_t, ("scores", "labels"))
        if score_t.dim() == 3 and score_t.shape[0] == 1:
            score_t, label_t = score_t[0], label_t[0]
        if score_t.dim() != 2:
            raise ValueError(f"component metrics take one 2-D frame per update, got shape {tuple(score_t.shape)}")
        check_no_nan(score_t.reshape(-1))
        label_t = anomaly_labels_as_uint8(label_t.reshape(-1))[0].view(label_t.shape)
        if self.score_dtype is not None:
            score_t = score_t.to(self.score_dtype)
        elif score_t.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds every value exactly
            score_t = score_t.float()
        if self._fixed is not None:
            self._add(frame_components(score_t.numpy(), label_t.numpy(), self._fixed, self.min_pred_size,
                                       self.min_gt_size))
        else:
            self._pending.add(score_t.numpy(), label_t.numpy())

    def _add(self, frame: FrameComponents) -> None:
        siou, ppv = frame.siou, frame.ppv
        passed = siou[None, :] >= SIOU_THRESHOLDS[:, None]
        tp = passed.sum(1)
        fp = (ppv[None, :] < SIOU_THRESHOLDS[:, None]).sum(1)
        self.counts += torch.from_numpy(np.stack([tp, len(siou) - tp, fp]).astype(np.int64))
        self.components += torch.tensor([len(siou), len(ppv)], dtype=torch.int64)
        self.sums += torch.tensor([siou.sum(), ppv.sum()], dtype=torch.float64)

    def resolve(self) -> None:
        """Reduce the kept frames with the threshold, now that all frames are in (no-op when none are kept)."""
        if not len(self._pending):
            return
        threshold = self._resolve_threshold()
        if self.threshold is not None and self.threshold != threshold and int(self.components.sum()):
            raise ValueError(f"counts made with threshold {self.threshold} cannot take frames at {threshold}")
        self.threshold = threshold
        for scores, labels in self._pending:
            self._add(frame_components(scores, labels, threshold, self.min_pred_size, self.min_gt_size))
        self._pending.clear()

    def _resolve_threshold(self) -> float:
        if self._fixed is not None:
            return self._fixed
        if self._source is not None:
            return float(self._source.best_f1_threshold())
        if is_distributed():
            raise ValueError("give a shared threshold or threshold source to use component metrics across processes")
        scores = np.concatenate([s[l != VOID].astype(np.float64) for s, l in self._pending])
        labels = np.concatenate([l[l != VOID] for _, l in self._pending])
        return best_f1_threshold(scores, labels)

    def compute(self) -> dict[str, float | int | None]:
        """The component metrics of every frame so far (see the class docstring).

        Raises ``ValueError`` when the threshold is to come from the pixel curve and there is no anomaly pixel.
        """
        self.resolve()
        tp, fn, fp = (self.counts[i].double() for i in range(3))
        denominator = 2 * tp + fn + fp
        f1 = None if bool((denominator == 0).any()) else (2 * tp / denominator).tolist()
        n_gt, n_pred = (int(v) for v in self.components)
        at = {round(float(t) * 100): i for i, t in enumerate(SIOU_THRESHOLDS)}
        return {
            "siou": float(self.sums[0]) / n_gt if n_gt else None,
            "ppv": float(self.sums[1]) / n_pred if n_pred else None,
            "mean_f1": None if f1 is None else float(np.mean(f1)),
            **{f"f1_{k}": None if f1 is None else f1[at[k]] for k in (25, 50, 75)},
            "gt_components": n_gt,
            "predicted_components": n_pred,
            "component_threshold": self.threshold,
        }

    def merge(self, other: "ComponentMetric") -> "ComponentMetric":
        """Add the frames of ``other`` (same component sizes and threshold); returns self."""
        if not isinstance(other, ComponentMetric) or (other.min_pred_size, other.min_gt_size) != (
            self.min_pred_size, self.min_gt_size):
            raise ValueError("can only merge a ComponentMetric with the same component sizes")
        counted = bool(other.components.any())
        if counted and self.threshold is not None and other.threshold != self.threshold:
            raise ValueError(f"cannot merge counts made at thresholds {self.threshold} and {other.threshold}")
        if counted:
            self.threshold = other.threshold
        self.counts += other.counts
        self.components += other.components
        self.sums += other.sums
        self._pending.extend(other._pending)
        return self

    def state_dict(self) -> dict[str, Tensor]:
        """The (resolved) state as plain tensors: sums over frames, plus the threshold they were made with."""
        self.resolve()
        threshold = math.nan if self.threshold is None else self.threshold
        return {"counts": self.counts.clone(), "components": self.components.clone(), "sums": self.sums.clone(),
                "threshold": torch.tensor([threshold], dtype=torch.float64)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Replace the state (and drop any kept frame) by one returned from :meth:`state_dict`."""
        if set(state) != set(_STATE_KEYS):
            raise ValueError(f"a component state has the keys {list(_STATE_KEYS)}, got keys {sorted(state)}")
        shapes = {"counts": tuple(self.counts.shape), "components": (2,), "sums": (2,), "threshold": (1,)}
        for key, shape in shapes.items():
            if tuple(torch.as_tensor(state[key]).shape) != shape:
                raise ValueError(f"state {key!r} has shape {tuple(torch.as_tensor(state[key]).shape)}, expected {shape}")
        threshold = float(state["threshold"][0])
        if self._fixed is not None and not math.isnan(threshold) and threshold != self._fixed:
            raise ValueError(f"state made at threshold {threshold}, this metric uses {self._fixed}")
        self._pending.clear()
        self.counts = torch.as_tensor(state["counts"]).to(torch.int64, copy=True)
        self.components = torch.as_tensor(state["components"]).to(torch.int64, copy=True)
        self.sums = torch.as_tensor(state["sums"]).to(torch.float64, copy=True)
        self.threshold = None if math.isnan(threshold) else threshold

    def sync(self) -> None:
        """Reduce kept frames, then sum the state over all ``torch.distributed`` processes (no-op otherwise).

        With a threshold source, sync the source first so that every process uses the same threshold.
        """
        self.resolve()
        for tensor in (self.counts, self.components, self.sums):
            all_reduce_sum_(tensor)

    def __repr__(self) -> str:
        how = self._fixed if self._fixed is not None else ("best F1" if self._source is None else "from source")
        return f"ComponentMetric(min_pred_size={self.min_pred_size}, min_gt_size={self.min_gt_size}, threshold={how})"


def component_metrics(
    frames: list[tuple[ArrayLike, ArrayLike]],
    threshold: float | None = None,
    track: str = "anomaly",
) -> dict[str, float | int | None]:
    """One-shot component metrics of ``[(scores, labels), ...]`` frames; ``threshold=None`` = exact pixel best F1."""
    metric = ComponentMetric.for_track(track, threshold)
    for scores, labels in frames:
        metric.update(scores, labels)
    return metric.compute()
