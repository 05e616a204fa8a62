"""``roadanomaly convert``: rewrite an EoMT checkpoint in another layout (every writable registered layout)."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from roadanomaly.errors import UserError

WIDTH = 116  # of the description's lines
INDENT = 15


def describe_layouts() -> str:
    """``convert --help``'s text: every registered layout, and what DST is for each writable one."""
    from roadanomaly.models.eomt_layouts import REGISTRY

    lines = ["Convert an EoMT checkpoint between layouts. The source layout is detected:"]
    for name, layout in REGISTRY.items():
        first = f"  {name:<{INDENT - 3}} "
        lines.append(textwrap.fill(layout.description, WIDTH, initial_indent=first, subsequent_indent=" " * INDENT))
    files = [
        f"a file ending {'/'.join(layout.file_suffixes)} for --to {name}"
        for name, layout in REGISTRY.items()
        if layout.writable and layout.file_suffixes
    ]
    ending = f"DST is {', '.join(files)}, a folder otherwise." if files else "DST is a folder."
    ending += " Every weight must fit: any missing, unexpected or mis-shaped key is an error."
    lines.append(textwrap.fill(ending, WIDTH))
    return "\n".join(lines)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from roadanomaly.models.eomt_layouts import REGISTRY, writable_layout_names

    writable = writable_layout_names()
    files = ", ".join(name for name in writable if REGISTRY[name].file_suffixes)
    folders = ", ".join(name for name in writable if not REGISTRY[name].file_suffixes)
    parser = subparsers.add_parser(
        "convert",
        help=f"convert an EoMT checkpoint between layouts ({', '.join(writable)})",
        description=describe_layouts(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", metavar="SRC", type=Path, help="checkpoint file or folder to read")
    parser.add_argument("dst", metavar="DST", type=Path, help=f"file ({files}) or folder ({folders}) to write")
    parser.add_argument("--to", required=True, choices=writable, help="layout to write (required)")
    parser.add_argument(
        "--img-size", type=int, nargs="+", metavar="N",
        help="reference input size H [W] when the position table is not square (or, for DINOv2, the target size;"
        " default 1024)",
    )  # fmt: skip
    parser.add_argument("--heads", type=int, help="attention heads when not width/64 (official/DINOv2 sources)")
    parser.add_argument("--num-classes", type=int, default=19, help="DINOv2 source only: classes (default 19)")
    parser.add_argument("--num-queries", type=int, default=100, help="DINOv2 source only: queries (default 100)")
    parser.add_argument("--trust-pickle", action="store_true", help="allow full unpickling of a trusted .ckpt")
    parser.add_argument("--force", action="store_true", help="overwrite DST if it exists")
    return parser


def run(args: argparse.Namespace) -> int:
    from roadanomaly.models.eomt_checkpoints import convert_checkpoint

    if args.dst.exists() and not args.force:
        raise UserError(args.dst, "exists already (use --force to overwrite)")
    if args.dst.resolve() == args.src.resolve():
        raise UserError(args.dst, "is the source itself")
    img_size = None
    if args.img_size:
        if len(args.img_size) > 2:
            raise UserError("--img-size", "give H or H W")
        img_size = (args.img_size[0], args.img_size[-1])
    dinov2 = {"num_classes": args.num_classes, "num_q": args.num_queries}
    layout, config = convert_checkpoint(
        args.src, args.dst, args.to, img_size=img_size, heads=args.heads, trust_pickle=args.trust_pickle, dinov2=dinov2
    )
    print(
        f"converted {args.src} ({layout}) -> {args.dst} ({args.to}): EoMT-{config.size_name} width {config.width},"
        f" depth {config.depth}, {config.num_q} queries, {config.num_classes} classes, input {config.img_size}"
    )
    return 0
