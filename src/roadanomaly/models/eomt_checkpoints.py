"""EoMT checkpoint I/O: four layouts in, three out, never a partial load.

Layouts (``detect_layout``):

- ``official``: the tue-mps/eomt Lightning module state dict (``network.encoder.backbone.*``, ``network.q.weight``,
  ``network.class_head``, ``network.mask_head.{0,2,4}``, ``network.upscale.N``, ``network.attn_mask_probs``,
  ``network.encoder.pixel_mean/std`` for pixels in 0..1, ``criterion.empty_weight``), in a Lightning ``.ckpt``
  (under ``"state_dict"``) or a plain ``.bin`` / ``.pt`` (possibly under ``"state_dict"`` or ``"model"``).
- ``hf``: a Hugging Face ``EomtForUniversalSegmentation`` folder (``config.json`` + ``model.safetensors``):
  separate q/k/v projections, ``layer_scaleN.lambda1``, ``mask_head.fc1..3``, ``upscale_block.block.N``, position
  embeddings as an ``nn.Embedding``; pixel normalisation lives in ``preprocessor_config.json`` (ImageNet if absent).
- ``roadanomaly``: our folder, ``config.json`` (``{"format": "roadanomaly-eomt", "config": EoMTConfig}``) +
  ``model.safetensors`` in :class:`~roadanomaly.models.eomt.EoMT` names.
- ``dinov2``: a DINOv2 backbone (timm names, or the facebookresearch names ``register_tokens`` / ``mask_token``) that
  initialises the encoder of a fresh EoMT: the patch kernel is resized with the FlexiViT pseudo-inverse (so a
  patch's embedding is kept: <resize(x), w_new> = <x, w_old>) and the position grid bicubically, as timm does.

Every load compares the file's keys and shapes with what the inferred architecture expects, in the file's own
names, and raises :class:`~roadanomaly.errors.UserError` listing the differences.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from roadanomaly.errors import UserError
from roadanomaly.models.eomt import IMAGENET_MEAN, IMAGENET_STD, SIZES, EoMT, EoMTConfig
from roadanomaly.models.state_dicts import describe_mismatch, read_state_dict
from roadanomaly.models.vit import resample_grid

LAYOUTS: tuple[str, ...] = ("official", "hf", "roadanomaly", "dinov2")
WRITABLE_LAYOUTS: tuple[str, ...] = ("official", "hf", "roadanomaly")
FORMAT_TAG = "roadanomaly-eomt"
WEIGHTS_FILE = "model.safetensors"
OFFICIAL_SUFFIXES: tuple[str, ...] = (".ckpt", ".bin", ".pt", ".pth")
NO_OBJECT_WEIGHT = 0.1  # criterion.empty_weight[-1] written for the official and HF layouts
SHOWN = 5  # keys listed per kind of difference in an error

StateDict = dict[str, Tensor]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(path, f"not readable JSON ({error})") from None
    if not isinstance(data, dict):
        raise UserError(path, "expected a JSON object")
    return data


def _first(keys: list[str] | set[str]) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more


# ------------------------------------------------------------------------------------------------ detection
def _layout_of_keys(sd: StateDict) -> str | None:
    keys = set(sd)
    if any(k.startswith(("network.", "encoder.backbone.")) for k in keys):
        return "official"
    if "embeddings.cls_token" in keys or any(k.startswith("layers.") for k in keys):
        return "hf"
    if "encoder.cls_token" in keys:
        return "roadanomaly"
    bare = set(_dinov2_names(sd))
    if "cls_token" in bare and any(k.startswith("blocks.") for k in bare):
        return "dinov2"
    return None


def detect_layout(path: str | Path, trust_pickle: bool = False) -> str:
    """``"official"``, ``"hf"``, ``"roadanomaly"`` or ``"dinov2"`` for a file or folder."""
    return _read_any(Path(path), trust_pickle)[0]


def _read_folder_weights(folder: Path) -> StateDict:
    """``model.safetensors``, its shards (``model.safetensors.index.json``) or an older ``pytorch_model.bin``."""
    if (folder / WEIGHTS_FILE).is_file():
        return read_state_dict(folder / WEIGHTS_FILE)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _read_json(index).get("weight_map", {})
        sd: StateDict = {}
        for shard in sorted(set(weight_map.values())):
            sd.update(read_state_dict(folder / shard))
        return sd
    if (folder / "pytorch_model.bin").is_file():
        return read_state_dict(folder / "pytorch_model.bin")
    raise UserError(folder, f"folder has no {WEIGHTS_FILE}")


def _read_any(path: Path, trust_pickle: bool) -> tuple[str, StateDict, dict[str, Any], Path]:
    """(layout, state dict, folder metadata, weights file) for a file or a folder."""
    if path.is_dir():
        config_path = path / "config.json"
        if not config_path.is_file():
            files = sorted(p.name for p in path.iterdir())[:SHOWN]
            raise UserError(path, f"folder has no config.json (holds: {', '.join(files) or 'nothing'})")
        meta = _read_json(config_path)
        if meta.get("format") == FORMAT_TAG:
            layout = "roadanomaly"
        elif meta.get("model_type") == "eomt":
            layout = "hf"
            pre = path / "preprocessor_config.json"
            meta = {"config": meta, "preprocessor": _read_json(pre) if pre.is_file() else {}}
        else:
            raise UserError(config_path, "neither an EoMT Hugging Face config (model_type 'eomt') nor ours")
        return layout, _read_folder_weights(path), meta, path / WEIGHTS_FILE
    sd = read_state_dict(path, trust_pickle)
    layout = _layout_of_keys(sd)
    if layout is None:
        raise UserError(path, f"not an EoMT or DINOv2 checkpoint: unrecognised keys {_first(list(sd))}")
    return layout, sd, {}, path


# --------------------------------------------------------------------------------- layout <-> our key names
_OFFICIAL_PREFIXES = (("network.encoder.backbone.", "encoder."), ("network.encoder.", ""), ("network.", ""))


def official_to_ours(sd: StateDict) -> StateDict:
    """Official names -> ours (pixel statistics 0..1 -> 0..255); ``criterion.*`` is dropped."""
    out: StateDict = {}
    for key, value in sd.items():
        if key.startswith("criterion."):
            continue
        key = key if key.startswith("network.") else "network." + key
        for old, new in _OFFICIAL_PREFIXES:
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        out[key] = value * 255 if key in ("pixel_mean", "pixel_std") else value
    return out


def ours_to_official(sd: StateDict, config: EoMTConfig) -> StateDict:
    """Our names -> official names, with the loss's ``criterion.empty_weight`` the official module expects."""
    out: StateDict = {}
    for key, value in sd.items():
        if key in ("pixel_mean", "pixel_std"):
            out[f"network.encoder.{key}"] = value / 255
        elif key.startswith("encoder."):
            out["network.encoder.backbone." + key[len("encoder.") :]] = value
        else:
            out["network." + key] = value
    empty = torch.ones(config.num_classes + 1)
    empty[-1] = NO_OBJECT_WEIGHT
    out["criterion.empty_weight"] = empty
    return out


# HF names of one block's parts (after "layers.N.") -> ours (after "encoder.blocks.N.")
_HF_BLOCK = {
    "attention.out_proj.": "attn.proj.",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
    "norm1.": "norm1.",
    "norm2.": "norm2.",
    "mlp.fc1.": "mlp.fc1.",
    "mlp.fc2.": "mlp.fc2.",
}
_HF_TOP = {
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
_HF_UPSCALE = {"conv1.": "conv1.", "conv2.": "conv2.", "layernorm2d.": "norm."}


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
        if key.startswith("criterion.") or key == "embeddings.position_ids":
            continue
        if key == "embeddings.position_embeddings.weight":
            out["encoder.pos_embed"] = value[None]
            continue
        if key == "embeddings.register_tokens" and value.shape[1] == 0:
            continue
        m = re.fullmatch(r"layers\.(\d+)\.(.+)", key)
        if m:
            index, rest = m.groups()
            p = re.fullmatch(r"attention\.([qkv])_proj\.(weight|bias)", rest)
            if p:
                qkv.setdefault((index, p.group(2)), {})[p.group(1)] = value
                continue
            new = _rename(rest, _HF_BLOCK)
            out[f"encoder.blocks.{index}.{new}" if new else key] = value
            continue
        m = re.fullmatch(r"upscale_block\.block\.(\d+)\.(.+)", key)
        if m:
            new = _rename(m.group(2), _HF_UPSCALE)
            out[f"upscale.{m.group(1)}.{new}" if new else key] = value
            continue
        out[_rename(key, _HF_TOP) or key] = value
    for (index, kind), parts in qkv.items():
        if set(parts) == {"q", "k", "v"}:
            out[f"encoder.blocks.{index}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
        else:  # incomplete: keep the HF names so the strict check names them
            out.update({f"layers.{index}.attention.{n}_proj.{kind}": t for n, t in parts.items()})
    out["pixel_mean"] = _pixel_stat(pixel_mean, IMAGENET_MEAN)
    out["pixel_std"] = _pixel_stat(pixel_std, IMAGENET_STD)
    return out


def _pixel_stat(value: Tensor | None, default: tuple[float, float, float]) -> Tensor:
    return (torch.tensor(default) * 255 if value is None else value).reshape(1, 3, 1, 1).float()


def ours_to_hf(sd: StateDict, config: EoMTConfig) -> StateDict:
    """Our names -> HF names (pixel statistics are not weights there; see ``preprocessor_config.json``)."""
    block_table = {v: k for k, v in _HF_BLOCK.items()}
    top_table = {v: k for k, v in _HF_TOP.items()}
    upscale_table = {v: k for k, v in _HF_UPSCALE.items()}
    out: StateDict = {}
    for key, value in sd.items():
        if key in ("pixel_mean", "pixel_std"):
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
        out["embeddings.register_tokens"] = torch.zeros(1, 0, config.width)
    empty = torch.ones(config.num_classes + 1)
    empty[-1] = NO_OBJECT_WEIGHT
    out["criterion.empty_weight"] = empty
    return out


# ------------------------------------------------------------------------------------------ configurations
def _square_side(n: int) -> int | None:
    side = math.isqrt(n)
    return side if side * side == n else None


def _grid_of_positions(n: int, img_size: tuple[int, int] | None, patch: int, where: Path) -> tuple[int, int]:
    if img_size is not None:
        return (img_size[0] // patch, img_size[1] // patch)
    side = _square_side(n)
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
    """The EoMTConfig of a state dict in our names (heads default to width / 64, as in every DINOv2 ViT)."""
    needed = ["encoder.cls_token", "encoder.pos_embed", "encoder.patch_embed.proj.weight", "q.weight"]
    needed += ["class_head.weight", "attn_mask_probs", "encoder.blocks.0.mlp.fc1.weight"]
    missing = [k for k in needed if k not in sd]
    if missing:
        raise UserError(where, f"not a complete EoMT checkpoint: missing {_first(missing)} (in roadanomaly names)")
    width = sd["encoder.cls_token"].shape[-1]
    patch = sd["encoder.patch_embed.proj.weight"].shape[-1]
    n_pos = sd["encoder.pos_embed"].shape[1]
    if img_size is None and _square_side(n_pos) is None and _square_side(n_pos - 1):
        side = _square_side(n_pos - 1)
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


_HF_DEFAULTS: dict[str, Any] = dict(
    hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, patch_size=16, num_register_tokens=4,
    image_size=640, num_queries=200, num_blocks=4, mlp_ratio=4, num_upscale_blocks=2, hidden_act="gelu",
    layer_norm_eps=1e-6, use_swiglu_ffn=False, num_channels=3,
)  # fmt: skip


def config_from_hf(hf: dict[str, Any], where: Path) -> EoMTConfig:
    """EoMTConfig from a transformers ``EomtConfig`` dict (``config.json``)."""
    get = lambda name: hf.get(name, _HF_DEFAULTS[name])  # noqa: E731
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


# --------------------------------------------------------------------------------------------- strict load
def check_keys(found: StateDict, expected: dict[str, tuple[int, ...]], where: Path, layout: str) -> None:
    """Raise a UserError naming missing, unexpected and mis-shaped keys (in the file's names)."""
    problem = describe_mismatch(expected, found, limit=SHOWN)
    if problem:
        raise UserError(where, f"does not fit the EoMT it describes ({layout} layout): {problem}")


_TO_LAYOUT: dict[str, Callable[[StateDict, EoMTConfig], StateDict]] = {
    "official": ours_to_official,
    "hf": ours_to_hf,
    "roadanomaly": lambda sd, config: sd,
}


def _expected_shapes(model: EoMT, layout: str) -> dict[str, tuple[int, ...]]:
    sd = _TO_LAYOUT[layout](model.state_dict(), model.config)
    return {k: tuple(v.shape) for k, v in sd.items()}


# ------------------------------------------------------------------------------------------------- DINOv2
def _bicubic_resize_matrix(old: int, new: int) -> Tensor:
    """R with resize(x).flatten() = R @ x.flatten() for an old x old patch resized bicubically to new x new."""
    basis = torch.eye(old * old, dtype=torch.float64).reshape(old * old, 1, old, old)
    resized = F.interpolate(basis, size=(new, new), mode="bicubic", align_corners=False, antialias=True)
    return resized.reshape(old * old, new * new).T


def resample_patch_kernel(weight: Tensor, new: int) -> Tensor:
    """(D, C, p, p) -> (D, C, new, new), FlexiViT's pseudo-inverse resize: w_new = pinv(R^T) w_old.

    For any patch x, <resize(x), w_new> = <x, w_old> when upsampling (R^T has full row rank), so the patch
    embedding of an image is unchanged when its patches are resized with the kernel.
    """
    old = weight.shape[-1]
    if old == new:
        return weight
    resize = _bicubic_resize_matrix(old, new)  # (new^2, old^2)
    pinv = torch.linalg.pinv(resize.T)  # (new^2, old^2)
    flat = weight.double().reshape(-1, old * old)
    return (flat @ pinv.T).reshape(*weight.shape[:2], new, new).to(weight.dtype)


def _dinov2_names(sd: StateDict) -> StateDict:
    """timm / facebookresearch DINOv2 names -> timm names; of a training checkpoint only ``backbone.*`` is kept."""
    if any(k.startswith("backbone.") for k in sd):
        sd = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
    out = {("reg_token" if k == "register_tokens" else k): v for k, v in sd.items() if k != "mask_token"}
    return out


def dinov2_encoder_state(sd: StateDict, config: EoMTConfig, where: Path) -> StateDict:
    """A DINOv2 backbone state dict -> our ``encoder.*`` weights for ``config`` (grid and patch resampled)."""
    sd = _dinov2_names(sd)
    out = dict(sd)
    pos = sd.get("pos_embed")
    if pos is not None and "cls_token" in sd:
        n = pos.shape[1]
        if _square_side(n) is None and _square_side(n - 1) is not None:
            out["cls_token"] = sd["cls_token"] + pos[:, :1]
            pos = pos[:, 1:]
        side = _square_side(pos.shape[1])
        if side is None:
            raise UserError(where, f"DINOv2 pos_embed has {n} positions, not a square grid (+1 class position)")
        out["pos_embed"] = resample_grid(pos.float(), (side, side), config.grid).to(pos.dtype)
    kernel = sd.get("patch_embed.proj.weight")
    if kernel is not None and kernel.shape[-1] != config.patch:
        out["patch_embed.proj.weight"] = resample_patch_kernel(kernel, config.patch)
    return {"encoder." + k: v for k, v in out.items()}


def init_from_dinov2(
    path: str | Path,
    num_classes: int = 19,
    num_q: int = 100,
    img_size: tuple[int, int] = (1024, 1024),
    num_blocks: int | None = None,
    patch: int = 16,
    heads: int | None = None,
    class_names: tuple[str, ...] | None = None,
    trust_pickle: bool = False,
) -> EoMT:
    """A fresh EoMT whose encoder holds DINOv2 weights (queries and heads random, masked attention on)."""
    path = Path(path)
    sd = _dinov2_names(read_state_dict(path, trust_pickle))
    missing = [k for k in ("cls_token", "pos_embed", "patch_embed.proj.weight") if k not in sd]
    if missing:
        raise UserError(path, f"not a DINOv2 backbone: missing {_first(missing)}")
    width = sd["cls_token"].shape[-1]
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))}
    if not blocks or "blocks.0.mlp.fc1.weight" not in sd:
        raise UserError(path, f"not a DINOv2 backbone with plain MLP blocks: keys {_first(list(sd))}")
    preset = next((p for p in SIZES.values() if p["width"] == width), None)
    reg, depth = sd.get("reg_token"), max(blocks) + 1
    try:
        config = EoMTConfig(
            width=width,
            depth=depth,
            heads=heads or max(1, width // 64),
            patch=patch,
            num_registers=0 if reg is None else reg.shape[1],
            img_size=img_size,
            num_classes=num_classes,
            num_q=num_q,
            num_blocks=num_blocks or (preset["num_blocks"] if preset else min(4, depth)),
            mlp_ratio=sd["blocks.0.mlp.fc1.weight"].shape[0] / width,
            class_names=class_names,
        )
    except ValueError as error:
        raise UserError(path, f"cannot build EoMT on these weights: {error}") from None
    model = EoMT(config)
    encoder = dinov2_encoder_state(sd, config, path)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if k.startswith("encoder.")}
    found = {k[len("encoder.") :]: v for k, v in encoder.items()}
    check_keys(found, {k[len("encoder.") :]: s for k, s in expected.items()}, path, "dinov2")
    model.load_state_dict(encoder, strict=False)
    return model.eval()


# ---------------------------------------------------------------------------------------------- full loads
def load_eomt_checkpoint(
    path: str | Path,
    img_size: tuple[int, int] | None = None,
    heads: int | None = None,
    trust_pickle: bool = False,
    dinov2: dict[str, Any] | None = None,
) -> tuple[EoMT, str]:
    """Load an EoMT from any layout; returns (model in eval mode on the CPU, layout).

    ``img_size`` / ``heads`` settle what a non-square position table or an unusual head width leaves open.
    ``dinov2`` holds options for DINOv2 weights (num_classes, num_q, num_blocks, patch, class_names; ignored for
    other layouts), which give a fresh EoMT (see :func:`init_from_dinov2`); ``img_size`` is then the target size.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(path, "no such file or folder")
    layout, raw, meta, where = _read_any(path, trust_pickle)
    if layout == "dinov2":
        options = dict(dinov2 or {}) | ({} if img_size is None else {"img_size": img_size})
        return init_from_dinov2(path, heads=heads, trust_pickle=trust_pickle, **options), layout
    if layout == "roadanomaly":
        ours = dict(raw)
        if meta:
            try:
                config = EoMTConfig.from_dict(meta.get("config", {}))
            except (TypeError, ValueError) as error:
                raise UserError(path / "config.json", f"bad EoMT config: {error}") from None
        else:  # a bare state dict in our names
            config = infer_config(ours, where, img_size, heads)
    elif layout == "hf":
        pre = meta.get("preprocessor", {})
        scale = float(pre.get("rescale_factor", 1 / 255)) if pre.get("do_rescale", True) else 1.0
        mean = torch.tensor(pre["image_mean"], dtype=torch.float64) / scale if "image_mean" in pre else None
        std = torch.tensor(pre["image_std"], dtype=torch.float64) / scale if "image_std" in pre else None
        ours = hf_to_ours(raw, mean, std)
        if meta:
            config = config_from_hf(meta["config"], path / "config.json")
        else:  # a bare weights file: infer as for the official layout
            config = infer_config(ours, where, img_size, heads)
    else:  # official
        ours = official_to_ours(raw)
        config = infer_config(ours, where, img_size, heads)
    try:
        model = EoMT(config)
    except ValueError as error:
        raise UserError(path, f"cannot build the EoMT it describes: {error}") from None
    # compare in the file's own names (pixel statistics and the loss weight are optional extras)
    expected = _expected_shapes(model, layout)
    found = {k: v for k, v in raw.items() if not k.startswith("criterion.") and k != "embeddings.position_ids"}
    expected = {k: s for k, s in expected.items() if not k.startswith("criterion.")}
    if layout == "official":
        found = {(k if k.startswith("network.") else "network." + k): v for k, v in found.items()}
    prefix = {"official": "network.encoder.", "roadanomaly": ""}.get(layout)
    if prefix is not None:
        for key in ("pixel_mean", "pixel_std"):  # optional: ImageNet when absent
            if prefix + key not in found:
                expected.pop(prefix + key, None)
                ours[key] = getattr(model, key).clone()
    if layout == "official":
        if "network.encoder.backbone.pos_embed" in found and "encoder.pos_embed" in ours:
            found["network.encoder.backbone.pos_embed"] = ours["encoder.pos_embed"]  # class position folded
            found["network.encoder.backbone.cls_token"] = ours["encoder.cls_token"]
    elif layout == "hf" and config.num_registers == 0:
        expected.pop("embeddings.register_tokens", None)
        found.pop("embeddings.register_tokens", None)
    check_keys(found, expected, where, layout)
    model.load_state_dict(ours, strict=True)
    return model.eval(), layout


def load_eomt(path: str | Path, **options: Any) -> EoMT:
    """Load an EoMT from an official / HF / roadanomaly checkpoint or DINOv2 weights (layout auto-detected)."""
    return load_eomt_checkpoint(path, **options)[0]


# ------------------------------------------------------------------------------------------------- saving
def _save_safetensors(sd: StateDict, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous().clone() for k, v in sd.items()}, str(path), metadata={"format": "pt"})


def save_eomt(model: EoMT, dst: str | Path, layout: str = "roadanomaly") -> Path:
    """Write ``model`` in ``layout``: a folder for ``roadanomaly`` / ``hf``, a ``.ckpt`` / ``.bin`` / ``.pt`` file
    for ``official`` (``.ckpt`` wraps the state dict as Lightning does). Returns ``dst``."""
    dst = Path(dst)
    if layout not in WRITABLE_LAYOUTS:
        raise ValueError(f"unknown layout {layout!r} (writable: {', '.join(WRITABLE_LAYOUTS)})")
    config = model.config
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    if layout == "official":
        if dst.suffix not in OFFICIAL_SUFFIXES or dst.is_dir():
            raise UserError(dst, f"the official layout is one file ending {', '.join(OFFICIAL_SUFFIXES)}")
        dst.parent.mkdir(parents=True, exist_ok=True)
        official = ours_to_official(sd, config)
        torch.save({"state_dict": official} if dst.suffix == ".ckpt" else official, dst)
        return dst
    if dst.exists() and not dst.is_dir():
        raise UserError(dst, f"the {layout} layout is a folder, and a file of this name exists")
    if layout == "hf":
        hf_config = config_to_hf(config)
        dst.mkdir(parents=True, exist_ok=True)
        _save_safetensors(ours_to_hf(sd, config), dst / WEIGHTS_FILE)
        (dst / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
        mean, std = ((sd[k].double().flatten() / 255).tolist() for k in ("pixel_mean", "pixel_std"))
        pre = {
            "image_processor_type": "EomtImageProcessor",
            "do_rescale": True,
            "rescale_factor": 1 / 255,
            "do_normalize": True,
            "image_mean": mean,
            "image_std": std,
        }
        (dst / "preprocessor_config.json").write_text(json.dumps(pre, indent=2) + "\n")
        return dst
    dst.mkdir(parents=True, exist_ok=True)
    _save_safetensors(sd, dst / WEIGHTS_FILE)
    (dst / "config.json").write_text(json.dumps({"format": FORMAT_TAG, "config": config.to_dict()}, indent=2) + "\n")
    return dst


def convert_checkpoint(src: str | Path, dst: str | Path, to: str, **load_options: Any) -> tuple[str, EoMTConfig]:
    """Load ``src`` (any layout) and write it to ``dst`` in layout ``to``; returns (source layout, config)."""
    if to not in WRITABLE_LAYOUTS:
        raise ValueError(f"unknown layout {to!r} (writable: {', '.join(WRITABLE_LAYOUTS)})")
    model, layout = load_eomt_checkpoint(src, **load_options)
    save_eomt(model, dst, to)
    return layout, model.config
