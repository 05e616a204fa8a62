"""``roadanomaly train erfnet``: train ERFNet on Cityscapes-layout data (real Cityscapes or SynthRoads)."""

from __future__ import annotations

import argparse
from pathlib import Path

from roadanomaly.errors import UserError
from roadanomaly.protocol import parse_size


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "erfnet",
        help="ERFNet on Cityscapes-layout data",
        description="Train ERFNet with PyTorch Lightning: class-weighted cross-entropy ignoring 255, Adam with a poly "
        "schedule, optional encoder-first stage (the published two-stage recipe), checkpoints and resume, "
        "validation mIoU every epoch. Options override the --config YAML file.",
    )
    parser.add_argument("--data", help="Cityscapes-layout root (leftImg8bit/, gtFine/)")
    parser.add_argument("--config", type=Path, help="YAML file of training settings (see configs/)")
    parser.add_argument("--output", help="output folder (default runs/erfnet)")
    parser.add_argument("--epochs", type=int, help="whole-network epochs")
    parser.add_argument("--encoder-epochs", type=int, help="encoder-only epochs before them (0 = skip)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float, help="Adam learning rate (default 5e-4)")
    parser.add_argument("--resize", type=hw, help="resize every image to HxW first (e.g. 512x1024)")
    parser.add_argument("--crop", type=hw, help="random HxW crops for training (e.g. 128x256)")
    parser.add_argument("--num-classes", type=int, choices=[19, 20], help="20 = 19 classes + void channel (default)")
    parser.add_argument("--max-train-images", type=int, help="use only the first N training images")
    parser.add_argument("--workers", type=int, help="data loading processes")
    parser.add_argument("--device", dest="accelerator", help="auto, cpu or gpu (Lightning accelerator)")
    parser.add_argument("--devices", help="number of devices (several GPUs train with DDP)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--resume", type=Path, help="Lightning checkpoint (last.ckpt) to continue from")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def hw(text: str) -> tuple[int, int]:
    """argparse type of an HxW size such as 128x256."""
    size = parse_size(text) if "x" in text.lower() else None
    if not isinstance(size, tuple):
        raise argparse.ArgumentTypeError(f"expected HxW such as 128x256, got {text!r}")
    return size


def run(args: argparse.Namespace) -> int:
    from roadanomaly.training.config import ERFNetTrainConfig
    from roadanomaly.training.train_erfnet import train_erfnet

    devices = args.devices if args.devices is None or not str(args.devices).isdigit() else int(args.devices)
    overrides = dict(
        data=args.data, output=args.output, epochs=args.epochs, encoder_epochs=args.encoder_epochs,
        batch_size=args.batch_size, lr=args.lr, resize=args.resize, crop=args.crop, num_classes=args.num_classes,
        max_train_images=args.max_train_images, workers=args.workers, accelerator=args.accelerator,
        devices=devices, seed=args.seed,
    )
    if args.config is not None:
        config = ERFNetTrainConfig.from_yaml(args.config, **overrides)
    else:
        config = ERFNetTrainConfig.from_dict({k: v for k, v in overrides.items() if v is not None})
    if not config.data:
        raise UserError(None, "no training data: give --data ROOT or 'data:' in the --config file")
    result = train_erfnet(config, resume=args.resume, progress=not args.quiet)
    print(f"best validation mIoU: {100 * result.val_miou:.2f} %")
    print(f"weights: {result.weights}  (Lightning checkpoint: {result.checkpoint})")
    return 0
