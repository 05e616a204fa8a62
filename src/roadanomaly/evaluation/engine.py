"""The evaluation engine: one loop for every command that scores images (evaluate, demo, later ones).

Data flows one way: image -> one forward pass -> every requested per-pixel score -> metric states -> results
document. The engine owns the state of a run: for the dataset under way, one metric per (method, temperature) and
the indices of the images already counted; rows of the datasets already finished. It checks the methods against
what the model declares before reading any image, saves its progress atomically every ``save_every`` images and
after each dataset, stops cleanly between two images on SIGINT / SIGTERM, continues a saved run exactly
(``resume=True``), and under torchrun shards every dataset over the ranks and sums the metric states before
computing, so that the numbers equal a single process's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm import tqdm

from roadanomaly.data.labels import NUM_CLASSES
from roadanomaly.errors import UserError
from roadanomaly.evaluation.distributed import Ranks
from roadanomaly.evaluation.interrupts import EvaluationInterrupted, InterruptFlag
from roadanomaly.evaluation.loading import prepared_samples
from roadanomaly.evaluation.progress import Progress, TaskProgress, describe_difference
from roadanomaly.inference.pixel_model import NonFiniteOutputError
from roadanomaly.labels import ANOMALY, VOID
from roadanomaly.metrics import ConfusionMatrix
from roadanomaly.metrics.anomaly import DEFAULT_BITS, bits_for_memory
from roadanomaly.outputs import LOGITS, OutputSpec, PixelOutputs
from roadanomaly.protocol import EvalProtocol
from roadanomaly.results import COMPONENT_METRICS, AnomalyResult, ResultsDocument, write_json
from roadanomaly.scoring import ScoringConfig, check_methods, compute_scores, uses_temperature

DEFAULT_WORKERS = 1
"""Data-loading processes: one decodes and resizes the next image while the model runs (0 = inline)."""
DEFAULT_SAVE_EVERY = 25
"""Images between two writes of the progress file."""
DEFAULT_METRIC_MEMORY = 1280 << 20
"""Bytes all binned pixel metrics of a dataset may hold together (1.25 GiB: every method of a model at the full 22
bits); a sweep of many (method, temperature) variants gets smaller states (fewer key bits) to stay within it."""
SEGMENTATION_TASK = "segmentation"


class Observer(Protocol):
    """Sees every evaluated image and its scores (e.g. to keep the best and worst images for a report)."""

    def on_image(self, dataset: str, image_path: str, image: torch.Tensor, label: torch.Tensor,
                 scores: dict[str, torch.Tensor]) -> None: ...

    def on_dataset_end(self, dataset: str) -> None: ...

    def finish(self, document: ResultsDocument) -> None: ...


@dataclass(frozen=True)
class Variant:
    """A scoring method at one temperature (None: the protocol's own)."""

    method: str
    temperature: float | None = None

    @property
    def key(self) -> str:
        return self.method if self.temperature is None else f"{self.method}@T={self.temperature:g}"


def output_spec(predictor: Any) -> OutputSpec:
    """What a predictor declares it produces (its ``spec``)."""
    spec = getattr(predictor, "spec", None)
    if not isinstance(spec, OutputSpec):
        raise TypeError(f"{type(predictor).__name__} declares no output spec (a 'spec' OutputSpec attribute)")
    return spec


class EvaluationEngine:
    """Evaluate ``predictor`` under ``protocol``; :meth:`run` returns the results document."""

    def __init__(
        self,
        predictor: Any,
        protocol: EvalProtocol,
        methods: Sequence[str] | None = None,
        *,
        temperatures: Sequence[float] | None = None,
        metric_mode: str = "binned",
        workers: int = DEFAULT_WORKERS,
        progress_bars: bool = True,
        observers: Sequence[Observer] = (),
        output: str | Path | None = None,
        progress_file: str | Path | None = None,
        save_every: int = DEFAULT_SAVE_EVERY,
        resume: bool = False,
        ranks: Ranks | None = None,
        metric_memory: int = DEFAULT_METRIC_MEMORY,
    ) -> None:
        self.predictor = predictor
        self.protocol = protocol
        self.spec = output_spec(predictor)
        try:
            self.methods = check_methods(methods, self.spec)
        except ValueError as error:
            raise UserError(None, str(error)) from None
        self.variants = self._variants(temperatures)
        self.metric_mode = metric_mode
        try:  # exact mode stores every pixel: the budget sizes binned states only
            self.metric_bits = bits_for_memory(len(self.variants), metric_memory) if metric_mode == "binned" else \
                DEFAULT_BITS
        except ValueError as error:
            raise UserError(None, f"{error}: raise --metric-memory or sweep fewer methods/temperatures") from None
        self.workers = workers
        self.progress_bars = progress_bars
        self.observers = list(observers)
        self.output = None if output is None else Path(output)
        self.progress_file = None if progress_file is None else Path(progress_file)
        self.save_every = max(1, save_every)
        self.resume = resume
        self.ranks = ranks or Ranks()
        self.temperatures = None if temperatures is None else [float(t) for t in temperatures]

    # ------------------------------------------------------------------------------------------- set-up
    def _variants(self, temperatures: Sequence[float] | None) -> list[Variant]:
        if not temperatures:
            return [Variant(m) for m in self.methods]
        if any(t <= 0 for t in temperatures):
            raise UserError(None, f"temperatures must be positive, got {list(temperatures)}")
        variants = []
        for method in self.methods:
            if self.spec.kind == LOGITS and uses_temperature(method):
                variants += [Variant(method, float(t)) for t in dict.fromkeys(temperatures)]
            else:
                variants.append(Variant(method))
        return variants

    def _new_metrics(self) -> dict[str, dict[str, Any]]:
        """Per variant, the protocol's metrics: ``{"pixel": ..., "components": ...}`` (components when enabled)."""
        return {v.key: self.protocol.new_metrics(self.metric_mode, self.metric_bits) for v in self.variants}

    def fingerprint(self, datasets: Sequence, segmentation: Sequence | None) -> dict[str, Any]:
        """What must not change between an interrupted run and its ``--resume``."""
        return {
            "model": _jsonable(getattr(self.predictor, "info", {})),
            "protocol": self.protocol.to_dict(),
            "methods": [v.key for v in self.variants],
            "metric_mode": self.metric_mode,
            "metric_bits": self.metric_bits,
            "datasets": [_describe_dataset(d) for d in datasets],
            "segmentation": None if segmentation is None else _describe_dataset(segmentation),
            "processes": self.ranks.world,
        }

    def _start(self, fingerprint: dict[str, Any]) -> Progress:
        path = self.progress_file
        if path is None or not path.exists():
            if self.resume and self.ranks.is_main:
                where = "no progress file was requested" if path is None else f"nothing to resume at {path}"
                print(f"roadanomaly: {where}; starting from the beginning")
            return Progress(fingerprint)
        if not self.resume:
            raise UserError(path, "holds the progress of an interrupted run: add --resume to continue it, or delete "
                            "the file to start over")
        saved = Progress.load(path)
        difference = describe_difference(saved.fingerprint, fingerprint)
        if difference:
            raise UserError(path, f"cannot resume: {difference}")
        return saved

    # ------------------------------------------------------------------------------------------- running
    def run(self, datasets: Sequence, segmentation: Sequence | None = None) -> ResultsDocument:
        """Evaluate every anomaly dataset, then the segmentation dataset if given; write and return the document."""
        progress = self._start(self.fingerprint(datasets, segmentation))
        self._progress = progress
        try:
            with InterruptFlag() as flag:
                self._flag = flag
                for dataset in datasets:
                    if dataset.name not in progress.finished:
                        self._run_anomaly(dataset, progress)
                if segmentation is not None and SEGMENTATION_TASK not in progress.finished:
                    self._run_segmentation(segmentation, progress)
        except UserError:
            self._save(progress)
            self._write_document(progress)
            raise
        document = self._document(progress)
        for observer in self.observers:
            observer.finish(document)
        self._write_document(progress, document)
        if self.progress_file is not None and self.progress_file.exists():
            self.progress_file.unlink()
        return document

    def _task(self, progress: Progress, name: str) -> TaskProgress:
        if progress.current is None or progress.current.task != name:
            progress.current = TaskProgress(name)
        return progress.current

    def _loop(self, name: str, dataset: Sequence, label_of: Callable, task: TaskProgress,
              handle: Callable[[torch.Tensor, torch.Tensor, str], bool]) -> None:
        """Feed every not-yet-counted image of this rank's shard to ``handle``; save progress as it goes."""
        done = set(task.done)
        todo = [i for i in self.ranks.shard(list(range(len(dataset)))) if i not in done]
        bar = tqdm(total=len(todo), desc=name, unit="img", dynamic_ncols=True, leave=True,
                   disable=not (self.progress_bars and self.ranks.is_main))
        since_save = 0
        try:
            for index, image, label, path in prepared_samples(dataset, todo, self.protocol, label_of, self.workers):
                if handle(image, label, path):
                    task.images += 1
                task.done.append(index)
                since_save += 1
                bar.update(1)
                if self._flag.signum is not None:
                    self._interrupted()
                if since_save >= self.save_every:
                    self._save(self._progress)
                    since_save = 0
        except RuntimeError:
            if self._flag.signum is None:  # a DataLoader worker killed by the same Ctrl-C: an interruption
                raise
            self._interrupted()
        finally:
            bar.close()
        if self._flag.signum is not None:
            self._interrupted()

    def _interrupted(self) -> None:
        self._save(self._progress)
        self._write_document(self._progress)
        current = self._progress.current
        raise EvaluationInterrupted(self._flag.signum or 2, None if self.progress_file is None
                                    else str(self.progress_file), len(current.done) if current else 0)

    def _run_anomaly(self, dataset: Sequence, progress: Progress) -> None:
        name = dataset.name
        task = self._task(progress, name)
        metrics = self._new_metrics()
        for key, state in task.states.items():
            variant, part = key.rsplit("/", 1)
            metrics[variant][part].load_state_dict(state)
        # live: the progress file reads their state_dict() when written. Component metrics that wait for the
        # dataset's best-F1 threshold cannot be saved half-way: such a dataset restarts when resumed.
        task.resumable = not any("components" in group for group in metrics.values())
        task.states = {f"{v}/{part}": m for v, group in metrics.items() for part, m in group.items()}

        def handle(image: torch.Tensor, label: torch.Tensor, path: str) -> bool:
            if self.protocol.skip_no_anomaly and not bool((label == ANOMALY).any()):
                return False
            outputs = self._forward(image, label, path)
            kept: dict[str, torch.Tensor] = {}
            for scores in self._scores(outputs, path):  # one temperature at a time: a sweep holds one group
                for key, score in scores.items():
                    for metric in metrics[key].values():
                        metric.update(score, label)
                if self.observers:
                    kept.update(scores)
            for observer in self.observers:
                observer.on_image(name, path, image, label, kept)
            return True

        self._loop(name, dataset, lambda s: s.label, task, handle)
        images = self.ranks.sum_int(task.images)
        if images == 0:
            raise UserError(getattr(dataset, "folder", name),
                            "no image left to evaluate (all skipped: none has an anomaly pixel)")
        finished: dict[str, Any] = {"results": [], "curves": [], "histograms": []}
        for variant in self.variants:
            # each variant's state (and the cells it caches) is freed once its row is made: a sweep of many rows
            # never holds all their readings at once
            group = metrics.pop(variant.key)
            for part in group:
                task.states.pop(f"{variant.key}/{part}", None)
            if self.ranks.world > 1:  # the rank's own states are not needed any more: sum them in place
                for metric in group.values():  # pixel first: the components read its best-F1 threshold
                    metric.sync()
            finished["results"].append(_row(name, variant, group, images).to_dict())
            finished["curves"] += _curves(name, variant, group["pixel"])
            finished["histograms"] += _histograms(name, variant, group["pixel"])
        for observer in self.observers:
            observer.on_dataset_end(name)
        progress.finished[name] = finished
        progress.current = None
        self._save(progress)
        self._write_document(progress)

    def _run_segmentation(self, dataset: Sequence, progress: Progress) -> None:
        task = self._task(progress, SEGMENTATION_TASK)
        matrix = ConfusionMatrix(num_classes=NUM_CLASSES, ignore_index=VOID)
        if "confusion" in task.states:
            matrix.load_state_dict(task.states["confusion"])
        task.states = {"confusion": matrix}

        def handle(image: torch.Tensor, label: torch.Tensor, path: str) -> bool:
            matrix.update(semantic_prediction(self._forward(image, label, path))[0], label)
            return True

        self._loop("mIoU", dataset, lambda s: s.train_ids, task, handle)
        synced = ConfusionMatrix(num_classes=NUM_CLASSES, ignore_index=VOID)
        synced.load_state_dict(matrix.state_dict())
        if self.ranks.world > 1:
            synced.sync()
        images = self.ranks.sum_int(task.images)
        root = getattr(dataset, "root", None)
        info = {"dataset": str(root) if root is not None else SEGMENTATION_TASK,
                "split": getattr(dataset, "split", None), "images": images}
        progress.finished[SEGMENTATION_TASK] = {"segmentation": {**info, **synced.compute()}}
        progress.current = None
        self._save(progress)
        self._write_document(progress)

    def _forward(self, image: torch.Tensor, label: torch.Tensor, path: str) -> PixelOutputs:
        """One forward pass for one (3, H, W) uint8 image, outputs at the label's resolution."""
        try:
            outputs = self.predictor(image[None])
        except NonFiniteOutputError as error:  # the predictor knows the model file, the engine the image
            raise UserError(path, f"the model ({error.where}) gives {error.count} NaN or inf logits") from None
        return outputs.resized(tuple(label.shape))

    def _scores(self, outputs: PixelOutputs, path: str) -> Iterator[dict[str, torch.Tensor]]:
        """Per temperature, ``{variant key: (H, W) score}`` of the variants at it (one group at a time)."""
        for temperature in dict.fromkeys(v.temperature for v in self.variants):
            group = [v for v in self.variants if v.temperature == temperature]
            config = self.protocol.scoring if temperature is None else ScoringConfig(
                temperature, self.protocol.scoring.include_void)
            computed = compute_scores(outputs, [v.method for v in group], config)
            scores: dict[str, torch.Tensor] = {}
            for v in group:
                score = computed[v.method][0]
                # one reduction per map; the element-wise check only when the sum is not finite
                if not torch.isfinite(score.sum()) and not bool(torch.isfinite(score).all()):
                    raise UserError(path, f"the model's outputs give non-finite {v.key} scores (NaN or inf)")
                scores[v.key] = score
            yield scores

    # ------------------------------------------------------------------------------------------- writing
    def _save(self, progress: Progress) -> None:
        if self.progress_file is not None:
            progress.save(self.progress_file)

    def _document(self, progress: Progress) -> ResultsDocument:
        document = ResultsDocument(self.protocol.to_dict(), _jsonable(getattr(self.predictor, "info", {})))
        for name, finished in progress.finished.items():
            document.results += [AnomalyResult.from_dict(r) for r in finished.get("results", [])]
            document.curves += finished.get("curves", [])
            document.histograms += finished.get("histograms", [])
            if "segmentation" in finished:
                document.segmentation = finished["segmentation"]
        return document

    def _write_document(self, progress: Progress, document: ResultsDocument | None = None) -> None:
        if self.output is not None and self.ranks.is_main and (document is not None or progress.finished):
            write_json(self.output, (document or self._document(progress)).to_dict())


def semantic_prediction(outputs: PixelOutputs) -> torch.Tensor:
    """(B, H, W) predicted train ids: argmax over the known classes (a void channel never wins)."""
    if outputs.class_scores is not None:
        return outputs.class_scores.argmax(dim=1)
    logits = outputs.logits
    if outputs.void_channel is not None:
        logits = torch.cat([logits[:, : outputs.void_channel], logits[:, outputs.void_channel + 1 :]], dim=1)
    return logits.argmax(dim=1)


def _row(dataset: str, variant: Variant, metrics: dict[str, Any], images: int) -> AnomalyResult:
    values: dict[str, Any] = {}
    for metric in metrics.values():
        try:
            values.update(metric.compute())
        except ValueError:  # no anomaly (or no inlier) pixel at all: the curves are undefined
            pass
    pixel = metrics["pixel"]
    return AnomalyResult(
        dataset=dataset, method=variant.method,
        auprc=_float(values.get("auprc")), fpr95=_float(values.get("fpr95")), auroc=_float(values.get("auroc")),
        pixels=pixel.pixels, anomaly_pixels=pixel.anomaly_pixels, images=images,
        temperature=variant.temperature,
        exact=None if values.get("exact") is None else bool(values["exact"]),
        max_error_bound=_float(values.get("max_error_bound")),
        **{key: _float(values.get(key)) for key in COMPONENT_METRICS},
    )


def _curves(dataset: str, variant: Variant, metric: Any) -> list[dict[str, Any]]:
    return _plot_data(dataset, variant, metric, "curves")


def _histograms(dataset: str, variant: Variant, metric: Any) -> list[dict[str, Any]]:
    return _plot_data(dataset, variant, metric, "histogram")


def _plot_data(dataset: str, variant: Variant, metric: Any, what: str) -> list[dict[str, Any]]:
    """``metric.curves()`` or ``metric.histogram()`` tagged with the dataset and method, when the metric has it."""
    make = getattr(metric, what, None)
    try:
        data = make() if make is not None else None
    except ValueError:  # no anomaly or no inlier pixel: nothing to plot
        return []
    return [] if data is None else [{**_tag(dataset, variant), **data}]


def _tag(dataset: str, variant: Variant) -> dict[str, Any]:
    tag: dict[str, Any] = {"dataset": dataset, "method": variant.method}
    if variant.temperature is not None:
        tag["temperature"] = variant.temperature
    return tag


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _describe_dataset(dataset: Sequence) -> dict[str, Any]:
    """Name, size and a hash of the image paths: a dataset that changed under a resumed run is noticed."""
    paths = getattr(dataset, "image_paths", None)
    digest = None
    if paths is not None:
        digest = hashlib.sha1("\n".join(str(p) for p in paths).encode()).hexdigest()[:16]
    return {"name": getattr(dataset, "name", type(dataset).__name__), "images": len(dataset), "paths_sha1": digest}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
