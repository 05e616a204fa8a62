"""``roadanomaly train anomaly-head``: the EoMT-EXT anomaly head (and the RbA-OE baseline) on a frozen EoMT."""

from __future__ import annotations

import argparse
from pathlib import Path

from roadanomaly.errors import UserError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "anomaly-head",
        help="train the EoMT-EXT anomaly head on a frozen EoMT with pasted outliers",
        description="Paste outlier objects into inlier images, match the frozen EoMT's queries to the segments and "
        "train an MLP head on the query embeddings to say normal / anomaly / no-object. By default the base stays "
        "frozen and training runs on a cache of query embeddings and mask logits; the RbA-OE baseline (the class "
        "head fine-tuned with RbA's outlier loss) is trained on the same samples and stored with the head. "
        "Options override the --config YAML file.",
    )
    parser.add_argument("--base", help="EoMT checkpoint (official, Hugging Face or roadanomaly layout)")
    parser.add_argument("--data", help="Cityscapes-layout root of the inlier images")
    parser.add_argument(
        "--outliers", nargs="+", metavar="SOURCE",
        help="outlier sources: synth (the SynthRoads outlier family, default), synth:SIZE, coco:ROOT, or a folder "
        "of RGBA cut-outs or images/ + masks/ pairs",
    )  # fmt: skip
    parser.add_argument("--output", help="output folder (default runs/anomaly_head)")
    parser.add_argument("--config", type=Path, help="YAML file of settings (see configs/anomaly_head*.yaml)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--hidden", type=int, help="hidden width of the head's MLP")
    parser.add_argument(
        "--head-blocks", type=int, help="copies of the base's last query blocks run by the head (0: MLP only)"
    )
    parser.add_argument(
        "--head-masks", action="store_true", default=None,
        help="the head also predicts its own masks (needs --head-blocks); its anomaly map is drawn with them",
    )  # fmt: skip
    parser.add_argument("--copies", type=int, help="pasted versions of each inlier image")
    parser.add_argument("--max-images", type=int, help="use only the first N inlier images")
    parser.add_argument("--paste-probability", type=float, help="chance an image receives outliers")
    parser.add_argument("--feather", type=float, help="edge feathering sigma in pixels (0 = hard edges)")
    parser.add_argument("--colour-match", type=float, help="0..1 colour matching of objects to their surroundings")
    parser.add_argument(
        "--train", nargs="+", choices=["class_head", "mask_head", "last_blocks"],
        help="base parts to fine-tune with the head (frozen by default; disables the cache)",
    )  # fmt: skip
    parser.add_argument("--last-blocks", type=int, help="how many last blocks --train last_blocks unfreezes")
    parser.add_argument("--no-cache", action="store_true", help="forward every batch through the base (full path)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the RbA-OE baseline")
    parser.add_argument("--device", dest="accelerator", help="cpu, gpu or auto (Lightning accelerator)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from roadanomaly.training.anomaly_head import train_anomaly_head
    from roadanomaly.training.anomaly_head_config import AnomalyHeadTrainConfig

    overrides = {
        "base": args.base, "data": args.data, "output": args.output, "epochs": args.epochs,
        "batch_size": args.batch_size, "lr": args.lr, "hidden": args.hidden, "head_blocks": args.head_blocks,
        "head_masks": args.head_masks,
        "copies": args.copies, "max_images": args.max_images, "paste_probability": args.paste_probability, "feather": args.feather,
        "colour_match": args.colour_match, "last_blocks": args.last_blocks, "accelerator": args.accelerator,
        "seed": args.seed, "outliers": tuple(args.outliers) if args.outliers else None,
        "train": tuple(args.train) if args.train else None, "cached": False if args.no_cache else None,
        "baseline": False if args.no_baseline else None,
    }  # fmt: skip
    if args.config is not None:
        config = AnomalyHeadTrainConfig.from_yaml(args.config, **overrides)
    else:
        config = AnomalyHeadTrainConfig.from_dict({k: v for k, v in overrides.items() if v is not None})
    if not config.base:
        raise UserError(None, "no base model: give --base EOMT or 'base:' in the --config file")
    if not config.data:
        raise UserError(None, "no inlier data: give --data ROOT or 'data:' in the --config file")
    result = train_anomaly_head(config, progress=not args.quiet)
    path = "cached" if config.use_cache else "full"
    print(f"trained on {result.samples} pasted samples ({path} path): cache {result.cache_s:.1f} s, "
          f"training {result.train_s:.1f} s")  # fmt: skip
    print(f"heads: {result.heads}  (anomaly{'' if not config.baseline else ' + rba_oe'})")
    return 0
