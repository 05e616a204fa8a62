"""``roadanomaly demo``: the whole pipeline on the embedded SynthRoads world, from nothing to a results table."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo",
        help="generate SynthRoads, train ERFNet on it and evaluate every pixel score (minutes on a CPU)",
        description="Generate the SynthRoads world (Cityscapes layout + anomaly bundles), train ERFNet on it or "
        "reuse weights cached by an earlier run, then print the mIoU and the AuPRC/FPR95/AUROC table and "
        "write results.json.",
    )
    parser.add_argument("--workdir", type=Path, help="where data, weights and results go "
                        "(default: $ROADANOMALY_HOME/demo or ~/.cache/roadanomaly/demo)")
    parser.add_argument("--regenerate", action="store_true", help="generate the data again (and retrain)")
    parser.add_argument("--retrain", action="store_true", help="train again even if cached weights exist")
    parser.add_argument("--epochs", type=int, help="whole-network training epochs (default 8, after 4 encoder-only epochs)")
    parser.add_argument("--train-images", type=int, help="number of training images (default 400)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def run(args: argparse.Namespace) -> int:
    from roadanomaly.demo import DemoConfig, run_demo

    config = DemoConfig()
    if args.epochs is not None:
        config.train.epochs = args.epochs
    if args.train_images is not None:
        config.train_images = args.train_images
    run_demo(args.workdir, config, args.regenerate, args.retrain, progress=not args.quiet)
    return 0
