"""The Lightning module for ERFNet: weighted cross-entropy ignoring 255, Adam with a poly schedule, val mIoU."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from roadanomaly.data.labels import IGNORE_INDEX, NUM_CLASSES
from roadanomaly.evaluation import semantic_prediction
from roadanomaly.metrics import ConfusionMatrix
from roadanomaly.models.erfnet import ERFNet
from roadanomaly.outputs import PixelOutputs


class ERFNetModule(L.LightningModule):
    """Trains ``self.model`` (an :class:`ERFNet`) in stage ``encoder`` (1/8-scale logits) or ``full``."""

    def __init__(
        self,
        num_classes: int = 20,
        stage: str = "full",
        class_weights: list[float] | None = None,
        lr: float = 5e-4,
        weight_decay: float = 1e-4,
        poly_power: float = 0.9,
    ) -> None:
        super().__init__()
        if stage not in ("encoder", "full"):
            raise ValueError(f"stage must be 'encoder' or 'full', not {stage!r}")
        self.save_hyperparameters()
        self.model = ERFNet(num_classes)
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("class_weights", weights, persistent=False)
        self.val_matrix = ConfusionMatrix(num_classes=NUM_CLASSES, ignore_index=IGNORE_INDEX)

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images, only_encode=self.hparams.stage == "encoder")

    def _loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        if logits.shape[-2:] != labels.shape[-2:]:
            labels = F.interpolate(labels[:, None].float(), size=logits.shape[-2:], mode="nearest")[:, 0].long()
        return F.cross_entropy(logits, labels, weight=self.class_weights, ignore_index=IGNORE_INDEX)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        loss = self._loss(self(images), labels)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(images))
        return loss

    def on_validation_epoch_start(self) -> None:
        self.val_matrix.reset()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        images, labels = batch
        logits = self(images)
        self.log("val/loss", self._loss(logits, labels), on_epoch=True, batch_size=len(images))
        if logits.shape[-2:] != labels.shape[-2:]:
            logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
        prediction = semantic_prediction(PixelOutputs(logits=logits, void_channel=self.model.void_channel))
        self.val_matrix.update(prediction.cpu(), labels.cpu())

    def on_validation_epoch_end(self) -> None:
        self.val_matrix.sync()
        self.log("val/miou", float(self.val_matrix.compute()["miou"]), prog_bar=True)

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer = torch.optim.Adam(self.parameters(), lr=hp.lr, betas=(0.9, 0.999), eps=1e-8,
                                     weight_decay=hp.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: max(0.0, 1.0 - step / total) ** hp.poly_power
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
