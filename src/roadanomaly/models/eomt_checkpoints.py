"""EoMT checkpoint I/O: every registered layout in, the writable ones out, never a partial load.

The layouts live in :mod:`roadanomaly.models.eomt_layouts`, one module each (``official``, ``hf``,
``roadanomaly``, ``dinov2``). A load is: detect the layout, read the file into our names and a configuration, build
the EoMT, then compare the file's keys and shapes with what that EoMT expects, in the file's own names, raising a
:class:`~roadanomaly.errors.UserError` that lists the differences.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from roadanomaly.errors import UserError
from roadanomaly.models.eomt import EoMT, EoMTConfig
from roadanomaly.models.eomt_layouts import (
    CheckpointLayout,
    Source,
    check_keys,
    detect,
    get_layout,
    layout_names,
    open_source,
    writable_layout,
    writable_layout_names,
)
from roadanomaly.models.eomt_layouts.common import NO_OBJECT_WEIGHT, WEIGHTS_FILE
from roadanomaly.models.eomt_layouts.dinov2 import dinov2_encoder_state, resample_patch_kernel
from roadanomaly.models.eomt_layouts.hf import config_from_hf, config_to_hf, hf_to_ours, ours_to_hf
from roadanomaly.models.eomt_layouts.official import OFFICIAL_SUFFIXES, official_to_ours, ours_to_official
from roadanomaly.models.eomt_layouts.roadanomaly import FORMAT_TAG
from roadanomaly.models.eomt_layouts.shapes import infer_config
from roadanomaly.models.state_dicts import read_state_dict

__all__ = [
    "FORMAT_TAG", "NO_OBJECT_WEIGHT", "OFFICIAL_SUFFIXES", "WEIGHTS_FILE",
    "check_keys", "config_from_hf", "config_to_hf", "convert_checkpoint", "detect_layout", "dinov2_encoder_state",
    "hf_to_ours", "infer_config", "init_from_dinov2", "load_eomt", "load_eomt_checkpoint", "official_to_ours",
    "ours_to_hf", "ours_to_official", "read_state_dict", "resample_patch_kernel", "save_eomt",
]  # fmt: skip


def __getattr__(name: str) -> tuple[str, ...]:
    """``LAYOUTS`` / ``WRITABLE_LAYOUTS``: the registry's names at the time they are asked for."""
    if name == "LAYOUTS":
        return layout_names()
    if name == "WRITABLE_LAYOUTS":
        return writable_layout_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def detect_layout(path: str | Path, trust_pickle: bool = False) -> str:
    """The name of the layout of a file or folder (``"official"``, ``"hf"``, ``"roadanomaly"``, ``"dinov2"``...)."""
    return detect(open_source(Path(path), trust_pickle)).name


def _build(layout: CheckpointLayout, source: Source, **options: Any) -> EoMT:
    """Read ``source`` in ``layout``, build the EoMT it describes, check every key and shape, load the weights."""
    decoded = layout.read(source, **options)
    try:
        model = EoMT(decoded.config)
    except ValueError as error:
        raise UserError(source.path, f"cannot build the EoMT it describes: {error}") from None
    expected = layout.expected_keys(model)
    expected = {k: s for k, s in expected.items() if k in decoded.found or k not in decoded.optional}
    check_keys(decoded.found, expected, source.where, layout.name)
    model.load_state_dict(decoded.weights, strict=not decoded.partial)
    return model.eval()


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
    source = open_source(path, trust_pickle)
    layout = detect(source)
    options = dict(dinov2 or {}) if layout.name == "dinov2" else {}
    options |= {k: v for k, v in (("img_size", img_size), ("heads", heads)) if v is not None}
    return _build(layout, source, **options), layout.name


def load_eomt(path: str | Path, **options: Any) -> EoMT:
    """Load an EoMT from an official / HF / roadanomaly checkpoint or DINOv2 weights (layout auto-detected)."""
    return load_eomt_checkpoint(path, **options)[0]


def load_trained_eomt(
    path: str | Path, img_size: tuple[int, int] | None = None, trust_pickle: bool = False
) -> tuple[EoMT, str]:
    """A trained EoMT and its layout; DINOv2 backbone weights (nothing trained on top) are a UserError."""
    model, layout = load_eomt_checkpoint(path, img_size=img_size, trust_pickle=trust_pickle)
    if layout == "dinov2":
        raise UserError(path, "holds DINOv2 backbone weights only, not a trained EoMT")
    return model, layout


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
    source = Source(path, state_dict=read_state_dict(path, trust_pickle))
    options = dict(num_classes=num_classes, num_q=num_q, num_blocks=num_blocks, patch=patch, class_names=class_names)
    return _build(get_layout("dinov2"), source, img_size=img_size, heads=heads, **options)


def save_eomt(model: EoMT, dst: str | Path, layout: str = "roadanomaly") -> Path:
    """Write ``model`` in ``layout``: a folder for ``roadanomaly`` / ``hf``, a ``.ckpt`` / ``.bin`` / ``.pt`` file
    for ``official`` (``.ckpt`` wraps the state dict as Lightning does). Returns ``dst``."""
    return writable_layout(layout).write(model, Path(dst))


def convert_checkpoint(src: str | Path, dst: str | Path, to: str, **load_options: Any) -> tuple[str, EoMTConfig]:
    """Load ``src`` (any layout) and write it to ``dst`` in layout ``to``; returns (source layout, config)."""
    target = writable_layout(to)
    model, layout = load_eomt_checkpoint(src, **load_options)
    target.write(model, Path(dst))
    return layout, model.config
