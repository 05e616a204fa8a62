"""What an EoMT checkpoint layout is, and the registry of layouts.

A layout is one way of storing an EoMT on disk (official Lightning weights, a Hugging Face folder, ours, a DINOv2
backbone, ...). It knows how to recognise its files (:meth:`CheckpointLayout.detect`), turn them into our
parameter names and a configuration (:meth:`~CheckpointLayout.read`), which keys and shapes a file must hold for a
given model (:meth:`~CheckpointLayout.expected_keys`) and, when writable, how to write a model
(:meth:`~CheckpointLayout.write`). Adding a layout is one :func:`register_layout` call; detection asks the
registered layouts in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roadanomaly.errors import UserError
from roadanomaly.models.eomt import EoMT, EoMTConfig
from roadanomaly.models.eomt_layouts.common import SHOWN, WEIGHTS_FILE, Shapes, Size, StateDict, first_keys, read_json
from roadanomaly.models.state_dicts import describe_mismatch, read_state_dict


@dataclass(frozen=True)
class Source:
    """What layouts are detected from: a file's state dict, or a folder's ``config.json``."""

    path: Path
    state_dict: StateDict | None = None
    """The tensors of a file (None for a folder)."""
    config: dict[str, Any] | None = None
    """The ``config.json`` of a folder (None for a file)."""

    @property
    def is_folder(self) -> bool:
        return self.state_dict is None

    @property
    def where(self) -> Path:
        """The weights file that errors about weights name."""
        return self.path / WEIGHTS_FILE if self.is_folder else self.path


@dataclass
class Decoded:
    """What a layout reads from a source: weights in our names, the configuration, and the file's own tensors."""

    weights: StateDict
    """Weights in :class:`~roadanomaly.models.eomt.EoMT` names."""
    config: EoMTConfig
    found: StateDict
    """The file's tensors in its own names, as they are compared with :meth:`CheckpointLayout.expected_keys`."""
    optional: frozenset[str] = frozenset()
    """Expected file keys the file may lack (``weights`` then holds their defaults)."""
    partial: bool = False
    """``weights`` cover only part of the model, the rest keeps its fresh initialisation (DINOv2)."""


class CheckpointLayout:
    """One way of storing an EoMT; subclasses set the attributes and implement the methods."""

    name: str = ""
    description: str = ""
    """One paragraph for ``roadanomaly convert --help``."""
    writable: bool = False
    file_suffixes: tuple[str, ...] = ()
    """What a written file ends with; empty for a layout written as a folder."""

    def detect(self, source: Source) -> bool:
        """Whether ``source`` is in this layout."""
        raise NotImplementedError

    def read(self, source: Source, img_size: Size | None = None, heads: int | None = None, **options: Any) -> Decoded:
        """Our weights and configuration from ``source``; ``img_size`` / ``heads`` settle what a file leaves open."""
        raise NotImplementedError

    def expected_keys(self, model: EoMT) -> Shapes:
        """{key in this layout: shape} a file must hold for ``model`` (extras such as loss weights left out)."""
        raise NotImplementedError

    def write(self, model: EoMT, dst: Path) -> Path:
        """Write ``model`` to ``dst`` in this layout; returns ``dst``."""
        raise NotImplementedError(f"the {self.name} layout is read-only")


REGISTRY: dict[str, CheckpointLayout] = {}


def register_layout(layout: CheckpointLayout) -> CheckpointLayout:
    """Add ``layout`` to the registry (a later registration of the same name replaces it)."""
    REGISTRY[layout.name] = layout
    return layout


def layout_names() -> tuple[str, ...]:
    """Registered layouts, in the order detection asks them."""
    return tuple(REGISTRY)


def writable_layout_names() -> tuple[str, ...]:
    return tuple(name for name, layout in REGISTRY.items() if layout.writable)


def get_layout(name: str) -> CheckpointLayout:
    """The registered layout ``name``; a ValueError naming the choices otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"unknown layout {name!r} (known: {', '.join(layout_names())})")
    return REGISTRY[name]


def writable_layout(name: str) -> CheckpointLayout:
    """The registered writable layout ``name``; a ValueError naming the choices otherwise."""
    layout = REGISTRY.get(name)
    if layout is None or not layout.writable:
        raise ValueError(f"unknown layout {name!r} (writable: {', '.join(writable_layout_names())})")
    return layout


def open_source(path: Path, trust_pickle: bool = False) -> Source:
    """A folder's ``config.json``, or a file's state dict."""
    if not path.is_dir():
        return Source(path, state_dict=read_state_dict(path, trust_pickle))
    config_path = path / "config.json"
    if not config_path.is_file():
        files = sorted(p.name for p in path.iterdir())[:SHOWN]
        raise UserError(path, f"folder has no config.json (holds: {', '.join(files) or 'nothing'})")
    return Source(path, config=read_json(config_path))


def detect(source: Source) -> CheckpointLayout:
    """The first registered layout that recognises ``source``."""
    for layout in REGISTRY.values():
        if layout.detect(source):
            return layout
    if source.is_folder:
        problem = "neither an EoMT Hugging Face config (model_type 'eomt') nor ours"
        raise UserError(source.path / "config.json", problem)
    keys = first_keys(list(source.state_dict))
    raise UserError(source.path, f"not an EoMT or DINOv2 checkpoint: unrecognised keys {keys}")


def check_keys(found: StateDict, expected: Shapes, where: Path, layout: str) -> None:
    """Raise a UserError naming missing, unexpected and mis-shaped keys (in the file's names)."""
    problem = describe_mismatch(expected, found, limit=SHOWN)
    if problem:
        raise UserError(where, f"does not fit the EoMT it describes ({layout} layout): {problem}")
