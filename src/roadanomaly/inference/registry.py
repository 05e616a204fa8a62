"""The registry of model kinds: one entry per kind of model ``--model`` can name.

An entry knows how to build a :class:`~roadanomaly.inference.Predictor` from a weights path and keyword options
(as segment-anything's ``sam_model_registry`` maps a name to a builder). A kind may take an argument after a colon,
``python:PATH/file.py:ClassName``; the part after the first colon is passed to the builder as ``target``.
Adding a kind is one :func:`register_model_kind` call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from roadanomaly.errors import UserError


@dataclass(frozen=True)
class ModelKind:
    """A kind of model: its name, a one-line description and the builder ``load(weights, **options)``."""

    name: str
    description: str
    load: Callable[..., Any]
    options: frozenset[str] = field(default_factory=frozenset)
    """Keyword options the builder accepts beyond ``device``, ``trust_pickle`` (and ``target`` when it takes one)."""
    takes_target: bool = False
    """Whether the kind is spelled ``name:TARGET`` (``python:file.py:Class``)."""


MODEL_KINDS: dict[str, ModelKind] = {}
COMMON_OPTIONS: frozenset[str] = frozenset({"device", "trust_pickle"})


def register_model_kind(kind: ModelKind) -> ModelKind:
    """Add ``kind`` to the registry (a later registration of the same name replaces it)."""
    MODEL_KINDS[kind.name] = kind
    return kind


def model_kind(spec: str) -> tuple[ModelKind, str | None]:
    """The registered kind for ``spec`` (``"erfnet"``, ``"python:net.py:ENet"``) and its target, if any."""
    _ensure_builtin()
    name, _, target = spec.partition(":")
    kind = MODEL_KINDS.get(name)
    if kind is None:
        raise UserError(None, f"unknown model kind {spec!r} (known: {', '.join(model_kind_names())})")
    if kind.takes_target and not target:
        raise UserError(None, f"model kind {name!r} needs a target: {name}:{_TARGET_HELP.get(name, 'TARGET')}")
    if target and not kind.takes_target:
        raise UserError(None, f"model kind {name!r} takes no ':' argument (got {spec!r})")
    return kind, (target or None)


def model_kind_names() -> list[str]:
    """Registered kind names, as a user types them (``python:FILE.py:NAME`` for kinds with a target)."""
    _ensure_builtin()
    return [f"{k.name}:{_TARGET_HELP.get(k.name, 'TARGET')}" if k.takes_target else k.name
            for k in MODEL_KINDS.values()]


def load_predictor(model: str, weights: str | Path, device: str = "cpu", **options: Any):
    """Build the predictor of kind ``model`` from ``weights``; options a kind does not accept are an error.

    Options whose value is None are dropped, so a caller can pass every CLI option unconditionally.
    """
    kind, target = model_kind(model)
    given = {k: v for k, v in options.items() if v is not None and v is not False}
    foreign = sorted(k for k in given if k not in kind.options | COMMON_OPTIONS)
    if foreign:
        names = ", ".join("--" + k.replace("_", "-") for k in foreign)
        raise UserError(None, f"{names} does not apply to --model {kind.name}")
    if target is not None:
        given["target"] = target
    return kind.load(Path(weights), device=device, **given)


_TARGET_HELP: dict[str, str] = {"python": "FILE.py:NAME"}


def _ensure_builtin() -> None:
    """Import the modules that register the built-in kinds (lazily: importing them pulls in torch models)."""
    import roadanomaly.inference.builtin_kinds  # noqa: F401
