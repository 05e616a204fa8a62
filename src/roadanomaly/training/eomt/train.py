"""Train EoMT with Lightning, step-based: stream batches, validate every ``val_every`` steps, checkpoint, resume,
and write the final model in the roadanomaly layout (``model/``: model.safetensors + config.json)."""

from __future__ import annotations

import copy
import csv
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint

from roadanomaly.data.labels import NUM_CLASSES, TRAIN_ID_NAMES
from roadanomaly.errors import UserError
from roadanomaly.models.eomt import EoMT
from roadanomaly.models.eomt_checkpoints import init_from_dinov2, save_eomt
from roadanomaly.protocol import EvalProtocol
from roadanomaly.training.common import build_trainer, quiet_lightning, read_checkpoint
from roadanomaly.training.eomt.config import EoMTTrainConfig
from roadanomaly.training.eomt.data import Augment, SplitSource, ValSet
from roadanomaly.training.eomt.module import EoMTModule
from roadanomaly.training.streams import IndexedStream, ShuffledSplit

LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
"""Where a run keeps its resumable state, under its output folder."""


@dataclass
class EoMTTrainResult:
    weights: Path
    """Folder of the final model in the roadanomaly layout (what ``roadanomaly evaluate --model eomt`` takes)."""
    checkpoint: Path
    """Lightning checkpoint of the final state (``--resume`` continues from it)."""
    val_miou: float
    """mIoU of the final model on the validation set (masked attention off, as at inference)."""
    steps: int
    losses: list[tuple[int, float]] = field(default_factory=list)
    """(step, training loss) of every step this run took."""
    curve: list[dict[str, float]] = field(default_factory=list)
    """{"step", "wall_s", "miou"} of every validation of this run."""


def build_model(config: EoMTTrainConfig) -> EoMT:
    """A fresh EoMT for ``config``: DINOv2 encoder weights from ``init`` if given, else random."""
    arch = config.model_config()
    names = TRAIN_ID_NAMES if arch.num_classes == NUM_CLASSES else None
    if config.init:
        model = init_from_dinov2(
            config.init, num_classes=arch.num_classes, num_q=arch.num_q, img_size=arch.img_size,
            num_blocks=arch.num_blocks, patch=arch.patch, heads=arch.heads if "heads" in config.model else None,
            class_names=names,
        )  # fmt: skip
        return model.train()
    arch.class_names = names
    return EoMT(arch)


def _train_stream(config: EoMTTrainConfig) -> IndexedStream:
    arch = config.model_config()
    augment = Augment(arch.img_size, config.resize, config.scale_range, config.hflip, config.color_jitter,
                      arch.num_classes, config.seed)  # fmt: skip
    if config.train_source == "synthroads":
        from roadanomaly.data.synthroads.stream import synthroads_stream

        return synthroads_stream(config.batch_size, config.seed, "train", config.synthroads_size, transform=augment)
    source = ShuffledSplit(config.data, config.train_split, config.seed, config.max_train_images)
    return IndexedStream(_Augmented(source, augment), config.batch_size)


@dataclass(frozen=True)
class _Augmented:
    source: ShuffledSplit
    augment: Augment

    def __call__(self, k: int):
        return self.augment(k, *self.source(k))


def _val_set(config: EoMTTrainConfig) -> ValSet:
    protocol = EvalProtocol(size=config.val_size)
    if config.data:
        source = SplitSource(config.data, config.val_split)
        count = len(source)
    else:  # generated: the very scenes `roadanomaly synth` writes as its val split
        from roadanomaly.data.synthroads.stream import SceneSource

        source, count = SceneSource(config.seed, "val", config.synthroads_size), 100
    if config.max_val_images is not None:
        count = min(count, config.max_val_images)
    return ValSet(source, count, protocol)


def _resume_point(config: EoMTTrainConfig, resume: str | Path | bool | None) -> tuple[Path | None, int]:
    """(checkpoint to resume from, its step), or (None, 0) for a fresh run."""
    if resume is None or resume is False:
        return None, 0
    path = Path(config.output) / LAST_CHECKPOINT if resume is True else Path(resume)
    if not path.is_file():
        raise UserError(path, "no checkpoint to resume from")
    state = read_checkpoint(path)
    if "global_step" not in state:
        raise UserError(path, "not a Lightning training checkpoint (no global_step)")
    return path, int(state["global_step"])


def train_eomt(
    config: EoMTTrainConfig, resume: str | Path | bool | None = None, progress: bool = True
) -> EoMTTrainResult:
    """Train (or, with ``resume`` = a checkpoint or True for the output's last one, continue) an EoMT."""
    if config.train_source == "disk" and not config.data:
        raise UserError(None, "no training data: give --data ROOT or 'data:' in the config (or train_source: "
                        "synthroads)")  # fmt: skip
    resume_path, start = _resume_point(config, resume)
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _train(config, resume_path, start, progress)
    finally:
        torch.set_num_threads(threads)


def _train(config: EoMTTrainConfig, resume_path: Path | None, start: int, progress: bool) -> EoMTTrainResult:
    L.seed_everything(config.seed, workers=True, verbose=False)
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    model = build_model(config)
    module = EoMTModule(config, model, _train_stream(config), _val_set(config))
    stop = min(config.max_steps, config.stop_at_step or config.max_steps)
    if config.schedule_minutes is not None:  # the clock ends the run; steps are not the limit
        stop = config.stop_at_step or -1
    checkpoints = ModelCheckpoint(dirpath=output / "checkpoints", filename="step{step}", save_top_k=0,
                                  save_last=True, every_n_train_steps=config.checkpoint_every)  # fmt: skip
    options = {} if config.max_minutes is None else {"max_time": {"minutes": config.max_minutes}}
    with quiet_lightning():
        trainer = build_trainer(
            output, f"eomt_from_step{start}" if start else "eomt", config.accelerator, config.devices,
            config.precision, progress, [checkpoints],
            max_steps=stop, val_check_interval=config.val_every, check_val_every_n_epoch=None,
            gradient_clip_val=config.grad_clip, gradient_clip_algorithm="norm", log_every_n_steps=10,
            use_distributed_sampler=False, max_epochs=1 if config.schedule_minutes is not None else None,
            **options,
        )  # fmt: skip
        trainer.fit(module, ckpt_path=resume_path, weights_only=True)
        checkpoint = output / LAST_CHECKPOINT
        trainer.save_checkpoint(checkpoint, weights_only=False)
        if not module.curve or module.curve[-1]["step"] != trainer.global_step:
            trainer.validate(module, verbose=False)
    weights = export_model(module.model, output / "model")
    _write_curve(output / "curve.csv", module.curve)
    miou = module.curve[-1]["miou"] if module.curve else float("nan")
    return EoMTTrainResult(weights, checkpoint, miou, trainer.global_step, module.losses, module.curve)


def export_model(model: EoMT, folder: Path) -> Path:
    """Write ``model`` for inference: roadanomaly layout, masked attention off (annealing probabilities 0)."""
    generator, model.mask_generator = model.mask_generator, None  # generators do not deep-copy
    exported = copy.deepcopy(model).cpu().float().eval()
    model.mask_generator = generator
    with torch.no_grad():
        exported.attn_mask_probs.zero_()
    return save_eomt(exported, folder, "roadanomaly")


def _write_curve(path: Path, curve: list[dict[str, float]]) -> None:
    new = not path.is_file()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["step", "wall_s", "miou"])
        if new:
            writer.writeheader()
        writer.writerows(curve)
