"""What one forward pass of a segmentation model yields, in a form every pixel score can be computed from.

Two families exist. Per-pixel classifiers (ERFNet) give class ``logits``. Mask classifiers (EoMT) give
``class_scores`` P_c(x) = sum_q softmax(class_q)[c] * sigmoid(mask_q(x)) with the no-object column dropped, and
per-pixel sums over queries in ``query_maps`` (e.g. ``"no_object"`` = sum_q sigmoid(mask_q) * p_q(no-object)).
All tensors are batched and share one spatial size, so the whole object resizes as one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch.nn.functional as F
from torch import Tensor


@dataclass
class PixelOutputs:
    """Per-pixel results of one forward pass over a batch of images."""

    logits: Tensor | None = None
    """(B, C, H, W) class logits of a per-pixel classifier; may carry a void channel (see ``void_channel``)."""
    class_scores: Tensor | None = None
    """(B, C, H, W) mask-classification class scores P_c (no-object excluded)."""
    query_maps: dict[str, Tensor] = field(default_factory=dict)
    """(B, H, W) per-pixel sums over queries, keyed by name (``"no_object"``, ``"anomaly"``)."""
    void_channel: int | None = None
    """Index of the void channel inside ``logits``, if the model has one."""

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
