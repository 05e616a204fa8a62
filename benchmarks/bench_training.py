"""ERFNet training throughput on CPU: roadanomaly's Lightning module against a plain PyTorch loop, same model.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_training.py [--height 256 --width 512] [--batch 2]
        [--steps 20] [--warmup 2] [--threads N]

Both sides train an ERFNet (20 classes) on the same in-memory batches (random images, random labels with void
255) through the same DataLoader settings, with Adam (lr 5e-4, weight decay 1e-4), a poly learning-rate schedule
stepped every batch and cross-entropy ignoring 255:
  lightning  ``ERFNetModule`` (stage full) fitted by a ``lightning.Trainer`` on CPU with a CSV logger, logging
             every 5 steps as ``roadanomaly train`` does (no validation, no checkpoint, no progress bar)
  plain      a hand-written loop: zero_grad, forward, loss, backward, optimizer and scheduler step
They alternate step by step (lightning, plain, lightning, ...), so that the load of a shared machine hits both
alike: the plain loop's step runs inside the Trainer's ``on_train_batch_end`` hook and is timed by itself; a
Lightning step's time is the interval between the starts of consecutive Lightning batches (all per-step overhead
included: hooks, logging, the scheduler step; the Trainer's one-off set-up is not) less the plain step run inside
it. The first ``--warmup`` steps of each side are dropped, and no epoch ends during the run. steps/s = 1 / median
step time; the Lightning overhead is plain steps/s / lightning steps/s - 1.
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


def data(n: int, height: int, width: int, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, height, width, generator=g)
    labels = torch.randint(0, 20, (n, height, width), generator=g)
    labels[torch.rand(n, height, width, generator=g) < 0.05] = 255
    return TensorDataset(images, labels)


def poly(total: int, power: float = 0.9):
    return lambda step: max(0.0, 1.0 - step / total) ** power


class PlainLoop:
    """The same training as the Lightning module, written out; ``step()`` runs one batch and returns its time."""

    def __init__(self, loader: DataLoader, total_steps: int, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.model = ERFNet(20).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=5e-4, betas=(0.9, 0.999), eps=1e-8,
                                          weight_decay=1e-4)  # fmt: skip
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, poly(total_steps))
        self.batches = iter(loader)

    def step(self) -> float:
        start = time.perf_counter()
        images, labels = next(self.batches)
        self.optimizer.zero_grad()
        loss = F.cross_entropy(self.model(images), labels, ignore_index=255)
        loss.backward()
        self.optimizer.step()
        self.schedule.step()
        return time.perf_counter() - start


class Alternate(L.Callback):
    """Stamps every Lightning batch start and runs one plain step after every Lightning step."""

    def __init__(self, plain: PlainLoop) -> None:
        self.plain = plain
        self.starts: list[float] = []
        self.plain_times: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.starts.append(time.perf_counter())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.plain_times.append(self.plain.step())

    def lightning_times(self) -> list[float]:
        """Each complete Lightning step: the interval between batch starts less the plain step inside it."""
        return [b - a - p for a, b, p in zip(self.starts, self.starts[1:], self.plain_times)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per side (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per side first (default 2)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    runs = args.warmup + args.steps + 1  # the last Lightning step only closes the previous interval
    dataset = data(runs * args.batch, args.height, args.width)  # one epoch covers the run: no epoch end inside
    lightning_loader = DataLoader(dataset, batch_size=args.batch, shuffle=True, num_workers=0)
    plain_loader = DataLoader(dataset, batch_size=args.batch, shuffle=True, num_workers=0)
    L.seed_everything(0, verbose=False)
    module = ERFNetModule(num_classes=20, stage="full")
    alternate = Alternate(PlainLoop(plain_loader, runs))
    host = machine("cpu")
    print(f"ERFNet training step, batch {args.batch}x3x{args.height}x{args.width}, CPU; {host.describe()}")
    print(f"{args.steps} timed steps per side, alternating step by step, after {args.warmup} warm-up steps each",
          flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-training-") as log_dir:
        trainer = L.Trainer(
            max_steps=runs,
            accelerator="cpu",
            devices=1,
            logger=L.pytorch.loggers.CSVLogger(log_dir, name="bench"),
            callbacks=[alternate],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            log_every_n_steps=5,
            num_sanity_val_steps=0,
            limit_val_batches=0,
        )
        trainer.fit(module, lightning_loader)
    times = {
        "lightning": alternate.lightning_times()[args.warmup :],
        "plain": alternate.plain_times[args.warmup : args.warmup + args.steps],
    }
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
