"""``roadanomaly predict``: anomaly heatmaps and overlays for arbitrary images, with any registered model kind."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from roadanomaly.cli.model_options import add_model_arguments, check_device, model_options
from roadanomaly.data.io import IMAGE_EXTENSIONS, read_image
from roadanomaly.errors import UserError
from roadanomaly.inference import load_predictor
from roadanomaly.protocol import EvalProtocol, parse_size
from roadanomaly.report.render import heatmap, overlay, resize_image, save_png
from roadanomaly.scoring import ALL_METHOD_NAMES, ScoringConfig, available_methods, check_methods, compute_scores


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict",
        help="write anomaly heatmaps and overlays for images",
        description=(
            "Run a model on an image or on every image of a folder and write, per method, "
            "OUT/<name>_<method>_heatmap.png (the score, min-max scaled per image, colormap inferno), "
            "OUT/<name>_<method>_overlay.png (the heatmap over the image) and with --npy "
            "OUT/<name>_<method>.npy (the raw score as float16, higher = more anomalous)."
        ),
    )
    parser.add_argument("input", type=Path, help="an image file or a folder of images")
    add_model_arguments(parser)
    parser.add_argument("--method", default="msp",
                        help=f"comma-separated scores (default: msp; known: {', '.join(ALL_METHOD_NAMES)})")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created if needed)")
    parser.add_argument("--npy", action="store_true", help="also write each raw score map as float16 .npy")
    parser.add_argument("--size", default="native", type=_size,
                        help="resolution the model sees: 'native' (default), HxW, or a shorter side such as 512")
    parser.add_argument("--temperature", type=float, default=1.0, help="softmax temperature T (default 1)")
    parser.add_argument("--include-void", action="store_true",
                        help="keep ERFNet's void channel among the classes for msp/entropy/energy")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _size(text: str) -> str:
    try:
        parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def input_images(path: Path) -> list[Path]:
    """``path`` itself, or the images directly inside the folder ``path`` (sorted by name)."""
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not images:
            raise UserError(path, f"no images found (looked for {', '.join(IMAGE_EXTENSIONS)})")
        return images
    if not path.is_file():
        raise UserError(path, "no such image or folder")
    return [path]


def output_names(images: list[Path]) -> list[str]:
    """One output name per image: its stem, or stem plus extension where two images share a stem."""
    stems = [p.stem for p in images]
    return [p.stem if stems.count(p.stem) == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower()}" for p in images]


def parse_methods(text: str) -> list[str]:
    """The comma-separated method names, each checked against the known scores."""
    methods = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not methods:
        raise UserError(None, "--method names no score")
    unknown = [m for m in methods if m not in ALL_METHOD_NAMES]
    if unknown:
        raise UserError(None, f"unknown method {unknown[0]!r} (known: {', '.join(ALL_METHOD_NAMES)})")
    return methods


def score_image(predictor, image: np.ndarray, methods: list[str], config: ScoringConfig) -> dict[str, np.ndarray]:
    """Every requested (H, W) float32 score map of one (H, W, 3) uint8 image, from one forward pass."""
    outputs = predictor(torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None])
    available = available_methods(outputs)
    missing = [m for m in methods if m not in available]
    if missing:
        known = ", ".join(available)
        raise UserError(None, f"method {missing[0]!r} is not defined for this model (available: {known})")
    scores = compute_scores(outputs, methods, config)
    return {m: scores[m][0].float().cpu().numpy() for m in methods}


def run(args: argparse.Namespace) -> int:
    methods = parse_methods(args.method)
    images = input_images(args.input)
    check_device(args.device)
    predictor = load_predictor(args.model, args.weights, device=args.device, **model_options(args))
    spec = getattr(predictor, "spec", None)
    if spec is not None:  # a predictor that declares its outputs: check the methods before any image
        try:
            check_methods(methods, spec)
        except ValueError as error:
            raise UserError(None, str(error)) from None
    config = ScoringConfig(args.temperature, args.include_void)
    protocol = EvalProtocol(args.size)
    args.out.mkdir(parents=True, exist_ok=True)
    written = 0
    for path, name in tqdm(list(zip(images, output_names(images))), unit="img", disable=args.quiet):
        image = read_image(path)
        image = resize_image(image, protocol.target_size(*image.shape[:2]))
        for method, score in score_image(predictor, image, methods, config).items():
            stem = args.out / f"{name}_{method}"
            save_png(stem.with_name(stem.name + "_heatmap.png"), heatmap(score))
            save_png(stem.with_name(stem.name + "_overlay.png"), overlay(image, score))
            if args.npy:
                np.save(stem.with_name(stem.name + ".npy"), score.astype(np.float16))
            written += 1
    print(f"{written} score map(s) of {len(images)} image(s) written to {args.out}")
    return 0
