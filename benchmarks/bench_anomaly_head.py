"""EoMT-EXT anomaly head: (1) cached against full training path, (2) the SynthRoads comparison table.

    # (1) same samples, same module, same loss; time per epoch of each path (and the one-off cache build)
    PYTHONPATH=src python benchmarks/bench_anomaly_head.py speed --base EOMT --data ROOT/cityscapes \
        [--images 32] [--copies 2] [--epochs 2]

    # (2) train the heads (SynthRoads recipe, outlier family only) and evaluate every method on both bundles
    PYTHONPATH=src python benchmarks/bench_anomaly_head.py table --base EOMT --synthroads ROOT --workdir DIR \
        [--size 128x256] [--epochs N]

    # (3) the ceiling of any head on the base's frozen masks: query weights from the labels
    PYTHONPATH=src python benchmarks/bench_anomaly_head.py oracle --base EOMT --synthroads ROOT [--size 128x256]

    # (4) where a trained head errs: false positives by distance to the anomalies, inlier rates on train / val
    PYTHONPATH=src python benchmarks/bench_anomaly_head.py errors --base EOMT --head HEAD --synthroads ROOT \
        [--method anomaly] [--size 128x256]

(3) gives each query, per window, the share of its mask mass lying on labelled anomaly pixels ("soft") or 1 when
that share is over one half ("hard"), draws the map as the ``anomaly`` score does and reports its AuPRC / FPR95:
no head that keeps the frozen masks can rank pixels better than what these weights allow.

(4) thresholds the method's map at the score reached by 30 / 50 / 70 / 95 % of a bundle's anomaly pixels and
reports the precision there, how many of the false positives lie more than 16 pixels from any anomaly, and the rate
of inlier pixels over the same threshold on (unpasted) train and val images: a head that fires as often on its own
training scenes as on new ones confuses inliers with outliers rather than memorising its training set.

(2) prints AuPRC / FPR95 / AUROC per method and dataset, then the checks the issue asks for: the head beats the best
post-hoc method (msp, entropy, rba, noobject, eam) by >= 10 AuPRC points, has a lower FPR95 than every post-hoc
method, and is at least as good as rba_oe, on every bundle.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch


def machine() -> str:
    threads = torch.get_num_threads()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average {load}, torch threads {threads}"


def speed(args: argparse.Namespace) -> int:
    from roadanomaly.models.eomt_checkpoints import load_eomt
    from roadanomaly.training.anomaly_head import load_inliers, pasted_set
    from roadanomaly.training.anomaly_head_config import AnomalyHeadTrainConfig
    from roadanomaly.training.anomaly_head_module import AnomalyHeadModule, QueryCache

    config = AnomalyHeadTrainConfig(base=args.base, data=args.data, max_images=args.images, copies=args.copies,
                                    batch_size=args.batch)  # fmt: skip
    base = load_eomt(args.base)
    images, labels = load_inliers(config)
    samples = pasted_set(config, base, images, labels)
    module = AnomalyHeadModule(base, config)
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-3)
    order = list(range(len(samples)))
    batches = [order[i : i + args.batch] for i in range(0, len(order), args.batch)]

    def epoch(get) -> float:
        start = time.perf_counter()
        for batch in batches:
            optimizer.zero_grad()
            module.losses(get(batch))["loss"].backward()
            optimizer.step()
        return time.perf_counter() - start

    start = time.perf_counter()
    cache = QueryCache(base, samples, module.costs, batch_size=args.batch, keep_block_input=module.head.reads_block)
    build = time.perf_counter() - start
    full_get = lambda b: [samples[i] for i in b]
    full, cached = [], []
    for _ in range(args.epochs):  # interleaved, so that a change of machine load hits both paths
        full.append(epoch(full_get))
        cached.append(epoch(cache.collate))
    with torch.no_grad():
        probe = batches[0]
        loss_full = float(module.losses(full_get(probe))["loss"])
        loss_cached = float(module.losses(cache.collate(probe))["loss"])
    f, c = min(full), min(cached)
    print(f"machine: {machine()}")
    print(f"base: {args.base} ({sum(p.numel() for p in base.parameters()) / 1e6:.2f} M parameters), "
          f"{len(samples)} samples, batch {args.batch}, best of {args.epochs} epochs")  # fmt: skip
    print(f"{'path':<8} {'s/epoch':>9}")
    print(f"{'full':<8} {f:>9.2f}")
    print(f"{'cached':<8} {c:>9.2f}   ({f / c:.1f}x faster per epoch; cache built once in {build:.2f} s, "
          f"{cache.nbytes() / 2**20:.1f} MiB)")  # fmt: skip
    print(f"same loss on the same batch: full {loss_full:.6f}, cached {loss_cached:.6f}")
    epochs_even = build / max(f - c, 1e-9)
    print(f"the cache pays for itself after {epochs_even:.2f} epochs")
    return 0


def table(args: argparse.Namespace) -> int:
    from roadanomaly.report import format_table
    from roadanomaly.training.anomaly_head_config import AnomalyHeadTrainConfig
    from roadanomaly.training.anomaly_head_demo import (
        POST_HOC_METHODS,
        SYNTHROADS_RECIPE,
        run_head_demo,
    )

    overrides = {"epochs": args.epochs, "copies": args.copies, "max_images": args.max_images}
    config = AnomalyHeadTrainConfig.from_yaml(args.config or SYNTHROADS_RECIPE, **overrides)
    start = time.perf_counter()
    results = run_head_demo(args.base, args.synthroads, args.workdir, args.size, config, args.retrain,
                            progress=False)  # fmt: skip
    print(f"machine: {machine()}   wall time {time.perf_counter() - start:.0f} s")
    print(format_table(results))
    by = {(r.dataset, r.method): r for r in results}
    ok = True
    for dataset in dict.fromkeys(r.dataset for r in results):
        best = max(POST_HOC_METHODS, key=lambda m: by[dataset, m].auprc)
        lowest = min(POST_HOC_METHODS, key=lambda m: by[dataset, m].fpr95)
        for head in ("anomaly", "anomaly_norm"):
            h, p, low, rba = by[dataset, head], by[dataset, best], by[dataset, lowest], by[dataset, "rba_oe"]
            margin = 100 * (h.auprc - p.auprc)
            checks = {
                f"AuPRC {margin:+.1f} pts over {best} (>= +10)": margin >= 10,
                f"FPR95 {100 * h.fpr95:.1f} < {lowest} {100 * low.fpr95:.1f}": h.fpr95 < low.fpr95,
                f"AuPRC {100 * h.auprc:.1f} >= rba_oe {100 * rba.auprc:.1f}": h.auprc >= rba.auprc,
            }
            verdict = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in checks.items())
            print(f"{dataset} {head}: {verdict}")
            ok &= head != "anomaly" or all(checks.values())
    if args.json:
        Path(args.json).write_text(json.dumps([r.to_dict() for r in results], indent=1))
    print("all checks pass for 'anomaly'" if ok else "some checks fail for 'anomaly'")
    return 0


def oracle(args: argparse.Namespace) -> int:
    import numpy as np
    import torch.nn.functional as F
    from PIL import Image

    from roadanomaly.data.bundle import discover_bundles
    from roadanomaly.inference.eomt import windows
    from roadanomaly.metrics import AnomalyMetric
    from roadanomaly.models.eomt_checkpoints import load_eomt

    height, width = (int(v) for v in args.size.split("x"))
    model = load_eomt(args.base).eval()
    crop = min(model.config.img_size)
    if min(height, width) != crop:
        raise SystemExit(f"--size {args.size}: the shorter side must be the model's crop size {crop}")
    for bundle in discover_bundles(Path(args.synthroads) / "bundle"):
        metrics = {"soft": AnomalyMetric(), "hard": AnomalyMetric()}
        for sample in (bundle[i] for i in range(len(bundle))):
            image = np.asarray(Image.fromarray(sample.image).resize((width, height), Image.BILINEAR))
            labels = np.asarray(Image.fromarray(sample.label).resize((width, height), Image.NEAREST))
            x = torch.from_numpy(image.copy()).permute(2, 0, 1).float()[None]
            maps = {k: torch.zeros(height, width) for k in metrics}
            count = torch.zeros(height, width)
            for top, left, bottom, right in windows((height, width), crop):
                with torch.no_grad():
                    logits = model.forward_all(x[..., top:bottom, left:right]).mask_logits[-1]
                masks = F.interpolate(logits, (crop, crop), mode="bilinear", align_corners=False).sigmoid()[0]
                on = torch.from_numpy(labels[top:bottom, left:right] == 1).float()
                share = (masks * on).sum((1, 2)) / masks.sum((1, 2)).clamp_min(1e-6)
                for name, weight in (("soft", share), ("hard", (share > 0.5).float())):
                    maps[name][top:bottom, left:right] += torch.einsum("qhw,q->hw", masks, weight)
                count[top:bottom, left:right] += 1
            for name, metric in metrics.items():
                metric.update(maps[name] / count, labels)
        for name, metric in metrics.items():
            r = metric.compute()
            print(f"{bundle.name:14s} {name}-oracle  AuPRC {100 * r['auprc']:6.2f}  FPR95 {100 * r['fpr95']:6.2f}")
    return 0


def errors(args: argparse.Namespace) -> int:
    import numpy as np
    from scipy import ndimage

    from roadanomaly.data.bundle import discover_bundles
    from roadanomaly.data.cityscapes import CityscapesDataset
    from roadanomaly.labels import ANOMALY, INLIER, VOID
    from roadanomaly.protocol import EvalProtocol
    from roadanomaly.scoring import compute_scores
    from roadanomaly.training.anomaly_head_demo import eomt_with_heads

    predictor = eomt_with_heads(args.base, args.head)
    protocol = EvalProtocol(size=args.size)

    def score(image: np.ndarray) -> np.ndarray:
        outputs = predictor(torch.from_numpy(image.copy()).permute(2, 0, 1)[None])
        return compute_scores(outputs, [args.method])[args.method][0].numpy()

    def inlier_scores(split: str) -> np.ndarray:
        source = CityscapesDataset(Path(args.synthroads) / "cityscapes", split)
        kept = []
        for i in range(min(args.images, len(source))):
            image, train_ids = protocol.prepare(source[i].image, source[i].train_ids)
            kept.append(score(image)[train_ids != VOID])
        return np.concatenate(kept)

    inliers = {split: inlier_scores(split) for split in ("train", "val")}
    for bundle in discover_bundles(Path(args.synthroads) / "bundle"):
        frames = []
        for i in range(len(bundle)):
            image, label = protocol.prepare(bundle[i].image, bundle[i].label)
            frames.append((label, score(image), ndimage.distance_transform_edt(label != ANOMALY)))
        anomalous = np.concatenate([s[label == ANOMALY] for label, s, _ in frames])
        print(f"{bundle.name} ({args.method})")
        for recall in (0.3, 0.5, 0.7, 0.95):
            threshold = np.quantile(anomalous, 1 - recall)
            hits = sum(int(((label == ANOMALY) & (s >= threshold)).sum()) for label, s, _ in frames)
            far = [d[(label == INLIER) & (s >= threshold)] for label, s, d in frames]
            false = sum(len(f) for f in far)
            far_share = float(np.mean(np.concatenate(far) > 16)) if false else 0.0
            rates = "  ".join(f"{k} {100 * np.mean(v >= threshold):.2f} %" for k, v in inliers.items())
            print(f"  recall {recall:.2f}: precision {100 * hits / max(1, hits + false):5.1f} %, {false} false "
                  f"positives, {100 * far_share:4.1f} % of them > 16 px from an anomaly; inliers over it: {rates}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--base", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--images", type=int, default=32)
    s.add_argument("--copies", type=int, default=2)
    s.add_argument("--batch", type=int, default=16)
    s.add_argument("--epochs", type=int, default=2)
    t = sub.add_parser("table")
    t.add_argument("--base", required=True)
    t.add_argument("--synthroads", required=True)
    t.add_argument("--workdir", required=True)
    t.add_argument("--size", default="128x256")
    t.add_argument("--config")
    t.add_argument("--epochs", type=int)
    t.add_argument("--copies", type=int)
    t.add_argument("--max-images", type=int)
    t.add_argument("--retrain", action="store_true")
    t.add_argument("--json")
    o = sub.add_parser("oracle")
    o.add_argument("--base", required=True)
    o.add_argument("--synthroads", required=True)
    o.add_argument("--size", default="128x256")
    e = sub.add_parser("errors")
    e.add_argument("--base", required=True)
    e.add_argument("--head", required=True)
    e.add_argument("--synthroads", required=True)
    e.add_argument("--method", default="anomaly")
    e.add_argument("--size", default="128x256")
    e.add_argument("--images", type=int, default=40, help="train and val images for the inlier rates")
    args = parser.parse_args(argv)
    return {"speed": speed, "table": table, "oracle": oracle, "errors": errors}[args.what](args)


if __name__ == "__main__":
    raise SystemExit(main())
