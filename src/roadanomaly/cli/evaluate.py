"""``roadanomaly evaluate``: anomaly metrics of a model on benchmark bundles (and optionally Cityscapes mIoU)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from roadanomaly.data.bundle import discover_bundles
from roadanomaly.data.cityscapes import CityscapesDataset
from roadanomaly.errors import UserError
from roadanomaly.evaluate import AnomalyResult, evaluate_bundle, evaluate_segmentation
from roadanomaly.inference import load_predictor
from roadanomaly.protocol import EvalProtocol, parse_size
from roadanomaly.report import format_table, results_document, write_json
from roadanomaly.scoring import ALL_METHOD_NAMES, ScoringConfig


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate pixel anomaly scores (AuPRC, FPR95, AUROC) on benchmark bundles",
        description=(
            "Run a model once per image of each benchmark under --data (<root>/<Name>/images + labels_masks), compute "
            "every requested pixel score from that single forward pass, and report AuPRC, FPR at 95% TPR and AUROC "
            "pooled over all valid pixels of each dataset (label 255 ignored)."
        ),
    )
    parser.add_argument("--model", default="erfnet", help="model kind (default: erfnet; see the registry)")
    parser.add_argument("--weights", required=True, type=Path, help="checkpoint file (or, for EoMT, an HF folder)")
    parser.add_argument("--data", type=Path, help="root of the benchmark bundle (<root>/<Name>/images, labels_masks)")
    parser.add_argument("--datasets", help="comma-separated dataset names (default: every folder under --data)")
    parser.add_argument(
        "--methods", help=f"comma-separated scores (default: all the model supports; known: {', '.join(ALL_METHOD_NAMES)})"
    )
    parser.add_argument(
        "--size",
        default="native",
        type=_size,
        help="evaluation resolution: 'native' (default; scores at the label's size), HxW such as 512x1024, "
        "or a shorter side such as 512",
    )
    parser.add_argument("--skip-no-anomaly", action="store_true", help="skip images without any anomaly pixel")
    parser.add_argument("--temperature", type=float, default=1.0, help="softmax temperature T (default 1)")
    parser.add_argument(
        "--include-void", action="store_true", help="keep ERFNet's void channel among the classes for msp/entropy/energy"
    )
    parser.add_argument("--metric-mode", choices=("binned", "exact"), default="binned",
                        help="binned: constant memory, streaming (default); exact: sort-based, for small data")
    parser.add_argument("--cityscapes", type=Path, help="also report mIoU on this Cityscapes-layout root")
    parser.add_argument("--split", default="val", help="Cityscapes split for --cityscapes (default: val)")
    parser.add_argument("--output", type=Path, default=Path("results.json"), help="JSON results file (default: results.json)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--crop-size", type=int, help="EoMT: window size (default: the model's input size)")
    parser.add_argument("--autocast", choices=("bf16", "fp16"), help="EoMT on CUDA: mixed-precision inference")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow checkpoints that hold more than tensors (full unpickling: trusted files only)")
    parser.add_argument("--workers", type=int, default=1, help="data loading processes (default 1; 0 = inline)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _size(text: str) -> str:
    try:
        parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _split(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def run(args: argparse.Namespace) -> int:
    if args.data is None and args.cityscapes is None:
        raise UserError(None, "nothing to evaluate: give --data (benchmark bundles) and/or --cityscapes")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(None, f"--device {args.device} asked for, but no CUDA device is available")
    protocol = EvalProtocol(args.size, args.skip_no_anomaly, ScoringConfig(args.temperature, args.include_void))
    bundles = discover_bundles(args.data, _split(args.datasets)) if args.data is not None else []
    options = {"trust_pickle": args.trust_pickle}
    if args.model == "eomt":
        options.update(crop_size=args.crop_size, autocast=args.autocast)
    elif args.crop_size is not None or args.autocast is not None:
        raise UserError(None, "--crop-size and --autocast apply to --model eomt only")
    predictor = load_predictor(args.model, args.weights, device=args.device, **options)
    results: list[AnomalyResult] = []
    extra: dict = {}

    def save() -> None:
        write_json(args.output, results_document(protocol.to_dict(), predictor.info, results, **extra))

    try:
        for bundle in bundles:
            results += evaluate_bundle(
                predictor, bundle, _split(args.methods), protocol, args.metric_mode, args.workers, not args.quiet
            )
            save()
        if args.cityscapes is not None:
            dataset = CityscapesDataset(args.cityscapes, args.split)
            extra["segmentation"] = {
                "dataset": str(args.cityscapes),
                "split": args.split,
                **evaluate_segmentation(predictor, dataset, protocol, args.workers, not args.quiet),
            }
            save()
    except UserError:
        if results or extra:
            save()
            print(f"roadanomaly: partial results kept in {args.output}", file=sys.stderr)
        raise
    if results:
        print(format_table(results))
    if "segmentation" in extra:
        print(f"mIoU ({args.split}): {100 * extra['segmentation']['miou']:.2f} %")
    print(f"results written to {args.output}")
    return 0
