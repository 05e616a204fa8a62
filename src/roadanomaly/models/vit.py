"""A DINOv2-style plain Vision Transformer, with parameter names that follow timm's ``VisionTransformer``.

Token order: CLS, registers, patches. The learned absolute position embedding covers the patch grid only (no
class position, as timm's ``no_embed_class`` DINOv2 models) and is stored for a reference grid; other grids get a
bicubic resample of it. Pre-norm blocks with LayerScale; attention runs through ``F.scaled_dot_product_attention``
and takes an optional boolean mask (True = may attend).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LN_EPS = 1e-6


def resample_grid(pos: Tensor, old: tuple[int, int], new: tuple[int, int]) -> Tensor:
    """Bicubically resample a (1, old_h * old_w, D) position table to (1, new_h * new_w, D)."""
    if tuple(old) == tuple(new):
        return pos
    dim = pos.shape[-1]
    grid = pos.reshape(1, old[0], old[1], dim).permute(0, 3, 1, 2)
    # antialias as timm does; it only matters when shrinking the grid
    grid = F.interpolate(grid.float(), size=new, mode="bicubic", align_corners=False, antialias=True)
    return grid.to(pos.dtype).permute(0, 2, 3, 1).reshape(1, new[0] * new[1], dim)


class PatchEmbed(nn.Module):
    """Non-overlapping patches to tokens: (B, 3, H, W) -> (B, H/p * W/p, D)."""

    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (rows ordered q, k, v; heads contiguous)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x)))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), mask))
        return x + self.ls2(self.mlp(self.norm2(x)))


class ViT(nn.Module):
    """Patch embedding, CLS + register tokens, position embedding, ``depth`` blocks and a final LayerNorm.

    The blocks are applied by the caller (EoMT inserts queries part-way), so this module only embeds.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        patch: int = 16,
        num_registers: int = 4,
        grid: tuple[int, int] = (64, 64),
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.dim, self.patch, self.grid = dim, patch, tuple(grid)
        self.num_prefix_tokens = 1 + num_registers
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.reg_token = nn.Parameter(torch.zeros(1, num_registers, dim)) if num_registers else None
        self.pos_embed = nn.Parameter(torch.randn(1, grid[0] * grid[1], dim) * 0.02)
        self.patch_embed = PatchEmbed(patch, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        nn.init.normal_(self.cls_token, std=1e-6)

    def embed(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Normalised pixels (B, 3, H, W) -> tokens (B, 1 + R + h * w, D) and the patch grid (h, w)."""
        h, w = x.shape[-2] // self.patch, x.shape[-1] // self.patch
        tokens = self.patch_embed(x) + resample_grid(self.pos_embed, self.grid, (h, w))
        prefix = [self.cls_token] if self.reg_token is None else [self.cls_token, self.reg_token]
        prefix = [t.expand(x.shape[0], -1, -1) for t in prefix]
        return torch.cat([*prefix, tokens], dim=1), (h, w)
