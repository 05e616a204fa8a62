"""Results documents in the JSON shape the evaluation engine writes, built from random scores with sklearn."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

PROTOCOL = {"size": "native", "skip_images_without_anomaly": False, "temperature": 1.0,
            "include_void_in_softmax": False, "void_label": 255, "pixels": "all valid pixels of a dataset pooled"}


def make_document(
    datasets: tuple[str, ...] = ("RoadAnomaly21", "fs_static"),
    methods: tuple[str, ...] = ("msp", "maxlogit", "entropy"),
    seed: int = 0,
    pixels: int = 2000,
    protocol: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A results document: per (dataset, method) sklearn metrics, PR/ROC curves and 20-bin histograms."""
    rng = np.random.default_rng(seed)
    results, curves, histograms = [], [], []
    for d, dataset in enumerate(datasets):
        labels = rng.random(pixels) < 0.1 + 0.05 * d
        for m, method in enumerate(methods):
            scores = rng.normal(size=pixels) + (0.5 + m) * labels
            fpr, tpr, _ = roc_curve(labels, scores)
            precision, recall, _ = precision_recall_curve(labels, scores)
            results.append({
                "dataset": dataset, "method": method,
                "auprc": float(average_precision_score(labels, scores)),
                "fpr95": float(fpr[np.argmax(tpr >= 0.95)]),
                "auroc": float(roc_auc_score(labels, scores)),
                "pixels": pixels, "anomaly_pixels": int(labels.sum()), "images": 4,
                "siou": None, "ppv": None, "mean_f1": None,
            })
            curves.append({"dataset": dataset, "method": method,
                           "pr": {"recall": recall.tolist(), "precision": precision.tolist()},
                           "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist()}})
            edges = np.linspace(scores.min(), scores.max(), 21)
            histograms.append({"dataset": dataset, "method": method, "edges": edges.tolist(),
                               "inlier": np.histogram(scores[~labels], edges)[0].tolist(),
                               "anomaly": np.histogram(scores[labels], edges)[0].tolist()})
    return {"protocol": dict(protocol or PROTOCOL), "model": {"name": "erfnet", "classes": 20, "weights": "w.pth"},
            "results": results, "curves": curves, "histograms": histograms}
