"""ERFNet predictor: uint8 RGB images in, class logits at the image resolution out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from roadanomaly.models.erfnet import ERFNet
from roadanomaly.models.erfnet_checkpoints import load_erfnet
from roadanomaly.outputs import LOGITS, OutputSpec, PixelOutputs


class ERFNetPredictor:
    """Runs ERFNet on RGB scaled to [0, 1]; pads to a multiple of 8 and crops the logits back."""

    def __init__(self, model: ERFNet, device: str = "cpu", info: dict[str, Any] | None = None) -> None:
        self.model = model.to(device).eval()
        self.device = device
        self.info = {"name": "erfnet", "classes": model.num_classes, **(info or {})}

    @property
    def spec(self) -> OutputSpec:
        """Declared outputs: class logits, with the void channel if the model has one."""
        return OutputSpec(LOGITS, self.model.void_channel)

    @torch.inference_mode()
    def __call__(self, images: Tensor) -> PixelOutputs:
        x = images.to(self.device, non_blocking=True).float().div_(255.0)
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % 8, (-w) % 8
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        logits = self.model(x)[..., :h, :w]
        return PixelOutputs(logits=logits, void_channel=self.model.void_channel)


def load_erfnet_predictor(weights: str | Path, device: str = "cpu", trust_pickle: bool = False) -> ERFNetPredictor:
    """Load an ERFNet checkpoint (published, plain or Lightning layout) into a predictor."""
    model = load_erfnet(weights, trust_pickle=trust_pickle)
    return ERFNetPredictor(model, device=device, info={"weights": str(weights)})
