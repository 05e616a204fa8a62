"""``roadanomaly compare``: several results files side by side, with a loud warning when their protocols differ."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from roadanomaly.errors import UserError
from roadanomaly.report import load_results
from roadanomaly.report.compare import FORMATS, compare, protocol_differences, render, run_names


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "compare",
        help="compare results files side by side (terminal, Markdown, CSV or LaTeX)",
        description=(
            "Print one table with each metric of each results file side by side (percent; in Markdown and LaTeX "
            "the best value of a row is bold). The files' protocols are compared field by field; when they differ, "
            "a warning naming the fields goes to stderr, since such numbers are not comparable."
        ),
    )
    parser.add_argument("results", nargs="+", type=Path, help="results files (two or more)")
    parser.add_argument("--format", choices=FORMATS, default="terminal", help="output format (default: terminal)")
    parser.add_argument("--names", help="comma-separated column names, one per file (default: the file names)")
    parser.add_argument("--output", type=Path, help="write the table to this file instead of stdout")
    return parser


def run(args: argparse.Namespace) -> int:
    if len(args.results) < 2:
        raise UserError(None, "compare needs at least two results files")
    documents = [load_results(path) for path in args.results]
    names = run_names(args.results)
    if args.names is not None:
        names = [n.strip() for n in args.names.split(",")]
        if len(names) != len(documents) or not all(names):
            raise UserError(None, f"--names gives {len(names)} name(s) for {len(documents)} results files")
    differing = protocol_differences([d.get("protocol", {}) for d in documents])
    if differing:
        print(f"roadanomaly: WARNING: the protocols differ in {', '.join(differing)}: "
              "these numbers are not comparable", file=sys.stderr)
        for field, values in differing.items():
            print(f"  {field}: " + "; ".join(f"{n}={v}" for n, v in zip(names, values)), file=sys.stderr)
    text = render(compare(documents, names), args.format)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n", encoding="utf-8")
        print(f"comparison written to {args.output}")
    else:
        print(text)
    return 0
