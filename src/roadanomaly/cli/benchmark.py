"""``roadanomaly benchmark``: images/s, latency (median, p90) and peak memory of a model on a backend and device."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from roadanomaly.benchmarking import Machine, Measurement, machine, measure_interleaved
from roadanomaly.errors import UserError
from roadanomaly.inference.backends import BACKENDS
from roadanomaly.protocol import parse_size

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
DESCRIPTION = """\
Time a model's inference on random images: every configuration (each --backend x --precision x --batch) is
built once, warmed up, then timed round-robin (A B C A B C ...) so that load on a shared machine hits all of them
alike. Reported per configuration: images/s (batch / median latency), latency median and 90th percentile, and
the peak memory one call adds (CPU: peak resident set size; CUDA: allocator peak).

--scope predictor (default) times what `evaluate` runs per batch: uint8 images in, per-pixel outputs at the
image's size out (ERFNet: padding to a multiple of 8; EoMT: resizing, sliding windows, per-pixel class and query
maps). --scope network times the network alone on prepared float input (EoMT: a batch of crops).
Without --weights the model has random weights (EoMT: --size S/B/L, built for the crop size)."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "benchmark",
        help="measure images/s, latency and peak memory of a model (backend, precision, batch, device)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default="erfnet", choices=("erfnet", "eomt"), help="model kind (default erfnet)")
    parser.add_argument("--weights", type=Path, help="checkpoint or exported .onnx file (default: random weights)")
    parser.add_argument("--size", default="S", choices=("S", "B", "L"), help="EoMT size without --weights (default S)")
    parser.add_argument("--resolution", default="512x1024", help="image size HxW (default 512x1024)")
    parser.add_argument("--batch", default="1", help="images per call; a comma-separated list compares several")
    parser.add_argument("--backend", default="torch", help=f"{' or '.join(BACKENDS)}; a comma-separated list compares")
    parser.add_argument("--precision", default="fp32",
                        help="fp32, bf16 or fp16 (torch autocast; fp16 on CUDA only); a comma-separated list compares")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network (torch rows)")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="on CUDA: torch.compile with CUDA graphs, mode reduce-overhead (torch rows)")
    parser.add_argument("--fused", action="store_true",
                        help="ERFNet: batch norms folded into the convolutions, channels-last memory (torch rows)")
    parser.add_argument("--scope", default="predictor", choices=("predictor", "network"),
                        help="time the whole predictor (default) or the network alone")
    parser.add_argument("--crop-size", type=int, help="EoMT: window size (default: the model's input size, or 512)")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per configuration (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per configuration first (default 2)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch and onnxruntime (default: torch's)")
    parser.add_argument("--trust-pickle", action="store_true", help="allow full unpickling of a trusted checkpoint")
    parser.add_argument("--output", type=Path, help="also write the figures as JSON to this file")
    return parser


@dataclass(frozen=True)
class Case:
    """One configuration to time."""

    backend: str
    precision: str
    batch: int

    @property
    def name(self) -> str:
        return f"{self.backend}/{self.precision}/b{self.batch}"


def _list(text: str, what: str) -> list[str]:
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        raise UserError(None, f"--{what} is empty")
    return items


def _batches(text: str) -> list[int]:
    try:
        batches = [int(b) for b in _list(text, "batch")]
    except ValueError:
        raise UserError(None, f"--batch {text!r} is not a list of integers") from None
    if any(b < 1 for b in batches):
        raise UserError(None, "--batch must be at least 1")
    return batches


def cases_from(args: argparse.Namespace) -> list[Case]:
    """Every (backend, precision, batch) asked for, after checking that each applies here."""
    backends, precisions = _list(args.backend, "backend"), _list(args.precision, "precision")
    cuda = args.device.startswith("cuda")
    for b in backends:
        if b not in BACKENDS:
            raise UserError(None, f"unknown backend {b!r} (use {' or '.join(BACKENDS)})")
    for p in precisions:
        if p not in PRECISIONS:
            raise UserError(None, f"unknown precision {p!r} (use {', '.join(PRECISIONS)})")
        if p == "fp16" and not cuda:
            raise UserError(None, "--precision fp16 needs --device cuda (on CPU use bf16)")
    if cuda and not torch.cuda.is_available():
        raise UserError(None, f"--device {args.device} asked for, but no CUDA device is available")
    if args.cuda_graphs and not cuda:
        raise UserError(None, "--cuda-graphs needs --device cuda")
    if args.fused and args.model != "erfnet":
        raise UserError(None, "--fused applies to --model erfnet only")
    if args.crop_size is not None and args.model != "eomt":
        raise UserError(None, "--crop-size applies to --model eomt only")
    if args.repeats < 1 or args.warmup < 0:
        raise UserError(None, "--repeats must be at least 1 and --warmup at least 0")
    cases = []
    for backend, precision, batch in itertools.product(backends, precisions, _batches(args.batch)):
        if backend == "onnxruntime" and precision != "fp32":
            raise UserError(None, f"--precision {precision} applies to the torch backend only")
        cases.append(Case(backend, precision, batch))
    if "torch" not in backends and (args.compile or args.cuda_graphs or args.fused):
        raise UserError(None, "--compile, --cuda-graphs and --fused apply to the torch backend only")
    return cases


def resolution(text: str) -> tuple[int, int]:
    """``HxW`` -> (H, W); anything else is a UserError."""
    try:
        size = parse_size(text)
    except ValueError:
        size = None
    if not isinstance(size, tuple):
        raise UserError(None, f"--resolution needs HxW such as 512x1024, got {text!r}")
    return size


class Autocast(nn.Module):
    """Runs an ERFNet-like network under autocast and returns float32 logits; keeps ``num_classes`` etc."""

    def __init__(self, net: nn.Module, device_type: str, dtype: torch.dtype) -> None:
        super().__init__()
        self.net, self.device_type, self.dtype = net, device_type, dtype
        self.num_classes, self.void_channel = net.num_classes, net.void_channel

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(self.device_type, dtype=self.dtype):
            return self.net(x).float()


class Builder:
    """Builds, once per backend, the network and the predictor around it for a benchmark run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = args.device
        self.resolution = resolution(args.resolution)
        self._torch_model: nn.Module | None = None
        self._onnx_path: Path | None = None
        self.crop: int | None = None

    def torch_model(self) -> nn.Module:
        """The PyTorch model (loaded or random), once."""
        if self._torch_model is None:
            self._torch_model = self._load_torch_model()
        return self._torch_model

    def _load_torch_model(self) -> nn.Module:
        args = self.args
        if args.weights is not None and args.weights.suffix == ".onnx":
            raise UserError(args.weights, "an .onnx file runs on --backend onnxruntime only")
        if args.model == "erfnet":
            from roadanomaly.models.erfnet import ERFNet
            from roadanomaly.models.erfnet_checkpoints import load_erfnet

            if args.weights is not None:
                return load_erfnet(args.weights, trust_pickle=args.trust_pickle)
            torch.manual_seed(0)
            return ERFNet(20).eval()
        from roadanomaly.models.eomt import EoMT, EoMTConfig
        from roadanomaly.models.eomt_checkpoints import load_trained_eomt

        if args.weights is not None:
            return load_trained_eomt(args.weights, trust_pickle=args.trust_pickle)[0]
        crop = args.crop_size or 512
        torch.manual_seed(0)
        model = EoMT(EoMTConfig.preset(args.size, img_size=(crop, crop))).eval()
        model.attn_mask_probs.zero_()  # the trained state: masked attention annealed away
        return model

    def network(self, backend: str) -> nn.Module:
        """The network on ``backend`` (an onnxruntime drop-in or the PyTorch model)."""
        if backend == "torch":
            model = self.torch_model()
            if self.args.fused:
                from roadanomaly.models.erfnet_fused import fuse_erfnet

                model = fuse_erfnet(model)  # type: ignore[arg-type]
            return model.to(self.device).eval()
        from roadanomaly.inference.backends import OnnxEoMT, OnnxERFNet, onnx_file

        if self._onnx_path is None:
            weights = self.args.weights
            if weights is not None and weights.suffix == ".onnx":
                self._onnx_path = onnx_file(weights)
            else:
                print("exporting the model to ONNX ...", file=sys.stderr, flush=True)
                self._onnx_path = onnx_file(weights or Path("random.pt"), self.torch_model())
        kind = OnnxERFNet if self.args.model == "erfnet" else OnnxEoMT
        return kind(self._onnx_path, self.device)

    def calls(self, cases: list[Case]) -> dict[str, Callable[[], Any]]:
        """One zero-argument callable per case (networks built once per backend and precision)."""
        nets: dict[tuple[str, str], Callable[[Tensor], Any]] = {}
        generator = torch.Generator().manual_seed(0)
        calls = {}
        for case in cases:
            key = (case.backend, case.precision)
            if key not in nets:
                nets[key] = self._runner(case.backend, case.precision)
            images = torch.randint(0, 256, (case.batch, 3, *self.resolution), generator=generator, dtype=torch.uint8)
            calls[case.name] = _bind(nets[key], self._input(images))
        return calls

    def _input(self, images: Tensor) -> Tensor:
        """What a call takes: the uint8 images (predictor scope) or the network's float input (network scope)."""
        if self.args.scope == "predictor":
            return images
        x = images.to(self.device).float()
        if self.args.model == "erfnet":
            h, w = x.shape[-2:]
            return torch.nn.functional.pad(x / 255, (0, (-w) % 8, 0, (-h) % 8))
        crop = self.crop or min(self.resolution)
        return torch.nn.functional.interpolate(x, size=(crop, crop), mode="bilinear", align_corners=False)

    def _runner(self, backend: str, precision: str) -> Callable[[Tensor], Any]:
        args, dtype = self.args, PRECISIONS[precision]
        net = self.network(backend)
        device_type = torch.device(self.device).type
        compile_mode = "reduce-overhead" if args.cuda_graphs else ("default" if args.compile else None)
        if args.model == "erfnet":
            from roadanomaly.inference.erfnet import ERFNetPredictor

            if dtype is not None:
                net = Autocast(net, device_type, dtype)
            if compile_mode:
                net = torch.compile(net, mode=compile_mode)  # type: ignore[assignment]
            if args.scope == "network":
                return _inference(net)
            return ERFNetPredictor(net, self.device)  # type: ignore[arg-type]
        from roadanomaly.inference.eomt import EoMTPredictor

        if compile_mode:
            net.forward_all = torch.compile(net.forward_all, mode=compile_mode)  # type: ignore[method-assign]
        autocast = precision if dtype else None
        predictor = EoMTPredictor(net, self.device, args.crop_size, autocast)  # type: ignore[arg-type]
        self.crop = predictor.crop
        if args.scope == "network":
            return _inference(lambda x: predictor._forward(x))
        return predictor


def _inference(fn: Callable[[Tensor], Any]) -> Callable[[Tensor], Any]:
    def run(x: Tensor) -> Any:
        with torch.inference_mode():
            return fn(x)

    return run


def _bind(fn: Callable[[Tensor], Any], x: Tensor) -> Callable[[], Any]:
    return lambda: fn(x)


def format_table(cases: list[Case], results: dict[str, Measurement]) -> str:
    """One row per case; the last column is images/s relative to the first row."""
    head = f"{'backend':<12} {'precision':<9} {'batch':>5} {'images/s':>9} {'median ms':>10} {'p90 ms':>9} " \
           f"{'peak MiB':>9} {'vs row 1':>8}"  # fmt: skip
    base = results[cases[0].name].images_per_s
    rows = [head]
    for case in cases:
        m = results[case.name]
        peak = "-" if m.peak_mib is None else f"{m.peak_mib:.0f}"
        rows.append(f"{case.backend:<12} {case.precision:<9} {case.batch:>5} {m.images_per_s:>9.3f} "
                    f"{m.median_ms:>10.1f} {m.p90_ms:>9.1f} {peak:>9} {m.images_per_s / base:>7.2f}x")  # fmt: skip
    return "\n".join(rows)


def document(args: argparse.Namespace, host: Machine, cases: list[Case], results: dict[str, Measurement]) -> dict:
    """The JSON document of a run: settings, machine and one entry per case."""
    settings = {
        "model": args.model,
        "weights": None if args.weights is None else str(args.weights),
        "size": args.size if args.model == "eomt" and args.weights is None else None,
        "resolution": list(resolution(args.resolution)),
        "device": args.device,
        "scope": args.scope,
        "compile": args.compile,
        "cuda_graphs": args.cuda_graphs,
        "fused": args.fused,
        "crop_size": args.crop_size,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "interleaved": True,
    }
    entries = [{**asdict(case), **results[case.name].to_dict()} for case in cases]
    return {"settings": settings, "machine": host.to_dict(), "results": entries}


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = cases_from(args)
    builder = Builder(args)
    calls = builder.calls(cases)
    host = machine(args.device)
    print(f"{args.model} {args.resolution} on {args.device}, scope {args.scope}; {host.describe()}")
    print(f"{args.repeats} timed calls per configuration, interleaved, after {args.warmup} warm-up calls", flush=True)
    results = measure_interleaved(calls, {c.name: c.batch for c in cases}, args.repeats, args.warmup, args.device)
    print(format_table(cases, results))
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(document(args, host, cases, results), indent=2) + "\n")
        print(f"figures written to {args.output}")
    return 0
