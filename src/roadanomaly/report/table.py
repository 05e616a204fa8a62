"""The results table: datasets x methods, metrics in percent, as the terminal shows it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from roadanomaly.results import COMPONENT_METRICS, METRIC_TITLES, PIXEL_METRICS

RESULTS_COLUMNS: tuple[tuple[str, str], ...] = tuple((key, METRIC_TITLES[key]) for key in PIXEL_METRICS)
"""The pixel metrics every row has: (key, title)."""
OPTIONAL_COLUMNS: tuple[tuple[str, str], ...] = tuple((key, METRIC_TITLES[key]) for key in COMPONENT_METRICS)
"""Component-level metrics: shown only when some row has a value."""
LOWER_IS_BETTER: frozenset[str] = frozenset({"fpr95"})


def field(row: Any, key: str, default: Any = None) -> Any:
    """``row[key]`` for a dict row, ``row.key`` for a dataclass row."""
    if isinstance(row, dict):
        return row.get(key, default)
    return getattr(row, key, default)


def metric_columns(rows: Sequence[Any]) -> list[tuple[str, str]]:
    """The pixel metrics, then each optional metric that at least one row has a value for."""
    extra = [(key, title) for key, title in OPTIONAL_COLUMNS if any(field(r, key) is not None for r in rows)]
    return [*RESULTS_COLUMNS, *extra]


def percent(value: float | None, digits: int = 2) -> str:
    """A fraction as a percentage with ``digits`` decimals; ``n/a`` for a missing value."""
    return "n/a" if value is None else f"{100.0 * value:.{digits}f}"


def method_label(row: Any) -> str:
    """The method's name, with its temperature when a sweep produced the row (``msp T=2``)."""
    temperature = field(row, "temperature")
    return str(field(row, "method")) if temperature is None else f"{field(row, 'method')} T={temperature:g}"


def ordered_rows(rows: Sequence[Any]) -> list[Any]:
    """Rows grouped by dataset (first-seen order), otherwise in their own order."""
    datasets = list(dict.fromkeys(field(r, "dataset") for r in rows))
    return sorted(rows, key=lambda r: datasets.index(field(r, "dataset")))


def format_table(results: Sequence[Any]) -> str:
    """Datasets x methods, each metric in percent, with the image count and the share of anomaly pixels."""
    if not results:
        return "(no results)"
    columns = metric_columns(results)
    header = ["dataset", "method", *(title + " %" for _, title in columns), "images", "anomaly px %"]
    rows = []
    for r in ordered_rows(results):
        pixels, anomaly = field(r, "pixels", 0) or 0, field(r, "anomaly_pixels", 0) or 0
        share = f"{100.0 * anomaly / pixels:.2f}" if pixels else "n/a"
        cells = [percent(field(r, key)) for key, _ in columns]
        rows.append([str(field(r, "dataset")), method_label(r), *cells, str(field(r, "images", "")), share])
    return align([header, *rows], left=2)


def align(rows: Sequence[Sequence[str]], left: int) -> str:
    """Space-aligned columns (the first ``left`` left-aligned, the rest right-aligned), a rule under the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)
