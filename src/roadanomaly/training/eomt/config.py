"""EoMT training configuration (YAML): model, data, augmentation, loss, optimisation, annealing, run options."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from roadanomaly.models.eomt import EoMTConfig
from roadanomaly.training.config import YamlConfig
from roadanomaly.training.eomt.criterion import LossConfig

TRAIN_SOURCES: tuple[str, ...] = ("disk", "synthroads")


@dataclass
class EoMTTrainConfig(YamlConfig):
    """Everything a run needs; ``model`` holds :class:`EoMTConfig` fields (``preset: S|B|L`` fills the rest)."""

    data: str = ""
    """Cityscapes-layout root: the training split (``train_source: disk``) and the validation split."""
    output: str = "runs/eomt"
    model: dict[str, Any] = field(default_factory=dict)
    init: str | None = None
    """DINOv2 backbone weights (a local file) to start the encoder from; None: random initialisation."""
    train_source: str = "disk"
    """``disk``: the training split, reshuffled every epoch; ``synthroads``: a fresh generated scene per sample."""
    synthroads_size: tuple[int, int] = (256, 512)
    """(H, W) at which ``synthroads`` scenes are rendered (then augmented as disk images)."""
    train_split: str = "train"
    val_split: str = "val"
    max_train_images: int | None = None
    max_val_images: int | None = None
    val_size: str = "native"
    """Validation resolution as ``roadanomaly evaluate --size`` takes it (native, HxW or a shorter side)."""
    resize: tuple[int, int] | None = None
    """(H, W) of an image at scale 1 before scale jitter; None keeps each image's size."""
    scale_range: tuple[float, float] = (0.5, 2.0)
    hflip: bool = True
    color_jitter: bool = True
    batch_size: int = 16
    max_steps: int = 10000
    """Length of the schedules (poly decay); a run stops there or earlier (``stop_at_step``, ``max_minutes``)."""
    stop_at_step: int | None = None
    """End this run at that global step (resume to go on); the schedules still span ``max_steps``."""
    max_minutes: float | None = None
    schedule_minutes: float | None = None
    """Pace the schedules (lr, annealing) by wall time: at t minutes they stand at step max_steps x t /
    schedule_minutes, and the run ends there. For CPU recipes on machines of unknown speed or load; such runs are
    not step-for-step reproducible. None: the schedules follow the steps."""
    val_every: int = 1000
    """Validate (mIoU) every that many steps, and at the end."""
    checkpoint_every: int = 500
    lr: float = 1e-4
    weight_decay: float = 0.05
    llrd: float = 0.8
    poly_power: float = 0.9
    warmup_steps: tuple[int, int] = (500, 1000)
    """(heads, backbone) linear warmup steps; the backbone starts after the heads' warmup."""
    grad_clip: float | None = 0.01
    annealing: bool = True
    anneal_starts: tuple[int, ...] = (3317, 6634, 9951, 13268)
    anneal_ends: tuple[int, ...] = (6634, 9951, 13268, 16585)
    loss: dict[str, Any] = field(default_factory=dict)
    """:class:`LossConfig` fields that differ from EoMT's."""
    workers: int = 4
    threads: int | None = None
    """torch CPU threads of the training process (None: torch's default); 1 suits a busy or 2-core machine."""
    seed: int = 0
    accelerator: str = "auto"
    devices: int | str = "auto"
    precision: str = "auto"
    """``auto``: bf16 (or fp16) mixed precision on a GPU, fp32 on the CPU; else a Lightning precision."""

    TUPLES: ClassVar[tuple[str, ...]] = ("synthroads_size", "resize", "warmup_steps", "anneal_starts", "anneal_ends")

    def __post_init__(self) -> None:
        self.scale_range = (float(self.scale_range[0]), float(self.scale_range[1]))
        for key in self.TUPLES:
            value = getattr(self, key)
            if value is not None:
                setattr(self, key, tuple(int(v) for v in value))
        if self.train_source not in TRAIN_SOURCES:
            raise ValueError(f"train_source must be one of {', '.join(TRAIN_SOURCES)}, not {self.train_source!r}")
        model = self.model_config()
        if self.annealing and not (len(self.anneal_starts) == len(self.anneal_ends) == model.num_blocks):
            raise ValueError(
                f"annealing needs one start and one end step per query block ({model.num_blocks}), got "
                f"{len(self.anneal_starts)} and {len(self.anneal_ends)}"
            )
        self.loss_config()

    def model_config(self) -> EoMTConfig:
        """The EoMT architecture this run trains (with DINOv2 ``init``, width/depth/heads come from the file)."""
        options = dict(self.model)
        preset = options.pop("preset", None)
        return EoMTConfig.preset(preset, **options) if preset else EoMTConfig.from_dict(options)

    def loss_config(self) -> LossConfig:
        return LossConfig(**self.loss)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["scale_range"] = list(self.scale_range)
        data["loss"] = asdict(self.loss_config())
        return data
