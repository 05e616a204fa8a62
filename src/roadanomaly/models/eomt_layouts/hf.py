"""The ``hf`` layout: a Hugging Face ``EomtForUniversalSegmentation`` folder.

``config.json`` (a transformers ``EomtConfig``, ``model_type`` ``"eomt"``) and ``model.safetensors`` (or its
shards, or an older ``pytorch_model.bin``); a bare weights file in these names is read too, its configuration
taken off the shapes. Differences from our names: separate q/k/v projections, ``layer_scaleN.lambda1``,
``mask_head.fc1..3``, ``upscale_block.block.N``, position embeddings as an ``nn.Embedding`` table; the pixel
normalisation lives in ``preprocessor_config.json`` (ImageNet's when absent).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from roadanomaly.errors import UserError
from roadanomaly.models.eomt import EoMT, EoMTConfig
from roadanomaly.models.eomt_layouts.base import CheckpointLayout, Decoded, Source
from roadanomaly.models.eomt_layouts.common import (
    PIXEL_STATS,
    WEIGHTS_FILE,
    Shapes,
    Size,
    StateDict,
    check_folder_target,
    empty_weight,
    float_state,
    pixel_stat,
    read_folder_weights,
    read_json,
    save_safetensors,
    shapes,
    write_json,
)
from roadanomaly.models.eomt_layouts.shapes import infer_config

# HF names of one block's parts (after "layers.N.") -> ours (after "encoder.blocks.N.")
_BLOCK = {
    "attention.out_proj.": "attn.proj.",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
    "norm1.": "norm1.",
    "norm2.": "norm2.",
    "mlp.fc1.": "mlp.fc1.",
    "mlp.fc2.": "mlp.fc2.",
}
_TOP = {
    "embeddings.cls_token": "encoder.cls_token",
    "embeddings.register_tokens": "encoder.reg_token",
    "embeddings.patch_embeddings.projection.": "encoder.patch_embed.proj.",
    "layernorm.": "encoder.norm.",
    "query.weight": "q.weight",
    "class_predictor.": "class_head.",
    "mask_head.fc1.": "mask_head.0.",
    "mask_head.fc2.": "mask_head.2.",
    "mask_head.fc3.": "mask_head.4.",
    "attn_mask_probs": "attn_mask_probs",
}
_UPSCALE = {"conv1.": "conv1.", "conv2.": "conv2.", "layernorm2d.": "norm."}
_REGISTERS = "embeddings.register_tokens"
_PIXEL_KEYS = ("image_mean", "image_std")  # in preprocessor_config.json
_IGNORED = ("criterion.", "embeddings.position_ids")  # the loss's weights; a constant buffer


def _rename(key: str, table: dict[str, str]) -> str | None:
    for old, new in table.items():
        if key.startswith(old):
            return new + key[len(old) :]
    return None


def hf_to_ours(sd: StateDict, pixel_mean: Tensor | None = None, pixel_std: Tensor | None = None) -> StateDict:
    """HF names -> ours: q/k/v projections fused into qkv (rows q, k, v), position table (N, D) -> (1, N, D).

    Unknown keys are kept under their HF name so that the strict check reports them.
    """
    out: StateDict = {}
    qkv: dict[tuple[str, str], dict[str, Tensor]] = {}
    for key, value in sd.items():
        if key.startswith(_IGNORED):
            continue
        if key == "embeddings.position_embeddings.weight":
            out["encoder.pos_embed"] = value[None]
            continue
        if key == _REGISTERS and value.shape[1] == 0:
            continue
        m = re.fullmatch(r"layers\.(\d+)\.(.+)", key)
        if m:
            index, rest = m.groups()
            p = re.fullmatch(r"attention\.([qkv])_proj\.(weight|bias)", rest)
            if p:
                qkv.setdefault((index, p.group(2)), {})[p.group(1)] = value
                continue
            new = _rename(rest, _BLOCK)
            out[f"encoder.blocks.{index}.{new}" if new else key] = value
            continue
        m = re.fullmatch(r"upscale_block\.block\.(\d+)\.(.+)", key)
        if m:
            new = _rename(m.group(2), _UPSCALE)
            out[f"upscale.{m.group(1)}.{new}" if new else key] = value
            continue
        out[_rename(key, _TOP) or key] = value
    for (index, kind), parts in qkv.items():
        if set(parts) == {"q", "k", "v"}:
            out[f"encoder.blocks.{index}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
        else:  # incomplete: keep the HF names so the strict check names them
            out.update({f"layers.{index}.attention.{n}_proj.{kind}": t for n, t in parts.items()})
    out["pixel_mean"] = pixel_stat("pixel_mean", pixel_mean)
    out["pixel_std"] = pixel_stat("pixel_std", pixel_std)
    return out


def ours_to_hf(sd: StateDict, config: EoMTConfig) -> StateDict:
    """Our names -> HF names (pixel statistics are not weights there; see ``preprocessor_config.json``)."""
    block_table = {v: k for k, v in _BLOCK.items()}
    top_table = {v: k for k, v in _TOP.items()}
    upscale_table = {v: k for k, v in _UPSCALE.items()}
    out: StateDict = {}
    for key, value in sd.items():
        if key in PIXEL_STATS:
            continue
        if key == "encoder.pos_embed":
            out["embeddings.position_embeddings.weight"] = value[0]
            continue
        m = re.fullmatch(r"encoder\.blocks\.(\d+)\.(.+)", key)
        if m:
            index, rest = m.groups()
            if rest.startswith("attn.qkv."):
                kind = rest.rsplit(".", 1)[1]
                for name, part in zip("qkv", value.chunk(3, dim=0)):
                    out[f"layers.{index}.attention.{name}_proj.{kind}"] = part
            else:
                out[f"layers.{index}.{_rename(rest, block_table)}"] = value
            continue
        m = re.fullmatch(r"upscale\.(\d+)\.(.+)", key)
        if m:
            out[f"upscale_block.block.{m.group(1)}.{_rename(m.group(2), upscale_table)}"] = value
            continue
        out[_rename(key, top_table)] = value
    if config.num_registers == 0:
        out[_REGISTERS] = torch.zeros(1, 0, config.width)
    out["criterion.empty_weight"] = empty_weight(config.num_classes)
    return out


# ------------------------------------------------------------------------------------------ configurations
_DEFAULTS: dict[str, Any] = dict(
    hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, patch_size=16, num_register_tokens=4,
    image_size=640, num_queries=200, num_blocks=4, mlp_ratio=4, num_upscale_blocks=2, hidden_act="gelu",
    layer_norm_eps=1e-6, use_swiglu_ffn=False, num_channels=3,
)  # fmt: skip


def config_from_hf(hf: dict[str, Any], where: Path) -> EoMTConfig:
    """EoMTConfig from a transformers ``EomtConfig`` dict (``config.json``)."""
    get = lambda name: hf.get(name, _DEFAULTS[name])  # noqa: E731
    unsupported = []
    if get("hidden_act") != "gelu":
        unsupported.append(f"hidden_act {get('hidden_act')!r}")
    if get("use_swiglu_ffn"):
        unsupported.append("use_swiglu_ffn")
    if abs(float(get("layer_norm_eps")) - 1e-6) > 1e-12:
        unsupported.append(f"layer_norm_eps {get('layer_norm_eps')}")
    if get("num_channels") != 3:
        unsupported.append(f"num_channels {get('num_channels')}")
    patch, size = get("patch_size"), get("image_size")
    if isinstance(patch, (list, tuple)):
        if len(set(patch)) != 1:
            unsupported.append(f"non-square patch_size {patch}")
        patch = patch[0]
    if unsupported:
        raise UserError(where, f"unsupported EoMT variant: {', '.join(unsupported)}")
    size = (size, size) if isinstance(size, int) else tuple(size)
    id2label = hf.get("id2label")
    if id2label:
        names = [str(id2label[k]) for k in sorted(id2label, key=int)]
        num_classes = len(names)
    else:
        names, num_classes = [], int(hf.get("num_labels", 2))
    generic = all(re.fullmatch(r"LABEL_\d+", n) for n in names)
    try:
        return EoMTConfig(
            width=get("hidden_size"),
            depth=get("num_hidden_layers"),
            heads=get("num_attention_heads"),
            patch=patch,
            num_registers=get("num_register_tokens"),
            img_size=size,
            num_classes=num_classes,
            num_q=get("num_queries"),
            num_blocks=get("num_blocks"),
            mlp_ratio=get("mlp_ratio"),
            num_upscale=get("num_upscale_blocks"),
            class_names=None if generic or not names else tuple(names),
        )
    except ValueError as error:
        raise UserError(where, f"inconsistent EoMT config: {error}") from None


def config_to_hf(config: EoMTConfig) -> dict[str, Any]:
    """A transformers ``EomtConfig`` dict for ``config`` (HF supports square inputs only)."""
    if config.img_size[0] != config.img_size[1]:
        raise UserError(None, f"the Hugging Face EoMT supports square inputs only, this model's is {config.img_size}")
    if config.mlp_ratio != int(config.mlp_ratio):
        raise UserError(None, f"the Hugging Face EoMT needs an integer mlp_ratio, this model's is {config.mlp_ratio}")
    names = list(config.class_names or [f"LABEL_{i}" for i in range(config.num_classes)])
    return {
        "architectures": ["EomtForUniversalSegmentation"],
        "model_type": "eomt",
        "hidden_size": config.width,
        "num_hidden_layers": config.depth,
        "num_attention_heads": config.heads,
        "mlp_ratio": int(config.mlp_ratio),
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-6,
        "image_size": config.img_size[0],
        "patch_size": config.patch,
        "num_channels": 3,
        "num_register_tokens": config.num_registers,
        "num_queries": config.num_q,
        "num_blocks": config.num_blocks,
        "num_upscale_blocks": config.num_upscale,
        "use_swiglu_ffn": False,
        "id2label": {str(i): n for i, n in enumerate(names)},
        "label2id": {n: i for i, n in enumerate(names)},
        "dtype": "float32",
    }


def _pixel_stats_from(pre: dict[str, Any]) -> tuple[Tensor | None, Tensor | None]:
    """Mean and std for 0..255 pixels from a ``preprocessor_config.json`` (None where it gives none)."""
    scale = float(pre.get("rescale_factor", 1 / 255)) if pre.get("do_rescale", True) else 1.0
    mean, std = (torch.tensor(pre[k], dtype=torch.float64) / scale if k in pre else None for k in _PIXEL_KEYS)
    return mean, std


class HFLayout(CheckpointLayout):
    name = "hf"
    description = "a Hugging Face EomtForUniversalSegmentation folder (config.json + model.safetensors)"
    writable = True

    def detect(self, source: Source) -> bool:
        if source.is_folder:
            return source.config.get("model_type") == "eomt"
        return "embeddings.cls_token" in source.state_dict or any(k.startswith("layers.") for k in source.state_dict)

    def read(self, source: Source, img_size: Size | None = None, heads: int | None = None, **options: Any) -> Decoded:
        if source.is_folder:
            pre_path = source.path / "preprocessor_config.json"
            pre = read_json(pre_path) if pre_path.is_file() else {}
            raw = read_folder_weights(source.path)
            ours = hf_to_ours(raw, *_pixel_stats_from(pre))
            config = config_from_hf(source.config, source.path / "config.json")
        else:  # a bare weights file: the configuration comes from the shapes
            raw = source.state_dict
            ours = hf_to_ours(raw)
            config = infer_config(ours, source.where, img_size, heads)
        found = {k: v for k, v in raw.items() if not k.startswith(_IGNORED)}
        optional = frozenset({_REGISTERS} if config.num_registers == 0 else ())
        return Decoded(ours, config, found, optional=optional)

    def expected_keys(self, model: EoMT) -> Shapes:
        hf = ours_to_hf(model.state_dict(), model.config)
        return {k: s for k, s in shapes(hf).items() if not k.startswith("criterion.")}

    def write(self, model: EoMT, dst: Path) -> Path:
        """A folder: ``config.json``, ``model.safetensors`` and ``preprocessor_config.json`` (pixel statistics)."""
        check_folder_target(dst, self.name)
        hf_config = config_to_hf(model.config)
        sd = float_state(model)
        dst.mkdir(parents=True, exist_ok=True)
        save_safetensors(ours_to_hf(sd, model.config), dst / WEIGHTS_FILE)
        write_json(hf_config, dst / "config.json")
        mean, std = ((sd[k].double().flatten() / 255).tolist() for k in PIXEL_STATS)
        pre = {
            "image_processor_type": "EomtImageProcessor",
            "do_rescale": True,
            "rescale_factor": 1 / 255,
            "do_normalize": True,
            "image_mean": mean,
            "image_std": std,
        }
        write_json(pre, dst / "preprocessor_config.json")
        return dst
