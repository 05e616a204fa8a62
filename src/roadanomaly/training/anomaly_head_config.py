"""Settings of ``roadanomaly train anomaly-head``: a dataclass readable from YAML (see configs/anomaly_head*.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from roadanomaly.data.outlier_exposure import PasteConfig
from roadanomaly.errors import UserError
from roadanomaly.training.config import YamlConfig

TRAINABLE_PARTS: tuple[str, ...] = ("class_head", "mask_head", "last_blocks")


@dataclass
class AnomalyHeadTrainConfig(YamlConfig):
    """EoMT-EXT anomaly-head training (and the RbA-OE baseline) on inlier images with pasted outliers."""

    TUPLES: ClassVar[tuple[str, ...]] = ("size", "paste_count", "paste_height", "outliers", "train")

    base: str = ""
    """EoMT checkpoint (official / HF / roadanomaly layout)."""
    data: str = ""
    """Cityscapes-layout root of the inlier images."""
    output: str = "runs/anomaly_head"
    outliers: tuple[str, ...] = ("synth",)
    """Outlier sources: ``synth``, ``synth:SIZE``, ``coco:ROOT`` or a folder of cut-outs."""
    split: str = "train"
    size: tuple[int, int] | None = (128, 256)
    """(H, W) the inlier images are resized to before pasting (the evaluation size); None keeps them."""
    max_images: int | None = None
    copies: int = 2
    """Pasted versions of each image (different objects, places and crops)."""
    paste_probability: float = 0.9
    paste_count: tuple[int, int] = (1, 3)
    paste_height: tuple[float, float] = (0.15, 0.6)
    paste_min_height: int = PasteConfig.min_height
    """No object is pasted shorter than this (pixels of the image as resized to ``size``)."""
    feather: float = 0.0
    colour_match: float = 0.0
    num_points: int = 1024
    """Pixels per sample at which masks and targets are read (matching, RbA loss)."""
    hidden: int = 256
    head_blocks: int = 0
    """Copies of the base's last query blocks the head runs before its MLP (0: the MLP reads the final query
    embeddings); the base itself stays frozen and its masks unchanged."""
    class_inputs: bool = False
    """The head's MLP also reads the base's class probabilities of each query (C + 1 values) beside its embedding.
    Off in the recipes: on SynthRoads (29.8 % base, SynthRoads recipe) AuPRC 22.48 / 19.97 against 22.42 / 18.77
    without, FPR95 59.5 / 67.5 against 56.2 / 58.4."""
    head_masks: bool = False
    """The head also predicts its own masks (copies of the base's mask head and upscaling on its blocks' tokens,
    trained with BCE + dice on the matched targets); its ``anomaly`` map is drawn with them. Needs head_blocks."""
    head_mask_weight: float = 1.0
    """Weight of those mask losses."""
    head_block_lr: float = 1e-4
    """Learning rate of those copies (the MLP learns at ``lr``)."""
    no_object_weight: float = 0.1
    anomaly_weight: float = 1.0
    """Weight of the anomaly class in the head's cross-entropy (normal and no-object stay 1 and no_object_weight)."""
    pixel_weight: float = 0.0
    """Weight of an extra pixel term (class-balanced BCE of the head's normalised pixel score at the points). 0 by
    default; the SynthRoads recipe (a head with its own blocks) uses 1: on the SynthRoads test bundles it traded
    4.3 AuPRC points on SynthAnomaly for 3.5 on SynthObstacle, the bundle where the head trailed RbA-OE without it."""
    cost_mask: float = 5.0
    cost_class: float = 2.0
    cost_dice: float = 5.0
    train: tuple[str, ...] = ()
    """Base parts fine-tuned with the head: class_head, mask_head, last_blocks (frozen by default)."""
    last_blocks: int = 1
    cached: bool | None = None
    """Train on cached query embeddings and mask logits (default: whenever the base is frozen)."""
    baseline: bool = True
    """Also train the RbA-OE baseline (the class head fine-tuned with RbA's outlier loss) on the same samples."""
    outlier_weight: float = 1.0
    inlier_upper: float = -1.0
    """RbA: inlier pixel scores are pushed below this."""
    outlier_lower: float = -0.1
    """RbA: outlier pixel scores are pushed above this."""
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3
    baseline_lr: float = 1e-4
    weight_decay: float = 1e-4
    seed: int = 0
    accelerator: str = "cpu"
    devices: int | str = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.train) - set(TRAINABLE_PARTS))
        if unknown:
            raise UserError(None, f"unknown trainable part {unknown[0]!r} (choose from {', '.join(TRAINABLE_PARTS)})")
        if self.cached and self.train:
            raise UserError(None, "the cached path needs a frozen base (drop cached or the trainable parts)")
        if self.head_blocks < 0:
            raise UserError(None, f"head_blocks must be 0 or more, not {self.head_blocks}")
        if self.head_masks and not self.head_blocks:
            raise UserError(None, "head_masks needs head_blocks > 0 (the head's masks come from its own blocks)")
        if self.copies < 1 or self.epochs < 1 or self.batch_size < 1 or self.num_points < 1:
            raise UserError(None, "copies, epochs, batch_size and num_points must be positive")

    @property
    def mask_trainable(self) -> bool:
        return "mask_head" in self.train or "last_blocks" in self.train

    @property
    def use_cache(self) -> bool:
        return (not self.train) if self.cached is None else bool(self.cached)
