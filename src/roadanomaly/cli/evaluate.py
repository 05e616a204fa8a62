"""``roadanomaly evaluate``: anomaly metrics of a model on benchmark datasets (and optionally Cityscapes mIoU)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from roadanomaly.cli.model_options import add_model_arguments, check_device, model_options, size_type
from roadanomaly.data.cityscapes import CityscapesDataset
from roadanomaly.data.layouts import discover_datasets
from roadanomaly.errors import UserError
from roadanomaly.evaluation import (
    DEFAULT_METRIC_MEMORY,
    DEFAULT_SAVE_EVERY,
    DEFAULT_WORKERS,
    EvaluationEngine,
    init_from_environment,
)
from roadanomaly.inference import load_predictor
from roadanomaly.metrics.anomaly import DEFAULT_BITS
from roadanomaly.protocol import PROTOCOL_PRESETS, EvalProtocol
from roadanomaly.report import format_table, write_report
from roadanomaly.report.overlays import ExtremesRecorder
from roadanomaly.scoring import ALL_METHOD_NAMES, ScoringConfig


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate pixel anomaly scores (AuPRC, FPR95, AUROC) on benchmark datasets",
        description=(
            "Run a model once per image of each benchmark under --data, compute every requested pixel score from "
            "that single forward pass, and report AuPRC, FPR at 95%% TPR and AUROC pooled over all valid pixels of "
            "each dataset (label 255 ignored). Progress is saved as it goes: an interrupted run (Ctrl-C, SIGTERM, a "
            "bad file) continues with --resume. Under torchrun every dataset is shared among the processes."
        ),
    )
    add_model_arguments(parser)
    parser.add_argument("--data", type=Path, help="root of the benchmark datasets (<root>/<Name>/images, labels_masks)")
    parser.add_argument("--datasets", help="comma-separated dataset names (default: every folder under --data)")
    parser.add_argument(
        "--methods",
        help=f"comma-separated scores (default: all the model supports; known: {', '.join(ALL_METHOD_NAMES)})",
    )
    parser.add_argument("--protocol", default="native", choices=list(PROTOCOL_PRESETS),
                        help="evaluation protocol preset (default: native); --size and the options below override "
                        "its fields, and the JSON records the result")
    parser.add_argument(
        "--size", type=size_type,
        help="evaluation resolution: 'native' (scores at the label's size), HxW such as 512x1024, "
        "or a shorter side such as 512 (default: the protocol's)",
    )
    parser.add_argument("--skip-no-anomaly", action="store_true", help="skip images without any anomaly pixel")
    parser.add_argument("--temperature", type=float, help="softmax temperature T (default: the protocol's, 1)")
    parser.add_argument("--temperatures", type=_floats, metavar="T1,T2,...",
                        help="sweep these temperatures from the same forward pass (one row per method and T)")
    parser.add_argument(
        "--include-void", action="store_true", help="keep a void channel among the classes for msp/entropy/energy"
    )
    parser.add_argument("--metric-mode", choices=("binned", "exact"), default="binned",
                        help="binned: constant memory, streaming (default); exact: sort-based, for small data")
    parser.add_argument("--metric-memory", type=_bytes, default=DEFAULT_METRIC_MEMORY, metavar="SIZE",
                        help="memory all binned metrics of a dataset may hold, e.g. 512MiB or 2GiB (default 1.25GiB): "
                        "a large sweep gets smaller states (its rows' max_error_bound says what that costs)")
    parser.add_argument("--cityscapes", type=Path, help="also report mIoU on this Cityscapes-layout root")
    parser.add_argument("--split", default="val", help="Cityscapes split for --cityscapes (default: val)")
    parser.add_argument("--output", type=Path, default=Path("results.json"),
                        help="JSON results file (default: results.json); progress goes beside it")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from its progress file")
    parser.add_argument("--save-every", type=int, default=DEFAULT_SAVE_EVERY, metavar="N",
                        help=f"write the progress file every N images (default {DEFAULT_SAVE_EVERY})")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help=f"data loading processes (default {DEFAULT_WORKERS}; 0 = inline)")
    parser.add_argument("--report", type=Path, metavar="DIR",
                        help="also write an HTML report into DIR: index.html with the table, PR/ROC curves, score "
                        "histograms and overlays of each method's best and worst images")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one temperature")
    return values


_UNITS = {"": 1, "B": 1, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "KB": 10**3, "MB": 10**6, "GB": 10**9}


def _bytes(text: str) -> int:
    """``512MiB``, ``2GiB``, ``1.5GB`` or a number of bytes -> bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).upper() if match else ""
    if match is None or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"expected a size such as 512MiB or 2GiB, got {text!r}")
    return int(float(match.group(1)) * _UNITS[unit])


def _split(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def protocol_from_args(args: argparse.Namespace) -> EvalProtocol:
    """The chosen preset with the options given on the command line replacing its fields."""
    preset = PROTOCOL_PRESETS[args.protocol]
    overrides: dict = {}
    if args.size is not None:
        overrides["size"] = args.size
    if args.skip_no_anomaly:
        overrides["skip_no_anomaly"] = True
    if args.temperature is not None or args.include_void:
        overrides["scoring"] = ScoringConfig(
            preset.scoring.temperature if args.temperature is None else args.temperature,
            preset.scoring.include_void or args.include_void,
        )
    return EvalProtocol.preset(args.protocol, **overrides)


def progress_file_for(output: Path, rank: int, world: int) -> Path:
    """Where a run writing ``output`` keeps its progress (one file per process under torchrun)."""
    suffix = ".progress.pt" if world == 1 else f".progress.rank{rank}-of-{world}.pt"
    return output.with_name(output.name + suffix)


def run(args: argparse.Namespace) -> int:
    if args.data is None and args.cityscapes is None:
        raise UserError(None, "nothing to evaluate: give --data (benchmark datasets) and/or --cityscapes")
    check_device(args.device)
    ranks = init_from_environment(args.device)
    device = f"cuda:{ranks.local_rank}" if args.device == "cuda" and ranks.world > 1 else args.device
    protocol = protocol_from_args(args)
    datasets = discover_datasets(args.data, _split(args.datasets)) if args.data is not None else []
    segmentation = CityscapesDataset(args.cityscapes, args.split) if args.cityscapes is not None else None
    predictor = load_predictor(args.model, args.weights, device=device, **model_options(args))
    engine = EvaluationEngine(
        predictor, protocol, _split(args.methods), temperatures=args.temperatures, metric_mode=args.metric_mode,
        workers=args.workers, progress_bars=not args.quiet, output=args.output,
        progress_file=progress_file_for(args.output, ranks.rank, ranks.world), save_every=args.save_every,
        resume=args.resume, ranks=ranks, metric_memory=args.metric_memory,
        observers=[ExtremesRecorder(args.report)] if args.report is not None and ranks.is_main else [],
    )
    if engine.metric_bits < DEFAULT_BITS and args.metric_mode == "binned" and ranks.is_main:
        print(f"roadanomaly: {len(engine.variants)} rows share --metric-memory {args.metric_memory / 2**30:.2f} GiB: "
              f"binned states of {engine.metric_bits} bits instead of {DEFAULT_BITS} (crowded scores lose exactness; "
              "see each row's max_error_bound)", file=sys.stderr)
    document = engine.run(datasets, segmentation)
    if not ranks.is_main:
        return 0
    if document.results:
        print(format_table(document.results))
    if document.segmentation is not None:
        print(f"mIoU ({args.split}): {100 * document.segmentation['miou']:.2f} %")
    print(f"results written to {args.output}")
    if args.report is not None:
        print(f"report written to {write_report(document, args.report)}")
    return 0
