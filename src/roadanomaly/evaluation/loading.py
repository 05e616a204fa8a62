"""Reading and resizing evaluation samples in DataLoader workers, overlapped with the model's work."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from roadanomaly.errors import UserError
from roadanomaly.protocol import EvalProtocol

Item = tuple[int, torch.Tensor, torch.Tensor, str]
"""(index in the dataset, (3, H, W) uint8 image, (H, W) uint8 label, image path)."""


class _Prepared(Dataset):
    """Samples ``indices`` of ``source`` at the protocol's size; a user error travels back as text, not an exception
    (an exception inside a worker would reach the user as a traceback)."""

    def __init__(self, source: Sequence, indices: list[int], protocol: EvalProtocol,
                 label_of: Callable[[Any], np.ndarray]) -> None:
        self.source, self.indices, self.protocol, self.label_of = source, indices, protocol, label_of

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> Item | str:
        index = self.indices[position]
        try:
            sample = self.source[index]
        except UserError as error:
            return str(error)
        image, label = self.protocol.prepare(sample.image, self.label_of(sample))
        return index, _tensor(image).permute(2, 0, 1), _tensor(label), str(sample.image_path)


def prepared_samples(source: Sequence, indices: list[int], protocol: EvalProtocol,
                     label_of: Callable[[Any], np.ndarray], workers: int) -> Iterator[Item]:
    """Yield the prepared samples in order; a sample that cannot be read raises its UserError here."""
    if not indices:
        return
    loader = DataLoader(_Prepared(source, indices, protocol, label_of), batch_size=None, num_workers=workers,
                        prefetch_factor=2 if workers else None)
    for item in loader:
        if isinstance(item, str):
            raise UserError(None, item)
        yield item


def _tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor sharing ``array``'s memory when it is contiguous and writable (a copy only otherwise)."""
    if not (array.flags.c_contiguous and array.flags.writeable):
        array = np.array(array, order="C", copy=True)
    return torch.from_numpy(array)
