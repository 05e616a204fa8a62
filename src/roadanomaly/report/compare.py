"""Side-by-side comparison of several results documents, and a check that they share one protocol."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roadanomaly.report.table import LOWER_IS_BETTER, align, method_label, metric_columns, percent

FORMATS: tuple[str, ...] = ("terminal", "markdown", "csv", "latex")
MISSING = "-"
ABSENT = "<absent>"


@dataclass
class Comparison:
    """Rows (dataset, method) x columns (metric, run): ``values[(dataset, method)][key][run]`` (None when absent).

    A row of a temperature sweep is its own method, ``msp T=2``.
    """

    names: list[str]
    columns: list[tuple[str, str]]
    keys: list[tuple[str, str]]
    values: dict[tuple[str, str], dict[str, list[float | None]]]

    def header(self) -> list[str]:
        return ["dataset", "method", *(f"{title} % {name}" for _, title in self.columns for name in self.names)]

    def best(self, key: tuple[str, str], metric: str) -> float | None:
        present = [v for v in self.values[key][metric] if v is not None]
        if len(present) < 2:
            return None
        return min(present) if metric in LOWER_IS_BETTER else max(present)


def run_names(paths: Sequence[str | Path]) -> list[str]:
    """Short names for the runs: file stems, or the paths as given where stems repeat."""
    stems = [Path(p).stem for p in paths]
    return stems if len(set(stems)) == len(stems) else [str(p) for p in paths]


def compare(documents: Sequence[dict[str, Any]], names: Sequence[str]) -> Comparison:
    """Collect every (dataset, method) of every document, in first-seen order, with each run's metrics."""
    all_rows = [r for d in documents for r in d["results"]]
    columns = metric_columns(all_rows)
    keys = list(dict.fromkeys((r["dataset"], method_label(r)) for r in all_rows))
    datasets = list(dict.fromkeys(k[0] for k in keys))
    keys = [k for d in datasets for k in keys if k[0] == d]
    values = {k: {metric: [None] * len(documents) for metric, _ in columns} for k in keys}
    for i, document in enumerate(documents):
        for r in document["results"]:
            for metric, _ in columns:
                values[(r["dataset"], method_label(r))][metric][i] = r.get(metric)
    return Comparison(list(names), columns, keys, values)


def protocol_differences(protocols: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """The protocol fields (nested ones as ``a.b``) whose values are not all equal: field -> value per run."""
    flat = [_flatten(p or {}) for p in protocols]
    fields = list(dict.fromkeys(k for f in flat for k in f))
    differing = {}
    for name in fields:
        values = [f.get(name, ABSENT) for f in flat]
        if any(v != values[0] for v in values[1:]):
            differing[name] = values
    return differing


def _flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def render(comparison: Comparison, fmt: str) -> str:
    """The comparison as ``terminal``, ``markdown``, ``csv`` or ``latex`` text (metrics in percent)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    return {"terminal": _terminal, "markdown": _markdown, "csv": _csv, "latex": _latex}[fmt](comparison)


def _cells(comparison: Comparison, key: tuple[str, str], bold: str | None, digits: int = 2) -> list[str]:
    cells = []
    for metric, _ in comparison.columns:
        best = comparison.best(key, metric)
        for value in comparison.values[key][metric]:
            text = MISSING if value is None else percent(value, digits)
            cells.append(bold.format(text) if bold and value is not None and value == best else text)
    return cells


def _terminal(c: Comparison) -> str:
    return align([c.header(), *([*k, *_cells(c, k, None)] for k in c.keys)], left=2)


def _markdown(c: Comparison) -> str:
    header = c.header()
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---", "---"] + ["---:"] * (len(header) - 2)) + "|"]
    lines += ["| " + " | ".join([*k, *_cells(c, k, "**{}**")]) + " |" for k in c.keys]
    return "\n".join(lines)


def _csv(c: Comparison) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(c.header())
    for k in c.keys:
        writer.writerow([*k, *(cell if cell != MISSING else "" for cell in _cells(c, k, None, digits=4))])
    return buffer.getvalue().rstrip("\n")


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in plain text."""
    special = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(special.get(ch, ch) for ch in text)


def _latex(c: Comparison) -> str:
    runs = len(c.names)
    spec = "ll" + "r" * (runs * len(c.columns))
    groups = " & ".join(rf"\multicolumn{{{runs}}}{{c}}{{{latex_escape(title)} (\%)}}" for _, title in c.columns)
    rules = " ".join(rf"\cmidrule(lr){{{3 + i * runs}-{2 + (i + 1) * runs}}}" for i in range(len(c.columns)))
    names = " & ".join(latex_escape(n) for _ in c.columns for n in c.names)
    lines = [
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        rf" & & {groups} \\",
        rules,
        rf"dataset & method & {names} \\",
        r"\midrule",
    ]
    previous = None
    for k in c.keys:
        if previous is not None and previous != k[0]:
            lines.append(r"\midrule")
        previous = k[0]
        cells = [latex_escape(k[0]), latex_escape(k[1]), *_cells(c, k, r"\textbf{{{}}}")]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)
