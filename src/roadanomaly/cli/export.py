"""``roadanomaly export``: write ERFNet or EoMT as ONNX and check it against eager PyTorch."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from roadanomaly.errors import UserError
from roadanomaly.export import FORMATS

DESCRIPTION = """\
Export a model to ONNX (torch.onnx dynamo exporter) with dynamic batch, height and width:
  erfnet  images (B, 3, H, W) RGB in [0, 1], H and W multiples of 8 -> logits (B, C, H, W)
  eomt    crops (B, 3, H, W) RGB in 0..255, H and W multiples of the patch (16) -> mask_logits (B, Q, H/4, W/4),
          class_logits (B, Q, C + 1), queries (B, Q, D) of the final prediction; no masked attention is in the
          graph, so only annealed checkpoints (attn_mask_probs all 0) export
Afterwards the file is run with onnxruntime on random input of --check-size and compared with eager PyTorch: the
largest absolute difference of every output must be within --tolerance, else the command fails (exit 1).
The .onnx file runs with --backend onnxruntime (weights = the .onnx file)."""

TOLERANCE = 1e-4


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="export ERFNet or EoMT to ONNX (dynamic sizes), checked against eager PyTorch",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default="erfnet", choices=("erfnet", "eomt"), help="model kind (default erfnet)")
    parser.add_argument("--weights", required=True, type=Path, help="checkpoint file (or, for EoMT, a folder)")
    parser.add_argument("--format", default="onnx", choices=FORMATS, help="output format (default onnx)")
    parser.add_argument("--output", required=True, type=Path, help="file to write (ending .onnx)")
    parser.add_argument("--check-size", help="HxW of the check input (default: ERFNet 512x1024, EoMT its input size)")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help=f"largest allowed absolute difference (default {TOLERANCE:g})")
    parser.add_argument("--no-check", action="store_true", help="skip the comparison with eager PyTorch")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    parser.add_argument("--trust-pickle", action="store_true", help="allow full unpickling of a trusted checkpoint")
    parser.add_argument("--force", action="store_true", help="overwrite --output if it exists")
    return parser


def _load(kind: str, weights: Path, trust_pickle: bool) -> torch.nn.Module:
    if kind == "erfnet":
        from roadanomaly.models.erfnet_checkpoints import load_erfnet

        return load_erfnet(weights, trust_pickle=trust_pickle)
    from roadanomaly.models.eomt_checkpoints import load_trained_eomt

    return load_trained_eomt(weights, trust_pickle=trust_pickle)[0]


def _check_input(kind: str, model: torch.nn.Module, text: str | None) -> torch.Tensor:
    from roadanomaly.cli.benchmark import resolution

    if text is not None:
        size = resolution(text)
    else:
        size = (512, 1024) if kind == "erfnet" else tuple(model.config.img_size)  # type: ignore[union-attr]
    multiple = 8 if kind == "erfnet" else model.config.patch  # type: ignore[union-attr]
    if size[0] % multiple or size[1] % multiple:
        raise UserError(None, f"--check-size {size[0]}x{size[1]} is not a multiple of {multiple}")
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
    return x if kind == "erfnet" else x * 255


def run(args: argparse.Namespace) -> int:
    from roadanomaly.export import check_export, export_onnx

    if args.output.suffix != ".onnx":
        raise UserError(args.output, "the output file must end in .onnx")
    if args.output.exists() and not args.force:
        raise UserError(args.output, "exists already (use --force to overwrite)")
    model = _load(args.model, args.weights, args.trust_pickle)
    x = None if args.no_check else _check_input(args.model, model, args.check_size)
    export_onnx(model, args.output, opset=args.opset)
    print(f"wrote {args.output}")
    if x is None:
        return 0
    check = check_export(model, args.output, x)
    for name, diff in check.max_abs_diff.items():
        print(f"  {name:<13} max |onnxruntime - eager| = {diff:.2e}  (largest |value| {check.scale[name]:.3g})")
    size = "x".join(str(s) for s in check.shape[-2:])
    if not check.within(args.tolerance):
        print(f"check FAILED at {size}: {check.worst:.2e} > {args.tolerance:g}")
        return 1
    print(f"check passed at {size}: every output within {args.tolerance:g} of eager PyTorch")
    return 0
