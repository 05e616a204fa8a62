"""Reading an EoMT's configuration off the shapes of a state dict in our names (files that carry no config)."""

from __future__ import annotations

import math
import re
from pathlib import Path

from roadanomaly.errors import UserError
from roadanomaly.models.eomt import EoMTConfig
from roadanomaly.models.eomt_layouts.common import StateDict, first_keys

REQUIRED: tuple[str, ...] = (
    "encoder.cls_token", "encoder.pos_embed", "encoder.patch_embed.proj.weight", "q.weight", "class_head.weight",
    "attn_mask_probs", "encoder.blocks.0.mlp.fc1.weight",
)  # fmt: skip


def square_side(n: int) -> int | None:
    """The side of an n-position square grid, None when n is not a square."""
    side = math.isqrt(n)
    return side if side * side == n else None


def _grid_of_positions(n: int, img_size: tuple[int, int] | None, patch: int, where: Path) -> tuple[int, int]:
    if img_size is not None:
        return (img_size[0] // patch, img_size[1] // patch)
    side = square_side(n)
    if side is None:
        raise UserError(where, f"pos_embed has {n} positions, not a square grid: give the image size (img_size)")
    return (side, side)


def _fold_class_position(sd: StateDict, grid: tuple[int, int]) -> None:
    """A table with one extra leading (class) position: add it to the CLS token, keep the patch grid."""
    pos = sd.get("encoder.pos_embed")
    if pos is not None and pos.shape[1] == grid[0] * grid[1] + 1 and "encoder.cls_token" in sd:
        sd["encoder.cls_token"] = sd["encoder.cls_token"] + pos[:, :1]
        sd["encoder.pos_embed"] = pos[:, 1:]


def infer_config(
    sd: StateDict, where: Path, img_size: tuple[int, int] | None = None, heads: int | None = None
) -> EoMTConfig:
    """The EoMTConfig of a state dict in our names (heads default to width / 64, as in every DINOv2 ViT).

    A position table with a leading class position is folded into the CLS token, in ``sd`` itself.
    """
    missing = [k for k in REQUIRED if k not in sd]
    if missing:
        raise UserError(where, f"not a complete EoMT checkpoint: missing {first_keys(missing)} (in roadanomaly names)")
    width = sd["encoder.cls_token"].shape[-1]
    patch = sd["encoder.patch_embed.proj.weight"].shape[-1]
    n_pos = sd["encoder.pos_embed"].shape[1]
    if img_size is None and square_side(n_pos) is None and square_side(n_pos - 1):
        side = square_side(n_pos - 1)
        _fold_class_position(sd, (side, side))
    grid = _grid_of_positions(sd["encoder.pos_embed"].shape[1], img_size, patch, where)
    _fold_class_position(sd, grid)
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"encoder\.blocks\.(\d+)\.", k))}
    upscale = {int(m.group(1)) for k in sd if (m := re.match(r"upscale\.(\d+)\.", k))}
    reg = sd.get("encoder.reg_token")
    try:
        return EoMTConfig(
            width=width,
            depth=max(blocks) + 1,
            heads=heads or max(1, width // 64),
            patch=patch,
            num_registers=0 if reg is None else reg.shape[1],
            img_size=(grid[0] * patch, grid[1] * patch),
            num_classes=sd["class_head.weight"].shape[0] - 1,
            num_q=sd["q.weight"].shape[0],
            num_blocks=sd["attn_mask_probs"].shape[0],
            mlp_ratio=sd["encoder.blocks.0.mlp.fc1.weight"].shape[0] / width,
            num_upscale=len(upscale) or 0,
        )
    except ValueError as error:
        raise UserError(where, f"inconsistent EoMT checkpoint: {error}") from None
