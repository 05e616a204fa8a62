"""Turning SIGINT / SIGTERM into a flag, so that an evaluation stops between two images with its state saved."""

from __future__ import annotations

import signal
import threading
from types import FrameType


class InterruptFlag:
    """While active (a ``with`` block), SIGINT and SIGTERM set :attr:`signum` instead of stopping the process.

    Outside the main thread, where Python cannot install handlers, it does nothing.
    """

    SIGNALS: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def __enter__(self) -> "InterruptFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()


class EvaluationInterrupted(Exception):
    """Raised after an interrupted evaluation saved its progress; carries where, and the exit code to use."""

    def __init__(self, signum: int, state_path: str | None, images_done: int) -> None:
        self.signum = signum
        self.state_path = state_path
        self.images_done = images_done
        name = signal.Signals(signum).name
        where = f"progress saved in {state_path}; run the same command with --resume to continue" if state_path \
            else "no progress file was requested (--no-checkpoint)"
        super().__init__(f"interrupted by {name} after {images_done} images: {where}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
