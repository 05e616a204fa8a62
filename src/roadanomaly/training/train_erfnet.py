"""Train ERFNet with Lightning: optionally the encoder stage (1/8-scale labels), then the whole network."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from roadanomaly.data.cityscapes import CityscapesDataset
from roadanomaly.errors import UserError
from roadanomaly.models.state_dicts import strip_prefix_before
from roadanomaly.training.common import build_trainer, quiet_lightning, read_checkpoint
from roadanomaly.training.config import ERFNetTrainConfig
from roadanomaly.training.data import SegmentationTrainSet, enet_class_weights
from roadanomaly.training.erfnet_module import ERFNetModule

STAGES: tuple[str, ...] = ("encoder", "full")


@dataclass
class TrainResult:
    weights: Path
    """Plain ERFNet state dict of the best whole-network epoch (what ``roadanomaly evaluate`` takes)."""
    checkpoint: Path
    """Lightning checkpoint of that epoch."""
    val_miou: float


def _stage_of(checkpoint: str | Path) -> str:
    try:
        stage = read_checkpoint(checkpoint)["hyper_parameters"]["stage"]
    except KeyError:
        raise UserError(checkpoint, "not an ERFNet training checkpoint (no training stage)") from None
    if stage not in STAGES:
        raise UserError(checkpoint, f"unknown training stage {stage!r}")
    return stage


def _model_state(checkpoint: str | Path) -> dict[str, torch.Tensor]:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    return strip_prefix_before(state, "encoder.initial_block.conv.weight")


def train_erfnet(config: ERFNetTrainConfig, resume: str | Path | None = None, progress: bool = True) -> TrainResult:
    """Run the configured stages; ``resume`` continues from a Lightning checkpoint of either stage."""
    L.seed_everything(config.seed, workers=True, verbose=False)
    train_source = CityscapesDataset(config.data, config.train_split)
    val_source = CityscapesDataset(config.data, config.val_split)
    train_set = SegmentationTrainSet(
        train_source, config.resize, config.crop, True, config.max_translate, config.max_train_images
    )
    val_set = SegmentationTrainSet(val_source, config.resize, None, False, 0, config.max_val_images)
    weights = None
    if config.class_weighting == "enet":
        weights = enet_class_weights(train_set.class_frequencies(), config.num_classes).tolist()
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))

    stages = [s for s, n in zip(STAGES, (config.encoder_epochs, config.epochs)) if n > 0]
    if resume is not None:
        resumed_stage = _stage_of(resume)
        stages = stages[stages.index(resumed_stage):] if resumed_stage in stages else [resumed_stage]
    if "full" not in stages:
        raise UserError(None, "nothing to train: the whole-network stage needs epochs > 0")

    with quiet_lightning():
        return _run_stages(stages, config, train_set, val_set, weights, output, resume, progress)


def _run_stages(
    stages: list[str],
    config: ERFNetTrainConfig,
    train_set: SegmentationTrainSet,
    val_set: SegmentationTrainSet,
    weights: list[float] | None,
    output: Path,
    resume: str | Path | None,
    progress: bool,
) -> TrainResult:
    encoder_state = None
    result = None
    for stage in stages:
        module = ERFNetModule(config.num_classes, stage, weights, config.lr, config.weight_decay, config.poly_power)
        if stage == "full" and encoder_state is not None:
            module.model.encoder.load_state_dict(encoder_state)
        checkpoints = ModelCheckpoint(dirpath=output / stage, filename="best", monitor="val/miou", mode="max")
        trainer = build_trainer(
            output, stage, config.accelerator, config.devices, config.precision, progress,
            [checkpoints, _last_epoch_checkpoint(output / stage)],
            max_epochs=config.encoder_epochs if stage == "encoder" else config.epochs, log_every_n_steps=5,
        )  # fmt: skip
        ckpt_path = resume if resume is not None and stage == stages[0] else None
        trainer.fit(module, *_loaders(train_set, val_set, config), ckpt_path=ckpt_path)
        best = Path(checkpoints.best_model_path or checkpoints.last_model_path)
        state = _model_state(best)
        if stage == "encoder":
            encoder_state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
        else:
            weights_path = output / "erfnet.pth"
            torch.save(state, weights_path)
            score = checkpoints.best_model_score
            result = TrainResult(weights_path, best, float(score) if score is not None else float("nan"))
    assert result is not None
    return result


def _last_epoch_checkpoint(dirpath: Path) -> ModelCheckpoint:
    """``last.ckpt``, rewritten after every epoch (what ``--resume`` continues from). Not ``save_last`` of the
    best-epoch callback: Lightning 2.6 refreshes that file only in epochs whose score improved."""
    return ModelCheckpoint(dirpath=dirpath, filename="last", monitor=None, save_top_k=1, enable_version_counter=False)


def _loaders(train_set: SegmentationTrainSet, val_set: SegmentationTrainSet, config: ERFNetTrainConfig):
    persistent = config.workers > 0
    train = DataLoader(train_set, batch_size=config.batch_size, shuffle=True,
                       drop_last=len(train_set) >= config.batch_size, num_workers=config.workers,
                       persistent_workers=persistent)
    val = DataLoader(val_set, batch_size=1, num_workers=config.workers, persistent_workers=persistent)
    return train, val
