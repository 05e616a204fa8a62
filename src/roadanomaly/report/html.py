"""The HTML report: one ``index.html`` with the results table, curves, histograms and overlays, readable offline.

Figures are PNG files beside the page (``plots/``, ``overlays/``), referenced by relative paths, or, with
``inline=True``, embedded as base64 so that the page is a single file. The page loads nothing from the network.
"""

from __future__ import annotations

import base64
import shutil
from collections.abc import Sequence
from html import escape
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image

from roadanomaly.report.document import as_dict, check_document
from roadanomaly.report.plots import Plot, dataset_plots
from roadanomaly.report.table import LOWER_IS_BETTER, field, method_label, metric_columns, ordered_rows, percent

PLOTS_DIR = "plots"

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1280px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; }
th { background: #f0f0f0; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.first td { border-top: 2px solid #888; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
.figures img, .overlays img { max-width: 100%; height: auto; border: 1px solid #ddd; }
.overlays { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: .8em; }
figure { margin: 0; } figcaption { font-size: .8em; color: #555; word-break: break-all; }
.note { color: #777; font-style: italic; }
"""


def write_report(
    document: Any, out_dir: str | Path, inline: bool = False, overlay_sources: Sequence[str | Path] = ()
) -> Path:
    """Write ``out_dir/index.html`` and its figures; return the page's path.

    Overlays named in the document's ``overlays`` are taken from ``out_dir`` or copied there from the folder they were
    recorded in or from ``overlay_sources``; those found nowhere are reported on the page.
    """
    doc = as_dict(document)
    check_document(doc)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = doc["results"]
    named = [*(r["dataset"] for r in rows), *(c.get("dataset") for c in doc.get("curves", []))]
    datasets = list(dict.fromkeys(named))
    plots = {d: dataset_plots(doc, d, out / PLOTS_DIR) for d in datasets}
    overlays, missing = collect_overlays(doc, out, overlay_sources)
    page = _Page(out, inline)
    body = [
        "<h1>roadanomaly report</h1>",
        _model_line(doc.get("model", {})),
        "<h2 id='results-table'>Results</h2>",
        results_table(rows),
        _segmentation(doc.get("segmentation")),
        "<h2>Protocol</h2>",
        key_value_table(doc.get("protocol", {}), "protocol"),
    ]
    has_figures = bool(doc.get("curves") or doc.get("histograms"))
    if not has_figures:
        body.append("<p class='note'>This results file holds no curves or histograms.</p>")
    if missing:
        body.append(f"<p class='note'>{missing} overlay image(s) named in the results were not found.</p>")
    for dataset in datasets:
        body.append(f"<h2>{escape(dataset)}</h2>")
        if plots[dataset] or has_figures:
            body.append(page.figures(plots[dataset]))
        body.append(page.overlays([o for o in overlays if o["dataset"] == dataset]))
    html = (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>roadanomaly report: {escape(_model_name(doc.get('model', {})))}</title>\n"
        f"<style>{STYLE}</style>\n</head>\n<body>\n" + "\n".join(b for b in body if b) + "\n</body>\n</html>\n"
    )
    index = out / "index.html"
    index.write_text(html, encoding="utf-8")
    return index


def results_table(rows: Sequence[dict[str, Any]]) -> str:
    """The results as an HTML table (id ``results``): metrics in percent, each dataset's best value in bold.

    Every metric cell carries the exact fraction in ``data-value``.
    """
    columns = metric_columns(rows)
    head = "".join(f"<th>{escape(t)} %</th>" for _, t in columns)
    lines = [f"<table id='results'><thead><tr><th>dataset</th><th>method</th>{head}"
             "<th>images</th><th>anomaly px %</th></tr></thead><tbody>"]
    best = _best_values(rows, [k for k, _ in columns])
    previous = None
    for r in ordered_rows(rows):
        cells = []
        for key, _ in columns:
            value = r.get(key)
            text = escape(percent(value))
            if value is not None and best.get((r["dataset"], key)) == value:
                text = f"<strong>{text}</strong>"
            data = "" if value is None else f" data-value='{value!r}'"
            cells.append(f"<td class='num' data-key='{key}'{data}>{text}</td>")
        pixels = r.get("pixels") or 0
        share = f"{100.0 * (r.get('anomaly_pixels') or 0) / pixels:.2f}" if pixels else "n/a"
        first = " class='first'" if previous is not None and previous != r["dataset"] else ""
        previous = r["dataset"]
        lines.append(f"<tr{first}><td>{escape(str(r['dataset']))}</td><td>{escape(method_label(r))}</td>"
                     f"{''.join(cells)}<td class='num'>{escape(str(r.get('images', '')))}</td>"
                     f"<td class='num'>{share}</td></tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


def _best_values(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[tuple[str, str], float]:
    best: dict[tuple[str, str], float] = {}
    for r in rows:
        for key in keys:
            value = field(r, key)
            if value is None:
                continue
            current = best.get((r["dataset"], key))
            if current is None or (value < current if key in LOWER_IS_BETTER else value > current):
                best[(r["dataset"], key)] = value
    return best


def key_value_table(values: dict[str, Any], name: str) -> str:
    """A two-column table of a flat (or nested, shown as JSON-ish text) mapping."""
    if not values:
        return "<p class='note'>(none recorded)</p>"
    rows = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(_text(v))}</td></tr>" for k, v in values.items())
    return f"<table id='{escape(name)}'>{rows}</table>"


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_text(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    return str(value)


def _model_name(model: dict[str, Any]) -> str:
    return str(model.get("name", "model"))


def _model_line(model: dict[str, Any]) -> str:
    details = ", ".join(f"{k}: {_text(v)}" for k, v in model.items() if k != "name")
    suffix = f" ({escape(details)})" if details else ""
    return f"<p>Model <strong>{escape(_model_name(model))}</strong>{suffix}</p>"


def _segmentation(segmentation: dict[str, Any] | None) -> str:
    if not segmentation or segmentation.get("miou") is None:
        return ""
    where = escape(" ".join(str(segmentation[k]) for k in ("dataset", "split") if segmentation.get(k)))
    on = f" on {where}" if where else ""
    return f"<p id='miou'>Segmentation mIoU{on}: <strong>{percent(segmentation['miou'])} %</strong></p>"


def collect_overlays(
    doc: dict[str, Any], out: Path, sources: Sequence[str | Path] = ()
) -> tuple[list[dict[str, Any]], int]:
    """Overlay items of ``doc`` whose PNG is in ``out`` (copied there when found elsewhere), and the number missing."""
    recorded = doc.get("overlays")
    if not isinstance(recorded, dict) or not isinstance(recorded.get("items"), list):
        return [], 0
    roots = [Path(p) for p in (recorded.get("root"), *sources) if p]
    found, missing = [], 0
    for item in recorded["items"]:
        path = item.get("path") if isinstance(item, dict) else None
        if not _safe_relative(path):
            missing += 1
            continue
        target = out / path
        if not target.is_file():
            source = next((root / path for root in roots if (root / path).is_file()), None)
            if source is None:
                missing += 1
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        found.append(item)
    return found, missing


def _safe_relative(path: Any) -> bool:
    if not isinstance(path, str) or not path:
        return False
    pure = PurePosixPath(path)
    return not pure.is_absolute() and ".." not in pure.parts and "\\" not in path


class _Page:
    """Turns figure files into ``<img>`` tags: relative links, or base64 data when inlining."""

    def __init__(self, out: Path, inline: bool) -> None:
        self.out, self.inline = out, inline

    def img(self, path: Path, alt: str, size: tuple[int, int] | None = None) -> str:
        if size is None:
            with Image.open(path) as image:
                size = image.size
        if self.inline:
            src = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
        else:
            src = escape(path.relative_to(self.out).as_posix())
        return f"<img src='{src}' width='{size[0]}' height='{size[1]}' alt='{escape(alt)}'>"

    def figures(self, plots: Sequence[Plot]) -> str:
        if not plots:
            return "<p class='note'>No curves or histograms for this dataset.</p>"
        tags = "".join(self.img(p.path, f"{p.dataset} {p.kind}", (p.width, p.height)) for p in plots)
        return f"<div class='figures'>{tags}</div>"

    def overlays(self, items: Sequence[dict[str, Any]]) -> str:
        if not items:
            return ""
        parts = ["<h3>Best and worst images (per-image AuPRC)</h3>"]
        for method in dict.fromkeys(i.get("method") for i in items):
            for kind in ("best", "worst"):
                chosen = sorted((i for i in items if i.get("method") == method and i.get("kind") == kind),
                                key=lambda i: i.get("rank", 0))
                if not chosen:
                    continue
                parts.append(f"<h4>{escape(str(method))}: {kind}</h4><div class='overlays'>")
                for i in chosen:
                    caption = f"{Path(str(i.get('image', ''))).name}: AuPRC {percent(i.get('auprc'), 1)} %"
                    parts.append(f"<figure>{self.img(self.out / i['path'], caption)}"
                                 f"<figcaption>{escape(caption)}</figcaption></figure>")
                parts.append("</div>")
        return "\n".join(parts)
