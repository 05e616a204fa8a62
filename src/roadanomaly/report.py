"""Presenting results: the terminal table and the JSON results file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from roadanomaly.evaluate import AnomalyResult

RESULTS_COLUMNS: tuple[tuple[str, str], ...] = (("auprc", "AuPRC"), ("fpr95", "FPR95"), ("auroc", "AUROC"))


def format_table(results: Sequence[AnomalyResult]) -> str:
    """Datasets x methods, each cell AuPRC / FPR95 / AUROC in percent."""
    if not results:
        return "(no results)"
    datasets = list(dict.fromkeys(r.dataset for r in results))
    methods = list(dict.fromkeys(r.method for r in results))
    by_key = {(r.dataset, r.method): r for r in results}
    header = ["dataset", "method", *(title + " %" for _, title in RESULTS_COLUMNS), "images", "anomaly px %"]
    rows = []
    for dataset in datasets:
        for method in methods:
            r = by_key.get((dataset, method))
            if r is None:
                continue
            cells = [_percent(getattr(r, key)) for key, _ in RESULTS_COLUMNS]
            share = 100.0 * r.anomaly_pixels / r.pixels if r.pixels else 0.0
            rows.append([dataset, method, *cells, str(r.images), f"{share:.2f}"])
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


def write_json(path: str | Path, document: dict[str, Any]) -> None:
    """Write ``document`` atomically: a reader never sees a half-written file."""
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
