"""``roadanomaly report``: the HTML report (table, curves, histograms, overlays) of a saved results file."""

from __future__ import annotations

import argparse
from pathlib import Path

from roadanomaly.report import load_results, write_report


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "report",
        help="write an HTML report (index.html with plots) of a results.json",
        description=(
            "Write DIR/index.html with the results table, PR and ROC curves and score histograms per dataset, and "
            "the best/worst-image overlays the results name (copied from where they were recorded, or from the "
            "results file's folder). The page needs no network; figures are PNG files beside it unless --inline."
        ),
    )
    parser.add_argument("results", type=Path, help="results file written by roadanomaly evaluate")
    parser.add_argument("--out", type=Path, required=True, help="report folder (created if needed)")
    parser.add_argument("--inline", action="store_true", help="embed the figures in index.html (one file)")
    return parser


def run(args: argparse.Namespace) -> int:
    document = load_results(args.results)
    index = write_report(document, args.out, inline=args.inline, overlay_sources=[args.results.parent])
    print(f"report written to {index}")
    return 0
