"""Progress bars for multi-stage work reported as ``progress(stage, done, total)``."""

from __future__ import annotations

from typing import Callable

from tqdm import tqdm


def stage_callback(bar: tqdm) -> Callable[[str, int, int], None]:
    """A ``progress(stage, done, total)`` callback that advances one bar across all stages."""
    finished: dict[str, int] = {}

    def advance(stage: str, done: int, total: int) -> None:
        bar.update(done - finished.get(stage, 0))
        finished[stage] = done

    return advance
