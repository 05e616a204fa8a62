"""Measure inference speed: interleaved timed calls, latency percentiles, peak memory, and the machine.

Several configurations are timed round-robin (A B C A B C ...), so that a change in the load of a shared machine
hits all of them alike; each call's latency is kept, and a configuration reports its median and 90th percentile,
images per second (batch / median latency) and the peak memory a call added, over the warm-up and timed calls
(CPU: the process's peak resident set size, reset before each call after handing freed heap memory back to the
system; CUDA: ``torch.cuda.max_memory_allocated``). The first call usually shows the most: caches and arenas
(onnxruntime's, the CUDA allocator's) are filled then and reused later.
"""

from __future__ import annotations

import ctypes
import gc
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch

MIB = 2**20


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between order statistics (numpy's default)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Measurement:
    """Latencies (seconds) of the timed calls of one configuration, its batch size and peak memory (MiB)."""

    seconds: list[float]
    batch: int
    peak_mib: float | None = None

    @property
    def median_ms(self) -> float:
        return 1000 * statistics.median(self.seconds)

    @property
    def p90_ms(self) -> float:
        return 1000 * percentile(self.seconds, 90)

    @property
    def images_per_s(self) -> float:
        return self.batch / statistics.median(self.seconds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "images_per_s": self.images_per_s,
            "latency_median_ms": self.median_ms,
            "latency_p90_ms": self.p90_ms,
            "peak_memory_mib": self.peak_mib,
            "batch": self.batch,
            "repeats": len(self.seconds),
            "latencies_ms": [1000 * s for s in self.seconds],
        }


def _status_kib(name: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakMemory:
    """Peak memory added inside a ``with`` block: CUDA allocator peak on CUDA, peak RSS (Linux) on CPU.

    ``mib`` is None where it cannot be measured (CPU peak RSS needs ``/proc/self/clear_refs``).
    """

    def __init__(self, device: str) -> None:
        self.cuda = str(device).startswith("cuda")
        self.mib: float | None = None

    def __enter__(self) -> "PeakMemory":
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
            return self
        self.start = None
        gc.collect()
        try:  # return freed heap memory to the system, so that using it again shows as an increase
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
            self.start = _status_kib("VmRSS")
        except OSError:
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            self.mib = (torch.cuda.max_memory_allocated() - self.start) / MIB
        elif self.start is not None:
            peak = _status_kib("VmHWM")
            self.mib = None if peak is None else max(peak - self.start, 0) / 1024


def synchronize(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def measure_interleaved(
    calls: dict[str, Callable[[], Any]],
    batch: int | dict[str, int],
    repeats: int = 10,
    warmup: int = 2,
    device: str = "cpu",
    memory: bool = True,
) -> dict[str, Measurement]:
    """Time every call ``repeats`` times, round-robin, after ``warmup`` untimed rounds.

    ``batch`` (per call name, or one for all) is the number of images a call processes.
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    batches = batch if isinstance(batch, dict) else {name: batch for name in calls}
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    peaks: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(warmup):
        for name, call in calls.items():
            with PeakMemory(device) if memory else _NoMemory() as mem:
                call()
                synchronize(device)
            if mem.mib is not None:
                peaks[name].append(mem.mib)
    for _ in range(repeats):
        for name, call in calls.items():
            with PeakMemory(device) if memory else _NoMemory() as mem:
                synchronize(device)
                start = time.perf_counter()
                call()
                synchronize(device)
                seconds[name].append(time.perf_counter() - start)
            if mem.mib is not None:
                peaks[name].append(mem.mib)
    return {
        name: Measurement(seconds[name], batches[name], max(peaks[name]) if peaks[name] else None) for name in calls
    }


class _NoMemory:
    mib = None

    def __enter__(self) -> "_NoMemory":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@dataclass
class Machine:
    """What the figures were measured on."""

    cpu: str
    cores: int
    torch_threads: int
    torch: str
    python: str
    gpu: str | None = None
    onnxruntime: str | None = None
    load_average: list[float] = field(default_factory=list)

    def describe(self) -> str:
        parts = [f"{self.cpu}, {self.cores} cores, torch {self.torch} ({self.torch_threads} threads)"]
        if self.gpu:
            parts.append(f"GPU {self.gpu}")
        if self.onnxruntime:
            parts.append(f"onnxruntime {self.onnxruntime}")
        parts.append(f"Python {self.python}")
        if self.load_average:
            parts.append("load average " + " ".join(f"{x:.2f}" for x in self.load_average))
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: str = "cpu") -> Machine:
    """The machine as it is now (CPU model, cores, threads, versions, GPU for a CUDA device, load average)."""
    try:
        import onnxruntime

        ort_version: str | None = onnxruntime.__version__
    except ImportError:
        ort_version = None
    gpu = torch.cuda.get_device_name(torch.device(device)) if str(device).startswith("cuda") else None
    load = list(os.getloadavg()) if hasattr(os, "getloadavg") else []
    return Machine(_cpu_name(), os.cpu_count() or 1, torch.get_num_threads(), torch.__version__,
                   platform.python_version(), gpu, ort_version, load)  # fmt: skip
