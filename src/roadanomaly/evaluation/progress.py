"""The progress file of an evaluation: finished rows plus the metric states of the dataset under way.

It is written atomically (temporary file + rename) every few images and whenever a dataset completes, so a run that
dies at any moment can continue from the last write with ``--resume`` and give exactly the numbers of a run that
never stopped: metric states only ever add pixels, and the file records which images they hold.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from roadanomaly.errors import UserError
from roadanomaly.metrics import AnomalyMetric

FORMAT = "roadanomaly-evaluation-progress"
VERSION = 1
_SPARSE_MIN = 1 << 16  # integer tensors at least this long are stored as (nonzero index, value) pairs


@dataclass
class TaskProgress:
    """The dataset (or segmentation task) under way: which of its images are done and the metric states."""

    task: str
    done: list[int] = field(default_factory=list)
    images: int = 0
    states: dict[str, Any] = field(default_factory=dict)
    """Per metric: a state dict (as loaded) or the live metric itself (its ``state_dict()`` is saved)."""
    resumable: bool = True
    """False when the metrics cannot be saved half-way: the task is then saved as not started."""


@dataclass
class Progress:
    """Everything needed to continue an evaluation."""

    fingerprint: dict[str, Any]
    finished: dict[str, Any] = field(default_factory=dict)
    """Per completed task: its rows / curves / histograms / segmentation as JSON-ready data."""
    current: TaskProgress | None = None

    def save(self, path: Path) -> None:
        """Write atomically: a reader sees the previous or the new file, never a half-written one."""
        current = None
        if self.current is not None:
            c = self.current
            if c.resumable:
                packed = {key: {name: _pack(t) for name, t in _state(value).items()} for key, value in c.states.items()}
                current = {"task": c.task, "done": c.done, "images": c.images, "states": packed}
            else:
                current = {"task": c.task, "done": [], "images": 0, "states": {}}
        payload = {"format": FORMAT, "version": VERSION, "fingerprint": self.fingerprint,
                   "finished": self.finished, "current": current}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            torch.save(payload, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> "Progress":
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - torch raises many kinds for a damaged file
            raise UserError(path, f"not a readable progress file ({type(error).__name__}); delete it to start over")
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise UserError(path, "not a roadanomaly evaluation progress file")
        if payload.get("version") != VERSION:
            raise UserError(path, f"progress file version {payload.get('version')} (this roadanomaly reads {VERSION})")
        current = payload.get("current")
        task = None
        if current is not None:
            states = {key: {name: _unpack(t) for name, t in state.items()} for key, state in current["states"].items()}
            task = TaskProgress(current["task"], list(current["done"]), int(current["images"]), states)
        return cls(payload["fingerprint"], dict(payload["finished"]), task)


def _state(value: Any) -> dict[str, Tensor]:
    """What to write of a state: anomaly metrics give their own tensors (written at once, so no copy is needed, and
    copying a 22-bit histogram faulted in 128 MiB per metric at every save)."""
    if isinstance(value, dict):
        return value
    return value.state_dict(copy=False) if isinstance(value, AnomalyMetric) else value.state_dict()


def _pack(tensor: Tensor) -> Tensor | dict[str, Any]:
    """Long, mostly-zero integer states (histograms) as their nonzero entries: a 64 MiB state becomes kilobytes."""
    if tensor.dim() == 1 and tensor.numel() >= _SPARSE_MIN and not tensor.is_floating_point():
        index = tensor.nonzero().flatten()
        if index.numel() * 2 < tensor.numel():
            return {"sparse_length": tensor.numel(), "index": index, "values": tensor[index]}
    return tensor  # written at once by the caller: no copy needed


def _unpack(value: Tensor | dict[str, Any]) -> Tensor:
    if isinstance(value, Tensor):
        return value
    dense = torch.zeros(int(value["sparse_length"]), dtype=value["values"].dtype)
    dense[value["index"]] = value["values"]
    return dense


def describe_difference(saved: dict[str, Any], now: dict[str, Any]) -> str | None:
    """A short phrase naming the first fields in which two fingerprints differ; None when equal."""
    changed = [key for key in sorted(set(saved) | set(now)) if saved.get(key) != now.get(key)]
    if not changed:
        return None
    key = changed[0]
    more = f" (and {', '.join(changed[1:])})" if len(changed) > 1 else ""
    was, now_ = _short(saved.get(key)), _short(now.get(key))
    return f"the {key} changed since the interrupted run: was {was}, now {now_}{more}"


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
