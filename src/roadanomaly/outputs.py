"""What one forward pass of a segmentation model yields, in a form every pixel score can be computed from.

Two families exist. Per-pixel classifiers (ERFNet, user networks) give class ``logits``. Mask classifiers (EoMT)
give ``class_scores`` P_c(x) = sum_q softmax(class_q)[c] * sigmoid(mask_q(x)) with the no-object column dropped,
and per-pixel sums over queries in ``query_maps``: ``name(x) = sum_q w_q * sigmoid(mask_q(x))`` for per-query
weights w_q (B, Q) -> a (B, H, W) map, or per-query vectors (B, Q, K) -> a (B, K, H, W) map.
All tensors are batched and share one spatial size, so the whole object resizes as one.

A predictor declares, before any forward pass, what its outputs will hold (:class:`OutputSpec`); the scoring
methods a model supports follow from that declaration alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch.nn.functional as F
from torch import Tensor

LOGITS, MASK = "logits", "mask"


@dataclass(frozen=True)
class OutputSpec:
    """What a predictor's :class:`PixelOutputs` hold: ``kind`` (``"logits"`` or ``"mask"``), the void channel of a
    per-pixel classifier, and the names of a mask classifier's query maps."""

    kind: str
    void_channel: int | None = None
    query_maps: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in (LOGITS, MASK):
            raise ValueError(f"output kind must be {LOGITS!r} or {MASK!r}, got {self.kind!r}")


@dataclass
class PixelOutputs:
    """Per-pixel results of one forward pass over a batch of images."""

    logits: Tensor | None = None
    """(B, C, H, W) class logits of a per-pixel classifier; may carry a void channel (see ``void_channel``)."""
    class_scores: Tensor | None = None
    """(B, C, H, W) mask-classification class scores P_c (no-object excluded)."""
    query_maps: dict[str, Tensor] = field(default_factory=dict)
    """(B, H, W) or (B, K, H, W) per-pixel sums over queries, keyed by name (``"no_object"``, ``"anomaly"``, ...)."""
    void_channel: int | None = None
    """Index of the void channel inside ``logits``, if the model has one."""

    @property
    def spec(self) -> OutputSpec:
        """The :class:`OutputSpec` these outputs satisfy."""
        kind = LOGITS if self.logits is not None else MASK
        return OutputSpec(kind, self.void_channel if kind == LOGITS else None, tuple(self.query_maps))

    @property
    def size(self) -> tuple[int, int]:
        for tensor in (self.logits, self.class_scores, *self.query_maps.values()):
            if tensor is not None:
                return (int(tensor.shape[-2]), int(tensor.shape[-1]))
        raise ValueError("PixelOutputs holds no tensor")

    def resized(self, size: tuple[int, int]) -> "PixelOutputs":
        """Bilinearly resize every map to ``size`` (H, W); returns self when the size already matches."""
        if self.size == tuple(size):
            return self

        def resize(t: Tensor | None) -> Tensor | None:
            if t is None:
                return None
            squeeze = t.dim() == 3
            t = t.unsqueeze(1) if squeeze else t
            t = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
            return t.squeeze(1) if squeeze else t

        return replace(
            self,
            logits=resize(self.logits),
            class_scores=resize(self.class_scores),
            query_maps={k: resize(v) for k, v in self.query_maps.items()},
        )
