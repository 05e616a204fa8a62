"""``roadanomaly benchmark`` and the measurement core: statistics, interleaving, memory, JSON, option checks."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest
import torch

from roadanomaly.benchmarking import Measurement, PeakMemory, machine, measure_interleaved, percentile
from roadanomaly.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_percentile_matches_numpy():
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 10, 37):
        values = rng.random(n).tolist()
        for q in (0, 10, 50, 90, 100):
            assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), abs=1e-12)
    with pytest.raises(ValueError):
        percentile([], 50)


def test_measurement_figures():
    m = Measurement([0.4, 0.1, 0.3, 0.2], batch=2, peak_mib=12.0)
    assert m.median_ms == pytest.approx(250.0)
    assert m.p90_ms == pytest.approx(370.0)  # 0.3 + 0.7 * (0.4 - 0.3)
    assert m.images_per_s == pytest.approx(8.0)
    d = m.to_dict()
    assert d["latencies_ms"] == pytest.approx([400.0, 100.0, 300.0, 200.0])
    assert (d["repeats"], d["batch"], d["peak_memory_mib"]) == (4, 2, 12.0)


def test_calls_are_interleaved_after_warmup():
    order: list[str] = []
    calls = {name: (lambda name=name: order.append(name)) for name in ("a", "b", "c")}
    results = measure_interleaved(calls, {"a": 1, "b": 2, "c": 4}, repeats=3, warmup=2, memory=False)
    assert order == ["a", "b", "c"] * 5
    assert [len(results[n].seconds) for n in "abc"] == [3, 3, 3]
    assert [results[n].batch for n in "abc"] == [1, 2, 4]
    assert all(results[n].peak_mib is None for n in "abc")
    with pytest.raises(ValueError):
        measure_interleaved(calls, 1, repeats=0)


def test_peak_memory_sees_a_large_allocation():
    with PeakMemory("cpu") as mem:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB, written
        del block
    if mem.mib is None:
        pytest.skip("no /proc/self/clear_refs here")
    assert mem.mib >= 60


def test_machine_description():
    host = machine("cpu")
    assert host.cores >= 1 and host.torch == torch.__version__ and host.gpu is None
    assert f"torch {torch.__version__} ({torch.get_num_threads()} threads)" in host.describe()


@pytest.mark.parametrize(
    "extra",
    [
        ["--model", "erfnet", "--fused", "--batch", "1,2", "--precision", "fp32,bf16"],
        ["--model", "eomt", "--crop-size", "32"],
        ["--model", "eomt", "--crop-size", "32", "--scope", "network", "--batch", "2"],
    ],
)
def test_benchmark_cli_table_and_json(tmp_path, capsys, extra):
    out = tmp_path / "bench.json"
    code = main(["benchmark", "--resolution", "32x64", "--repeats", "3", "--warmup", "1", "--output", str(out), *extra])
    assert code == 0
    printed = capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["settings"]["resolution"] == [32, 64] and doc["settings"]["interleaved"] is True
    assert doc["machine"]["cores"] >= 1
    table = printed.splitlines()
    assert table[2].split()[:3] == ["backend", "precision", "batch"]
    rows = table[3 : 3 + len(doc["results"])]
    for entry, row in zip(doc["results"], rows):
        assert len(entry["latencies_ms"]) == entry["repeats"] == 3
        median = statistics.median(entry["latencies_ms"])
        assert entry["latency_median_ms"] == pytest.approx(median)
        assert entry["images_per_s"] == pytest.approx(entry["batch"] * 1000 / median)
        assert entry["latency_p90_ms"] == pytest.approx(np.percentile(entry["latencies_ms"], 90))
        cells = row.split()
        assert cells[:3] == [entry["backend"], entry["precision"], str(entry["batch"])]
        assert float(cells[3]) == pytest.approx(entry["images_per_s"], rel=1e-3, abs=1e-3)
    if "--fused" in extra:
        combos = {(e["precision"], e["batch"]) for e in doc["results"]}
        assert combos == {("fp32", 1), ("fp32", 2), ("bf16", 1), ("bf16", 2)}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--precision", "fp16"], "--precision fp16 needs --device cuda (on CPU use bf16)"),
        (["--cuda-graphs"], "--cuda-graphs needs --device cuda"),
        (["--backend", "tensorrt"], "unknown backend 'tensorrt' (use torch or onnxruntime)"),
        (["--backend", "onnxruntime", "--precision", "bf16"], "--precision bf16 applies to the torch backend only"),
        (["--backend", "onnxruntime", "--fused"],
         "--compile, --cuda-graphs and --fused apply to the torch backend only"),
        (["--model", "eomt", "--fused"], "--fused applies to --model erfnet only"),
        (["--resolution", "512"], "--resolution needs HxW such as 512x1024, got '512'"),
        (["--batch", "1,x"], "--batch '1,x' is not a list of integers"),
    ],
)
def test_benchmark_cli_rejects_bad_options(capsys, argv, message):
    assert main(["benchmark", *argv]) == 2
    assert capsys.readouterr().err.strip() == f"roadanomaly: error: {message}"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given when CUDA is missing")
def test_benchmark_cli_without_cuda(capsys):
    assert main(["benchmark", "--device", "cuda"]) == 2
    assert "--device cuda asked for, but no CUDA device is available" in capsys.readouterr().err
