"""Evaluation metrics: pixel-level anomaly metrics (AP, FPR95, AUROC) and semantic segmentation (mIoU)."""

from roadanomaly.metrics.anomaly import AnomalyMetric, anomaly_metrics
from roadanomaly.metrics.segmentation import ConfusionMatrix

__all__ = ["AnomalyMetric", "ConfusionMatrix", "anomaly_metrics"]
