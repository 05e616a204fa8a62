"""A temperature sweep's peak memory: 14 temperatures x 4 methods on 1024x2048 images (issue target: <= 2 GB).

    PYTHONPATH=src python benchmarks/bench_sweep_memory.py [--images 100] [--baseline-images 8] [--size 1024x2048]

Writes a RoadAnomaly21-layout bundle of random images and a randomly initialised ERFNet (20 channels, the last one
void: its untrained scores crowd into narrow ranges, the case where the binned metrics refine and are largest), then
runs ``roadanomaly evaluate --temperatures <14 values> --methods msp,entropy,energy,void`` as a user would, in a
child process, and samples the memory of that process and its data-loading worker every 20 ms (the sum of their
proportional set sizes: what they hold together, shared pages counted once). Side by
side on the first ``--baseline-images`` images: the default metric memory budget (1.25 GiB for all states together)
against ``--metric-memory 64GiB`` (every state at the full 22 bits, the behaviour before the budget), with the
largest difference of AuPRC / FPR95 / AUROC between the two and the largest ``max_error_bound`` reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

TEMPERATURES = "0.25,0.5,0.75,1,1.25,1.5,2,2.5,3,4,5,7.5,10,20"
METHODS = "msp,entropy,energy,void"
TARGET_BYTES = 2 * 10**9
MIB = 2**20


def write_data(root: Path, images: int, size: tuple[int, int]) -> Path:
    """A bundle of ``images`` random JPEG images with PNG labels, and a random ERFNet checkpoint; returns it."""
    from roadanomaly.models.erfnet import ERFNet

    rng = np.random.default_rng(0)
    for folder in ("images", "labels_masks"):
        (root / "data" / "RoadAnomaly21" / folder).mkdir(parents=True, exist_ok=True)
    h, w = size
    for i in range(images):
        # smooth random colours (upsampled noise) rather than pixel noise: closer to a photograph's content
        small = rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((w, h), Image.BILINEAR)
        image.save(root / "data" / "RoadAnomaly21" / "images" / f"{i:04d}.jpg", quality=90)
        mask = np.zeros(size, np.uint8)
        top, left = int(rng.integers(h // 2, h - h // 8)), int(rng.integers(0, w - w // 8))
        mask[top : top + h // 10, left : left + w // 12] = 1
        mask[: h // 6] = 255
        Image.fromarray(mask).save(root / "data" / "RoadAnomaly21" / "labels_masks" / f"{i:04d}.png")
    torch.manual_seed(0)
    weights = root / "erfnet_random.pth"
    torch.save(ERFNet(20).state_dict(), weights)
    return weights


def tree_memory(pid: int) -> int:
    """Bytes of memory process ``pid`` and all its descendants hold: the sum of their proportional set sizes (Pss:
    pages shared between them, such as the libraries a data-loading worker inherits, counted once in all)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as rollup:
                for line in rollup:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
            with open(f"/proc/{p}/task/{p}/children") as children:
                todo += [int(c) for c in children.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def run_sweep(root: Path, weights: Path, images: int, memory: str | None, output: Path) -> dict:
    """One ``roadanomaly evaluate`` sweep in a child process: its peak tree memory, wall time and rows."""
    data = root / f"data_{images}"
    if not data.exists():  # the first ``images`` images of the bundle
        for folder in ("images", "labels_masks"):
            (data / "RoadAnomaly21" / folder).mkdir(parents=True)
            for path in sorted((root / "data" / "RoadAnomaly21" / folder).iterdir())[:images]:
                os.symlink(path, data / "RoadAnomaly21" / folder / path.name)
    command = [sys.executable, "-m", "roadanomaly", "evaluate", "--model", "erfnet", "--weights", str(weights),
               "--data", str(data), "--temperatures", TEMPERATURES, "--methods", METHODS, "--quiet",
               "--output", str(output)]  # fmt: skip
    if memory is not None:
        command += ["--metric-memory", memory]
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]

    def sample() -> None:
        while child.poll() is None:
            peak[0] = max(peak[0], tree_memory(child.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    log, _ = child.communicate()
    sampler.join()
    if child.returncode != 0:
        raise SystemExit(f"evaluate failed ({child.returncode}):\n{log[-3000:]}")
    rows = json.loads(output.read_text())["results"]
    return {"peak": peak[0], "seconds": time.perf_counter() - start, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--baseline-images", type=int, default=8)
    parser.add_argument("--size", default="1024x2048")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {load}, torch {torch.__version__}")
    variants = 14 * 4
    print(f"sweep: {variants} (method, temperature) rows per dataset: temperatures {TEMPERATURES}; methods {METHODS}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        weights = write_data(root, max(args.images, args.baseline_images), size)
        small = {name: run_sweep(root, weights, args.baseline_images, memory, root / f"{name}.json")
                 for name, memory in (("default budget", None), ("22-bit states", "64GiB"))}  # fmt: skip
        full = run_sweep(root, weights, args.images, None, root / "full.json")
    print(f"\n{'run':<34} {'images':>6} {'peak MiB':>9} {'seconds':>8}")
    for name, result in small.items():
        print(f"{name:<34} {args.baseline_images:>6} {result['peak'] / MIB:>9.0f} {result['seconds']:>8.1f}")
    print(f"{'default budget':<34} {args.images:>6} {full['peak'] / MIB:>9.0f} {full['seconds']:>8.1f}")
    ratio = small["22-bit states"]["peak"] / small["default budget"]["peak"]
    print(f"\npeak memory, 22-bit states / default budget: {ratio:.2f}x")
    ours, reference = small["default budget"]["rows"], small["22-bit states"]["rows"]
    differences = {key: max(abs(a[key] - b[key]) for a, b in zip(ours, reference))
                   for key in ("auprc", "fpr95", "auroc")}
    bound = max(r["max_error_bound"] or 0.0 for r in full["rows"])
    print("largest difference between the two on the same images: "
          + ", ".join(f"{k} {v:.2e}" for k, v in differences.items()))
    print(f"largest max_error_bound of the {len(full['rows'])} rows over {args.images} images: {bound:.2e}")
    verdict = "PASS" if full["peak"] <= TARGET_BYTES else "FAIL"
    print(f"target: {args.images} images within {TARGET_BYTES / 1e9:.0f} GB: {full['peak'] / 1e9:.2f} GB {verdict}")


if __name__ == "__main__":
    main()
