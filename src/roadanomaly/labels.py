"""The one label convention of every anomaly dataset after loading: 0 in-distribution, 1 anomaly, 255 void."""

from __future__ import annotations

INLIER: int = 0
"""An in-distribution pixel (a negative for the anomaly metrics)."""
ANOMALY: int = 1
"""An anomaly pixel (the positive class)."""
VOID: int = 255
"""A pixel that no metric counts (also the ignore index of Cityscapes train ids)."""
