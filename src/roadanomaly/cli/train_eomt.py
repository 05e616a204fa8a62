"""``roadanomaly train eomt``: train EoMT (Cityscapes-layout data, or a generated SynthRoads stream)."""

from __future__ import annotations

import argparse
from pathlib import Path

from roadanomaly.errors import UserError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    shipped = ", ".join(sorted(p.stem for p in CONFIGS.glob("eomt_*.yaml")))
    parser = subparsers.add_parser(
        "eomt",
        help="EoMT (encoder-only mask transformer), e.g. the official Cityscapes recipe or a SynthRoads CPU one",
        description="Train EoMT with PyTorch Lightning: Hungarian-matched mask classification losses on every "
        "query block, masked-attention annealing, AdamW with layer-wise lr decay and two-stage warmup, mixed "
        "precision on GPUs, checkpoints and exact resume. Writes OUTPUT/model (roadanomaly layout: "
        "`roadanomaly evaluate --model eomt --weights OUTPUT/model`, `roadanomaly convert`). Options override the "
        f"--config file. Shipped configs: {shipped}.",
    )
    parser.add_argument("--config", required=True, help="YAML file of training settings, or a shipped config's name")
    parser.add_argument("--data", help="Cityscapes-layout root (training and validation splits)")
    parser.add_argument("--output", help="output folder (default: the config's, runs/eomt)")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoints/last.ckpt")
    parser.add_argument("--max-minutes", type=float, help="stop after this many minutes (resume later)")
    parser.add_argument("--max-steps", type=int, help="schedule length in steps")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--init", help="DINOv2 backbone weights file to start the encoder from")
    parser.add_argument("--workers", type=int, help="data loading processes")
    parser.add_argument("--device", dest="accelerator", help="auto, cpu or gpu (Lightning accelerator)")
    parser.add_argument("--devices", help="number of devices (several GPUs train with DDP)")
    parser.add_argument("--precision", help="auto (bf16 mixed on GPUs), 32-true, bf16-mixed, 16-mixed")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def config_path(name: str) -> Path:
    """A YAML path as given, else a shipped config of that name (with or without .yaml)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = CONFIGS / (name if name.endswith(".yaml") else f"{name}.yaml")
    if shipped.is_file():
        return shipped
    raise UserError(name, "no such config file (nor a shipped config of that name)")


def run(args: argparse.Namespace) -> int:
    from roadanomaly.training.eomt.config import EoMTTrainConfig
    from roadanomaly.training.eomt.train import train_eomt

    devices = args.devices if args.devices is None or not str(args.devices).isdigit() else int(args.devices)
    overrides = dict(
        data=args.data, output=args.output, max_minutes=args.max_minutes, max_steps=args.max_steps,
        batch_size=args.batch_size, init=args.init, workers=args.workers, accelerator=args.accelerator,
        devices=devices, precision=args.precision, seed=args.seed,
    )  # fmt: skip
    config = EoMTTrainConfig.from_yaml(config_path(args.config), **overrides)
    result = train_eomt(config, resume=True if args.resume else None, progress=not args.quiet)
    print(f"steps: {result.steps}   validation mIoU: {100 * result.val_miou:.2f} %")
    print(f"weights: {result.weights}  (resume state: {result.checkpoint})")
    return 0
