"""EoMT's SynthRoads CPU recipe against the ERFNet demo's mIoU: validation mIoU against wall time.

    PYTHONPATH=src nice -n 10 .venv/bin/python benchmarks/bench_train_eomt.py [--data ROOT/cityscapes]
        [--config eomt_synthroads] [--minutes 30] [--output runs/bench_eomt]

Without --data, SynthRoads is generated first (the demo's data: seed 0, 400 train + 40 val scenes at 256x512).
The recipe trains (src/roadanomaly/configs/eomt_synthroads.yaml: one torch thread + one data worker = 2 cores)
and validates every ``val_every`` steps on the val split at 128x256, the scale at which the ERFNet demo reports
its 30 % (README). Afterwards the exported weights are scored again through ``roadanomaly evaluate``'s code path,
and the curve (wall time from the start of fitting, step, mIoU) is printed beside the ERFNet target.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

ERFNET_DEMO_MIOU = 0.305
"""The ERFNet demo's SynthRoads val mIoU at 128x256 (README: 4 encoder-only + 8 whole-network epochs)."""


def machine() -> str:
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average {load}, "
            f"torch {torch.__version__}")


def main() -> None:
    from roadanomaly.cli.train_eomt import config_path
    from roadanomaly.data.cityscapes import CityscapesDataset
    from roadanomaly.evaluation import EvaluationEngine
    from roadanomaly.inference import load_predictor
    from roadanomaly.protocol import EvalProtocol
    from roadanomaly.training.eomt.config import EoMTTrainConfig
    from roadanomaly.training.eomt.train import train_eomt

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="Cityscapes-layout SynthRoads root (default: generate it)")
    parser.add_argument("--config", default="eomt_synthroads")
    parser.add_argument("--minutes", type=float, default=30.0, help="training time limit (default 30)")
    parser.add_argument("--output", type=Path, default=Path("runs/bench_eomt"))
    args = parser.parse_args()

    print(f"machine: {machine()}")
    data = args.data
    if data is None:
        from roadanomaly.data.synthroads import generate_synthroads

        root = args.output / "synthroads"
        if not (root / "synthroads.json").is_file():
            print(f"generating SynthRoads in {root} ...")
            generate_synthroads(root, train=400, val=40, anomaly=0, obstacle=0, seed=0)
        data = root / "cityscapes"
    config = EoMTTrainConfig.from_yaml(config_path(args.config), data=str(data), output=str(args.output / "run"),
                                       max_minutes=args.minutes)  # fmt: skip
    print(f"recipe: {args.config} (max_steps {config.max_steps}, batch {config.batch_size}, "
          f"{config.threads or torch.get_num_threads()} thread(s) + {config.workers} data worker(s)), "
          f"limit {args.minutes:g} min")
    start = time.perf_counter()
    result = train_eomt(config, progress=False)
    total = time.perf_counter() - start

    protocol = EvalProtocol(size=config.val_size)
    engine = EvaluationEngine(load_predictor("eomt", result.weights), protocol, progress_bars=False)
    check = engine.run([], CityscapesDataset(data, "val")).segmentation["miou"]
    print(f"\n{'wall [min]':>10} {'step':>6} {'val mIoU [%]':>13} {'/ ERFNet demo':>14}")
    for point in result.curve:
        print(f"{point['wall_s'] / 60:10.1f} {point['step']:6d} {100 * point['miou']:13.2f} "
              f"{point['miou'] / ERFNET_DEMO_MIOU:14.2f}")
    reached = next((p for p in result.curve if p["miou"] >= ERFNET_DEMO_MIOU), None)
    print(f"\nfinal: {result.steps} steps in {total / 60:.1f} min (with validations), val mIoU "
          f"{100 * result.val_miou:.2f} % (roadanomaly evaluate on the exported weights: {100 * check:.2f} %); "
          f"ERFNet demo {100 * ERFNET_DEMO_MIOU:.1f} %")
    if reached:
        print(f"reached the ERFNet demo's mIoU after {reached['wall_s'] / 60:.1f} min (step {reached['step']})")
    else:
        print("did not reach the ERFNet demo's mIoU within the limit")
    print(f"machine after: {machine()}")


if __name__ == "__main__":
    main()
