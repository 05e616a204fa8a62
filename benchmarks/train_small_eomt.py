"""Stopgap: train a small SynthRoads EoMT from scratch for the anomaly-head experiment (CPU, minutes).

Used only until the EoMT training recipe (``train_eomt`` + configs/eomt_synthroads_demo.yaml) is available; it
reuses that work's matcher and losses (roadanomaly.training.eomt). No masked attention (annealed away from the
start), deep supervision on the final prediction only, random square crops and flips.

    PYTHONPATH=src nice -n 10 python benchmarks/train_small_eomt.py --data /work/data_head/synthroads/cityscapes \
        --output /work/data_head/eomt_small --minutes 25
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from roadanomaly.data.cityscapes import CityscapesDataset
from roadanomaly.data.labels import NUM_CLASSES
from roadanomaly.models.eomt import EoMT, EoMTConfig
from roadanomaly.models.eomt_checkpoints import save_eomt
from roadanomaly.training.eomt.losses import class_loss, mask_losses
from roadanomaly.training.eomt.matcher import hungarian_match


def load(root: str, size: tuple[int, int], limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    data = CityscapesDataset(root, "train")
    n = len(data) if limit is None else min(limit, len(data))
    images, labels = [], []
    for i in range(n):
        s = data[i]
        images.append(np.asarray(Image.fromarray(s.image).resize(size[::-1], Image.BILINEAR)))
        labels.append(np.asarray(Image.fromarray(s.train_ids).resize(size[::-1], Image.NEAREST)))
    return np.stack(images), np.stack(labels)


def targets_of(label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ids = [int(i) for i in label.unique() if i < NUM_CLASSES]
    return torch.stack([label == i for i in ids]) if ids else torch.zeros(0, *label.shape, dtype=torch.bool), \
        torch.tensor(ids, dtype=torch.long)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--minutes", type=float, default=25)
    p.add_argument("--size", default="128x256")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--patch", type=int, default=8)
    p.add_argument("--queries", type=int, default=32)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--max-images", type=int)
    args = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    h, w = (int(v) for v in args.size.split("x"))
    crop = min(h, w)
    images, labels = load(args.data, (h, w), args.max_images)
    config = EoMTConfig(width=args.width, depth=args.depth, heads=args.width // 32, patch=args.patch,
                        img_size=(crop, crop), num_classes=NUM_CLASSES, num_q=args.queries, num_blocks=3)
    model = EoMT(config)
    model.attn_mask_probs.zero_()
    model.masked_attn = False
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    start, step, log = time.time(), 0, []
    budget = args.minutes * 60
    rng = np.random.default_rng(0)
    model.train()
    while time.time() - start < budget:
        idx = rng.integers(0, len(images), args.batch)
        xs, ys = [], []
        for i in idx:
            left = int(rng.integers(0, w - crop + 1))
            im, lb = images[i][:, left : left + crop], labels[i][:, left : left + crop]
            if rng.random() < 0.5:
                im, lb = im[:, ::-1], lb[:, ::-1]
            xs.append(torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1).float())
            ys.append(torch.from_numpy(np.ascontiguousarray(lb)).long())
        x = torch.stack(xs)
        out = model.forward_all(x, masked_attn=False)
        mask_logits, cls_logits = out.mask_logits[-1], out.class_logits[-1]
        matches, tlabels, tmasks = [], [], []
        for b, lb in enumerate(ys):
            m, l = targets_of(lb)
            matches.append(hungarian_match(mask_logits[b], cls_logits[b], m, l, num_points=1024))
            tlabels.append(l)
            tmasks.append(m)
        n = max(1.0, float(sum(len(l) for l in tlabels)))
        ce = class_loss(cls_logits, matches, tlabels, 0.1)
        src = torch.cat([mask_logits[b][q] for b, (q, _) in enumerate(matches)])
        tgt = torch.cat([tmasks[b][t] for b, (_, t) in enumerate(matches)])
        bce, dice = mask_losses(src, tgt, n, num_points=1024)
        loss = 2 * ce + 5 * bce + 5 * dice
        lr = args.lr * max(0.05, 1 - (time.time() - start) / budget) ** 0.9
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 50 == 0:
            log.append({"step": step, "s": round(time.time() - start), "loss": float(loss), "ce": float(ce)})
            print(log[-1], flush=True)
    model.eval()
    model.masked_attn = None
    out = save_eomt(model, args.output)
    (Path(out) / "training.json").write_text(json.dumps({"args": vars(args), "steps": step, "log": log}, indent=1))
    print("saved", out, "steps", step)


if __name__ == "__main__":
    main()
