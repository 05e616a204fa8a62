"""Best and worst images per (dataset, method): an evaluation observer that keeps k thumbnails of each.

The engine calls :meth:`ExtremesRecorder.on_image` for every image, :meth:`~ExtremesRecorder.on_dataset_end` after
each dataset and :meth:`~ExtremesRecorder.finish` with the results document. Images are ranked by their own AuPRC
(average precision of the score against the anomaly pixels, void ignored), computed on a thumbnail whose longer
side is at most ``max_side``; images without an anomaly pixel are not ranked. Only the k best and k worst
thumbnails of the current dataset are held; a dataset's overlays are written when it ends. An image among the
best is not listed again among the worst (which then holds fewer than k when a dataset has under 2k images).
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from roadanomaly.labels import ANOMALY, VOID
from roadanomaly.report.render import (
    overlay,
    resize_image,
    resize_label,
    resize_score,
    save_png,
    slug,
    thumbnail_size,
)

OVERLAYS_DIR = "overlays"


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Average precision (as sklearn's ``average_precision_score``): sum over thresholds of ΔRecall x Precision.

    Tied scores form one threshold. Raises ValueError when there is no positive.
    """
    scores = np.asarray(scores).ravel()
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)  # negating unsigned integers would wrap around
    positives = np.asarray(positives, dtype=bool).ravel()
    total = int(positives.sum())
    if total == 0:
        raise ValueError("average precision needs at least one positive")
    order = np.argsort(-scores)  # any order inside a run of ties: only each run's end is read
    scores, positives = scores[order], positives[order]
    ends = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]  # last index of each run of equal scores
    true_pos = np.cumsum(positives)[ends]
    precision = true_pos / (ends + 1)
    recall = true_pos / total
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


@dataclass
class OverlayEntry:
    """One written overlay, as recorded in the document's ``overlays["items"]``."""

    dataset: str
    method: str
    kind: str  # "best" or "worst"
    rank: int  # 1 = the best (or the worst) image
    image: str  # the source image path
    auprc: float
    path: str  # PNG path relative to the report folder


@dataclass
class _Thumb:
    image_path: str
    image: np.ndarray  # (h, w, 3) uint8
    label: np.ndarray  # (h, w) uint8
    score: np.ndarray  # (h, w) float32


class ExtremesRecorder:
    """Keeps the ``k`` best and ``k`` worst images of each (dataset, method) and writes their overlays."""

    def __init__(self, out_dir: str | Path, k: int = 3, max_side: int = 512) -> None:
        if k < 1 or max_side < 1:
            raise ValueError("k and max_side must be positive")
        self.out_dir = Path(out_dir)
        self.k, self.max_side = k, max_side
        self.entries: list[OverlayEntry] = []
        self._best: dict[tuple[str, str], list] = {}
        self._worst: dict[tuple[str, str], list] = {}
        self._order = itertools.count()

    def on_image(self, dataset: str, image_path: str, image: Any, label: Any, scores: dict[str, Any]) -> None:
        """Rank one image under every method; keep its thumbnail only where it is among the k best or worst."""
        label = _numpy(label).astype(np.uint8)
        if not (label == ANOMALY).any():
            return
        size = thumbnail_size(*label.shape, self.max_side)
        small_label = resize_label(label, size)
        small_image: np.ndarray | None = None
        for method, score in scores.items():
            score = _numpy(score).astype(np.float32)
            small_score = resize_score(score, size)
            ap = self._image_ap(small_score, small_label, score, label)
            key = (dataset, method)
            best, worst = self._best.setdefault(key, []), self._worst.setdefault(key, [])
            order = next(self._order)
            keep_best = len(best) < self.k or ap > best[0][0]
            keep_worst = len(worst) < self.k or -ap > worst[0][0]
            if not (keep_best or keep_worst):
                continue
            if small_image is None:
                small_image = resize_image(np.ascontiguousarray(_numpy(image).transpose(1, 2, 0)), size)
            thumb = _Thumb(str(image_path), small_image, small_label, small_score)
            if keep_best:
                _push(best, (ap, -order, thumb), self.k)
            if keep_worst:
                _push(worst, (-ap, -order, thumb), self.k)

    @staticmethod
    def _image_ap(small_score: np.ndarray, small_label: np.ndarray, score: np.ndarray, label: np.ndarray) -> float:
        valid = small_label != VOID
        if (small_label[valid] == ANOMALY).any():
            return average_precision(small_score[valid], small_label[valid] == ANOMALY)
        valid = label != VOID  # the anomaly vanished in the thumbnail: rank at full resolution
        return average_precision(score[valid], label[valid] == ANOMALY)

    def on_dataset_end(self, dataset: str) -> None:
        """Write the overlays of ``dataset`` and drop its thumbnails."""
        for key in [k for k in self._best if k[0] == dataset]:
            best, worst = self._best.pop(key), self._worst.pop(key)
            ranked_best = sorted(best, key=lambda e: (-e[0], -e[1]))
            shown = {e[2].image_path for e in ranked_best}  # with under 2k images, best and worst do not repeat
            ranked_worst = sorted((e for e in worst if e[2].image_path not in shown), key=lambda e: (-e[0], -e[1]))
            for kind, ranked, sign in (("best", ranked_best, 1.0), ("worst", ranked_worst, -1.0)):
                for rank, (value, _, thumb) in enumerate(ranked, start=1):
                    self.entries.append(self._write(key, kind, rank, sign * value, thumb))

    def _write(self, key: tuple[str, str], kind: str, rank: int, ap: float, thumb: _Thumb) -> OverlayEntry:
        dataset, method = key
        name = f"{kind}{rank}_{slug(Path(thumb.image_path).stem)}.png"
        relative = Path(OVERLAYS_DIR) / slug(dataset) / slug(method) / name
        save_png(self.out_dir / relative, overlay(thumb.image, thumb.score, thumb.label))
        return OverlayEntry(dataset, method, kind, rank, thumb.image_path, ap, relative.as_posix())

    def finish(self, document: Any) -> None:
        """Write what is left and record every overlay in ``document.extras["overlays"]`` (JSON: ``"overlays"``).

        The record is ``{"root": report folder, "items": [OverlayEntry as a dict, ...]}``.
        """
        for dataset in list(dict.fromkeys(k[0] for k in self._best)):
            self.on_dataset_end(dataset)
        extras = _extras(document)
        extras["overlays"] = {"root": str(self.out_dir.resolve()), "items": [asdict(e) for e in self.entries]}


def _push(heap: list, item: tuple, k: int) -> None:
    if len(heap) < k:
        heapq.heappush(heap, item)
    else:
        heapq.heapreplace(heap, item)


def _numpy(array: Any) -> np.ndarray:
    detach = getattr(array, "detach", None)
    return detach().cpu().numpy() if callable(detach) else np.asarray(array)


def _extras(document: Any) -> dict[str, Any]:
    """Where extra fields go: a ResultsDocument's ``extras``; the top level of its plain-dict form."""
    if isinstance(document, dict):
        return document
    return document.extras
