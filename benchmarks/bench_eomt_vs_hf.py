"""EoMT on CPU: roadanomaly's model against Hugging Face transformers' EomtForUniversalSegmentation, same weights.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_eomt_vs_hf.py [--size S] [--img 512] [--batch 1]
        [--repeats 10] [--warmup 2] [--threads N] [--onnx]

One random EoMT (trained state: masked attention annealed away, LayerScale 0.1 so that every block matters) is
written as a Hugging Face folder by ``save_eomt(..., "hf")`` and read back by transformers'
``EomtForUniversalSegmentation.from_pretrained``: the same configuration and weights on both sides, input
``img x img`` (the model's size, which transformers requires). Timed round-robin under ``torch.inference_mode``:
  transformers   ``model(pixel_values=...)`` on input already normalised (normalisation not timed)
  roadanomaly    ``EoMT.forward_all(images in 0..255)`` (normalisation inside, timed)
  onnxruntime    (with --onnx) the ``roadanomaly export`` graph of the same model
Final mask and class logits are compared with transformers' (largest absolute difference). transformers is used
by this script only; the package never imports it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from roadanomaly.benchmarking import machine, measure_interleaved
from roadanomaly.models.eomt import IMAGENET_MEAN, IMAGENET_STD, EoMT, EoMTConfig
from roadanomaly.models.eomt_checkpoints import save_eomt

TOLERANCE = 1e-4


def random_eomt(size: str, img: int, seed: int = 0) -> EoMT:
    torch.manual_seed(seed)
    model = EoMT(EoMTConfig.preset(size, img_size=(img, img))).eval()
    with torch.no_grad():
        model.attn_mask_probs.zero_()
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.1)
            elif name.endswith(("cls_token", "reg_token")):
                p.normal_(0, 0.5)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="S", choices=("S", "B", "L"))
    parser.add_argument("--img", type=int, default=512, help="square input side (default 512)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per path (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per path first (default 2)")
    parser.add_argument("--threads", type=int, help="torch (and onnxruntime) threads (default: torch's)")
    parser.add_argument("--onnx", action="store_true", help="also time the exported graph on onnxruntime")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import EomtForUniversalSegmentation

    ours = random_eomt(args.size, args.img)
    scratch = tempfile.TemporaryDirectory(prefix="bench-eomt-hf-")
    folder = save_eomt(ours, Path(scratch.name) / "hf", "hf")
    hf = EomtForUniversalSegmentation.from_pretrained(folder).eval()

    x = torch.rand(args.batch, 3, args.img, args.img, generator=torch.Generator().manual_seed(1)) * 255
    mean, std = (torch.tensor(v).reshape(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    pixel_values = (x / 255 - mean) / std

    def run_hf():
        with torch.inference_mode():
            out = hf(pixel_values=pixel_values)
        return out.masks_queries_logits, out.class_queries_logits

    def run_ours():
        with torch.inference_mode():
            out = ours.forward_all(x)
        return out.mask_logits[-1], out.class_logits[-1]

    paths = {"transformers": run_hf, "roadanomaly": run_ours}
    if args.onnx:
        from roadanomaly.export import export_onnx
        from roadanomaly.inference.backends import OnnxEoMT

        start = time.perf_counter()
        net = OnnxEoMT(export_onnx(ours, Path(scratch.name) / "eomt.onnx"))
        print(f"(ONNX export took {time.perf_counter() - start:.0f} s, not timed below)", file=sys.stderr)

        def run_onnx():
            out = net.forward_all(x)
            return out.mask_logits[-1], out.class_logits[-1]

        paths["onnxruntime"] = run_onnx

    host = machine("cpu")
    attn = getattr(hf.config, "_attn_implementation", "?")
    print(f"EoMT-{args.size} ({sum(p.numel() for p in ours.parameters()) / 1e6:.1f}M parameters), input "
          f"{args.batch}x3x{args.img}x{args.img}, CPU, transformers attention '{attn}'; {host.describe()}")  # fmt: skip
    print(f"{args.repeats} timed calls per path, interleaved round-robin, after {args.warmup} warm-up calls each",
          flush=True)  # fmt: skip
    masks_ref, classes_ref = run_hf()
    diffs = {}
    for name, run in paths.items():
        masks, classes = run()
        diffs[name] = (float((masks - masks_ref).abs().max()), float((classes - classes_ref).abs().max()))
    results = measure_interleaved(paths, args.batch, args.repeats, args.warmup, "cpu")
    base = results["transformers"].images_per_s
    print(f"{'path':<13} {'images/s':>9} {'median ms':>10} {'p90 ms':>9} {'peak MiB':>9} {'vs HF':>7} "
          f"{'max|diff| masks':>16} {'classes':>9}")  # fmt: skip
    for name, m in results.items():
        peak = "-" if m.peak_mib is None else f"{m.peak_mib:.0f}"
        print(f"{name:<13} {m.images_per_s:>9.3f} {m.median_ms:>10.1f} {m.p90_ms:>9.1f} {peak:>9} "
              f"{m.images_per_s / base:>6.2f}x {diffs[name][0]:>16.2e} {diffs[name][1]:>9.2e}")  # fmt: skip
    print(f"(largest |mask logit| {float(masks_ref.abs().max()):.3g}, |class logit| "
          f"{float(classes_ref.abs().max()):.3g}; load average after: "
          f"{' '.join(f'{v:.2f}' for v in machine('cpu').load_average)})")  # fmt: skip
    print()
    ratio = results["roadanomaly"].images_per_s / base
    worst = max(max(d) for d in diffs.values())
    ok_speed, ok_diff = ratio >= 1.0, worst <= TOLERANCE
    print(f"{'PASS' if ok_speed else 'FAIL'}  roadanomaly eager: x{ratio:.2f} the images/s of transformers "
          "(target >= x1)")  # fmt: skip
    print(f"{'PASS' if ok_diff else 'FAIL'}  outputs within {TOLERANCE:g} of transformers (largest {worst:.2e})")
    scratch.cleanup()
    return 0 if ok_speed and ok_diff else 1


if __name__ == "__main__":
    raise SystemExit(main())
