"""Presenting results: the terminal table, the JSON results file, plots, the HTML report and comparisons."""

from roadanomaly.report.document import as_dict, check_document, load_results, results_document
from roadanomaly.report.table import RESULTS_COLUMNS, format_table
from roadanomaly.results import write_json

__all__ = [
    "RESULTS_COLUMNS",
    "as_dict",
    "check_document",
    "format_table",
    "load_results",
    "results_document",
    "write_json",
    "write_report",
]


def write_report(document, out_dir, inline: bool = False, overlay_sources=()):
    """Write ``out_dir/index.html`` with its figures (see :func:`roadanomaly.report.html.write_report`)."""
    from roadanomaly.report.html import write_report as _write_report

    return _write_report(document, out_dir, inline=inline, overlay_sources=overlay_sources)
