"""``roadanomaly synth``: write the SynthRoads world (Cityscapes layout + anomaly bundles) to a folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from roadanomaly.progress import stage_callback


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "synth",
        help="generate SynthRoads: Cityscapes-layout train/val data and SynthAnomaly/SynthObstacle bundles",
        description="Render the procedural SynthRoads world, deterministic from --seed, into OUTPUT/cityscapes "
        "(leftImg8bit/, gtFine/*_labelIds.png) and OUTPUT/bundle/<Name>/{images,labels_masks}.",
    )
    parser.add_argument("--output", type=Path, required=True, help="folder to write into")
    parser.add_argument("--train", type=int, default=500, help="training images (default 500)")
    parser.add_argument("--val", type=int, default=100, help="validation images (default 100)")
    parser.add_argument("--anomaly", type=int, default=100, help="SynthAnomaly images (default 100)")
    parser.add_argument("--obstacle", type=int, default=100, help="SynthObstacle images (default 100)")
    parser.add_argument("--size", default="256x512", help="HxW (default 256x512)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def run(args: argparse.Namespace) -> int:
    from roadanomaly.data.synthroads import generate_synthroads
    from roadanomaly.errors import UserError
    from roadanomaly.protocol import parse_size

    try:
        size = parse_size(args.size)
    except ValueError as error:
        raise UserError(None, str(error)) from None
    if not isinstance(size, tuple):
        raise UserError(None, f"--size must be HxW, got {args.size!r}")
    total = args.train + args.val + args.anomaly + args.obstacle
    with tqdm(total=total, unit="img", dynamic_ncols=True) as bar:
        paths = generate_synthroads(args.output, args.train, args.val, args.anomaly, args.obstacle, size, args.seed,
                                    progress=stage_callback(bar))
    print(f"Cityscapes layout: {paths.cityscapes}\nbenchmark bundles: {paths.bundle}")
    return 0
