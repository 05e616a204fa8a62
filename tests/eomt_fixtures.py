"""Random EoMT / DINOv2 weights written out in the exact real layouts, independently of the package's converters.

The official layout is spelled out key by key (the tue-mps/eomt Lightning module: ``network.encoder.backbone.*``
from timm's ViT, ``network.q`` an ``nn.Embedding``, ``network.mask_head`` a Sequential, pixel statistics for
0..1 pixels); ``official_to_hf`` restates the mapping to transformers' ``EomtForUniversalSegmentation`` here, so
that a test comparing our model with transformers checks both our model and our official-layout reader.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Tiny:
    """A tiny EoMT; heads = width / 64 as the loaders infer for official checkpoints."""

    width: int = 128
    depth: int = 3
    patch: int = 16
    registers: int = 4
    grid: tuple[int, int] = (4, 4)
    classes: int = 4
    queries: int = 6
    blocks: int = 2
    upscale: int = 2
    mlp: int = 4

    @property
    def heads(self) -> int:
        return self.width // 64

    @property
    def img_size(self) -> tuple[int, int]:
        return (self.grid[0] * self.patch, self.grid[1] * self.patch)


def _linear(sd: dict[str, Tensor], name: str, out: int, inp: int, g: torch.Generator) -> None:
    sd[f"{name}.weight"] = torch.randn(out, inp, generator=g) / inp**0.5
    sd[f"{name}.bias"] = torch.randn(out, generator=g) * 0.1


def _norm(sd: dict[str, Tensor], name: str, dim: int, g: torch.Generator) -> None:
    sd[f"{name}.weight"] = 1 + 0.1 * torch.randn(dim, generator=g)
    sd[f"{name}.bias"] = 0.1 * torch.randn(dim, generator=g)


def vit_blocks(sd: dict[str, Tensor], prefix: str, width: int, depth: int, mlp: int, g: torch.Generator) -> None:
    """timm ViT block weights (fused qkv, LayerScale gamma) under ``prefix``."""
    for i in range(depth):
        b = f"{prefix}blocks.{i}"
        _norm(sd, f"{b}.norm1", width, g)
        _linear(sd, f"{b}.attn.qkv", 3 * width, width, g)
        _linear(sd, f"{b}.attn.proj", width, width, g)
        sd[f"{b}.ls1.gamma"] = 0.5 + 0.1 * torch.randn(width, generator=g)
        _norm(sd, f"{b}.norm2", width, g)
        _linear(sd, f"{b}.mlp.fc1", mlp * width, width, g)
        _linear(sd, f"{b}.mlp.fc2", width, mlp * width, g)
        sd[f"{b}.ls2.gamma"] = 0.5 + 0.1 * torch.randn(width, generator=g)
    _norm(sd, f"{prefix}norm", width, g)


def official_state_dict(t: Tiny = Tiny(), seed: int = 0, mask_probs: float = 0.0) -> dict[str, Tensor]:
    """A random state dict in the official EoMT Lightning layout."""
    g = torch.Generator().manual_seed(seed)
    d = t.width
    sd: dict[str, Tensor] = {}
    bb = "network.encoder.backbone."
    sd[bb + "cls_token"] = torch.randn(1, 1, d, generator=g)
    if t.registers:
        sd[bb + "reg_token"] = torch.randn(1, t.registers, d, generator=g)
    sd[bb + "pos_embed"] = torch.randn(1, t.grid[0] * t.grid[1], d, generator=g) * 0.5
    sd[bb + "patch_embed.proj.weight"] = torch.randn(d, 3, t.patch, t.patch, generator=g) / (3 * t.patch**2) ** 0.5
    sd[bb + "patch_embed.proj.bias"] = torch.randn(d, generator=g) * 0.1
    vit_blocks(sd, bb, d, t.depth, t.mlp, g)
    sd["network.encoder.pixel_mean"] = torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1)
    sd["network.encoder.pixel_std"] = torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1)
    sd["network.attn_mask_probs"] = torch.full((t.blocks,), mask_probs)
    sd["network.q.weight"] = torch.randn(t.queries, d, generator=g)
    _linear(sd, "network.class_head", t.classes + 1, d, g)
    for i in (0, 2, 4):
        _linear(sd, f"network.mask_head.{i}", d, d, g)
    for i in range(t.upscale):
        sd[f"network.upscale.{i}.conv1.weight"] = torch.randn(d, d, 2, 2, generator=g) / (2 * d) ** 0.5
        sd[f"network.upscale.{i}.conv1.bias"] = torch.randn(d, generator=g) * 0.1
        sd[f"network.upscale.{i}.conv2.weight"] = torch.randn(d, 1, 3, 3, generator=g) / 3
        _norm(sd, f"network.upscale.{i}.norm", d, g)
    sd["criterion.empty_weight"] = torch.cat([torch.ones(t.classes), torch.tensor([0.1])])
    return sd


def official_to_hf(sd: dict[str, Tensor], t: Tiny) -> dict[str, Tensor]:
    """The same weights in transformers' EomtForUniversalSegmentation names (stated independently of the package)."""
    bb = "network.encoder.backbone."
    hf: dict[str, Tensor] = {
        "embeddings.cls_token": sd[bb + "cls_token"],
        "embeddings.register_tokens": sd.get(bb + "reg_token", torch.zeros(1, 0, t.width)),
        "embeddings.patch_embeddings.projection.weight": sd[bb + "patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": sd[bb + "patch_embed.proj.bias"],
        "embeddings.position_embeddings.weight": sd[bb + "pos_embed"][0],
        "layernorm.weight": sd[bb + "norm.weight"],
        "layernorm.bias": sd[bb + "norm.bias"],
        "query.weight": sd["network.q.weight"],
        "class_predictor.weight": sd["network.class_head.weight"],
        "class_predictor.bias": sd["network.class_head.bias"],
        "attn_mask_probs": sd["network.attn_mask_probs"],
        "criterion.empty_weight": sd["criterion.empty_weight"],
    }
    for i in range(t.depth):
        b, h = f"{bb}blocks.{i}.", f"layers.{i}."
        for kind in ("weight", "bias"):
            q, k, v = sd[f"{b}attn.qkv.{kind}"].chunk(3)
            hf[f"{h}attention.q_proj.{kind}"], hf[f"{h}attention.k_proj.{kind}"] = q, k
            hf[f"{h}attention.v_proj.{kind}"] = v
            hf[f"{h}attention.out_proj.{kind}"] = sd[f"{b}attn.proj.{kind}"]
            for part in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
                hf[f"{h}{part}.{kind}"] = sd[f"{b}{part}.{kind}"]
        hf[f"{h}layer_scale1.lambda1"] = sd[f"{b}ls1.gamma"]
        hf[f"{h}layer_scale2.lambda1"] = sd[f"{b}ls2.gamma"]
    for j, i in enumerate((0, 2, 4), start=1):
        for kind in ("weight", "bias"):
            hf[f"mask_head.fc{j}.{kind}"] = sd[f"network.mask_head.{i}.{kind}"]
    for i in range(t.upscale):
        u, h = f"network.upscale.{i}.", f"upscale_block.block.{i}."
        hf[h + "conv1.weight"], hf[h + "conv1.bias"] = sd[u + "conv1.weight"], sd[u + "conv1.bias"]
        hf[h + "conv2.weight"] = sd[u + "conv2.weight"]
        hf[h + "layernorm2d.weight"], hf[h + "layernorm2d.bias"] = sd[u + "norm.weight"], sd[u + "norm.bias"]
    return {k: v.clone() for k, v in hf.items()}


def hf_model(t: Tiny, hf_sd: dict[str, Tensor] | None = None):
    """transformers' EomtForUniversalSegmentation for ``t`` in eval mode, holding ``hf_sd`` if given."""
    from transformers import EomtConfig, EomtForUniversalSegmentation

    config = EomtConfig(
        hidden_size=t.width,
        num_hidden_layers=t.depth,
        num_attention_heads=t.heads,
        mlp_ratio=t.mlp,
        image_size=t.img_size[0],
        patch_size=t.patch,
        num_register_tokens=t.registers,
        num_queries=t.queries,
        num_blocks=t.blocks,
        num_upscale_blocks=t.upscale,
        num_labels=t.classes,
    )
    model = EomtForUniversalSegmentation(config).eval()
    if hf_sd is not None:
        result = model.load_state_dict(hf_sd, strict=False)
        assert not result.unexpected_keys, result.unexpected_keys
        assert not result.missing_keys, result.missing_keys
    return model


def hf_reference(model, images: Tensor) -> tuple[Tensor, Tensor]:
    """(mask logits, class logits) of transformers' model for 0..255 images, normalised as its processor does."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype).reshape(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype).reshape(1, 3, 1, 1)
    with torch.no_grad():
        out = model(pixel_values=(images / 255 - mean) / std)
    return out.masks_queries_logits, out.class_queries_logits


def dinov2_state_dict(
    width: int = 128,
    depth: int = 2,
    registers: int = 4,
    side: int = 37,
    patch: int = 14,
    class_position: bool = False,
    facebook_names: bool = False,
    seed: int = 0,
) -> dict[str, Tensor]:
    """A random DINOv2 backbone: timm names, or the facebookresearch ones (``register_tokens``, ``mask_token``)."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, Tensor] = {"cls_token": torch.randn(1, 1, width, generator=g)}
    if registers:
        sd["register_tokens" if facebook_names else "reg_token"] = torch.randn(1, registers, width, generator=g)
    sd["pos_embed"] = torch.randn(1, side * side + int(class_position), width, generator=g)
    sd["patch_embed.proj.weight"] = torch.randn(width, 3, patch, patch, generator=g) / (3 * patch * patch) ** 0.5
    sd["patch_embed.proj.bias"] = torch.randn(width, generator=g) * 0.1
    vit_blocks(sd, "", width, depth, 4, g)
    if facebook_names:
        sd["mask_token"] = torch.zeros(1, width)
    return sd
