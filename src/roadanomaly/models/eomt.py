"""EoMT: Encoder-only Mask Transformer (Kerssies et al., CVPR 2025).

A plain ViT whose last ``num_blocks`` blocks also process ``num_q`` learned queries (prepended to the tokens).
From the final-normed tokens, queries give class logits (C + 1, last = no-object) and mask embeddings; patch
tokens, upscaled to 1/4 resolution, give per-pixel features; mask logits are their dot products. During training,
a prediction before each query block restricts query -> patch attention to the predicted mask (masked attention),
each query's mask being switched off with probability 1 - ``attn_mask_probs[block]``; annealed to 0, masking is
gone and inference needs only the final prediction. In training every block still predicts (deep supervision), but
a block whose probability is 0 builds no mask: its attention runs unmasked, at no extra cost.

Input: RGB pixels in 0..255 (float), normalised inside by ``pixel_mean`` / ``pixel_std``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from roadanomaly.models.vit import LN_EPS, ViT

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

SIZES: dict[str, dict[str, int]] = {
    "S": dict(width=384, depth=12, heads=6, num_blocks=3),
    "B": dict(width=768, depth=12, heads=12, num_blocks=3),
    "L": dict(width=1024, depth=24, heads=16, num_blocks=4),
}


@dataclass
class EoMTConfig:
    """Architecture of an EoMT model. ``img_size`` is the reference input size (H, W) of ``pos_embed``."""

    width: int = 384
    depth: int = 12
    heads: int = 6
    patch: int = 16
    num_registers: int = 4
    img_size: tuple[int, int] = (1024, 1024)
    num_classes: int = 19
    num_q: int = 100
    num_blocks: int = 3
    mlp_ratio: float = 4.0
    num_upscale: int = 0
    """Upscale blocks after the patch grid; 0 means the default max(1, log2(patch) - 2)."""
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        self.img_size = (int(self.img_size[0]), int(self.img_size[1]))
        if self.class_names is not None:
            self.class_names = tuple(self.class_names)
        if not self.num_upscale:
            self.num_upscale = max(1, int(math.log2(self.patch)) - 2)
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if self.img_size[0] % self.patch or self.img_size[1] % self.patch:
            raise ValueError(f"img_size {self.img_size} is not divisible by patch {self.patch}")
        if not 0 < self.num_blocks <= self.depth:
            raise ValueError(f"num_blocks {self.num_blocks} must be in 1..depth ({self.depth})")

    @classmethod
    def preset(cls, size: str, **overrides: Any) -> "EoMTConfig":
        """The S / B / L configuration (DINOv2 widths with 4 registers, patch 16), with ``overrides``."""
        if size.upper() not in SIZES:
            raise ValueError(f"unknown EoMT size {size!r} (known: {', '.join(SIZES)})")
        return cls(**{**SIZES[size.upper()], **overrides})

    @property
    def grid(self) -> tuple[int, int]:
        return (self.img_size[0] // self.patch, self.img_size[1] // self.patch)

    @property
    def size_name(self) -> str:
        """"S", "B" or "L" when the encoder matches a preset, else "custom"."""
        for name, preset in SIZES.items():
            if all(getattr(self, k) == v for k, v in preset.items() if k != "num_blocks"):
                return name
        return "custom"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["img_size"] = list(self.img_size)
        d["class_names"] = None if self.class_names is None else list(self.class_names)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EoMTConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown EoMTConfig fields: {', '.join(unknown)}")
        return cls(**d)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ScaleBlock(nn.Module):
    """2x upsampling: transposed conv, GELU, depthwise 3x3 conv, LayerNorm2d."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv1 = nn.ConvTranspose2d(dim, dim, kernel_size=2, stride=2)
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim, bias=False)
        self.norm = LayerNorm2d(dim, eps=LN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.conv2(self.act(self.conv1(x))))


def mask_mlp(width: int) -> nn.Sequential:
    """Query embedding -> mask embedding: three linear layers with GELUs between them."""
    return nn.Sequential(
        nn.Linear(width, width), nn.GELU(), nn.Linear(width, width), nn.GELU(), nn.Linear(width, width)
    )


@dataclass
class EoMTOutput:
    """Predictions of one forward pass. Lists hold one entry per prediction, the final one last."""

    mask_logits: list[Tensor]
    """(B, Q, H/4, W/4) per prediction (for patch 16)."""
    class_logits: list[Tensor]
    """(B, Q, C + 1) per prediction; the last column is no-object."""
    queries: Tensor
    """(B, Q, D) final-normed query embeddings of the last prediction."""
    block_input: Tensor | None = None
    """(B, Q + prefix + patches, D) tokens entering block ``keep_block_input`` when one was asked for."""


class EoMT(nn.Module):
    def __init__(self, config: EoMTConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.num_q, self.num_blocks = c.num_q, c.num_blocks
        self.encoder = ViT(c.width, c.depth, c.heads, c.patch, c.num_registers, c.grid, c.mlp_ratio)
        self.q = nn.Embedding(c.num_q, c.width)
        self.class_head = nn.Linear(c.width, c.num_classes + 1)
        self.mask_head = mask_mlp(c.width)
        self.upscale = nn.Sequential(*[ScaleBlock(c.width) for _ in range(c.num_upscale)])
        self.register_buffer("attn_mask_probs", torch.ones(c.num_blocks))
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1) * 255)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1) * 255)
        self.masked_attn: bool | None = None
        """None: as trained (always in training, where ``attn_mask_probs`` > 0 in eval); True: always, without
        random disabling; False: never (only the final prediction)."""
        self.mask_generator: torch.Generator | None = None
        """Random source of the per-(image, query) mask switching (the global one when None)."""

    def _predict(self, x: Tensor, grid: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
        """Final-normed tokens -> mask logits, class logits and the query embeddings."""
        q = x[:, : self.num_q]
        patches = x[:, self.num_q + self.encoder.num_prefix_tokens :]
        patches = patches.transpose(1, 2).reshape(x.shape[0], -1, *grid)
        mask_logits = torch.einsum("bqc,bchw->bqhw", self.mask_head(q), self.upscale(patches))
        return mask_logits, self.class_head(q), q

    def _attn_mask(self, mask_logits: Tensor, grid: tuple[int, int], tokens: int, prob: float | None) -> Tensor:
        """(B, 1, N, N) boolean mask: queries see patches only where their mask logit > 0 (None = never disabled)."""
        b, start = mask_logits.shape[0], self.num_q + self.encoder.num_prefix_tokens
        inside = F.interpolate(mask_logits, grid, mode="bilinear").flatten(2) > 0
        if prob is not None and prob < 1:
            disabled = torch.rand(b, self.num_q, device=inside.device, generator=self.mask_generator) > prob
            inside = inside | disabled[..., None]
        mask = torch.ones(b, tokens, tokens, dtype=torch.bool, device=mask_logits.device)
        mask[:, : self.num_q, start:] = inside
        return mask[:, None]

    def forward_all(
        self, x: Tensor, masked_attn: bool | None = None, keep_block_input: int | None = None
    ) -> EoMTOutput:
        """Images (B, 3, H, W) in 0..255, H and W divisible by the patch -> every prediction and the queries
        (and the tokens entering block ``keep_block_input``, for heads that run copies of the last blocks)."""
        masked_attn = self.masked_attn if masked_attn is None else masked_attn
        x = (x - self.pixel_mean) / self.pixel_std
        x, grid = self.encoder.embed(x)
        blocks, first = self.encoder.blocks, len(self.encoder.blocks) - self.num_blocks
        probs = self.attn_mask_probs.tolist()
        mask_logits_per_layer, class_logits_per_layer = [], []
        block_input = None
        for i, block in enumerate(blocks):
            if i == first:
                x = torch.cat((self.q.weight[None].expand(x.shape[0], -1, -1), x), dim=1)
            mask = None
            if i >= first:
                prob = probs[i - first]
                if masked_attn is None and (self.training or prob > 0):
                    masked_attn_here, disable_prob = True, prob
                else:
                    masked_attn_here, disable_prob = bool(masked_attn), None
                if masked_attn_here:
                    mask_logits, class_logits, _ = self._predict(self.encoder.norm(x), grid)
                    mask_logits_per_layer.append(mask_logits)
                    class_logits_per_layer.append(class_logits)
                    if disable_prob is None or disable_prob > 0:  # at 0 every mask would be switched off
                        mask = self._attn_mask(mask_logits, grid, x.shape[1], disable_prob)
            if i == keep_block_input:
                block_input = x
            x = block(x, mask)
        mask_logits, class_logits, queries = self._predict(self.encoder.norm(x), grid)
        mask_logits_per_layer.append(mask_logits)
        class_logits_per_layer.append(class_logits)
        return EoMTOutput(mask_logits_per_layer, class_logits_per_layer, queries, block_input)

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Images (B, 3, H, W) in 0..255 -> (mask logits per prediction, class logits per prediction)."""
        out = self.forward_all(x)
        return out.mask_logits, out.class_logits
