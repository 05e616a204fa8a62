"""Semantic segmentation metrics from a confusion matrix: per-class IoU, mIoU and pixel accuracy."""

from __future__ import annotations

import torch
from torch import Tensor

from roadanomaly.metrics._distributed import all_reduce_sum_
from roadanomaly.metrics._inputs import ArrayLike, as_flat_tensors, describe_values


class ConfusionMatrix:
    """Streaming confusion matrix over pixels; rows are target classes, columns predicted classes.

    Target pixels equal to ``ignore_index`` are skipped. A prediction equal to ``ignore_index`` on a valid target
    pixel counts as a miss for the target class (it lowers that class's IoU and the pixel accuracy) and as a
    prediction of no class. The state is summed to combine processes.
    """

    def __init__(self, num_classes: int = 19, ignore_index: int = 255) -> None:
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index {ignore_index} is a class index (num_classes={num_classes})")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        # The extra last column counts predictions equal to ignore_index.
        self.matrix = torch.zeros(num_classes, num_classes + 1, dtype=torch.int64)

    def _checked(self, values: Tensor, name: str) -> Tensor:
        if values.is_floating_point() or values.is_complex():
            raise TypeError(f"{name} must hold integer class indices, got dtype {values.dtype}")
        values = values.to(torch.int64)
        bad = ((values < 0) | (values >= self.num_classes)) & (values != self.ignore_index)
        if bool(bad.any()):
            raise ValueError(
                f"{name} values must be in [0, {self.num_classes}) or {self.ignore_index} (ignore); "
                f"found {describe_values(values[bad])}"
            )
        return values

    def update(self, pred: ArrayLike, target: ArrayLike) -> None:
        """Count the pixels of integer ``pred`` and ``target`` (same shape, any layout)."""
        flat_pred, flat_target = as_flat_tensors(pred, target, ("pred", "target"))
        predicted = self._checked(flat_pred, "pred")
        truth = self._checked(flat_target, "target")
        valid = truth != self.ignore_index
        if not bool(valid.all()):
            predicted, truth = predicted[valid], truth[valid]
        c = self.num_classes
        predicted = torch.where(predicted == self.ignore_index, c, predicted)
        counts = torch.bincount(truth * (c + 1) + predicted, minlength=c * (c + 1))
        self.matrix += counts.view(c, c + 1)

    def compute(self) -> dict[str, float | list[float | None]]:
        """``{"miou", "iou", "pixel_accuracy"}``; mIoU averages the classes with a non-empty union."""
        c = self.num_classes
        per_target = self.matrix.sum(1)
        pixels = int(per_target.sum())
        if pixels == 0:
            raise ValueError("cannot compute segmentation metrics: no valid (non-ignored) target pixels")
        hits = torch.diagonal(self.matrix[:, :c])
        union = per_target + self.matrix[:, :c].sum(0) - hits
        present = union > 0
        iou = hits.double() / union.clamp(min=1).double()
        return {
            "miou": float(iou[present].mean()),
            "iou": [float(v) if p else None for v, p in zip(iou.tolist(), present.tolist())],
            "pixel_accuracy": float(hits.sum()) / pixels,
        }

    def reset(self) -> None:
        """Forget all counted pixels."""
        self.matrix.zero_()

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add the counts of ``other`` (same number of classes); returns self."""
        if other.matrix.shape != self.matrix.shape:
            raise ValueError(f"cannot merge confusion matrices of {other.num_classes} and {self.num_classes} classes")
        self.matrix += other.matrix
        return self

    def state_dict(self) -> dict[str, Tensor]:
        """A copy of the state as plain tensors."""
        return {"matrix": self.matrix.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Replace the state by one returned from :meth:`state_dict`."""
        matrix = torch.as_tensor(state["matrix"]) if "matrix" in state else None
        if matrix is None or tuple(matrix.shape) != tuple(self.matrix.shape):
            shape = None if matrix is None else tuple(matrix.shape)
            raise ValueError(f"expected state 'matrix' of shape {tuple(self.matrix.shape)}, got {shape}")
        self.matrix = matrix.to(dtype=torch.int64, device="cpu", copy=True)

    def sync(self) -> None:
        """Sum the counts over all ``torch.distributed`` processes (no-op when not initialised); call it once."""
        all_reduce_sum_(self.matrix)
