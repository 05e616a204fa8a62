"""The results document: what an evaluation found, written once and read back by later commands.

``{"protocol": {...}, "model": {...}, "results": [row, ...], "segmentation": {...}, "curves": [...],
"histograms": [...], ...extras}``; one row per (dataset, method), metrics as fractions. ``report`` and
``compare`` read it with :meth:`ResultsDocument.load`, never re-running a model.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from roadanomaly.errors import UserError

PIXEL_METRICS: tuple[str, ...] = ("auprc", "fpr95", "auroc")
"""Pixel-level metrics of every row (fractions; None when undefined, e.g. no anomaly pixel)."""
COMPONENT_METRICS: tuple[str, ...] = ("siou", "ppv", "mean_f1")
"""SMIYC component-level metrics, present when the evaluation computed them."""
METRIC_TITLES: dict[str, str] = {
    "auprc": "AuPRC", "fpr95": "FPR95", "auroc": "AUROC", "siou": "sIoU", "ppv": "PPV", "mean_f1": "mean F1",
}


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
    temperature: float | None = None
    """Set when a temperature sweep produced this row."""
    siou: float | None = None
    ppv: float | None = None
    mean_f1: float | None = None
    metric_note: str | None = None
    """How the metric was computed when not exactly (e.g. a binned approximation and its bound)."""

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON: optional fields only when set."""
        optional = {"temperature", "metric_note", *COMPONENT_METRICS}
        return {k: v for k, v in asdict(self).items() if k not in optional or v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AnomalyResult":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def key(self) -> tuple[str, str, float | None]:
        return (self.dataset, self.method, self.temperature)


@dataclass
class ResultsDocument:
    """Everything an evaluation wrote: protocol, model, rows, and what plots need (curves, histograms)."""

    protocol: dict[str, Any]
    model: dict[str, Any]
    results: list[AnomalyResult] = field(default_factory=list)
    segmentation: dict[str, Any] | None = None
    curves: list[dict[str, Any]] = field(default_factory=list)
    histograms: list[dict[str, Any]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "protocol": self.protocol,
            "model": self.model,
            "results": [r.to_dict() for r in self.results],
        }
        if self.segmentation is not None:
            document["segmentation"] = self.segmentation
        if self.curves:
            document["curves"] = self.curves
        if self.histograms:
            document["histograms"] = self.histograms
        return {**document, **self.extras}

    @classmethod
    def from_dict(cls, data: Any, source: str | Path | None = None) -> "ResultsDocument":
        """Read a document written by :meth:`to_dict`; a malformed one is a UserError naming ``source``."""
        if not isinstance(data, dict) or not isinstance(data.get("results"), list):
            raise UserError(source, "not a roadanomaly results document (no 'results' list)")
        for name in ("protocol", "model"):
            if not isinstance(data.get(name) or {}, dict):
                raise UserError(source, f"'{name}' is not an object")
        bad = next((i for i, r in enumerate(data["results"]) if not isinstance(r, dict)), None)
        if bad is not None:
            raise UserError(source, f"result row {bad} is not an object")
        try:
            rows = [AnomalyResult.from_dict(r) for r in data["results"]]
        except TypeError as error:
            raise UserError(source, f"malformed result row ({error})") from None
        named = {"protocol", "model", "results", "segmentation", "curves", "histograms"}
        return cls(
            protocol=dict(data.get("protocol") or {}),
            model=dict(data.get("model") or {}),
            results=rows,
            segmentation=data.get("segmentation"),
            curves=list(data.get("curves") or []),
            histograms=list(data.get("histograms") or []),
            extras={k: v for k, v in data.items() if k not in named},
        )

    @classmethod
    def load(cls, path: str | Path) -> "ResultsDocument":
        """Read a results JSON file."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(path, "no such results file") from None
        except (OSError, ValueError) as error:
            raise UserError(path, f"not readable JSON ({error})") from None
        return cls.from_dict(data, path)

    def save(self, path: str | Path) -> None:
        """Write the document atomically."""
        write_json(path, self.to_dict())

    def row(self, dataset: str, method: str, temperature: float | None = None) -> AnomalyResult | None:
        return next((r for r in self.results if r.key == (dataset, method, temperature)), None)


def write_json(path: str | Path, document: dict[str, Any]) -> None:
    """Write ``document`` atomically (temporary file + rename): a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(document, handle, indent=2)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
