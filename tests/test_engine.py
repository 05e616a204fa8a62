"""The evaluation engine: up-front method checks, progress files, resume after real signals, several processes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fixtures import make_bundle, make_cityscapes, make_erfnet_checkpoint
from roadanomaly.data.bundle import discover_bundles
from roadanomaly.errors import UserError
from roadanomaly.evaluation import EvaluationEngine
from roadanomaly.evaluation.progress import Progress, TaskProgress, describe_difference
from roadanomaly.metrics import AnomalyMetric
from roadanomaly.outputs import OutputSpec, PixelOutputs
from roadanomaly.protocol import EvalProtocol


class NeverCalled:
    """A predictor that must not run: methods are checked from its declaration alone."""

    spec = OutputSpec("logits")
    info: dict = {}

    def __call__(self, images):
        raise AssertionError("the model ran before the methods were checked")


class Constant:
    """Logits that make every pixel's MSP the same, except one NaN pixel when asked."""

    spec = OutputSpec("logits")
    info = {"name": "constant"}

    def __init__(self, nan: bool = False) -> None:
        self.nan = nan

    def __call__(self, images):
        logits = torch.zeros(images.shape[0], 3, *images.shape[-2:])
        if self.nan:
            logits[0, 0, 0, 0] = float("nan")
        return PixelOutputs(logits=logits)


def test_methods_are_checked_before_any_image_is_read(tmp_path):
    with pytest.raises(UserError, match="method 'rba' is not defined for this model"):
        EvaluationEngine(NeverCalled(), EvalProtocol(), ["msp", "rba"])
    engine = EvaluationEngine(NeverCalled(), EvalProtocol(), None)
    assert engine.methods == ["msp", "maxlogit", "entropy", "energy"]


def test_non_finite_scores_name_the_image(tmp_path):
    bundle = discover_bundles(make_bundle(tmp_path / "b", images=1), ["fs_static"])
    with pytest.raises(UserError, match=r"fs_static_0000\.jpg: the model's outputs give non-finite msp scores"):
        EvaluationEngine(Constant(nan=True), EvalProtocol(), ["msp"], workers=0, progress_bars=False).run(bundle)


def test_progress_file_round_trip_is_compact_and_exact(tmp_path):
    metric = AnomalyMetric()
    rng = np.random.default_rng(0)
    metric.update(rng.random(5000).astype(np.float32), rng.integers(0, 2, 5000))
    progress = Progress({"methods": ["msp"]}, {"A": {"results": []}}, TaskProgress("B", [0, 2], 2, {"msp": metric}))
    path = tmp_path / "p.pt"
    progress.save(path)
    assert path.stat().st_size < 1_000_000  # the 64 MiB histogram is stored by its nonzero bins
    loaded = Progress.load(path)
    assert loaded.fingerprint == {"methods": ["msp"]} and loaded.finished == {"A": {"results": []}}
    assert (loaded.current.task, loaded.current.done, loaded.current.images) == ("B", [0, 2], 2)
    again = AnomalyMetric()
    again.load_state_dict(loaded.current.states["msp"])
    assert again.compute() == metric.compute()
    assert describe_difference({"methods": ["msp"]}, {"methods": ["msp"]}) is None
    assert describe_difference({"methods": ["msp"]}, {"methods": ["entropy"]}) == (
        "the methods changed since the interrupted run: was ['msp'], now ['entropy']")


# every process on one thread, as torchrun sets it: float64 reductions then sum in the same order everywhere
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_a_task_whose_metrics_cannot_be_saved_half_way_is_saved_as_not_started(tmp_path):
    class Unsaveable:
        def state_dict(self):
            raise AssertionError("read the state of a metric that cannot be saved half-way")

    path = tmp_path / "p.pt"
    Progress({}, {}, TaskProgress("B", [0, 1], 2, {"components": Unsaveable()}, resumable=False)).save(path)
    loaded = Progress.load(path).current
    assert (loaded.task, loaded.done, loaded.images, loaded.states) == ("B", [], 0, {})


def _cli(*args):
    return subprocess.Popen([sys.executable, "-m", "roadanomaly", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ONE_THREAD)


def _rows(path: Path) -> list[dict]:
    return json.loads(path.read_text())["results"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine")
    make_bundle(root / "bundle", size=(96, 160), images=12)
    make_cityscapes(root / "cityscapes", size=(32, 64), images=3)
    make_erfnet_checkpoint(root / "w.pth")
    return root


def _evaluate_args(tree: Path, out: Path, *extra: str) -> list[str]:
    return ["evaluate", "--weights", str(tree / "w.pth"), "--data", str(tree / "bundle"), "--datasets",
            "RoadAnomaly21,fs_static", "--cityscapes", str(tree / "cityscapes"), "--output", str(out), "--quiet",
            "--workers", "0", *extra]


@pytest.fixture(scope="module")
def reference(tree):
    out = tree / "reference.json"
    process = _cli(*_evaluate_args(tree, out))
    assert process.wait(timeout=300) == 0, process.stderr.read()
    return json.loads(out.read_text())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_resume_after_a_real_signal_gives_identical_numbers(tree, reference, tmp_path, signum):
    out = tmp_path / "r.json"
    progress = out.with_name("r.json.progress.pt")
    process = _cli(*_evaluate_args(tree, out, "--save-every", "1"))
    deadline = time.monotonic() + 120
    while not progress.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr
    name = signal.Signals(signum).name
    assert stderr.strip().splitlines() == [
        f"roadanomaly: interrupted by {name} after {stderr.split(' after ')[1].split(' images')[0]} images: progress "
        f"saved in {progress}; run the same command with --resume to continue"]
    saved = Progress.load(progress)
    assert saved.current is not None and 0 < len(saved.current.done) < 12  # stopped mid-dataset

    # without --resume the saved progress is protected; with another method list it is refused
    process = _cli(*_evaluate_args(tree, out))
    assert process.wait(timeout=120) == 2 and "add --resume to continue it" in process.stderr.read()
    process = _cli(*_evaluate_args(tree, out, "--resume", "--methods", "msp"))
    assert process.wait(timeout=120) == 2
    assert process.stderr.read().strip() == (
        f"roadanomaly: error: {progress}: cannot resume: the methods changed since the interrupted run: was "
        "['msp', 'maxlogit', 'entropy', 'energy', 'void'], now ['msp']")

    process = _cli(*_evaluate_args(tree, out, "--resume"))
    assert process.wait(timeout=300) == 0, process.stderr.read()
    resumed = json.loads(out.read_text())
    assert resumed["results"] == reference["results"]  # exactly: the same floats
    assert resumed["segmentation"] == reference["segmentation"]
    assert not progress.exists()


def test_two_gloo_processes_equal_one(tree, reference, tmp_path):
    out = tmp_path / "ddp.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
               "roadanomaly", *_evaluate_args(tree, out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-2000:]
    document = json.loads(out.read_text())
    assert document["results"] == reference["results"]
    assert document["segmentation"] == reference["segmentation"]
    assert [p.name for p in tmp_path.iterdir()] == ["ddp.json"]  # both ranks' progress files are gone


def test_temperature_sweep_rows_equal_single_temperature_runs(tree, tmp_path):
    small = make_bundle(tmp_path / "small", size=(32, 48), images=3)
    common = ["evaluate", "--weights", str(tree / "w.pth"), "--data", str(small), "--datasets",
              "RoadAnomaly21", "--methods", "msp,maxlogit", "--quiet", "--workers", "0", "--metric-mode", "exact"]
    from roadanomaly.cli import main

    assert main([*common, "--temperatures", "0.5,2", "--output", str(tmp_path / "sweep.json")]) == 0
    rows = {(r["method"], r.get("temperature")): r for r in _rows(tmp_path / "sweep.json")}
    assert set(rows) == {("msp", 0.5), ("msp", 2.0), ("maxlogit", None)}
    for t in (0.5, 2.0):
        assert main([*common, "--temperature", str(t), "--output", str(tmp_path / f"t{t}.json")]) == 0
        single = {r["method"]: r for r in _rows(tmp_path / f"t{t}.json")}
        for key in ("auprc", "fpr95", "auroc"):
            assert rows[("msp", t)][key] == single["msp"][key]
            assert rows[("maxlogit", None)][key] == single["maxlogit"][key]


def test_a_large_sweep_gets_smaller_states_within_the_memory_budget(tree, tmp_path, capsys):
    """--metric-memory sizes the binned states; the rows stay within their bound of the full-size states' rows."""
    from roadanomaly.cli import main
    from roadanomaly.metrics.anomaly import binned_state_bytes

    small = make_bundle(tmp_path / "small", size=(64, 96), images=3)
    common = ["evaluate", "--weights", str(tree / "w.pth"), "--data", str(small), "--datasets", "RoadAnomaly21",
              "--methods", "msp,entropy", "--temperatures", "0.5,1,2", "--quiet", "--workers", "0"]
    budget = 6 * binned_state_bytes(16)  # 6 rows: 16 bits fit, 17 do not
    assert main([*common, "--metric-memory", str(budget), "--output", str(tmp_path / "s.json")]) == 0
    assert capsys.readouterr().err.strip() == (
        f"roadanomaly: 6 rows share --metric-memory {budget / 2**30:.2f} GiB: binned states of 16 bits instead of 22 "
        "(crowded scores lose exactness; see each row's max_error_bound)")
    assert main([*common, "--output", str(tmp_path / "full.json")]) == 0
    squeezed, full = _rows(tmp_path / "s.json"), _rows(tmp_path / "full.json")
    assert [(r["method"], r["temperature"]) for r in squeezed] == [(r["method"], r["temperature"]) for r in full]
    for a, b in zip(squeezed, full):
        for key in ("auprc", "fpr95", "auroc"):
            assert abs(a[key] - b[key]) <= a["max_error_bound"] + b["max_error_bound"] + 1e-12
    engine = EvaluationEngine(NeverCalled(), EvalProtocol(), ["msp", "entropy"], temperatures=[0.5, 1, 2],
                              metric_memory=budget)
    assert engine.metric_bits == 16 and engine.fingerprint([], None)["metric_bits"] == 16
    assert EvaluationEngine(NeverCalled(), EvalProtocol(), None).metric_bits == 22
    exact = EvaluationEngine(NeverCalled(), EvalProtocol(), None, metric_mode="exact", metric_memory=100)
    assert exact.metric_bits == 22  # the budget sizes binned states only

    capsys.readouterr()
    assert main([*common, "--metric-memory", "100", "--output", str(tmp_path / "x.json")]) == 2
    assert capsys.readouterr().err.strip() == (
        "roadanomaly: error: 6 binned metrics need at least 1.2 MiB, more than the 0.0 MiB allowed: raise "
        "--metric-memory or sweep fewer methods/temperatures")
    with pytest.raises(SystemExit) as exit_info:
        main([*common, "--metric-memory", "lots"])
    assert exit_info.value.code == 2
    assert "expected a size such as 512MiB or 2GiB, got 'lots'" in capsys.readouterr().err
