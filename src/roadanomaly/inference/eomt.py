"""Windowed semantic inference with EoMT: uint8 images -> :class:`~roadanomaly.outputs.PixelOutputs`.

As in the official evaluation: the image is resized so its shorter side equals the crop size, cut into
n = ceil(long / crop) square crops evenly spaced along the long side (first at 0, last flush with the end), the
crops go through the model in batches, and per window

    P_c(x)           = sum_q softmax(class_q)[c] * sigmoid(mask_q(x))      (no-object column dropped after softmax)
    no_object(x)     = sum_q softmax(class_q)[no-object] * sigmoid(mask_q(x))
    max_class(x)     = sum_q max_k softmax(class_q)[k] * sigmoid(mask_q(x))  (k over the known classes)
    mask_mass(x)     = sum_q sigmoid(mask_q(x))
    <head name>(x)   = sum_q weight_q * sigmoid(mask_q(x))                 (weight_q from a query head: a number
                                                                           (B, Q) or a vector (B, Q, K) per query)
    <head name>_mass(x) = sum_q sigmoid(mask'_q(x))  for a head that also gives its own masks mask'_q, with which
                                                     its map is then drawn

with mask logits bilinearly upsampled to the crop first. Windows are averaged where they overlap and the result is
resized to the input size. Everything comes from one forward pass per window.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from roadanomaly.errors import UserError
from roadanomaly.models.eomt import EoMT
from roadanomaly.outputs import MASK, OutputSpec, PixelOutputs

QueryHead = Callable[..., Tensor | tuple[Tensor, Tensor]]
"""(query embeddings (B, Q, D), class logits (B, Q, C + 1)) -> per-query weights (B, Q) or (B, Q, K). A head with
an integer attribute ``reads_block`` also gets, third, the tokens entering that block of the model; one whose
``own_masks`` is true returns (weights, its own mask logits (B, Q, h, w))."""

MASS_SUFFIX = "_mass"
"""``<head>_mass``: the mask mass of a head with its own masks (the built-in ``mask_mass`` is the model's)."""


def _reads_block(head: QueryHead) -> int | None:
    return getattr(head, "reads_block", None)

BUILTIN_MAPS: tuple[str, ...] = ("no_object", "max_class", "mask_mass")

AUTOCAST_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


def window_starts(length: int, crop: int) -> list[int]:
    """Starts of ceil(length / crop) windows of ``crop`` evenly spaced over ``length``, the last flush with the end."""
    if length <= crop:
        return [0]
    n = math.ceil(length / crop)
    return [j * (length - crop) // (n - 1) for j in range(n)]


def scaled_size(size: tuple[int, int], crop: int) -> tuple[int, int]:
    """(H, W) scaled so that the shorter side equals ``crop``."""
    factor = crop / min(size)
    return (max(crop, round(size[0] * factor)), max(crop, round(size[1] * factor)))


def windows(size: tuple[int, int], crop: int) -> list[tuple[int, int, int, int]]:
    """(top, left, bottom, right) of the crops covering an image of ``size`` whose shorter side is ``crop``."""
    h, w = size
    if h > w:
        return [(s, 0, s + crop, w) for s in window_starts(h, crop)]
    return [(0, s, h, s + crop) for s in window_starts(w, crop)]


def per_pixel_maps(
    mask_logits: Tensor,
    class_logits: Tensor,
    size: tuple[int, int],
    extra: dict[str, Tensor] | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Class scores (B, C, H, W) and query maps {name: (B, H, W)} at ``size`` from one window's predictions.

    ``extra`` maps a name to per-query weights (B, Q) or vectors (B, Q, K), or to (weights, own mask logits) for a
    head with its own masks (its map then uses them, and ``<name>_mass`` is their sum); the built-in maps are
    always included.
    """
    def upsampled(logits: Tensor) -> Tensor:
        return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False).sigmoid()

    masks = upsampled(mask_logits)
    probs = class_logits.float().softmax(dim=-1)
    class_scores = torch.einsum("bqhw,bqc->bchw", masks, probs[..., :-1])
    weights = {
        "no_object": probs[..., -1],
        "max_class": probs[..., :-1].max(dim=-1).values,
        "mask_mass": torch.ones_like(probs[..., -1]),
    }
    own: dict[str, Tensor] = {}
    for name, value in (extra or {}).items():
        if isinstance(value, tuple):
            weights[name], own[name] = value[0], upsampled(value[1])
        else:
            weights[name] = value
    maps = {
        name: torch.einsum("bqhw,bqk->bkhw" if w.dim() == 3 else "bqhw,bq->bhw", own.get(name, masks), w.float())
        for name, w in weights.items()
    }
    maps.update({name + MASS_SUFFIX: m.sum(dim=1) for name, m in own.items()})
    return class_scores, maps


class EoMTPredictor:
    """Callable ``predictor(images uint8 (B, 3, H, W)) -> PixelOutputs`` for an EoMT model."""

    def __init__(
        self,
        model: EoMT,
        device: str = "cpu",
        crop_size: int | None = None,
        autocast: str | None = None,
        query_heads: dict[str, QueryHead] | None = None,
        window_batch: int = 4,
        info: dict[str, Any] | None = None,
    ) -> None:
        config = model.config
        self.crop = int(crop_size or min(config.img_size))
        if self.crop % config.patch:
            raise UserError(None, f"crop size {self.crop} is not a multiple of the patch size {config.patch}")
        if autocast not in (None, "fp32", *AUTOCAST_DTYPES):
            raise UserError(None, f"unknown autocast {autocast!r} (use bf16, fp16 or fp32)")
        self.device = str(device)
        self.model = model.to(self.device).eval()
        self.autocast = None if autocast in (None, "fp32") else autocast
        self.query_heads = dict(query_heads or {})
        for name, head in self.query_heads.items():
            if name in BUILTIN_MAPS:
                raise ValueError(f"the query map {name!r} is built in; give the head another name")
            if isinstance(head, nn.Module):
                head.to(self.device).eval()
        reads = {_reads_block(h) for h in self.query_heads.values()} - {None}
        if len(reads) > 1:
            raise ValueError(f"query heads read the inputs of different blocks {sorted(reads)}; one forward keeps one")
        self.reads_block: int | None = reads.pop() if reads else None
        self.window_batch = max(1, window_batch)
        self.info = {
            "name": "eomt",
            "size": config.size_name,
            "classes": config.num_classes,
            "queries": config.num_q,
            "crop": [self.crop, self.crop],
            **(info or {}),
        }

    @property
    def spec(self) -> OutputSpec:
        """Declared outputs: mask-classification class scores and the built-in and head query maps."""
        own = [n + MASS_SUFFIX for n, h in self.query_heads.items() if getattr(h, "own_masks", False)]
        return OutputSpec(MASK, query_maps=(*BUILTIN_MAPS, *self.query_heads, *own))

    def _autocast(self):
        if self.autocast is None:
            return nullcontext()
        return torch.autocast(torch.device(self.device).type, dtype=AUTOCAST_DTYPES[self.autocast])

    def _forward(self, crops: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """One forward pass: final mask logits, class logits and the extra heads' per-query weights."""
        with self._autocast():
            keep = {} if self.reads_block is None else {"keep_block_input": self.reads_block}
            out = self.model.forward_all(crops, **keep)
            queries, class_logits = out.queries, out.class_logits[-1]
            extra = {
                name: head(queries, class_logits, out.block_input) if _reads_block(head) is not None
                else head(queries, class_logits)
                for name, head in self.query_heads.items()
            }  # fmt: skip
        return out.mask_logits[-1], class_logits, extra

    @torch.inference_mode()
    def __call__(self, images: Tensor) -> PixelOutputs:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        size = (int(images.shape[-2]), int(images.shape[-1]))
        scaled = scaled_size(size, self.crop)
        x = images.to(self.device).float()
        if scaled != size:
            x = F.interpolate(x, size=scaled, mode="bilinear", align_corners=False, antialias=True)
        boxes = windows(scaled, self.crop)
        b = x.shape[0]
        class_sum = torch.zeros(b, self.model.config.num_classes, *scaled, device=self.device)
        map_sums: dict[str, Tensor] = {}
        count = torch.zeros(1, *scaled, device=self.device)
        # all windows of all images, batched (window-major so one box serves a whole batch slice)
        jobs = [(box, i) for box in boxes for i in range(b)]
        for start in range(0, len(jobs), self.window_batch):
            part = jobs[start : start + self.window_batch]
            crops = torch.stack([x[i, :, t:bt, l:r] for (t, l, bt, r), i in part])
            mask_logits, class_logits, extra = self._forward(crops)
            for k, ((t, l, bt, r), i) in enumerate(part):
                scores, maps = per_pixel_maps(
                    mask_logits[k : k + 1], class_logits[k : k + 1], (self.crop, self.crop),
                    {n: _window(w, k) for n, w in extra.items()},
                )  # fmt: skip
                class_sum[i, :, t:bt, l:r] += scores[0]
                for name, m in maps.items():
                    if name not in map_sums:
                        map_sums[name] = torch.zeros(b, *m.shape[1:-2], *scaled, device=self.device)
                    map_sums[name][i, ..., t:bt, l:r] += m[0]
        for t, l, bt, r in boxes:
            count[:, t:bt, l:r] += 1
        outputs = PixelOutputs(
            class_scores=class_sum / count, query_maps={n: s / count for n, s in map_sums.items()}
        )
        return outputs.resized(size)


def _window(weights: Tensor | tuple[Tensor, Tensor], k: int) -> Tensor | tuple[Tensor, Tensor]:
    if isinstance(weights, tuple):
        return tuple(t[k : k + 1] for t in weights)
    return weights[k : k + 1]


def predict_semantic(predictor: Callable[[Tensor], PixelOutputs], images: Tensor) -> Tensor:
    """Per-pixel train ids (B, H, W) for mIoU: the argmax over classes of the class scores P."""
    return predictor(images).class_scores.argmax(dim=1)


def load_eomt_predictor(
    weights: str | Path,
    device: str = "cpu",
    crop_size: int | None = None,
    autocast: str | None = None,
    query_heads: dict[str, QueryHead] | None = None,
    window_batch: int = 4,
    img_size: tuple[int, int] | None = None,
    trust_pickle: bool = False,
    head: str | Path | None = None,
) -> EoMTPredictor:
    """An :class:`EoMTPredictor` for the EoMT at ``weights`` (official / HF / roadanomaly layout, detected).

    ``head``: a file from ``roadanomaly train anomaly-head`` trained on this very EoMT; its anomaly head and RbA-OE
    class head join the query heads (methods ``anomaly``, ``anomaly_norm``, ``rba_oe``)."""
    from roadanomaly.models.eomt_checkpoints import load_trained_eomt

    model, layout = load_trained_eomt(weights, img_size, trust_pickle)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(None, f"device {device!r} requested but CUDA is not available")
    info = {"weights": str(weights), "layout": layout}
    if head is not None:
        from roadanomaly.models.anomaly_head import load_anomaly_heads

        query_heads = {**(query_heads or {}), **load_anomaly_heads(head, model)}
        info["head"] = str(head)
    return EoMTPredictor(model, device, crop_size, autocast, query_heads, window_batch, info)
