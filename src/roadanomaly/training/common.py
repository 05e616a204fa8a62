"""What every model's training shares: the Lightning trainer, precision choice, quiet output, checkpoint reading."""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger

from roadanomaly.errors import UserError

IGNORED_WARNINGS: tuple[str, ...] = (
    ".*does not have many workers.*",
    ".*LeafSpec.*",
    ".*smaller than the logging interval.*",
    ".*Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`.*",
    ".*functools.partial will be a method descriptor.*",
    ".*Total length of `.*` across ranks is zero.*",
)
"""Lightning / torch warnings that say nothing about a correct run (small data, fixed logging cadence)."""


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Hide Lightning's advertising tips and the warnings in :data:`IGNORED_WARNINGS`, keep every other one."""
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    tips = _NoTips()
    logger.addFilter(tips)
    try:
        with warnings.catch_warnings():
            for message in IGNORED_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        logger.removeFilter(tips)


def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto``: bf16 (else fp16) mixed precision on a CUDA device, full fp32 elsewhere; other values unchanged."""
    if precision != "auto":
        return precision
    cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if not cuda:
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def build_trainer(
    output: Path,
    run_name: str,
    accelerator: str = "auto",
    devices: int | str = "auto",
    precision: str = "32-true",
    progress: bool = True,
    callbacks: list[Callback] | None = None,
    **options: Any,
) -> L.Trainer:
    """A Trainer logging to ``output/logs/<run_name>/metrics.csv``, no model summary, no sanity validation."""
    return L.Trainer(
        accelerator=accelerator,
        devices=devices,
        precision=resolve_precision(precision, accelerator),
        callbacks=[*(callbacks or []), *([TQDMProgressBar()] if progress else [])],
        logger=CSVLogger(output, name="logs", version=run_name),
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **options,
    )


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint's contents (tensors only, no arbitrary unpickling); UserError if unreadable."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable or foreign file
        raise UserError(path, f"cannot resume from this file ({type(error).__name__})") from None
    if not isinstance(data, dict) or "state_dict" not in data:
        raise UserError(path, "not a Lightning checkpoint (no state_dict)")
    return data
