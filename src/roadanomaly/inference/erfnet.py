"""ERFNet predictor: uint8 RGB images in, class logits at the image resolution out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from roadanomaly.inference.pixel_model import LogitsPredictor
from roadanomaly.models.erfnet import ERFNet
from roadanomaly.models.erfnet_checkpoints import load_erfnet


class ERFNetPredictor(LogitsPredictor):
    """Runs ERFNet on RGB scaled to [0, 1] (no mean/std); pads to a multiple of 8 and crops the logits back.

    The 20-class layout's channel 19 is the void channel.
    """

    def __init__(self, model: ERFNet, device: str = "cpu", info: dict[str, Any] | None = None) -> None:
        self.model = model.to(device).eval()
        super().__init__(
            self.model,
            device,
            void_channel=model.void_channel,
            pad_to=8,
            source=(info or {}).get("weights"),
            info={"name": "erfnet", "classes": model.num_classes, **(info or {})},
        )


def load_erfnet_predictor(weights: str | Path, device: str = "cpu", trust_pickle: bool = False) -> ERFNetPredictor:
    """Load an ERFNet checkpoint (published, plain or Lightning layout) into a predictor."""
    model = load_erfnet(weights, trust_pickle=trust_pickle)
    return ERFNetPredictor(model, device=device, info={"weights": str(weights)})
