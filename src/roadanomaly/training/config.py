"""Training configurations as dataclasses, readable from and writable to YAML (:class:`YamlConfig`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from roadanomaly.errors import UserError


C = TypeVar("C", bound="YamlConfig")


class YamlConfig:
    """YAML I/O for a dataclass: unknown fields are a UserError; ``TUPLES`` fields are read as tuples of ints."""

    TUPLES: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_yaml(cls: type[C], path: str | Path, **overrides: Any) -> C:
        """Read a YAML file of field values; ``overrides`` that are not None win over the file."""
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise UserError(path, f"cannot read config ({str(error).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise UserError(path, "config must be a mapping of field: value")
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(path, f"unknown config fields: {', '.join(unknown)}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as error:
            raise UserError(path, f"bad config: {error}") from None

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        data = dict(data)
        for key in cls.TUPLES:
            if data.get(key) is not None:
                data[key] = tuple(int(v) for v in data[key])
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)  # type: ignore[call-overload]
        for key in self.TUPLES:
            if data[key] is not None:
                data[key] = list(data[key])
        return data


@dataclass
class ERFNetTrainConfig(YamlConfig):
    """ERFNet training on Cityscapes-layout data. The published recipe: encoder stage at 1/8, then the whole net."""

    data: str = ""
    output: str = "runs/erfnet"
    num_classes: int = 20
    train_split: str = "train"
    val_split: str = "val"
    resize: tuple[int, int] | None = None
    """(H, W) every image is resized to before cropping (the published recipe: 512x1024); None keeps it."""
    crop: tuple[int, int] | None = None
    """(H, W) random crop at that scale for training; None trains on whole images."""
    batch_size: int = 6
    encoder_epochs: int = 0
    """Epochs of the encoder-only stage (1/8-scale labels); 0 skips it."""
    epochs: int = 10
    """Epochs of the whole-network stage."""
    lr: float = 5e-4
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    class_weighting: str = "enet"
    """``enet``: w_c = 1 / ln(1.02 + p_c) from the training labels' class frequencies; ``none``: uniform."""
    max_translate: int = 2
    """Random translation in pixels (the published augmentation, with horizontal flips)."""
    max_train_images: int | None = None
    max_val_images: int | None = None
    workers: int = 0
    seed: int = 0
    accelerator: str = "auto"
    devices: int | str = "auto"
    precision: str = "32-true"

    TUPLES: ClassVar[tuple[str, ...]] = ("resize", "crop")
