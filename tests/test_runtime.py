"""The allocator setting the command line applies, and the lazily zeroed histograms of the binned metrics."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from roadanomaly.metrics._binned import lazy_zeros
from roadanomaly.runtime import retain_freed_memory  # noqa: F401 - the subprocess imports it from here

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")


def _faults_of_fresh_block(size: int) -> int:
    """Minor page faults taken while writing every page of a newly allocated block of ``size`` bytes."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.empty(size, dtype=torch.uint8)
    block[::4096] = 1
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    del block
    return faults


def _faults_per_block(size: int, retain: bool, blocks: int = 8) -> list[int]:
    """In a fresh interpreter: page faults of each of ``blocks`` blocks allocated, written and freed in turn."""
    code = (
        "import test_runtime as t\n"
        f"assert t.retain_freed_memory() if {retain} else True\n"
        f"print(*[t._faults_of_fresh_block({size}) for _ in range({blocks})])\n"
    )
    path = [str(Path(__file__).parent), *sys.path]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(path)})
    return [int(v) for v in done.stdout.split()]


@linux_only
def test_large_blocks_reuse_the_pages_of_the_ones_freed_before_them():
    size = 48 << 20  # above glibc's largest default mapping threshold (32 MiB), below what the heap keeps free
    pages = size // 4096
    # by default each block is a fresh mapping whose every page faults in again
    assert min(_faults_per_block(size, retain=False)) > pages // 2
    # kept: once the heap has grown to hold it (in the first two or three rounds), the block reuses freed pages
    assert sum(_faults_per_block(size, retain=True)[-4:]) < pages // 64


def test_lazy_zeros_are_zero_writable_and_independent():
    a, b = lazy_zeros(1 << 20), lazy_zeros(1 << 20)
    assert a.dtype == torch.int64 and a.shape == (1 << 20,) and int(a.abs().sum()) == 0
    a[12345] += 7
    assert int(a[12345]) == 7 and int(b.abs().sum()) == 0
    assert lazy_zeros(0).numel() == 0
    copy = a.clone()
    del a
    assert int(copy.sum()) == 7

