"""Training throughput on CPU: roadanomaly's Lightning modules against a plain PyTorch loop, same model and data.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_training.py [--model erfnet|eomt] [--height H --width W]
        [--batch B] [--steps 20] [--warmup 2] [--threads N]

ERFNet (default 2 x 3 x 256 x 512): both sides train an ERFNet (20 classes) on the same in-memory batches (random
images, random labels with void 255) through the same DataLoader settings, with Adam (lr 5e-4, weight decay 1e-4),
a poly learning-rate schedule stepped every batch and cross-entropy ignoring 255:
  lightning  ``ERFNetModule`` (stage full) fitted by a ``lightning.Trainer`` on CPU with a CSV logger, logging
             every 5 steps as ``roadanomaly train`` does (no validation, no checkpoint, no progress bar)
  plain      a hand-written loop: zero_grad, forward, loss, backward, optimizer and scheduler step
EoMT (default 8 x 3 x 128 x 128, the SynthRoads CPU recipe's model and settings): ``EoMTModule`` (mask annealing
per step, the mask-classification loss on every prediction set, AdamW with layer-wise groups and warmup-poly
schedule, gradient clipping by the Trainer, per-step logging) against a plain loop with the same model, loss,
optimizer, schedule, clipping and annealing probabilities, on random images with random blob label maps.
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

EOMT_RECIPE = "eomt_synthroads"

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


def eomt_data(n: int, height: int, width: int, seed: int = 0) -> list:
    """``n`` (uint8 image, semantic target) pairs: random images, label maps of random rectangles over 19 classes."""
    from roadanomaly.training.eomt.data import semantic_targets

    g = torch.Generator().manual_seed(seed)
    items = []
    for _ in range(n):
        image = torch.randint(0, 256, (3, height, width), generator=g, dtype=torch.uint8)
        ids = torch.full((height, width), 0, dtype=torch.long)
        for _ in range(6):
            c = int(torch.randint(0, 19, (1,), generator=g))
            y, x = (int(v) for v in torch.randint(0, min(height, width) // 2, (2,), generator=g))
            ids[y : y + height // 2, x : x + width // 2] = c
        ids[: height // 16] = 255
        items.append((image, semantic_targets(ids)))
    return items


def eomt_config():
    from roadanomaly.cli.train_eomt import config_path
    from roadanomaly.training.eomt.config import EoMTTrainConfig

    return EoMTTrainConfig.from_yaml(config_path(EOMT_RECIPE), data="unused", schedule_minutes=None, max_steps=1000,
                                     threads=None)  # fmt: skip


class PlainEoMTLoop:
    """The EoMT module's training step written out: annealing probabilities, forward over every prediction set,
    mask-classification loss, backward, gradient clipping, AdamW and the warmup-poly schedule."""

    def __init__(self, loader: DataLoader, seed: int = 0) -> None:
        from roadanomaly.models.eomt import EoMT
        from roadanomaly.training.eomt.optim import build_optimizer

        self.config = c = eomt_config()
        torch.manual_seed(seed)
        self.model = EoMT(c.model_config()).train()
        self.optimizer, self.schedule = build_optimizer(self.model, c.lr, c.weight_decay, c.llrd, c.warmup_steps,
                                                        c.max_steps, c.poly_power)  # fmt: skip
        self.loss_config = c.loss_config()
        self.batches = iter(loader)
        self.step_index = 0

    def step(self) -> float:
        from roadanomaly.training.eomt.annealing import mask_probabilities
        from roadanomaly.training.eomt.criterion import mask_classification_loss

        start = time.perf_counter()
        c = self.config
        images, targets = next(self.batches)
        probs = mask_probabilities(self.step_index, c.anneal_starts, c.anneal_ends, c.poly_power)
        self.model.attn_mask_probs.copy_(torch.tensor(probs))
        generator = torch.Generator().manual_seed(self.step_index)
        self.model.mask_generator = generator
        self.optimizer.zero_grad()
        out = self.model.forward_all(images.float())
        loss, _ = mask_classification_loss(out.mask_logits, out.class_logits, targets, self.loss_config, generator)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        self.optimizer.step()
        self.schedule.step()
        self.step_index += 1
        return time.perf_counter() - start


def workload(name: str, runs: int, batch: int, height: int, width: int):
    """(Lightning module, its loader, the plain loop, Trainer options) for ``name`` over ``runs`` batches."""
    if name == "erfnet":
        dataset = data(runs * batch, height, width)  # one epoch covers the run: no epoch end inside
        lightning_loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=0)
        plain_loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=0)
        L.seed_everything(0, verbose=False)
        return ERFNetModule(num_classes=20, stage="full"), lightning_loader, PlainLoop(plain_loader, runs), {}
    from roadanomaly.models.eomt import EoMT
    from roadanomaly.training.eomt.data import collate
    from roadanomaly.training.eomt.module import EoMTModule

    items = eomt_data(runs * batch, height, width)
    lightning_loader = DataLoader(items, batch_size=batch, shuffle=True, num_workers=0, collate_fn=collate)
    plain_loader = DataLoader(items, batch_size=batch, shuffle=True, num_workers=0, collate_fn=collate)
    config = eomt_config()
    L.seed_everything(0, verbose=False)
    module = EoMTModule(config, EoMT(config.model_config()), train_stream=None, val_set=None)
    return module, lightning_loader, PlainEoMTLoop(plain_loader), {"gradient_clip_val": config.grad_clip}


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
    parser.add_argument("--model", choices=("erfnet", "eomt"), default="erfnet")
    parser.add_argument("--height", type=int, help="default 256 (ERFNet), 128 (EoMT)")
    parser.add_argument("--width", type=int, help="default 512 (ERFNet), 128 (EoMT)")
    parser.add_argument("--batch", type=int, help="default 2 (ERFNet), 8 (EoMT)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per side (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per side first (default 2)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    eomt = args.model == "eomt"
    args.height = args.height or (128 if eomt else 256)
    args.width = args.width or (128 if eomt else 512)
    args.batch = args.batch or (8 if eomt else 2)
    runs = args.warmup + args.steps + 1  # the last Lightning step only closes the previous interval
    module, lightning_loader, plain, trainer_options = workload(args.model, runs, args.batch, args.height, args.width)
    alternate = Alternate(plain)
    host = machine("cpu")
    title = f"EoMT ({EOMT_RECIPE} recipe's model)" if eomt else "ERFNet"
    print(f"{title} training step, batch {args.batch}x3x{args.height}x{args.width}, CPU; {host.describe()}")
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
            max_epochs=1,
            **trainer_options,
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
