"""Cost per frame of each protocol's metrics, side by side: what ``--protocol smiyc-*`` adds to ``native``.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_protocol_metrics.py [--height 1024 --width 2048] [--frames 5]

Each frame is a smooth synthetic score map (a blob over noise) with one anomaly object and a void band. Timed per
frame (best of ``--frames``): ``AnomalyMetric("binned").update`` (native / course), ``SmiycPixelMetric.update``
(per-frame quantile bins on float16 scores), ``ComponentMetric`` at a fixed threshold (connected components, sIoU,
PPV), and the deferred component metric's ``update`` (keeping the frame) and final reduction per frame.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from roadanomaly.metrics import AnomalyMetric
from roadanomaly.metrics.components import ComponentMetric
from roadanomaly.metrics.smiyc import SmiycPixelMetric


def frame(rng: np.random.Generator, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    labels = np.zeros((height, width), np.uint8)
    y, x = height // 2, width // 2
    labels[y - height // 10 : y + height // 10, x - width // 14 : x + width // 14] = 1
    labels[: height // 6] = 255
    yy, xx = np.mgrid[:height, :width]
    blob = np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * (height / 7) ** 2))
    scores = rng.random((height, width)) * 0.3 + 0.6 * blob
    return torch.from_numpy(scores.astype(np.float32)), torch.from_numpy(labels)


def best_time(step, frames) -> float:
    times = []
    for scores, labels in frames:
        start = time.perf_counter()
        step(scores, labels)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--frames", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    frames = [frame(rng, args.height, args.width) for _ in range(args.frames)]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; frame {args.height}x{args.width}, best of {args.frames}")

    pooled = AnomalyMetric("binned")
    smiyc = SmiycPixelMetric()
    fixed = ComponentMetric.for_track("anomaly", 0.5)
    deferred = ComponentMetric.for_track("anomaly", smiyc, score_dtype=torch.float16)
    rows = {
        "pooled AnomalyMetric (binned) update": best_time(pooled.update, frames),
        "SmiycPixelMetric update (float16, quantile bins)": best_time(smiyc.update, frames),
        "ComponentMetric update, fixed threshold": best_time(fixed.update, frames),
        "ComponentMetric update, deferred (keeps the frame)": best_time(deferred.update, frames),
    }
    start = time.perf_counter()
    deferred.compute()
    rows["ComponentMetric deferred compute, per frame"] = (time.perf_counter() - start) / args.frames
    base = rows["pooled AnomalyMetric (binned) update"]
    width = max(map(len, rows))
    for name, seconds in rows.items():
        print(f"{name:<{width}}  {1000 * seconds:8.1f} ms  {seconds / base:6.2f}x pooled")


if __name__ == "__main__":
    main()
