"""EoMT checkpoint layouts: one module per layout, each registered in :mod:`.base`'s registry.

Built in, in the order detection asks them: ``official`` (tue-mps/eomt), ``hf`` (Hugging Face), ``roadanomaly``
(ours) and ``dinov2`` (backbone weights for a fresh EoMT, read-only). Adding a layout is one
:func:`register_layout` call with a :class:`CheckpointLayout`.
"""

from roadanomaly.models.eomt_layouts.base import (
    REGISTRY,
    CheckpointLayout,
    Decoded,
    Source,
    check_keys,
    detect,
    get_layout,
    layout_names,
    open_source,
    register_layout,
    writable_layout,
    writable_layout_names,
)
from roadanomaly.models.eomt_layouts.dinov2 import DINOv2Layout
from roadanomaly.models.eomt_layouts.hf import HFLayout
from roadanomaly.models.eomt_layouts.official import OfficialLayout
from roadanomaly.models.eomt_layouts.roadanomaly import RoadanomalyLayout

for _layout in (OfficialLayout(), HFLayout(), RoadanomalyLayout(), DINOv2Layout()):  # detection asks in this order
    register_layout(_layout)

__all__ = [
    "REGISTRY",
    "CheckpointLayout",
    "Decoded",
    "Source",
    "check_keys",
    "detect",
    "get_layout",
    "layout_names",
    "open_source",
    "register_layout",
    "writable_layout",
    "writable_layout_names",
]
