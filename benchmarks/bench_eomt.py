"""EoMT forward-pass throughput: eager float32 against faster paths, measured side by side in one run.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_eomt.py [--size S] [--height 512 --width 1024]
        [--device cpu|cuda] [--iters N] [--batch 1] [--no-compile]

The model (random weights, trained state: masked attention annealed away) is built for an input of exactly
H x W, so no position resampling is timed. Each path runs the full forward and the per-pixel class scores
P_c = sum_q softmax(class_q)[c] * sigmoid(mask_q) at 1/4 resolution (what semantic inference needs per window).
Paths: ``eager-fp32`` (torch.no_grad), ``inference-fp32`` (torch.inference_mode), ``tf32`` (CUDA), ``bf16`` /
``fp16`` autocast (bf16 on CPUs with AVX512-BF16/AMX), and ``compile`` variants (torch.compile, inductor). Each
path's outputs are compared with eager (max abs diff of mask logits and of class scores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import contextmanager, nullcontext
from typing import Callable

# Inductor's on-disk caches keyed an fp16-autocast graph like the bf16 one (torch 2.11, CUDA) and served the bf16
# kernels to the fp16 path; every compiled path here is compiled afresh.
os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "0")
os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "0")

import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from roadanomaly.models.eomt import EoMT, EoMTConfig  # noqa: E402

Outputs = tuple[Tensor, Tensor]


def class_scores(mask_logits: Tensor, class_logits: Tensor) -> Tensor:
    return torch.einsum("bqhw,bqc->bchw", mask_logits.sigmoid(), class_logits.softmax(-1)[..., :-1])


def forward_fn(model: EoMT, dtype: torch.dtype | None) -> Callable[[Tensor], Outputs]:
    """Images -> (final mask logits, class scores), autocast inside so that torch.compile traces it."""

    def forward(x: Tensor) -> Outputs:
        with torch.autocast(x.device.type, dtype=dtype) if dtype is not None else nullcontext():
            out = model.forward_all(x)
        mask_logits, class_logits = out.mask_logits[-1].float(), out.class_logits[-1].float()
        return mask_logits, class_scores(mask_logits, class_logits)

    return forward


@contextmanager
def tf32(enabled: bool):
    """TensorFloat-32 matrix products on CUDA for the duration (the other paths keep true float32)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def make_path(model: EoMT, dtype: torch.dtype | None, compiled: bool, inference: bool, use_tf32: bool) -> Callable:
    fn = forward_fn(model, dtype)
    if compiled:
        fn = torch.compile(fn)
    grad = torch.inference_mode if inference else torch.no_grad

    def run(x: Tensor) -> Outputs:
        with grad(), tf32(use_tf32):
            return fn(x)

    return run


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(run: Callable, x: Tensor, device: str) -> tuple[float, Outputs]:
    sync(device)
    start = time.perf_counter()
    out = run(x)
    sync(device)
    return time.perf_counter() - start, out


def cpu_has_bf16() -> bool:
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="S", choices=("S", "B", "L"))
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--iters", type=int, default=None, help="timed calls per path (default 3 on CPU, 20 on CUDA)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls per path (default 1 CPU, 3 CUDA)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile paths")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    args = parser.parse_args(argv)

    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    iters = args.iters or (20 if device == "cuda" else 3)
    warmup = args.warmup or (3 if device == "cuda" else 1)
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # the eager baseline is true float32
        torch.backends.cudnn.allow_tf32 = False

    torch.manual_seed(0)
    config = EoMTConfig.preset(args.size, img_size=(args.height, args.width))
    model = EoMT(config).to(device).eval()
    with torch.no_grad():
        model.attn_mask_probs.zero_()  # trained state
        for name, p in model.named_parameters():  # make the blocks matter as trained ones do
            if name.endswith("gamma"):
                p.fill_(0.1)
    x = torch.randint(0, 256, (args.batch, 3, args.height, args.width), generator=torch.Generator().manual_seed(1))
    x = x.float().to(device)

    # (name, autocast dtype, torch.compile, inference_mode, TF32)
    paths: list[tuple[str, torch.dtype | None, bool, bool, bool]] = [("eager-fp32", None, False, False, False)]
    paths.append(("inference-fp32", None, False, True, False))
    if device == "cuda":
        paths.append(("inference-tf32", None, False, True, True))
    low = [("bf16", torch.bfloat16)] if device == "cpu" else [("bf16", torch.bfloat16), ("fp16", torch.float16)]
    if device == "cpu" and not cpu_has_bf16():
        low = []
    paths += [(f"inference-{name}", dtype, False, True, False) for name, dtype in low]
    if not args.no_compile:
        paths.append(("compile-fp32", None, True, True, False))
        paths += [(f"compile-{name}", dtype, True, True, False) for name, dtype in low]

    threads = torch.get_num_threads()
    print(
        f"EoMT-{args.size} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters), input "
        f"{args.batch}x3x{args.height}x{args.width}, device {device}"
        + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else f" ({threads} threads)")
        + f", torch {torch.__version__}, median of {iters} interleaved timed calls per path after {warmup} warm-up"
    )
    runs: dict[str, Callable] = {}
    outputs: dict[str, Outputs] = {}
    for name, dtype, compiled, inference, use_tf32 in paths:  # warm-up (and compilation) first
        try:
            run = make_path(model, dtype, compiled, inference, use_tf32)
            for _ in range(warmup):
                outputs[name] = run(x)
            runs[name] = run
        except Exception as error:  # noqa: BLE001 - a path that cannot run here is reported, not fatal
            print(f"  {name:16s} failed: {type(error).__name__}: {str(error).strip().splitlines()[0][:160]}")
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(iters):  # interleaved, so that a change in machine load hits every path alike
        for name, run in runs.items():
            seconds, outputs[name] = timed(run, x, device)
            times[name].append(seconds)
    results = {name: statistics.median(t) for name, t in times.items()}
    base_masks, base_scores = outputs["eager-fp32"]
    for name, seconds in results.items():
        masks, scores = outputs[name]
        mask_diff, score_diff = float((masks - base_masks).abs().max()), float((scores - base_scores).abs().max())
        print(
            f"  {name:16s} {args.batch / seconds:8.3f} images/s  {seconds * 1000:9.1f} ms/call  "
            f"x{results['eager-fp32'] / seconds:5.2f} vs eager   max|diff| mask logits {mask_diff:.2e}, "
            f"class scores {score_diff:.2e}"
        )
    base = results["eager-fp32"]
    best = min(results, key=results.__getitem__)
    print(
        f"eager fp32: {args.batch / base:.3f} images/s; fastest: {best} {args.batch / results[best]:.3f} images/s "
        f"(x{base / results[best]:.2f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
