"""Matplotlib (Agg) figures of a results document: PR and ROC curves and score histograms, one file per dataset.

Every figure has a fixed size in pixels (:data:`CURVE_SIZE`, :func:`histogram_size`), so a page can state it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from roadanomaly.report.render import require_matplotlib, slug
from roadanomaly.report.table import method_label

DPI = 100
CURVE_SIZE: tuple[int, int] = (600, 450)
"""(width, height) in pixels of a PR or ROC figure."""
HISTOGRAM_PANEL: tuple[int, int] = (360, 260)
"""(width, height) in pixels of one method's panel in a histogram figure."""
HISTOGRAM_COLUMNS = 3


@dataclass(frozen=True)
class Plot:
    """A written figure: what it shows and its size in pixels."""

    dataset: str
    kind: str  # "pr", "roc" or "histogram"
    path: Path
    width: int
    height: int


def histogram_size(methods: int) -> tuple[int, int]:
    """(width, height) in pixels of a histogram figure with one panel per method."""
    columns = min(methods, HISTOGRAM_COLUMNS)
    return HISTOGRAM_PANEL[0] * columns, HISTOGRAM_PANEL[1] * math.ceil(methods / columns)


def _figure(size: tuple[int, int], rows: int = 1, columns: int = 1):
    require_matplotlib()
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(rows, columns, figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, squeeze=False)
    return figure, axes


def _save(figure, path: Path) -> None:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, format="png")  # no bbox_inches: the pixel size stays the declared one
    plt.close(figure)


def _metric(rows: Sequence[dict[str, Any]], curve: dict[str, Any], key: str) -> float | None:
    wanted = (curve.get("dataset"), curve.get("method"), curve.get("temperature"))
    row = next((r for r in rows if (r.get("dataset"), r.get("method"), r.get("temperature")) == wanted), None)
    return None if row is None else row.get(key)


def _label(curve: dict[str, Any], name: str, value: float | None) -> str:
    method = method_label(curve)
    return method if value is None else f"{method} ({name} {100 * value:.1f} %)"


def curve_plot(document: dict[str, Any], dataset: str, kind: str, path: Path) -> Plot:
    """Every method's PR (``kind="pr"``) or ROC (``kind="roc"``) curve on ``dataset`` in one figure."""
    curves = [c for c in document.get("curves", []) if c.get("dataset") == dataset and kind in c]
    figure, axes = _figure(CURVE_SIZE)
    ax = axes[0][0]
    rows = document.get("results", [])
    for curve in curves:
        data = curve[kind]
        if kind == "pr":
            value = _metric(rows, curve, "auprc")
            ax.plot(data["recall"], data["precision"], label=_label(curve, "AuPRC", value), lw=1.5)
        else:
            value = _metric(rows, curve, "auroc")
            ax.plot(data["fpr"], data["tpr"], label=_label(curve, "AUROC", value), lw=1.5)
    if kind == "pr":
        ax.set(xlabel="recall", ylabel="precision", title=f"{dataset}: precision-recall")
        share = _anomaly_share(rows, dataset)
        if share is not None:
            ax.axhline(share, color="grey", ls=":", lw=1, label=f"chance ({100 * share:.2f} %)")
    else:
        ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1, label="chance")
        ax.axvline(0.05, color="grey", ls="--", lw=0.8)
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"{dataset}: ROC")
    ax.set(xlim=(0, 1), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    figure.tight_layout()
    _save(figure, path)
    return Plot(dataset, kind, path, *CURVE_SIZE)


def _anomaly_share(rows: Sequence[dict[str, Any]], dataset: str) -> float | None:
    row = next((r for r in rows if r.get("dataset") == dataset and r.get("pixels")), None)
    return None if row is None else row.get("anomaly_pixels", 0) / row["pixels"]


def histogram_plot(document: dict[str, Any], dataset: str, path: Path) -> Plot:
    """Per method, the score distribution of in-distribution and anomaly pixels (each normalised to a density)."""
    histograms = [h for h in document.get("histograms", []) if h.get("dataset") == dataset]
    size = histogram_size(len(histograms))
    columns = min(len(histograms), HISTOGRAM_COLUMNS)
    rows = math.ceil(len(histograms) / columns)
    figure, axes = _figure(size, rows, columns)
    for i, ax in enumerate(axes.ravel()):
        if i >= len(histograms):
            ax.set_axis_off()
            continue
        h = histograms[i]
        edges = np.asarray(h["edges"], dtype=np.float64)
        for key, colour, name in (("inlier", "tab:blue", "in-distribution"), ("anomaly", "tab:red", "anomaly")):
            ax.stairs(_density(h[key], edges), edges, color=colour, fill=True, alpha=0.35, label=name)
        ax.set_title(method_label(h), fontsize=10)
        ax.set_xlabel("score", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
        if i == 0:
            ax.legend(fontsize=7)
    figure.suptitle(f"{dataset}: score distributions", fontsize=11)
    figure.tight_layout()
    _save(figure, path)
    return Plot(dataset, "histogram", path, *size)


def _density(counts: Sequence[float], edges: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    widths = np.diff(edges)
    return counts / (total * widths) if total > 0 else counts


def dataset_plots(document: dict[str, Any], dataset: str, folder: Path) -> list[Plot]:
    """The PR, ROC and histogram figures of ``dataset`` that the document has data for, written into ``folder``."""
    plots = []
    curves = [c for c in document.get("curves", []) if c.get("dataset") == dataset]
    stem = slug(dataset)
    if any("pr" in c for c in curves):
        plots.append(curve_plot(document, dataset, "pr", folder / f"{stem}_pr.png"))
    if any("roc" in c for c in curves):
        plots.append(curve_plot(document, dataset, "roc", folder / f"{stem}_roc.png"))
    if any(h.get("dataset") == dataset for h in document.get("histograms", [])):
        plots.append(histogram_plot(document, dataset, folder / f"{stem}_histogram.png"))
    return plots
