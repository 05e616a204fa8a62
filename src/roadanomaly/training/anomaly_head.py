"""Train the EoMT-EXT anomaly head (and the RbA-OE baseline) on a frozen EoMT: ``train_anomaly_head(config)``.

Writes ``OUTPUT/anomaly_head.safetensors`` (both heads, the base's identity, any fine-tuned base parameters),
``OUTPUT/config.yaml`` and ``OUTPUT/training.json`` (sample count, timings of the cache build and of training).
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import yaml
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, Dataset

from roadanomaly.data.cityscapes import CityscapesDataset
from roadanomaly.data.outlier_exposure import OutlierPaster, PasteConfig, make_source
from roadanomaly.models.anomaly_head import HEAD_FILE, base_identity, save_anomaly_heads
from roadanomaly.models.eomt import EoMT
from roadanomaly.training.anomaly_head_config import AnomalyHeadTrainConfig
from roadanomaly.training.anomaly_head_data import PastedTrainSet, collate_samples
from roadanomaly.training.anomaly_head_module import AnomalyHeadModule, QueryCache


@dataclass
class HeadTrainResult:
    heads: Path
    """The head file (``load_anomaly_heads(heads, base)``)."""
    samples: int
    cache_s: float
    """Seconds to build the cache (0 on the full path)."""
    train_s: float
    final_losses: dict[str, float]


def paster_of(config: AnomalyHeadTrainConfig) -> OutlierPaster:
    paste = PasteConfig(
        probability=config.paste_probability, count=tuple(config.paste_count), height=tuple(config.paste_height),
        feather=config.feather, colour_match=config.colour_match, min_height=config.paste_min_height,
    )  # fmt: skip
    return OutlierPaster([make_source(s) for s in config.outliers], paste)


def load_inliers(config: AnomalyHeadTrainConfig) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Images and train ids of the inlier split (the first ``max_images``)."""
    source = CityscapesDataset(config.data, config.split)
    count = len(source) if config.max_images is None else min(config.max_images, len(source))
    samples = [source[i] for i in range(count)]
    return [s.image for s in samples], [s.train_ids for s in samples]


def pasted_set(config: AnomalyHeadTrainConfig, base: EoMT, images: list[np.ndarray], labels: list[np.ndarray]) -> PastedTrainSet:
    crop = min(base.config.img_size)
    return PastedTrainSet(images, labels, paster_of(config), crop, config.num_points, config.copies, config.seed,
                          config.size)  # fmt: skip


def fit(module: AnomalyHeadModule, data: Dataset, config: AnomalyHeadTrainConfig, output: Path, progress: bool) -> float:
    """Run Lightning over ``data`` (a :class:`QueryCache` or a :class:`PastedTrainSet`); returns seconds."""
    collate = data.collate if isinstance(data, QueryCache) else collate_samples
    loader = DataLoader(data, batch_size=config.batch_size, shuffle=True, collate_fn=collate,
                        generator=torch.Generator().manual_seed(config.seed))  # fmt: skip
    trainer = L.Trainer(
        max_epochs=config.epochs, accelerator=config.accelerator, devices=config.devices,
        logger=CSVLogger(output, name="logs", version="head"), enable_checkpointing=False,
        enable_progress_bar=progress, enable_model_summary=False, log_every_n_steps=10,
    )  # fmt: skip
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")  # the frozen base, on purpose
        trainer.fit(module, loader)
    return time.perf_counter() - start


def train_anomaly_head(
    config: AnomalyHeadTrainConfig, base: EoMT | None = None, progress: bool = True
) -> HeadTrainResult:
    """Train on ``config.data`` with pasted outliers; ``base`` (else loaded from ``config.base``) stays frozen unless
    ``config.train`` names parts of it."""
    from roadanomaly.models.eomt_checkpoints import load_eomt

    L.seed_everything(config.seed, workers=True, verbose=False)
    base = base if base is not None else load_eomt(config.base)
    identity = base_identity(base)
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    images, labels = load_inliers(config)
    samples = pasted_set(config, base, images, labels)
    module = AnomalyHeadModule(base, config)
    cache_s, data = 0.0, samples
    if config.use_cache:
        start = time.perf_counter()
        data = QueryCache(base, samples, module.costs, batch_size=8, keep_block_input=module.head.reads_block)
        cache_s = time.perf_counter() - start
    train_s = fit(module, data, config, output, progress)
    module.eval()
    with torch.no_grad():
        probe = data.collate(list(range(min(len(data), 64)))) if isinstance(data, QueryCache) else None
        final = {k: float(v) for k, v in module.losses(probe).items()} if probe is not None else {}
    info: dict[str, Any] = {"samples": len(samples), "outliers": list(config.outliers), "epochs": config.epochs,
                            "cached": config.use_cache, "train": list(config.train),
                            "head_blocks": config.head_blocks}  # fmt: skip
    heads = save_anomaly_heads(output / HEAD_FILE, identity, module.head, module.rba_oe, module.base_overrides(), info)
    record = {**info, "cache_s": round(cache_s, 2), "train_s": round(train_s, 2), "final_losses": final}
    (output / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    return HeadTrainResult(heads, len(samples), cache_s, train_s, final)
