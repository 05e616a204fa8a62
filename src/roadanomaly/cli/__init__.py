"""The ``roadanomaly`` command. Each subcommand lives in its own module with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import importlib
import sys

from roadanomaly.errors import UserError
from roadanomaly.evaluation.interrupts import EvaluationInterrupted
from roadanomaly.runtime import retain_freed_memory

SUBCOMMANDS: tuple[str, ...] = (
    "evaluate", "train", "demo", "synth", "convert", "report", "compare", "predict", "export", "benchmark"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="roadanomaly", description="Anomaly segmentation for road scenes: evaluate, train, generate data."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"roadanomaly.cli.{name}")
        sub = module.add_parser(subparsers)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 2
    retain_freed_memory()
    try:
        return int(args.run(args) or 0)
    except UserError as error:
        print(f"roadanomaly: error: {error}", file=sys.stderr)
        return 2
    except EvaluationInterrupted as stop:
        print(f"roadanomaly: {stop}", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        print("roadanomaly: interrupted", file=sys.stderr)
        return 130
