"""The Lightning module for EoMT: mask annealing per step, the mask-classification loss over every prediction set,
AdamW with layer-wise decay and two-stage warmup, and validation mIoU exactly as ``roadanomaly evaluate`` scores."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from roadanomaly.data.labels import IGNORE_INDEX
from roadanomaly.inference.eomt import EoMTPredictor
from roadanomaly.metrics import ConfusionMatrix
from roadanomaly.models.eomt import EoMT
from roadanomaly.training.eomt.annealing import mask_probabilities
from roadanomaly.training.eomt.config import EoMTTrainConfig
from roadanomaly.training.eomt.criterion import mask_classification_loss
from roadanomaly.training.eomt.data import SemanticTarget, collate
from roadanomaly.training.eomt.optim import ScheduleClock, build_optimizer
from roadanomaly.training.streams import IndexedStream


def step_generator(seed: int, step: int, stream: int, device: torch.device) -> torch.Generator:
    """A generator that depends only on (seed, step, stream): a resumed step draws what it drew the first time."""
    state = int(np.random.SeedSequence([seed, step, stream]).generate_state(1, np.uint64)[0] >> 1)
    return torch.Generator(device=device).manual_seed(state)


class EoMTModule(L.LightningModule):
    """Trains ``self.model`` (an :class:`EoMT`) on ``train_stream`` batches; validates on ``val_set``."""

    def __init__(self, config: EoMTTrainConfig, model: EoMT, train_stream: IndexedStream, val_set: Any) -> None:
        super().__init__()
        self.config, self.model = config, model
        self.train_stream, self.val_set = train_stream, val_set
        self.loss_config = config.loss_config()
        self.val_matrix = ConfusionMatrix(num_classes=model.config.num_classes, ignore_index=IGNORE_INDEX)
        self.losses: list[tuple[int, float]] = []
        """(step, loss) of every training step of this run."""
        self.curve: list[dict[str, float]] = []
        """{"step", "wall_s", "miou"} of every validation of this run."""
        self._started = time.perf_counter()
        self._predictor: EoMTPredictor | None = None
        self.clock = ScheduleClock(config.max_steps, config.schedule_minutes)

    # ----------------------------------------------------------------------------------------------- data
    def train_dataloader(self) -> DataLoader:
        stream = self.train_stream
        stream.start_batch = self.trainer.global_step  # where a resumed run left off
        stream.rank, stream.world_size = self.trainer.global_rank, self.trainer.world_size
        workers = self.config.workers
        return DataLoader(stream, batch_size=self.config.batch_size, num_workers=workers, collate_fn=collate,
                          persistent_workers=workers > 0)  # fmt: skip

    def val_dataloader(self) -> DataLoader:
        workers = min(self.config.workers, 2)
        return DataLoader(self.val_set, batch_size=1, num_workers=workers, persistent_workers=workers > 0)

    # ------------------------------------------------------------------------------------------- training
    def set_mask_probabilities(self, step: int) -> None:
        """Annealed probabilities at ``step`` (all 0 without annealing: no masked attention)."""
        c = self.config
        if c.annealing:
            probs = mask_probabilities(step, c.anneal_starts, c.anneal_ends, c.poly_power)
        else:
            probs = [0.0] * self.model.num_blocks
        self.model.attn_mask_probs.copy_(torch.tensor(probs))

    def on_fit_start(self) -> None:
        self._started = time.perf_counter()
        self.clock.start()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["schedule_elapsed_s"] = self.clock.elapsed()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.clock.elapsed_before = float(checkpoint.get("schedule_elapsed_s", 0.0))

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        step = self.clock.step(self.global_step)
        if self.config.schedule_minutes is not None and step >= self.config.max_steps:
            return -1  # the time budget is spent: Lightning ends the epoch, and max_epochs=1 the run
        self.set_mask_probabilities(step)
        self.model.mask_generator = step_generator(self.config.seed, self.global_step, 1, self.device)

    def training_step(self, batch: tuple[Tensor, list[SemanticTarget]], batch_idx: int) -> Tensor:
        images, targets = batch
        targets = [SemanticTarget(t.masks.to(self.device), t.labels.to(self.device)) for t in targets]
        out = self.model.forward_all(images.float())
        generator = step_generator(self.config.seed, self.global_step, 2, self.device)
        loss, parts = mask_classification_loss(out.mask_logits, out.class_logits, targets, self.loss_config,
                                               generator)  # fmt: skip
        self.losses.append((self.global_step, float(loss.detach())))
        batch_size = len(images)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        for name in ("class", "mask", "dice"):
            self.log(f"train/{name}", parts[name], batch_size=batch_size)
        for j, p in enumerate(self.model.attn_mask_probs.tolist()):
            self.log(f"train/mask_prob_{j}", p, batch_size=batch_size)
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        c = self.config
        optimizer, scheduler = build_optimizer(
            self.model, c.lr, c.weight_decay, c.llrd, c.warmup_steps, c.max_steps, c.poly_power, self.clock
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ----------------------------------------------------------------------------------------- validation
    def on_validation_epoch_start(self) -> None:
        self.val_matrix.reset()
        self.model.masked_attn = False  # inference never masks
        self._predictor = EoMTPredictor(self.model, device=str(self.device))

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        images, labels = batch
        assert self._predictor is not None
        prediction = self._predictor(images).class_scores.argmax(dim=1)
        self.val_matrix.update(prediction.cpu(), labels.cpu())

    def on_validation_epoch_end(self) -> None:
        self.model.masked_attn = None
        self._predictor = None
        self.val_matrix.sync()
        miou = float(self.val_matrix.compute()["miou"])
        self.log("val/miou", miou, prog_bar=True)
        self.curve.append({"step": self.global_step, "wall_s": time.perf_counter() - self._started, "miou": miou})
