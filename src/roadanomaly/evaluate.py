"""Evaluation loops. Data flows one way: image -> model outputs -> pixel scores -> metric accumulators -> results."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from roadanomaly.data.bundle import ANOMALY, AnomalyBundle
from roadanomaly.data.labels import NUM_CLASSES
from roadanomaly.errors import UserError
from roadanomaly.inference import Predictor
from roadanomaly.metrics import AnomalyMetric, ConfusionMatrix
from roadanomaly.outputs import PixelOutputs
from roadanomaly.protocol import EvalProtocol
from roadanomaly.scoring import available_methods, compute_scores


@dataclass
class AnomalyResult:
    """One row of the results table: a method's metrics on one dataset (fractions in [0, 1])."""

    dataset: str
    method: str
    auprc: float | None
    fpr95: float | None
    auroc: float | None
    pixels: int
    anomaly_pixels: int
    images: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Prepared(Dataset):
    """Reads and resizes samples (in loader workers); a user error travels back as a message, not an exception."""

    def __init__(self, source: Sequence, protocol: EvalProtocol, label_of: Callable[[Any], np.ndarray]) -> None:
        self.source, self.protocol, self.label_of = source, protocol, label_of

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str] | str:
        try:
            sample = self.source[index]
        except UserError as error:
            return str(error)
        image, label = self.protocol.prepare(sample.image, self.label_of(sample))
        image = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)
        return image, torch.from_numpy(np.array(label, copy=True)), str(sample.image_path)


def _batches(
    source: Sequence, protocol: EvalProtocol, label_of: Callable[[Any], np.ndarray], workers: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor, str]]:
    loader = DataLoader(_Prepared(source, protocol, label_of), batch_size=None, num_workers=workers)
    for item in loader:
        if isinstance(item, str):
            raise UserError(None, item)
        yield item


def forward(predictor: Predictor, image: torch.Tensor, label_size: tuple[int, int]) -> PixelOutputs:
    """One forward pass for one (3, H, W) uint8 image, outputs at the label's resolution."""
    return predictor(image[None]).resized(label_size)


def evaluate_bundle(
    predictor: Predictor,
    bundle: AnomalyBundle,
    methods: Sequence[str] | None,
    protocol: EvalProtocol,
    metric_mode: str = "binned",
    workers: int = 0,
    progress: bool = True,
) -> list[AnomalyResult]:
    """Score every image of ``bundle`` once and return one result per method (all methods share each forward pass)."""
    metrics: dict[str, AnomalyMetric] = {}
    images = 0
    bar = tqdm(total=len(bundle), desc=bundle.name, unit="img", disable=not progress, leave=True, dynamic_ncols=True)
    for image, label, _ in _batches(bundle, protocol, lambda s: s.label, workers):
        bar.update(1)
        if protocol.skip_no_anomaly and not bool((label == ANOMALY).any()):
            continue
        outputs = forward(predictor, image, tuple(label.shape))
        if not metrics:
            metrics = {m: AnomalyMetric(mode=metric_mode) for m in _checked_methods(methods, outputs)}
        scores = compute_scores(outputs, list(metrics), protocol.scoring)
        for name, metric in metrics.items():
            metric.update(scores[name][0], label)
        images += 1
    bar.close()
    if images == 0:
        raise UserError(bundle.folder, "no image left to evaluate (all skipped: none has an anomaly pixel)")
    return [_result(bundle.name, name, metric, images) for name, metric in metrics.items()]


def _checked_methods(methods: Sequence[str] | None, outputs: PixelOutputs) -> list[str]:
    available = available_methods(outputs)
    unknown = [m for m in methods or () if m not in available]
    if unknown:
        raise UserError(None, f"method {unknown[0]!r} is not defined for this model (available: {', '.join(available)})")
    return list(methods or available)


def _result(dataset: str, method: str, metric: AnomalyMetric, images: int) -> AnomalyResult:
    try:
        values = metric.compute()
    except ValueError:  # no anomaly (or no inlier) pixel at all: the curves are undefined
        values = {}
    return AnomalyResult(
        dataset=dataset,
        method=method,
        auprc=_maybe_float(values.get("auprc")),
        fpr95=_maybe_float(values.get("fpr95")),
        auroc=_maybe_float(values.get("auroc")),
        pixels=metric.pixels,
        anomaly_pixels=metric.anomaly_pixels,
        images=images,
    )


def _maybe_float(value: Any) -> float | None:
    return None if value is None else float(value)


def evaluate_segmentation(
    predictor: Predictor, dataset: Sequence, protocol: EvalProtocol, workers: int = 0, progress: bool = True
) -> dict[str, Any]:
    """Cityscapes-style mIoU of the predictor's argmax over the 19 classes (label 255 ignored)."""
    matrix = ConfusionMatrix(num_classes=NUM_CLASSES, ignore_index=255)
    for image, label, _ in tqdm(
        _batches(dataset, protocol, lambda s: s.train_ids, workers),
        total=len(dataset),
        desc="mIoU",
        unit="img",
        disable=not progress,
        dynamic_ncols=True,
    ):
        outputs = forward(predictor, image, tuple(label.shape))
        matrix.update(semantic_prediction(outputs)[0], label)
    return matrix.compute()


def semantic_prediction(outputs: PixelOutputs) -> torch.Tensor:
    """(B, H, W) predicted train ids: argmax over the 19 known classes (a void channel never wins)."""
    if outputs.class_scores is not None:
        return outputs.class_scores.argmax(dim=1)
    logits = outputs.logits
    if outputs.void_channel is not None:
        logits = torch.cat([logits[:, : outputs.void_channel], logits[:, outputs.void_channel + 1 :]], dim=1)
    return logits.argmax(dim=1)
