"""Presenting results: the terminal table and the JSON results file."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from roadanomaly.results import METRIC_TITLES, PIXEL_METRICS, AnomalyResult, write_json

RESULTS_COLUMNS: tuple[tuple[str, str], ...] = tuple((key, METRIC_TITLES[key]) for key in PIXEL_METRICS)


def format_table(results: Sequence[AnomalyResult]) -> str:
    """Datasets x methods, each cell AuPRC / FPR95 / AUROC in percent."""
    if not results:
        return "(no results)"
    datasets = list(dict.fromkeys(r.dataset for r in results))
    header = ["dataset", "method", *(title + " %" for _, title in RESULTS_COLUMNS), "images", "anomaly px %"]
    rows = []
    for r in sorted(results, key=lambda r: datasets.index(r.dataset)):
        cells = [_percent(getattr(r, key)) for key, _ in RESULTS_COLUMNS]
        share = 100.0 * r.anomaly_pixels / r.pixels if r.pixels else 0.0
        method = r.method if r.temperature is None else f"{r.method} T={r.temperature:g}"
        rows.append([r.dataset, method, *cells, str(r.images), f"{share:.2f}"])
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.2f}"


def results_document(
    protocol: dict[str, Any], model: dict[str, Any], results: Sequence[AnomalyResult], **extra: Any
) -> dict[str, Any]:
    """The JSON results document: ``{"protocol", "model", "results": [...]}`` plus any extra fields."""
    return {"protocol": protocol, "model": model, "results": [r.to_dict() for r in results], **extra}


__all__ = ["RESULTS_COLUMNS", "format_table", "results_document", "write_json"]
