"""``roadanomaly train MODEL``: one sub-subcommand per model, each in its own module (``add_parser`` / ``run``)."""

from __future__ import annotations

import argparse
import importlib
from types import ModuleType

TRAINERS: tuple[str, ...] = ("train_erfnet", "train_eomt", "train_anomaly_head")
"""Modules of ``roadanomaly.cli`` that add a ``train`` sub-subcommand; a listed module that is absent is skipped."""


def _trainer_modules() -> list[ModuleType]:
    modules = []
    for name in TRAINERS:
        qualified = f"roadanomaly.cli.{name}"
        try:
            modules.append(importlib.import_module(qualified))
        except ModuleNotFoundError as error:
            if error.name != qualified:  # the module exists but something it imports is missing
                raise
    return modules


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train a model (ERFNet, EoMT, ...) on Cityscapes-layout data or SynthRoads",
        description="Train a model with PyTorch Lightning; `roadanomaly train MODEL --help` lists its options.",
    )
    models = parser.add_subparsers(dest="model", metavar="MODEL", required=True)
    for module in _trainer_modules():
        module.add_parser(models).set_defaults(run=module.run)
    return parser


def run(args: argparse.Namespace) -> int:  # replaced by the chosen model's run through set_defaults
    raise AssertionError("a train MODEL subcommand sets its own run")
