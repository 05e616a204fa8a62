"""Share of an evaluation's wall time spent outside the model's forward pass (issue target: <= 15 %).

    PYTHONPATH=src python benchmarks/bench_eval_pipeline.py [--images 100] [--size 512x1024] [--workers 1]

Writes a bundle of random images (RoadAnomaly21 layout) at --size, runs the evaluation engine with a randomly
initialised ERFNet and every ERFNet method, and times the predictor's calls (the forward pass, with its own pre- and
post-processing) against the engine's whole run (decoding in DataLoader workers, scoring, metric updates, writing
the results and, every 25 images, the progress file, as ``roadanomaly evaluate --output`` does; ``--no-output``
leaves both out).
The default 100 images are the size of a benchmark dataset (RoadAnomaly21, Fishyscapes Lost & Found): the one-off
costs of a dataset (its metric states, choosing their refined bins, curves and histograms) count once per dataset.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


class TimedPredictor:
    """Wraps a predictor and adds up the seconds spent in its calls."""

    def __init__(self, inner) -> None:
        self.inner, self.seconds = inner, 0.0
        self.spec, self.info, self.device = inner.spec, inner.info, inner.device

    def __call__(self, images):
        start = time.perf_counter()
        out = self.inner(images)
        self.seconds += time.perf_counter() - start
        return out


def write_bundle(root: Path, images: int, size: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    for folder in ("images", "labels_masks"):
        (root / "RoadAnomaly21" / folder).mkdir(parents=True, exist_ok=True)
    for i in range(images):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / "RoadAnomaly21" / "images" /
                                                                               f"{i:04d}.png")
        mask = np.zeros(size, np.uint8)
        mask[size[0] // 2 : size[0] // 2 + 40, size[1] // 3 : size[1] // 3 + 60] = 1
        mask[: size[0] // 8] = 255
        Image.fromarray(mask).save(root / "RoadAnomaly21" / "labels_masks" / f"{i:04d}.png")


def main() -> None:
    from roadanomaly.cli.evaluate import progress_file_for
    from roadanomaly.data.bundle import discover_bundles
    from roadanomaly.evaluation import EvaluationEngine
    from roadanomaly.inference.erfnet import ERFNetPredictor
    from roadanomaly.models.erfnet import ERFNet
    from roadanomaly.protocol import EvalProtocol
    from roadanomaly.runtime import retain_freed_memory

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--size", default="512x1024")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--release-freed-memory", action="store_true",
                        help="leave glibc's allocator as it is (the roadanomaly command keeps freed memory)")
    parser.add_argument("--no-output", action="store_true",
                        help="write neither the results nor the progress file (the command with no --output)")
    args = parser.parse_args()
    retained = not args.release_freed_memory and retain_freed_memory()
    size = tuple(int(v) for v in args.size.split("x"))
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {load}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        write_bundle(Path(tmp), args.images, size)
        torch.manual_seed(0)
        predictor = TimedPredictor(ERFNetPredictor(ERFNet(20)))
        output = None if args.no_output else Path(tmp) / "results.json"
        engine = EvaluationEngine(predictor, EvalProtocol(), None, workers=args.workers, progress_bars=False,
                                  output=output, progress_file=output and progress_file_for(output, 0, 1))
        start = time.perf_counter()
        engine.run(discover_bundles(tmp))
        total = time.perf_counter() - start
    outside = total - predictor.seconds
    print(f"{args.images} images at {args.size}, methods {', '.join(engine.methods)}, {args.workers} loader worker(s), "
          f"freed memory {'kept (as the roadanomaly command does)' if retained else 'handed back'}, "
          f"{'no output' if args.no_output else 'results and progress file written'}")
    print(f"total {total:.2f} s, forward {predictor.seconds:.2f} s, everything else {outside:.2f} s "
          f"= {100 * outside / total:.1f} % of the total")
    print(f"target <= 15 %: {'PASS' if outside / total <= 0.15 else 'FAIL'}")


if __name__ == "__main__":
    main()
