"""The ``roadanomaly`` layout: our folder, or a bare state dict in our names.

The folder holds ``config.json`` (``{"format": "roadanomaly-eomt", "config": EoMTConfig}``) and
``model.safetensors`` in :class:`~roadanomaly.models.eomt.EoMT` names; a bare file's configuration is read off its
shapes, and pixel statistics left out of it are ImageNet's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from roadanomaly.errors import UserError
from roadanomaly.models.eomt import EoMT, EoMTConfig
from roadanomaly.models.eomt_layouts.base import CheckpointLayout, Decoded, Source
from roadanomaly.models.eomt_layouts.common import (
    PIXEL_STATS,
    WEIGHTS_FILE,
    Shapes,
    Size,
    check_folder_target,
    float_state,
    pixel_stat,
    read_folder_weights,
    save_safetensors,
    shapes,
    write_json,
)
from roadanomaly.models.eomt_layouts.shapes import infer_config

FORMAT_TAG = "roadanomaly-eomt"


class RoadanomalyLayout(CheckpointLayout):
    name = "roadanomaly"
    description = "our folder (config.json + model.safetensors)"
    writable = True

    def detect(self, source: Source) -> bool:
        if source.is_folder:
            return source.config.get("format") == FORMAT_TAG
        return "encoder.cls_token" in source.state_dict

    def read(self, source: Source, img_size: Size | None = None, heads: int | None = None, **options: Any) -> Decoded:
        if source.is_folder:
            raw = read_folder_weights(source.path)
            ours = dict(raw)
            try:
                config = EoMTConfig.from_dict(source.config.get("config", {}))
            except (TypeError, ValueError) as error:
                raise UserError(source.path / "config.json", f"bad EoMT config: {error}") from None
        else:  # a bare state dict in our names
            raw = source.state_dict
            ours = dict(raw)
            config = infer_config(ours, source.where, img_size, heads)
        found = {k: v for k, v in raw.items() if not k.startswith("criterion.")}
        for key in PIXEL_STATS:  # optional: ImageNet when absent
            ours.setdefault(key, pixel_stat(key))
        return Decoded(ours, config, found, optional=frozenset(PIXEL_STATS))

    def expected_keys(self, model: EoMT) -> Shapes:
        return shapes(model.state_dict())

    def write(self, model: EoMT, dst: Path) -> Path:
        """A folder: ``config.json`` (format tag and EoMTConfig) and ``model.safetensors``."""
        check_folder_target(dst, self.name)
        dst.mkdir(parents=True, exist_ok=True)
        save_safetensors(float_state(model), dst / WEIGHTS_FILE)
        write_json({"format": FORMAT_TAG, "config": model.config.to_dict()}, dst / "config.json")
        return dst
