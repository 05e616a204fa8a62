"""Lightning module training the anomaly head (and the RbA-OE baseline) on a frozen EoMT, full or cached path.

Full path: a batch of :class:`PastedSample` goes through the base (kept in eval mode: inference behaviour, no
random attention-mask disabling) and becomes a :class:`QueryBatch`. Cached path: :class:`QueryCache` holds the
query batch of every sample, computed once, since nothing of it changes while the base is frozen.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from roadanomaly.models.anomaly_head import AnomalyHead, RbaOEHead
from roadanomaly.models.eomt import EoMT
from roadanomaly.training.anomaly_head_config import AnomalyHeadTrainConfig
from roadanomaly.training.anomaly_head_data import PastedSample
from roadanomaly.training.anomaly_head_losses import (
    QueryBatch,
    mask_cost_matrices,
    head_loss,
    matched_mask_loss,
    normal_class_loss,
    pixel_anomaly_loss,
    rba_oe_loss,
)
from roadanomaly.training.eomt.matcher import MatchCosts


def trainable_base_parameters(base: EoMT, parts: tuple[str, ...], last_blocks: int = 1) -> dict[str, nn.Parameter]:
    """Base parameters fine-tuned for ``parts`` (class_head, mask_head, last_blocks), by name."""
    prefixes = []
    if "class_head" in parts:
        prefixes.append("class_head.")
    if "mask_head" in parts:
        prefixes.append("mask_head.")
    if "last_blocks" in parts:
        depth = len(base.encoder.blocks)
        prefixes += [f"encoder.blocks.{i}." for i in range(max(0, depth - last_blocks), depth)] + ["encoder.norm."]
    return {n: p for n, p in base.named_parameters() if n.startswith(tuple(prefixes))}


def read_at(maps: Tensor, coords: Tensor) -> Tensor:
    """Values of ``maps`` (B, Q, h, w) at ``coords`` (B, P, 2) in [0, 1] -> (B, Q, P), exactly as bilinear
    upsampling (``align_corners=False``, edges clamped) to any size and reading that pixel would give."""
    grid = (2.0 * coords - 1.0)[:, :, None, :].to(maps.dtype)
    return F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=False)[..., 0]


def query_batch(
    base: EoMT, samples: list[PastedSample], costs: MatchCosts, keep_block_input: int | None = None
) -> QueryBatch:
    """One forward pass of ``base`` over the samples' images -> their :class:`QueryBatch` (with the tokens
    entering block ``keep_block_input`` when given)."""
    device = next(base.parameters()).device
    images = torch.stack([s.image for s in samples]).to(device)
    out = base.forward_all(images, keep_block_input=keep_block_input)
    coords = torch.stack([s.coords for s in samples]).to(device)
    point_logits = read_at(out.mask_logits[-1], coords)
    point_targets = [s.point_targets.to(device) for s in samples]
    return QueryBatch(
        queries=out.queries,
        class_logits=out.class_logits[-1],
        point_logits=point_logits,
        point_labels=torch.stack([s.point_labels for s in samples]).to(device),
        point_targets=point_targets,
        anomaly=[s.anomaly.to(device) for s in samples],
        classes=[s.classes.to(device) for s in samples],
        mask_costs=mask_cost_matrices(point_logits, point_targets, costs),
        block_input=out.block_input,
        coords=coords,
    )


class QueryCache(Dataset):
    """Every sample's :class:`QueryBatch` entries, stored once (``dtype`` for the large tensors); items are
    indices and :meth:`collate` assembles batches."""

    def __init__(self, base: EoMT, samples: Dataset, costs: MatchCosts, batch_size: int = 8,
                 dtype: torch.dtype = torch.float32, progress: Any = None,
                 keep_block_input: int | None = None) -> None:  # fmt: skip
        parts: dict[str, list[Any]] = {
            k: [] for k in ("queries", "class_logits", "point_logits", "point_labels", "coords")
        }
        block_inputs: list[Tensor] = []
        self.point_targets: list[Tensor] = []
        self.anomaly: list[Tensor] = []
        self.classes: list[Tensor] = []
        self.mask_costs: list[Tensor] = []
        base.eval()
        with torch.no_grad():
            for start in range(0, len(samples), batch_size):
                chunk = [samples[i] for i in range(start, min(len(samples), start + batch_size))]
                qb = query_batch(base, chunk, costs, keep_block_input)
                parts["queries"].append(qb.queries.to("cpu", dtype))
                if qb.block_input is not None:
                    block_inputs.append(qb.block_input.to("cpu", dtype))
                parts["class_logits"].append(qb.class_logits.float().cpu())
                parts["point_logits"].append(qb.point_logits.to("cpu", dtype))
                parts["point_labels"].append(qb.point_labels.cpu())
                parts["coords"].append(qb.coords.cpu())
                self.point_targets += [t.cpu() for t in qb.point_targets]
                self.anomaly += [a.cpu() for a in qb.anomaly]
                self.classes += [c.cpu() for c in qb.classes]
                self.mask_costs += [c.cpu() for c in qb.mask_costs]
                if progress is not None:
                    progress(len(chunk))
        self.queries, self.class_logits, self.point_logits, self.point_labels, self.coords = (
            torch.cat(parts[k]) for k in ("queries", "class_logits", "point_logits", "point_labels", "coords")
        )
        self.block_input = torch.cat(block_inputs) if block_inputs else None

    def __len__(self) -> int:
        return len(self.anomaly)

    def __getitem__(self, index: int) -> int:
        return index

    def nbytes(self) -> int:
        tensors = [self.queries, self.class_logits, self.point_logits, self.point_labels, *self.point_targets]
        tensors += [] if self.block_input is None else [self.block_input]
        return sum(t.numel() * t.element_size() for t in tensors)

    def collate(self, indices: list[int]) -> QueryBatch:
        idx = torch.as_tensor(indices)
        return QueryBatch(
            queries=self.queries[idx].float(),
            class_logits=self.class_logits[idx],
            point_logits=self.point_logits[idx].float(),
            point_labels=self.point_labels[idx],
            point_targets=[self.point_targets[i] for i in indices],
            anomaly=[self.anomaly[i] for i in indices],
            classes=[self.classes[i] for i in indices],
            mask_costs=[self.mask_costs[i] for i in indices],
            block_input=None if self.block_input is None else self.block_input[idx].float(),
            coords=self.coords[idx],
        )


class AnomalyHeadModule(L.LightningModule):
    """The head (and the RbA-OE class head) on ``base``; only what ``config.train`` names of the base learns."""

    def __init__(self, base: EoMT, config: AnomalyHeadTrainConfig) -> None:
        super().__init__()
        self.config = config
        self.base = base.eval()
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.base_trainable = trainable_base_parameters(base, config.train, config.last_blocks)
        for p in self.base_trainable.values():
            p.requires_grad_(True)
        self.head = AnomalyHead.from_base(  # trainable
            base, config.hidden, config.head_blocks, config.class_inputs, config.head_masks
        )
        self.rba_oe = RbaOEHead(base.class_head) if config.baseline else None
        self.costs = MatchCosts(mask=config.cost_mask, cls=config.cost_class, dice=config.cost_dice)

    def train(self, mode: bool = True) -> AnomalyHeadModule:
        super().train(mode)
        self.base.eval()  # inference behaviour of the frozen parts (masked attention as at test time)
        return self

    def queries_of(self, batch: QueryBatch | list[PastedSample]) -> QueryBatch:
        if isinstance(batch, QueryBatch):
            return batch
        with torch.set_grad_enabled(bool(self.base_trainable) and torch.is_grad_enabled()):
            return query_batch(self.base, batch, self.costs, self.head.reads_block)

    def losses(self, batch: QueryBatch | list[PastedSample]) -> dict[str, Tensor]:
        """``{"head": ..., "pixel": ..., "rba_oe": ..., "class": ..., "mask": ..., "loss": total}`` (terms that
        apply)."""
        c = self.config
        qb = self.queries_of(batch)
        out: dict[str, Tensor] = {}
        head_logits, own_masks = self.head.logits_and_masks(qb.queries, qb.block_input, qb.class_logits)
        seen = qb if own_masks is None else self._with_own_masks(qb, own_masks)
        out["head"], matches = head_loss(head_logits, seen, self.costs, c.no_object_weight, c.anomaly_weight)
        if c.pixel_weight:
            out["pixel"] = c.pixel_weight * pixel_anomaly_loss(head_logits, seen.point_logits, seen.point_labels)
        if own_masks is not None:
            out["head_mask"] = c.head_mask_weight * matched_mask_loss(seen, matches)
        if self.rba_oe is not None:
            out["rba_oe"] = rba_oe_loss(
                self.rba_oe.logits(qb.queries.detach()), _detached(qb), self.costs, c.no_object_weight,
                c.outlier_weight, c.inlier_upper, c.outlier_lower,
            )  # fmt: skip
        if "class_head" in c.train:
            out["class"] = normal_class_loss(qb.class_logits, qb, self.costs, c.no_object_weight)
        if c.mask_trainable:
            out["mask"] = matched_mask_loss(qb, matches)
        out["loss"] = sum(out.values())
        return out

    def _with_own_masks(self, qb: QueryBatch, mask_logits: Tensor) -> QueryBatch:
        """``qb`` seen through the head's own masks: its mask logits at the points and the mask costs they give."""
        if qb.coords is None:
            raise ValueError("a head with its own masks needs the points' coordinates in the query batch")
        point_logits = read_at(mask_logits, qb.coords.to(mask_logits.device))
        costs = mask_cost_matrices(point_logits.detach(), qb.point_targets, self.costs)
        return replace(qb, point_logits=point_logits, mask_costs=costs)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        losses = self.losses(batch)
        size = len(batch.anomaly) if isinstance(batch, QueryBatch) else len(batch)
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, batch_size=size, prog_bar=False)
        return losses["loss"]

    def configure_optimizers(self):
        c = self.config
        groups = [{"params": list(self.head.mlp.parameters()), "lr": c.lr}]
        own_blocks = [p for n, p in self.head.named_parameters() if not n.startswith("mlp.")]
        if own_blocks:
            groups.append({"params": own_blocks, "lr": c.head_block_lr})
        if self.rba_oe is not None:
            groups.append({"params": list(self.rba_oe.parameters()), "lr": c.baseline_lr})
        if self.base_trainable:
            groups.append({"params": list(self.base_trainable.values()), "lr": c.baseline_lr})
        optimizer = torch.optim.AdamW(groups, weight_decay=c.weight_decay)
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: (1 - min(s, steps) / steps) ** 0.9)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def base_overrides(self) -> dict[str, Tensor]:
        """The fine-tuned base parameters (empty when the base stayed frozen)."""
        return {n: p.detach().cpu().clone() for n, p in self.base_trainable.items()}


def _detached(qb: QueryBatch) -> QueryBatch:
    """The baseline trains only its own class head: no gradient into fine-tuned base parts through it."""
    return QueryBatch(qb.queries.detach(), qb.class_logits.detach(), qb.point_logits.detach(), qb.point_labels,
                      qb.point_targets, qb.anomaly, qb.classes, qb.mask_costs)  # fmt: skip
