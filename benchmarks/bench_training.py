"""ERFNet training throughput on CPU: roadanomaly's Lightning module against a plain PyTorch loop, same model.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_training.py [--height 256 --width 512] [--batch 2]
        [--rounds 4] [--steps 6] [--threads N]

Both sides train an ERFNet (20 classes) on the same in-memory batches (random images, random labels with void
255) through the same DataLoader settings, with Adam (lr 5e-4, weight decay 1e-4), a poly learning-rate schedule
stepped every batch and cross-entropy ignoring 255:
  lightning  ``ERFNetModule`` (stage full) fitted by a ``lightning.Trainer`` on CPU with a CSV logger, logging
             every 5 steps as ``roadanomaly train`` does (no validation, no checkpoint, no progress bar)
  plain      a hand-written loop: zero_grad, forward, loss, backward, optimizer and scheduler step
They alternate in rounds (lightning ``--steps`` steps, plain ``--steps`` steps, lightning, ...), so that the load
of a shared machine hits both alike. A step's time is the interval between the starts of consecutive batches (all
per-step overhead included; the Trainer's one-off set-up and tear-down are not); each round's first step is
dropped as warm-up, and no epoch ends inside a round. steps/s = 1 / median step time; the Lightning overhead is
plain steps/s / lightning steps/s - 1.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from roadanomaly.benchmarking import machine, percentile
from roadanomaly.models.erfnet import ERFNet
from roadanomaly.training.erfnet_module import ERFNetModule

MAX_OVERHEAD = 0.10


class StepClock(L.Callback):
    """Start time of every training batch."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.stamps.append(time.perf_counter())


def step_times(stamps: list[float]) -> list[float]:
    """Intervals between consecutive stamps, the first (warm-up) dropped."""
    return [b - a for a, b in zip(stamps, stamps[1:])][1:]


def data(n: int, height: int, width: int, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, height, width, generator=g)
    labels = torch.randint(0, 20, (n, height, width), generator=g)
    labels[torch.rand(n, height, width, generator=g) < 0.05] = 255
    return TensorDataset(images, labels)


def poly(total: int, power: float = 0.9):
    return lambda step: max(0.0, 1.0 - step / total) ** power


def lightning_round(module: ERFNetModule, loader: DataLoader, steps: int, log_dir: str) -> list[float]:
    clock = StepClock()
    trainer = L.Trainer(
        max_steps=steps + 2,
        accelerator="cpu",
        devices=1,
        logger=L.pytorch.loggers.CSVLogger(log_dir, name="bench"),
        callbacks=[clock],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=5,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(module, loader)
    return step_times(clock.stamps)


class PlainLoop:
    """The same training as the Lightning module, written out."""

    def __init__(self, total_steps: int, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.model = ERFNet(20).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=5e-4, betas=(0.9, 0.999), eps=1e-8,
                                          weight_decay=1e-4)  # fmt: skip
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, poly(total_steps))

    def round(self, loader: DataLoader, steps: int) -> list[float]:
        stamps = []
        batches = iter(loader)
        for _ in range(steps + 2):
            stamps.append(time.perf_counter())
            images, labels = next(batches)
            self.optimizer.zero_grad()
            loss = F.cross_entropy(self.model(images), labels, ignore_index=255)
            loss.backward()
            self.optimizer.step()
            self.schedule.step()
        return step_times(stamps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4, help="rounds per side (default 4)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per round (default 6, plus 1 warm-up)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    per_round = args.steps + 2  # batch starts stamped per round: warm-up, timed steps, and the end of the last
    dataset = data((per_round + 1) * args.batch, args.height, args.width)  # no epoch ends inside a round
    loader = DataLoader(dataset, batch_size=args.batch, shuffle=True, num_workers=0)
    total = args.rounds * per_round
    L.seed_everything(0, verbose=False)
    module = ERFNetModule(num_classes=20, stage="full")
    plain = PlainLoop(total)
    host = machine("cpu")
    print(f"ERFNet training step, batch {args.batch}x3x{args.height}x{args.width}, CPU; {host.describe()}")
    print(f"{args.rounds} rounds per side, alternating, {args.steps} timed steps per round after 1 warm-up step",
          flush=True)  # fmt: skip
    times: dict[str, list[float]] = {"lightning": [], "plain": []}
    with tempfile.TemporaryDirectory(prefix="bench-training-") as log_dir:
        for _ in range(args.rounds):
            times["lightning"] += lightning_round(module, loader, args.steps, log_dir)
            times["plain"] += plain.round(loader, args.steps)
    rates = {name: 1 / statistics.median(t) for name, t in times.items()}
    print(f"{'loop':<10} {'steps/s':>8} {'median s':>9} {'p90 s':>7} {'images/s':>9} {'steps':>6}")
    for name, t in times.items():
        print(f"{name:<10} {rates[name]:>8.3f} {statistics.median(t):>9.3f} {percentile(t, 90):>7.3f} "
              f"{rates[name] * args.batch:>9.3f} {len(t):>6}")  # fmt: skip
    overhead = rates["plain"] / rates["lightning"] - 1
    print(f"load average after: {' '.join(f'{v:.2f}' for v in machine('cpu').load_average)}")
    print()
    ok = overhead <= MAX_OVERHEAD
    print(f"{'PASS' if ok else 'FAIL'}  Lightning: x{rates['lightning'] / rates['plain']:.3f} the steps/s of the plain "
          f"loop, overhead {100 * overhead:+.1f} % (target <= {100 * MAX_OVERHEAD:.0f} %)")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
