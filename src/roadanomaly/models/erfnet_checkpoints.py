"""Load ERFNet weights: the published checkpoint (``module.`` keys), plain state dicts and Lightning checkpoints."""

from __future__ import annotations

from pathlib import Path

from roadanomaly.errors import UserError
from roadanomaly.models.erfnet import ERFNet
from roadanomaly.models.state_dicts import load_strict, read_state_dict, strip_prefix_before

_CLASSIFIER_KEY = "decoder.output_conv.weight"


def load_erfnet(path: str | Path, num_classes: int | None = None, trust_pickle: bool = False) -> ERFNet:
    """Build an ERFNet whose class count is read off the checkpoint, and load it strictly (eval mode)."""
    state = strip_prefix_before(read_state_dict(path, trust_pickle), _CLASSIFIER_KEY)
    if _CLASSIFIER_KEY not in state:
        raise UserError(path, f"not an ERFNet checkpoint: no key ending in {_CLASSIFIER_KEY!r}")
    found = int(state[_CLASSIFIER_KEY].shape[1])
    if num_classes is not None and num_classes != found:
        raise UserError(path, f"checkpoint has {found} classes, {num_classes} were asked for")
    model = ERFNet(num_classes=found)
    load_strict(model, state, path)
    return model.eval()
