"""ERFNet on CPU: plain eager PyTorch against the faster paths, side by side, outputs compared with eager.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_erfnet_cpu.py [--height 512 --width 1024] [--batch 1]
        [--repeats 15] [--warmup 2] [--threads N] [--weights erfnet.pth]

Paths (the network alone, on a float batch already in [0, 1]):
  eager             plain eager PyTorch as the reference ERFNet code runs it, every layer NCHW: ``model.eval()``
                    under ``torch.no_grad()`` (the baseline)
  shipped           our ERFNet module as shipped (its final transposed convolution on channels-last input)
  inference-mode    the same under ``torch.inference_mode()``
  folded-bn         batch norms folded into the convolutions (``fuse_erfnet(model, channels_last=False)``)
  folded-bn+cl      folded batch norms and channels-last memory (``fuse_erfnet(model)``)
  onnxruntime       the model exported by ``roadanomaly export`` run by onnxruntime (CPU provider, same threads)
All paths are timed round-robin (eager, inference-mode, ..., eager, ...), so that the load of a shared machine
hits them alike; each reports the median and 90th percentile latency, images/s and its speed relative to eager,
and its largest absolute output difference from eager. Without --weights the model has random weights with
non-trivial batch-norm statistics (as a trained model has).
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from roadanomaly.benchmarking import machine, measure_interleaved
from roadanomaly.models.erfnet import ERFNet
from roadanomaly.models.erfnet_fused import fuse_erfnet

TARGET_SPEEDUP = 2.0
TOLERANCE = 1e-4


def random_erfnet(seed: int = 0) -> ERFNet:
    torch.manual_seed(seed)
    model = ERFNet(20)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


class _NCHWDecoder(nn.Module):
    """The decoder as the reference code computes it: every layer, the final transposed convolution too, NCHW."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.inner = decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.inner.layers:
            x = layer(x)
        return self.inner.output_conv(x)


def reference_layout(model: ERFNet) -> ERFNet:
    """A copy of ``model`` running the reference ERFNet's NCHW decoder (same weights)."""
    plain = copy.deepcopy(model)
    plain.decoder = _NCHWDecoder(plain.decoder)
    return plain


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per path (default 15)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per path first (default 2)")
    parser.add_argument("--threads", type=int, help="threads for torch and onnxruntime (default: torch's)")
    parser.add_argument("--weights", type=Path, help="an ERFNet checkpoint (default: random weights)")
    parser.add_argument("--no-onnx", action="store_true", help="skip the onnxruntime path")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.weights is not None:
        from roadanomaly.models.erfnet_checkpoints import load_erfnet

        model = load_erfnet(args.weights)
    else:
        model = random_erfnet()
    x = torch.rand(args.batch, 3, args.height, args.width, generator=torch.Generator().manual_seed(1))

    def no_grad(net):
        def run():
            with torch.no_grad():
                return net(x)

        return run

    def inference(net):
        def run():
            with torch.inference_mode():
                return net(x)

        return run

    paths = {
        "eager": no_grad(reference_layout(model)),
        "shipped": no_grad(model),
        "inference-mode": inference(model),
        "folded-bn": inference(fuse_erfnet(model, channels_last=False)),
        "folded-bn+cl": inference(fuse_erfnet(model)),
    }
    scratch = tempfile.TemporaryDirectory(prefix="bench-erfnet-")
    if not args.no_onnx:
        from roadanomaly.export import export_onnx
        from roadanomaly.inference.backends import OnnxERFNet

        start = time.perf_counter()
        path = export_onnx(model, Path(scratch.name) / "erfnet.onnx")
        print(f"(ONNX export took {time.perf_counter() - start:.0f} s, not timed below)", file=sys.stderr)
        paths["onnxruntime"] = inference(OnnxERFNet(path))

    host = machine("cpu")
    print(f"ERFNet ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters), input "
          f"{args.batch}x3x{args.height}x{args.width}, CPU; {host.describe()}")  # fmt: skip
    print(f"{args.repeats} timed calls per path, interleaved round-robin, after {args.warmup} warm-up calls each",
          flush=True)  # fmt: skip
    reference = paths["eager"]()
    diffs = {name: float((run() - reference).abs().max()) for name, run in paths.items()}
    results = measure_interleaved(paths, args.batch, args.repeats, args.warmup, "cpu", memory=True)
    base = results["eager"].images_per_s
    print(f"{'path':<16} {'images/s':>9} {'median ms':>10} {'p90 ms':>9} {'peak MiB':>9} {'vs eager':>9} "
          f"{'max|diff|':>10}")  # fmt: skip
    for name, m in results.items():
        peak = "-" if m.peak_mib is None else f"{m.peak_mib:.0f}"
        print(f"{name:<16} {m.images_per_s:>9.3f} {m.median_ms:>10.1f} {m.p90_ms:>9.1f} {peak:>9} "
              f"{m.images_per_s / base:>8.2f}x {diffs[name]:>10.2e}")  # fmt: skip
    best = max((n for n in results if n != "eager"), key=lambda n: results[n].images_per_s)
    speedup = results[best].images_per_s / base
    print(f"load average after: {' '.join(f'{v:.2f}' for v in machine('cpu').load_average)}")
    print()
    ok_speed = speedup >= TARGET_SPEEDUP
    ok_diff = all(d <= TOLERANCE for d in diffs.values())
    print(f"{'PASS' if ok_speed else 'FAIL'}  fastest path {best}: x{speedup:.2f} the images/s of eager "
          f"(target >= x{TARGET_SPEEDUP:g})")  # fmt: skip
    print(f"{'PASS' if ok_diff else 'FAIL'}  every path within {TOLERANCE:g} of eager "
          f"(largest {max(diffs.values()):.2e})")  # fmt: skip
    scratch.cleanup()
    return 0 if ok_speed and ok_diff else 1


if __name__ == "__main__":
    raise SystemExit(main())
