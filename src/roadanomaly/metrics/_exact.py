"""State for the exact anomaly metrics: every valid pixel is kept, and computing sorts them all."""

from __future__ import annotations

import torch
from torch import Tensor

from roadanomaly.metrics._curves import Cells, cell_metrics
from roadanomaly.metrics._distributed import all_gather_cat
from roadanomaly.metrics._inputs import ANOMALY, VOID


class ExactState:
    """Scores (float64) and labels (uint8, 0 or 1) of all valid pixels seen, as a list of chunks."""

    def __init__(self) -> None:
        self.scores: list[Tensor] = []
        self.labels: list[Tensor] = []

    def update(self, scores: Tensor, labels: Tensor, has_void: bool) -> None:
        """Store flat, already validated scores (no NaN) and uint8 labels in {0, 1, 255}; void pixels dropped."""
        if has_void:
            valid = labels != VOID
            self.scores.append(scores[valid].to(torch.float64))
            self.labels.append(labels[valid])
        else:
            self.scores.append(scores.to(torch.float64, copy=True))
            self.labels.append(labels.to(torch.uint8, copy=True))

    def _cat(self) -> tuple[Tensor, Tensor]:
        if not self.scores:
            return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.uint8)
        scores, labels = torch.cat(self.scores), torch.cat(self.labels)
        self.scores, self.labels = [scores], [labels]
        return scores, labels

    def cells(self) -> Cells:
        """Anomaly and in-distribution counts per distinct score (each a single value), from the highest down."""
        scores, labels = self._cat()
        if scores.numel() == 0:
            empty = torch.zeros(0, dtype=torch.int64)
            return Cells(empty, empty, torch.zeros(0, dtype=torch.bool), torch.zeros(0, dtype=torch.float64))
        ordered, order = torch.sort(scores, descending=True)
        tps = torch.cumsum(labels[order] == ANOMALY, 0)
        ends = torch.nonzero(ordered[1:] != ordered[:-1]).squeeze(1)
        ends = torch.cat([ends, torch.tensor([scores.numel() - 1])])
        tps_at = tps[ends]
        positives = torch.diff(tps_at, prepend=tps_at.new_zeros(1))
        sizes = torch.diff(ends + 1, prepend=ends.new_zeros(1))
        single = torch.ones(ends.numel(), dtype=torch.bool)
        return Cells(positives, sizes - positives, single, ordered[ends])

    def pixel_counts(self) -> tuple[int, int]:
        """Valid and anomaly pixels stored so far."""
        return sum(len(c) for c in self.labels), sum(int((c == ANOMALY).sum()) for c in self.labels)

    def compute(self) -> dict[str, float | int | bool]:
        """The metrics of all stored pixels (``exact`` always true, ``max_error_bound`` 0)."""
        return cell_metrics(self.cells())

    def reset(self) -> None:
        """Forget all stored pixels."""
        self.scores, self.labels = [], []

    def merge(self, other: "ExactState") -> None:
        """Append the pixels of ``other``."""
        self.scores.extend(other.scores)
        self.labels.extend(other.labels)

    def state_dict(self, copy: bool = True) -> dict[str, Tensor]:
        """The state as plain tensors (a copy; ``copy=False`` may share memory with the state)."""
        scores, labels = self._cat()
        return {"scores": scores.clone(), "labels": labels.clone()} if copy else {"scores": scores, "labels": labels}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Replace the state by one returned from :meth:`state_dict`."""
        if set(state) != {"scores", "labels"}:
            raise ValueError(f"an exact state has the keys 'scores' and 'labels', got keys {sorted(state)}")
        scores, labels = torch.as_tensor(state["scores"]), torch.as_tensor(state["labels"])
        if scores.dim() != 1 or scores.shape != labels.shape:
            raise ValueError(
                f"state 'scores' and 'labels' must be 1-D of equal length, got {tuple(scores.shape)} "
                f"and {tuple(labels.shape)}"
            )
        if bool((labels.to(torch.int64) > ANOMALY).any()) or bool((labels.to(torch.int64) < 0).any()):
            raise ValueError("state 'labels' must only hold 0 and 1")
        self.scores = [scores.to(dtype=torch.float64, device="cpu", copy=True)]
        self.labels = [labels.to(dtype=torch.uint8, device="cpu", copy=True)]

    def sync(self) -> None:
        """Gather the pixels of all processes (when ``torch.distributed`` is initialised)."""
        scores, labels = self._cat()
        self.scores, self.labels = [all_gather_cat(scores)], [all_gather_cat(labels)]
