"""Evaluation: the engine every scoring command runs, its progress file, interruption and multi-process parts."""

from roadanomaly.evaluation.distributed import Ranks, init_from_environment
from roadanomaly.evaluation.engine import (
    DEFAULT_METRIC_MEMORY,
    DEFAULT_SAVE_EVERY,
    DEFAULT_WORKERS,
    EvaluationEngine,
    Observer,
    output_spec,
    semantic_prediction,
)
from roadanomaly.evaluation.interrupts import EvaluationInterrupted

__all__ = [
    "DEFAULT_METRIC_MEMORY", "DEFAULT_SAVE_EVERY", "DEFAULT_WORKERS", "EvaluationEngine", "EvaluationInterrupted",
    "Observer", "Ranks", "init_from_environment", "output_spec", "semantic_prediction",
]
