"""AnomalyMetric against scikit-learn, plus streaming, merging, saving and input checks."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from roadanomaly.metrics import (
    AnomalyMetric,
    ConfusionMatrix,
    _binned,
    _refine,
    anomaly_metrics,
)
from roadanomaly.metrics._curves import cell_metrics

KEYS = ("auprc", "fpr95", "auroc")
# Accuracy targets of binned mode on realistic score distributions.
BINNED_TOL = {"auprc": 1e-4, "fpr95": 1e-4, "auroc": 1e-5}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def sklearn_metrics(scores, labels) -> dict[str, float]:
    """The reference: scikit-learn on the non-void pixels."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    keep = y != 255
    s, y = s[keep], y[keep] == 1
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return {
        "auprc": float(average_precision_score(y, s)),
        "fpr95": float(fpr[np.argmax(tpr >= 0.95)]),
        "auroc": float(roc_auc_score(y, s)),
        "pixels": int(keep.sum()),
        "anomaly_pixels": int(y.sum()),
    }


def assert_close(ours: dict, ref: dict, tol: float | dict[str, float]) -> None:
    for key in KEYS:
        bound = tol[key] if isinstance(tol, dict) else tol
        assert abs(ours[key] - ref[key]) <= bound, (key, ours[key], ref[key])
    assert ours["pixels"] == ref["pixels"]
    assert ours["anomaly_pixels"] == ref["anomaly_pixels"]


def make_labels(rng: np.random.Generator, n: int, anomaly: float = 0.05, void: float = 0.05) -> np.ndarray:
    labels = (rng.random(n) < anomaly).astype(np.uint8)
    labels[rng.random(n) < void] = 255
    return labels


def shift_anomalies(rng: np.random.Generator, labels: np.ndarray, scores: np.ndarray, amount: float) -> np.ndarray:
    """Make anomalies score higher on average, so the metrics are not trivial."""
    return np.where(labels == 1, scores + amount * rng.random(labels.size), scores)


# ---------------------------------------------------------------------------------------------------------------
# Exact mode == scikit-learn to 1e-9


def _heavy_ties(rng, n):
    labels = make_labels(rng, n)
    return shift_anomalies(rng, labels, rng.integers(0, 20, n).astype(np.float64), 6.0).round(), labels


def _huge_and_tiny(rng, n):
    labels = make_labels(rng, n, anomaly=0.2)
    magnitude = 10.0 ** rng.uniform(-300, 300, n)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    sign = np.where((labels == 1) & (rng.random(n) < 0.5), 1.0, sign)
    return sign * magnitude, labels


def _near_ties(rng, n):
    labels = make_labels(rng, n, void=0.0)
    base = rng.integers(0, 5, n).astype(np.float64)
    return base + rng.integers(0, 3, n) * 1e-12 + (labels == 1) * 1e-12, labels


def _float16_mixed_sign(rng, n):
    labels = make_labels(rng, n, anomaly=0.3)
    return shift_anomalies(rng, labels, rng.normal(0, 2, n), 2.0).astype(np.float16), labels


@pytest.mark.parametrize("make", [_heavy_ties, _huge_and_tiny, _near_ties, _float16_mixed_sign])
def test_exact_matches_sklearn(make):
    rng = np.random.default_rng(7)
    scores, labels = make(rng, 50_000)
    assert_close(anomaly_metrics(scores, labels, mode="exact"), sklearn_metrics(scores, labels), 1e-9)


def test_exact_on_tiny_inputs():
    assert_close(anomaly_metrics(np.array([0.5, 0.5]), np.array([0, 1])), sklearn_metrics([0.5, 0.5], [0, 1]), 1e-12)
    scores, labels = np.array([3.0, 1.0, 2.0, 2.0, 255.0]), np.array([1, 0, 0, 1, 255])
    assert_close(anomaly_metrics(scores, labels), sklearn_metrics(scores, labels), 1e-12)


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.tuples(
            st.one_of(
                st.sampled_from([-1.0, 0.0, 0.5, 2.0]),
                st.floats(allow_nan=False, allow_infinity=False, width=64),
            ),
            st.sampled_from([0, 1, 255]),
        ),
        min_size=2,
        max_size=60,
    )
)
def test_exact_matches_sklearn_on_arbitrary_arrays(data):
    scores = np.array([s for s, _ in data], dtype=np.float64)
    labels = np.array([y for _, y in data], dtype=np.uint8)
    valid = labels[labels != 255]
    if not ((valid == 0).any() and (valid == 1).any()):
        with pytest.raises(ValueError):
            anomaly_metrics(scores, labels)
        return
    assert_close(anomaly_metrics(scores, labels), sklearn_metrics(scores, labels), 1e-9)


@settings(max_examples=40, deadline=None)
@given(
    values=hnp.arrays(np.int64, st.integers(4, 80), elements=st.integers(-1000, 1000)),
    seed=st.integers(0, 2**16),
)
def test_auroc_invariant_under_increasing_transforms(values, seed):
    labels = np.random.default_rng(seed).integers(0, 2, values.size).astype(np.uint8)
    labels[:2] = [0, 1]
    x = values.astype(np.float64)
    base = anomaly_metrics(x, labels)
    for transformed in (x**3 + x, np.exp(x / 100.0), 0.5 * x - 7.0):
        other = anomaly_metrics(transformed, labels)
        for key in KEYS:
            assert other[key] == pytest.approx(base[key], abs=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# Binned mode on realistic distributions


def _msp_float16(rng, n):
    """1 - max softmax in float16: most in-distribution mass at or near 0, heavy ties."""
    labels = make_labels(rng, n, anomaly=0.03)
    margin = np.where(labels == 1, rng.normal(1.5, 1.5, n), rng.normal(7.0, 2.5, n))
    confidence = (1.0 / (1.0 + np.exp(-margin))).astype(np.float16)
    return (np.float16(1.0) - confidence).astype(np.float16), labels


def _max_logit(rng, n):
    """Negative max logit, roughly in [-30, 5], mixed sign."""
    labels = make_labels(rng, n, anomaly=0.03)
    top = np.where(labels == 1, rng.normal(4.0, 3.0, n), rng.normal(14.0, 3.5, n))
    return (-top).astype(np.float32), labels


def _quantised(rng, n):
    """Scores stored as 8-bit images: 256 levels only."""
    labels = make_labels(rng, n, anomaly=0.05)
    raw = np.where(labels == 1, rng.beta(5, 2, n), rng.beta(1, 6, n))
    return np.round(raw * 255).astype(np.uint8).astype(np.float32) / 255, labels


def _energy_wide(rng, n):
    """Energy-like scores over many orders of magnitude, both signs."""
    labels = make_labels(rng, n, anomaly=0.03)
    log_magnitude = np.where(labels == 1, rng.normal(1.0, 2.5, n), rng.normal(5.0, 2.0, n))
    sign = np.where(rng.random(n) < 0.02, 1.0, -1.0)
    return (sign * np.exp(log_magnitude)).astype(np.float32), labels


@pytest.mark.parametrize("warmup", [None, 350_000])
@pytest.mark.parametrize("make", [_msp_float16, _max_logit, _quantised, _energy_wide])
def test_binned_matches_sklearn_on_realistic_scores(make, warmup, monkeypatch):
    """Held back whole, or the refined bins chosen at the third of 4 updates (the fourth counted directly)."""
    if warmup is not None:
        monkeypatch.setattr(_binned, "WARMUP", warmup)
    rng = np.random.default_rng(3)
    scores, labels = make(rng, 600_000)
    metric = AnomalyMetric("binned")
    for s, y in zip(np.array_split(scores, 4), np.array_split(labels, 4)):
        metric.update(torch.from_numpy(s.reshape(-1, 500)), torch.from_numpy(y.reshape(-1, 500)))
    assert_close(metric.compute(), sklearn_metrics(scores, labels), BINNED_TOL)


# Scores crowded into a narrow range: equal-width relative bins would merge thousands of distinct values each.


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def _untrained_logits(rng, labels, classes=20, features=16):
    """Logits of a randomly initialised linear head on per-pixel features: small and nearly uniform."""
    head = rng.normal(0.0, 0.5 / np.sqrt(features), (features, classes)).astype(np.float32)
    feats = rng.normal(0.0, 1.0, (labels.size, features)).astype(np.float32)
    feats[labels == 1] *= 0.7  # anomalies: weaker features, a flatter softmax
    return feats @ head


def _clustered_msp(rng, n, dtype=np.float32):
    """1 - max softmax of an untrained 20-class head: all scores within ~0.55-0.95."""
    labels = make_labels(rng, n)
    return (1.0 - _softmax(_untrained_logits(rng, labels)).max(1)).astype(dtype), labels


def _clustered_entropy(rng, n, dtype=np.float32):
    """Normalised softmax entropy of an untrained 20-class head: near 1."""
    labels = make_labels(rng, n)
    p = _softmax(_untrained_logits(rng, labels))
    return (-(p * np.log(p)).sum(1) / np.log(20.0)).astype(dtype), labels


def _msp_temperature_10(rng, n, dtype=np.float32):
    """1 - max softmax at temperature 10 of trained-like logits (one class ahead by a margin)."""
    labels = make_labels(rng, n)
    logits = rng.normal(0.0, 2.0, (n, 20)).astype(np.float32)
    logits[:, 0] += np.where(labels == 1, rng.normal(2.0, 2.0, n), rng.normal(9.0, 3.0, n)).astype(np.float32)
    return (1.0 - _softmax(logits / 10.0).max(1)).astype(dtype), labels


def _cluster_and_tail(rng, n, dtype=np.float32):
    """A narrow cluster (width ~1e-3 around 0.5) holding most pixels, plus a wide exponential tail."""
    labels = make_labels(rng, n)
    in_tail = rng.random(n) < np.where(labels == 1, 0.6, 0.1)
    cluster = 0.5 + rng.normal(0.0, 2e-4, n) + (labels == 1) * 1e-4
    return np.where(in_tail, 0.5 + rng.exponential(2.0, n), cluster).astype(dtype), labels


CLUSTERED = [_clustered_msp, _clustered_entropy, _msp_temperature_10, _cluster_and_tail]


def _binned_streamed(scores, labels, parts=6, **kwargs) -> dict:
    metric = AnomalyMetric(**kwargs)
    for s, y in zip(np.array_split(scores, parts), np.array_split(labels, parts)):
        metric.update(s, y)
    return metric.compute()


def assert_within_bound(ours: dict, ref: dict) -> None:
    """The reported bound holds: scikit-learn's values lie within ``max_error_bound`` of ours."""
    for key in KEYS:
        assert abs(ours[key] - ref[key]) <= ours["max_error_bound"] + 1e-12, (key, ours[key], ref[key])
    assert ours["exact"] == (ours["max_error_bound"] == 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("make", CLUSTERED)
def test_binned_matches_sklearn_on_clustered_scores(make, dtype, monkeypatch):
    """Issue 7: within 1e-4 of scikit-learn on crowded scores, the bins refined from the first of 6 updates."""
    monkeypatch.setattr(_binned, "WARMUP", 60_000)
    scores, labels = make(np.random.default_rng(3), 360_000, dtype)
    ours, ref = _binned_streamed(scores, labels), sklearn_metrics(scores, labels)
    assert_close(ours, ref, 1e-4)
    assert_within_bound(ours, ref)
    if dtype == np.float16:  # each float16 value has a coarse bin of its own
        assert ours["exact"] and all(abs(ours[k] - ref[k]) <= 1e-12 for k in KEYS)


@pytest.mark.parametrize("make", [_clustered_msp, _cluster_and_tail])
def test_compute_merges_anomaly_free_sub_bins_losslessly(make):
    """compute() joins runs of sub-bins without anomalies (fewer cells): the metrics and bounds stay the same."""
    scores, labels = make(np.random.default_rng(4), 150_000)
    scores[:500], labels[:500] = -0.0, 0  # signed zeros: their cells must still merge
    scores[500:1000], labels[500:1000] = 0.0, 1
    state = AnomalyMetric()._state
    state.update(torch.from_numpy(scores), torch.from_numpy(labels), True)
    state.flush()
    assert state.refined.numel() and bool((state.refined == 2**21).any())  # refined, the zero bin too
    full, compact = state.cells(), state.cells(compact=True)
    assert compact.positives.numel() < 0.75 * full.positives.numel()
    whole, joined = cell_metrics(full), cell_metrics(compact)
    assert whole.keys() == joined.keys()
    for key in whole:
        assert joined[key] == pytest.approx(whole[key], abs=1e-12)
    assert_close(joined, sklearn_metrics(scores, labels), 1e-4)


def test_coarse_bins_alone_miss_clustered_scores(monkeypatch):
    """Without refined bins, the defect of issue 7 (and the honest bound that reports it)."""
    monkeypatch.setattr(_refine, "TARGET_BOUND", float("inf"))
    scores, labels = _cluster_and_tail(np.random.default_rng(3), 200_000)
    ours, ref = _binned_streamed(scores, labels), sklearn_metrics(scores, labels)
    assert max(abs(ours[k] - ref[k]) for k in KEYS) > 1e-3
    assert_within_bound(ours, ref)
    assert not ours["exact"]


@settings(max_examples=30, deadline=None)
@given(
    centre=st.floats(-1e3, 1e3),
    width=st.floats(1e-7, 1.0),
    tail=st.floats(0.0, 0.5),
    shift=st.floats(-1.0, 1.0),
    as_float64=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_binned_error_bound_holds(centre, width, tail, shift, as_float64, seed):
    """Whatever the clustering, the refined bins (a small state: 14 bits, 16 refined bins) and merging states
    that refined differently, scikit-learn's values stay within the reported bound."""
    rng = np.random.default_rng(seed)
    n = 4_000
    labels = make_labels(rng, n, anomaly=0.2)
    scores = centre + width * (rng.normal(size=n) + shift * (labels == 1))
    scores = np.where(rng.random(n) < tail, centre + rng.exponential(1.0 + abs(centre), n), scores)
    scores = scores if as_float64 else scores.astype(np.float32)
    valid = labels[labels != 255]
    if not ((valid == 0).any() and (valid == 1).any()):
        return
    ref = sklearn_metrics(scores, labels)
    one = _binned_streamed(scores, labels, parts=3, bits=14)
    assert_within_bound(one, ref)
    first, second = AnomalyMetric(bits=14), AnomalyMetric(bits=14)
    first.update(scores[: n // 2], labels[: n // 2])
    second.update(scores[n // 2 :][::-1].copy(), labels[n // 2 :][::-1].copy())
    first._state.flush(), second._state.flush()  # choose their refined bins apart
    assert_within_bound(first.merge(second).compute(), ref)


def test_binned_is_exact_when_scores_fit_the_bins():
    """float16 values (10 mantissa bits) and +-0.0 each get a bin of their own: binned == exact."""
    rng = np.random.default_rng(5)
    labels = make_labels(rng, 200_000)
    scores = shift_anomalies(rng, labels, rng.normal(0, 3, labels.size), 1.0).astype(np.float16)
    scores[:1000] = np.float16(-0.0)
    scores[1000:2000] = np.float16(0.0)
    exact = anomaly_metrics(scores, labels, mode="exact")
    binned = anomaly_metrics(scores, labels, mode="binned")
    for key in exact:
        assert binned[key] == pytest.approx(exact[key], abs=1e-12)


def test_binned_handles_infinities_and_signed_zeros():
    scores = torch.tensor([-float("inf"), -0.0, 0.0, 1e-30, float("inf"), float("inf"), -3e38, 0.0])
    labels = torch.tensor([0, 1, 0, 1, 1, 0, 0, 255])
    assert anomaly_metrics(scores, labels, "binned") == anomaly_metrics(scores, labels, "exact")


@settings(max_examples=40, deadline=None)
@given(
    scores=hnp.arrays(np.float32, st.integers(2, 200), elements=st.floats(-(2.0**100), 2.0**100, width=32)),
    power=st.integers(-20, 20),
    seed=st.integers(0, 2**16),
)
def test_binned_invariant_under_power_of_two_scaling(scores, power, seed):
    """Scaling by 2**k only shifts the exponent, so every score keeps its bin's neighbours."""
    labels = np.random.default_rng(seed).integers(0, 2, scores.size).astype(np.uint8)
    labels[:2] = [0, 1]
    scores = np.where(np.abs(scores) < 2.0**-100, np.float32(0), scores)  # keep clear of subnormals after scaling
    scaled = scores * np.float32(2.0**power)
    results = []
    for values in (scores, scaled):
        metric = AnomalyMetric(bits=14)  # a small state keeps the examples fast; the property holds for any bits
        metric.update(values, labels)
        results.append(metric.compute())
    assert results[0] == results[1]


# ---------------------------------------------------------------------------------------------------------------
# Streaming, merging, saving


@pytest.mark.parametrize("mode", ["binned", "exact"])
def test_streaming_and_merge_equal_one_shot(mode):
    rng = np.random.default_rng(11)
    scores, labels = _max_logit(rng, 150_000)
    whole = anomaly_metrics(scores, labels, mode=mode)

    streamed = AnomalyMetric(mode)
    for s, y in zip(np.array_split(scores, 23), np.array_split(labels, 23)):
        streamed.update(s, y)
    assert streamed.compute() == whole

    first, second = AnomalyMetric(mode), AnomalyMetric(mode)
    first.update(scores[:100_000], labels[:100_000])
    second.update(scores[100_000:], labels[100_000:])
    assert first.merge(second).compute() == whole


@pytest.mark.parametrize("mode", ["binned", "exact"])
def test_state_dict_round_trip_and_resume(mode):
    rng = np.random.default_rng(12)
    scores, labels = _energy_wide(rng, 50_000)
    whole = anomaly_metrics(scores, labels, mode=mode)

    metric = AnomalyMetric(mode)
    metric.update(scores[:30_000], labels[:30_000])
    buffer = io.BytesIO()
    torch.save(metric.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer)
    assert all(isinstance(v, torch.Tensor) for v in state.values())

    resumed = AnomalyMetric(mode)
    resumed.load_state_dict(state)
    resumed.update(scores[30_000:], labels[30_000:])
    assert resumed.compute() == whole

    # copy=False gives the same values without copying; the default copy stays as it was while the metric counts on
    metric.update(scores[30_000:40_000], labels[30_000:40_000])
    own, copied = metric.state_dict(copy=False), metric.state_dict()
    assert own.keys() == copied.keys() and all(torch.equal(own[k], copied[k]) for k in own)
    metric.update(scores[40_000:], labels[40_000:])
    assert any(not torch.equal(metric.state_dict()[k], copied[k]) for k in copied)
    if mode == "binned":
        assert own["hist"].data_ptr() == metric.state_dict(copy=False)["hist"].data_ptr()
        assert copied["hist"].data_ptr() != own["hist"].data_ptr()


def test_binned_state_size_does_not_depend_on_pixel_count(monkeypatch):
    """Once the refined bins are chosen, the state has a fixed size; before, it holds at most WARMUP pixels more."""
    monkeypatch.setattr(_binned, "WARMUP", 5_000)
    bits = 16
    precision = (_binned.INEXACT + 1) * 8
    fixed = (2 * (2**bits + 2**6 * 2**10) + 1) * 8 + precision  # coarse bins + 64 refined ones, per label
    rng = np.random.default_rng(0)
    metric = AnomalyMetric(bits=bits)
    metric.update(np.array([0.1, 0.9], np.float32), np.array([0, 1]))
    undecided = (2 * 2**bits + 1) * 8 + precision + 8 + 2 * 5  # refined: [-1]; 2 held-back pixels (float32, uint8)
    assert nbytes(metric) == undecided
    sizes = []
    for _ in range(3):
        metric.update(_clustered_msp(rng, 20_000)[0], make_labels(rng, 20_000))
        refined = metric.state_dict()["refined"]
        assert refined.numel() and int(refined[0]) >= 0
        sizes.append(nbytes(metric) - 8 * refined.numel())
    assert sizes == [fixed] * 3


def nbytes(metric: AnomalyMetric) -> int:
    return sum(t.numel() * t.element_size() for t in metric.state_dict().values())


def test_reset_forgets_everything():
    metric = AnomalyMetric()
    metric.update(np.array([0.1, 0.9]), np.array([0, 1]))
    metric.reset()
    with pytest.raises(ValueError, match="no anomaly"):
        metric.compute()
    metric.update(np.array([0.2, 0.1]), np.array([0, 1]))
    assert metric.compute()["auroc"] == 0.0


def test_sync_without_process_group_is_a_no_op():
    metric = AnomalyMetric()
    metric.update(np.array([0.1, 0.9, 0.3]), np.array([0, 1, 0]))
    before = metric.compute()
    metric.sync()
    assert metric.compute() == before


_DDP_WORKER = """
import json, sys, torch, torch.distributed as dist
from roadanomaly.metrics import AnomalyMetric, ConfusionMatrix
rank, world, init, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
scores, labels, pred, target = {make}(rank)
results = {{}}
for mode in ("binned", "exact"):
    metric = AnomalyMetric(mode)
    metric.update(scores, labels)
    metric.sync()
    results[mode] = metric.compute()
from roadanomaly.metrics import _binned
_binned.WARMUP = 5_000  # each process chooses its refined bins from its own first pixels
metric = AnomalyMetric("binned")
metric.update(scores, labels)
metric.sync()
results["binned-refined"] = metric.compute()
matrix = ConfusionMatrix(num_classes=5)
matrix.update(pred, target)
matrix.sync()
results["segmentation"] = matrix.compute()
dist.destroy_process_group()
json.dump(results, open(out, "w"))
"""


def _ddp_data(rank: int):
    """Different pixels per rank (a torch-only recipe, so that the worker processes start fast)."""
    gen = torch.Generator().manual_seed(rank)
    n = 20_000 + 1_000 * rank
    labels = (torch.rand(n, generator=gen) < 0.1).to(torch.uint8)
    labels[torch.rand(n, generator=gen) < 0.05] = 255
    scores = torch.randn(n, generator=gen) + 2.0 * (labels == 1)
    target = torch.randint(0, 5, (n,), generator=gen)
    pred = torch.where(torch.rand(n, generator=gen) < 0.6, target, torch.randint(0, 5, (n,), generator=gen))
    return scores, labels, pred, target


def test_sync_sums_over_processes(tmp_path, monkeypatch):
    """Two gloo processes: after sync() both hold the metrics of all their pixels together; when each has chosen
    its own refined bins, as merging the two states does."""
    import inspect
    import json
    import os
    import subprocess
    import sys

    source = inspect.getsource(_ddp_data).replace("def _ddp_data", "def make")
    code = "import torch\n" + source + _DDP_WORKER.format(make="make")
    init = f"file://{tmp_path / 'store'}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    outs = [tmp_path / f"rank{rank}.json" for rank in range(2)]
    workers = [
        subprocess.Popen([sys.executable, "-c", code, str(rank), "2", init, str(outs[rank])], env=env)
        for rank in range(2)
    ]
    assert [w.wait(timeout=120) for w in workers] == [0, 0]
    results = [json.loads(out.read_text()) for out in outs]
    parts = [_ddp_data(rank) for rank in range(2)]
    scores, labels, pred, target = (torch.cat([p[i] for p in parts]) for i in range(4))
    matrix = ConfusionMatrix(num_classes=5)
    matrix.update(pred, target)
    monkeypatch.setattr(_binned, "WARMUP", 5_000)
    local = [AnomalyMetric("binned") for _ in parts]
    for metric, part in zip(local, parts):
        metric.update(part[0], part[1])
    refined = [metric.state_dict()["refined"] for metric in local]
    assert refined[0].numel() and refined[1].numel() and not torch.equal(*refined)  # they chose apart
    merged = local[0].merge(local[1]).compute()
    assert_within_bound(merged, sklearn_metrics(scores.numpy(), labels.numpy()))
    for result in results:
        assert result["binned-refined"] == merged
        for mode in ("binned", "exact"):  # approx: float sums may add up in another order on 1 thread
            assert result[mode] == pytest.approx(anomaly_metrics(scores, labels, mode=mode), rel=1e-12)
        expected = matrix.compute()
        assert result["segmentation"]["iou"] == pytest.approx(expected["iou"], rel=1e-12)
        assert result["segmentation"]["miou"] == pytest.approx(expected["miou"], rel=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# Inputs


def test_numpy_torch_and_dtypes_agree():
    rng = np.random.default_rng(2)
    scores, labels = _max_logit(rng, 10_000)
    reference = anomaly_metrics(scores, labels, "binned")
    variants = [
        (torch.from_numpy(scores), torch.from_numpy(labels)),
        (scores.astype(np.float64), labels.astype(np.int64)),
        (torch.from_numpy(scores).double(), torch.from_numpy(labels).int()),
        (scores.reshape(100, 100), labels.reshape(100, 100)),
        (np.asfortranarray(scores.reshape(100, 100)), np.asfortranarray(labels.reshape(100, 100))),
        (torch.from_numpy(scores.reshape(100, 100)).t(), torch.from_numpy(labels.reshape(100, 100)).t()),
        (scores.astype(">f4"), labels),  # big-endian
        (np.broadcast_to(scores, (1, scores.size)), labels.reshape(1, -1)),  # read-only view
    ]
    for s, y in variants:
        assert anomaly_metrics(s, y, "binned") == reference
    low_precision = torch.from_numpy(scores).to(torch.bfloat16)
    assert anomaly_metrics(low_precision, labels, "binned") == anomaly_metrics(low_precision, labels, "exact")
    as_bool = labels == 1
    assert anomaly_metrics(scores, as_bool, "binned") == anomaly_metrics(scores, as_bool.astype(np.uint8), "binned")


@pytest.mark.parametrize("mode", ["binned", "exact"])
def test_bad_labels_are_named(mode):
    metric = AnomalyMetric(mode)
    with pytest.raises(ValueError, match=r"found 2, 7"):
        metric.update(np.zeros(5), np.array([0, 1, 2, 7, 255]))
    with pytest.raises(ValueError, match=r"found -1, 256"):
        metric.update(np.zeros(4), np.array([-1, 0, 256, 1]))
    with pytest.raises(ValueError, match=r"found 0.5"):
        metric.update(np.zeros(2), np.array([0.5, 1.0]))
    metric.update(np.array([0.0, 1.0]), np.array([0, 1]))  # a rejected update leaves no trace
    assert metric.compute()["pixels"] == 2


@pytest.mark.parametrize("mode", ["binned", "exact"])
def test_nan_shape_and_empty_errors(mode):
    metric = AnomalyMetric(mode)
    with pytest.raises(ValueError, match="NaN"):
        metric.update(np.array([0.1, np.nan]), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"same shape.*\(2, 3\).*\(6,\)"):
        metric.update(np.zeros((2, 3)), np.zeros(6, dtype=np.uint8))
    with pytest.raises(ValueError, match="no anomaly"):
        metric.compute()
    metric.update(np.zeros(0), np.zeros(0, dtype=np.uint8))
    metric.update(np.array([1.0, 2.0]), np.array([255, 255]))
    with pytest.raises(ValueError, match="no anomaly .* among the 0 valid pixels"):
        metric.compute()
    metric.update(np.array([1.0, 2.0]), np.array([1, 1]))
    with pytest.raises(ValueError, match="no in-distribution"):
        metric.compute()


def test_api_misuse_errors():
    with pytest.raises(ValueError, match="mode"):
        AnomalyMetric("fast")
    with pytest.raises(ValueError, match="bits"):
        AnomalyMetric(bits=40)
    with pytest.raises(ValueError, match="merge"):
        AnomalyMetric("binned").merge(AnomalyMetric("exact"))
    with pytest.raises(ValueError, match="bits"):
        AnomalyMetric(bits=16).merge(AnomalyMetric(bits=18))
    with pytest.raises(ValueError, match="shape"):
        AnomalyMetric(bits=16).load_state_dict(AnomalyMetric(bits=18).state_dict())
    with pytest.raises(ValueError, match="keys"):
        AnomalyMetric("binned").load_state_dict(AnomalyMetric("exact").state_dict())
    state = AnomalyMetric(bits=14).state_dict()
    state["hist"][3] = 1
    with pytest.raises(ValueError, match="before the refined bins were chosen"):
        AnomalyMetric(bits=14).load_state_dict(state)
    state = AnomalyMetric(bits=14).state_dict()
    state["refined"] = torch.tensor([5, 3])
    with pytest.raises(ValueError, match="increasing coarse bins"):
        AnomalyMetric(bits=14).load_state_dict(state)
    with pytest.raises(TypeError):
        AnomalyMetric().update([0.1, 0.2], [0, 1])


@pytest.mark.parametrize("mode", ["binned", "exact"])
def test_pixel_counts_without_computing(mode):
    labels = np.array([0, 0, 1, 255, 255, 1, 0], dtype=np.uint8)
    metric = AnomalyMetric(mode)
    metric.update(np.linspace(-1, 1, 7).astype(np.float32), labels)
    metric.update(np.zeros(3, np.float32), np.array([255, 0, 0], np.uint8))
    assert (metric.pixels, metric.anomaly_pixels) == (int((labels != 255).sum()) + 2, int((labels == 1).sum()))
    only_inliers = AnomalyMetric(mode)
    only_inliers.update(np.zeros(4, np.float32), np.array([0, 0, 255, 0], np.uint8))
    assert (only_inliers.pixels, only_inliers.anomaly_pixels) == (3, 0)


def test_pixel_counts_read_off_the_cells_match_the_histogram_before_and_after_more_pixels():
    rng = np.random.default_rng(5)
    metric = AnomalyMetric("binned", bits=14)
    labels = rng.choice(np.array([0, 1, 255], np.uint8), size=(2, 70_000), p=[0.7, 0.2, 0.1])
    metric.update(rng.normal(size=70_000).astype(np.float32), labels[0])
    metric._state.flush()
    expected = (int((labels[0] != 255).sum()), int((labels[0] == 1).sum()))
    assert (metric.pixels, metric.anomaly_pixels) == expected  # summed over the histogram
    metric.compute()
    metric.curves()
    assert (metric.pixels, metric.anomaly_pixels) == expected  # read off the cells just made
    metric.update(rng.normal(size=70_000).astype(np.float32), labels[1])  # the cells are stale now
    assert (metric.pixels, metric.anomaly_pixels) == (int((labels != 255).sum()), int((labels == 1).sum()))


# ---------------------------------------------------------------------------------------------------------------
# Curves, best F1 and histograms, against numpy / scikit-learn


def _valid(scores, labels):
    keep = labels != 255
    return np.asarray(scores, dtype=np.float64)[keep], labels[keep] == 1


def _fed(mode: str, scores, labels, parts: int = 3) -> AnomalyMetric:
    metric = AnomalyMetric(mode)
    for s, y in zip(np.array_split(scores, parts), np.array_split(labels, parts)):
        metric.update(s, y)
    return metric


# float16 scores: every binned cell holds one value, so both modes must match the references exactly.
_REPORT_CASES = [("exact", _max_logit), ("exact", _heavy_ties), ("binned", _msp_float16), ("binned", _float16_mixed_sign)]


@pytest.mark.parametrize(("mode", "make"), _REPORT_CASES)
def test_curve_counts_are_the_distinct_scores(mode, make):
    scores, labels = make(np.random.default_rng(21), 30_000)
    s, y = _valid(scores, labels)
    thresholds, positives, negatives = _fed(mode, scores, labels).curve_counts()
    distinct, where = np.unique(s, return_inverse=True)
    assert thresholds.dtype == torch.float64 and positives.dtype == negatives.dtype == torch.int64
    np.testing.assert_array_equal(thresholds.numpy(), distinct[::-1])
    np.testing.assert_array_equal(positives.numpy(), np.bincount(where, weights=y, minlength=distinct.size)[::-1])
    np.testing.assert_array_equal(negatives.numpy(), np.bincount(where, weights=~y, minlength=distinct.size)[::-1])


@pytest.mark.parametrize(("mode", "make"), _REPORT_CASES)
def test_curves_match_sklearn(mode, make):
    scores, labels = make(np.random.default_rng(22), 30_000)
    s, y = _valid(scores, labels)
    metric = _fed(mode, scores, labels)
    full = metric.curves(max_points=10**9)
    fpr, tpr, roc_thresholds = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(full["roc"]["fpr"], fpr[1:], rtol=0, atol=1e-15)
    np.testing.assert_allclose(full["roc"]["tpr"], tpr[1:], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(full["thresholds"], roc_thresholds[1:])
    precision, recall, pr_thresholds = precision_recall_curve(y, s)
    np.testing.assert_allclose(full["pr"]["precision"], precision[:-1][::-1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(full["pr"]["recall"], recall[:-1][::-1], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(full["thresholds"], pr_thresholds[::-1])

    most = min(40, len(full["thresholds"]) // 2)
    few = metric.curves(max_points=most)
    assert 2 <= len(few["thresholds"]) <= most < len(full["thresholds"])
    assert {len(few["pr"]["recall"]), len(few["pr"]["precision"]), len(few["roc"]["fpr"]),
            len(few["roc"]["tpr"])} == {len(few["thresholds"])}
    position = {t: i for i, t in enumerate(full["thresholds"])}
    kept = [position[t] for t in few["thresholds"]]  # every kept point is a point of the full curve
    assert kept[0] == 0 and kept[-1] == len(full["thresholds"]) - 1 and kept == sorted(set(kept))
    for curve, key in (("roc", "fpr"), ("roc", "tpr"), ("pr", "precision"), ("pr", "recall")):
        assert few[curve][key] == [full[curve][key][i] for i in kept]
    def steps(curve):
        return np.diff(np.asarray(curve["roc"]["fpr"]) + np.asarray(curve["roc"]["tpr"]))

    # evenly spread along tpr + fpr (0 to 2): no step much longer than 2 / (most - 1), or than one of the full curve
    assert steps(few).max() <= max(2 * 2 / (most - 1), steps(full).max())


@pytest.mark.parametrize(("mode", "make"), _REPORT_CASES)
def test_best_f1_threshold_matches_sklearn(mode, make):
    scores, labels = make(np.random.default_rng(23), 30_000)
    s, y = _valid(scores, labels)
    threshold, f1 = _fed(mode, scores, labels).best_f1_threshold()
    thresholds = np.unique(s)
    ranked = np.sort(s[y])  # TP(t) and FP(t): pixels of each class scoring >= t, by binary search
    tp = ranked.size - np.searchsorted(ranked, thresholds, side="left")
    fp = (~y).sum() - np.searchsorted(np.sort(s[~y]), thresholds, side="left")
    f1s = 2 * tp / (tp + fp + y.sum())
    best = np.flatnonzero(f1s == f1s.max()).max()  # ties: the highest threshold
    some = np.random.default_rng(0).choice(thresholds.size, 5)  # the formula, spot-checked with scikit-learn
    np.testing.assert_allclose(f1s[some], [f1_score(y, s >= thresholds[i]) for i in some], rtol=1e-12)
    assert f1 == pytest.approx(f1s[best], abs=1e-12)
    assert threshold == thresholds[best]


@pytest.mark.parametrize(("mode", "make"), _REPORT_CASES)
def test_histogram_matches_numpy(mode, make):
    scores, labels = make(np.random.default_rng(24), 30_000)
    s, y = _valid(scores, labels)
    metric = _fed(mode, scores, labels)
    low, high = np.percentile(s, [0.1, 99.9], method="inverted_cdf")
    for bins, value_range in ((100, None), (7, (float(np.median(s)), float(s.max()) + 1.0))):
        result = metric.histogram(bins=bins, value_range=value_range)
        edges = np.asarray(result["edges"])
        expected_range = (low, high) if value_range is None else value_range
        assert len(edges) == bins + 1 and (edges[0], edges[-1]) == pytest.approx(expected_range, abs=0)
        clipped = np.clip(s, edges[0], edges[-1])  # outside the range: in the first or last bin
        np.testing.assert_array_equal(result["inlier"], np.histogram(clipped[~y], bins=edges)[0])
        np.testing.assert_array_equal(result["anomaly"], np.histogram(clipped[y], bins=edges)[0])
        assert (sum(result["inlier"]) + sum(result["anomaly"]), sum(result["anomaly"])) == (
            metric.pixels, metric.anomaly_pixels)


def test_reports_on_refined_float32_scores():
    """Crowded float32 scores (refined cells: single float32 values): best F1 and ROC as scikit-learn's."""
    scores, labels = _clustered_msp(np.random.default_rng(25), 200_000)
    s, y = _valid(scores, labels)
    metric = _fed("binned", scores, labels)
    assert metric.compute()["exact"]
    precision, recall, thresholds = precision_recall_curve(y, s)
    f1s = 2 * precision * recall / np.maximum(precision + recall, 1e-300)
    threshold, f1 = metric.best_f1_threshold()
    assert f1 == pytest.approx(f1s[:-1].max(), abs=1e-12)
    assert threshold == thresholds[np.flatnonzero(f1s[:-1] == f1s[:-1].max()).max()]
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    full = metric.curves(max_points=10**9)
    np.testing.assert_allclose(full["roc"]["fpr"], fpr[1:], rtol=0, atol=1e-15)
    np.testing.assert_allclose(full["roc"]["tpr"], tpr[1:], rtol=0, atol=1e-15)


@pytest.mark.parametrize("mode", ["binned", "exact"])
def test_report_errors(mode):
    metric = AnomalyMetric(mode)
    metric.update(np.array([0.1, 0.2, 0.3], np.float32), np.array([0, 0, 255], np.uint8))
    with pytest.raises(ValueError, match=r"cannot compute curves: no anomaly \(label 1\) pixels among the 2"):
        metric.curves()
    with pytest.raises(ValueError, match="no anomaly"):
        metric.best_f1_threshold()
    assert metric.histogram(bins=2, value_range=(0.0, 1.0)) == {
        "edges": [0.0, 0.5, 1.0], "inlier": [2, 0], "anomaly": [0, 0]}
    metric.update(np.array([0.9], np.float32), np.array([1], np.uint8))
    with pytest.raises(ValueError, match="max_points must be an integer >= 2"):
        metric.curves(max_points=1)
    with pytest.raises(ValueError, match="bins must be a positive integer"):
        metric.histogram(bins=0)
    with pytest.raises(ValueError, match="value_range"):
        metric.histogram(value_range=(1.0, 0.0))


def test_memory_budget_picks_the_largest_state_that_fits():
    """state_bytes(bits) is what a refined state really holds; bits_for_memory fits that many states in a budget."""
    from roadanomaly.metrics.anomaly import binned_state_bytes, bits_for_memory

    for bits in (14, 18, 22):
        histogram = (2 * 2 ** (bits + 1)) * 8  # two labels x (coarse bins + as many refined sub-bins)
        held_back = 5 * min(_binned.WARMUP, 2 ** (bits + 2))
        assert binned_state_bytes(bits) == histogram + held_back
        state = _binned.BinnedState(bits)
        state._set_refined_layout(torch.arange(state.capacity, dtype=torch.int64))
        assert (state.hist.numel() - 1) * 8 == histogram
    assert bits_for_memory(5, 1280 * 2**20) == 22  # every ERFNet method at full resolution
    assert bits_for_memory(8, 1280 * 2**20) == 22  # every EoMT method
    assert bits_for_memory(56, 1280 * 2**20) == 18  # 14 temperatures x 4 methods
    assert 56 * binned_state_bytes(18) <= 1280 * 2**20 < 56 * binned_state_bytes(19)
    with pytest.raises(ValueError, match=r"3 binned metrics need at least 0\.6 MiB, more than the 0\.5 MiB allowed"):
        bits_for_memory(3, 2**19)


def test_smaller_states_stay_within_their_reported_bound():
    """An 18-bit state (a large sweep's) on crowded scores: its error against exact mode is within its bound."""
    rng = np.random.default_rng(3)
    scores, labels = _clustered_msp(rng, 1_200_000)  # past the 18-bit state's warm-up of 2**20 pixels
    exact = AnomalyMetric("exact")
    small = AnomalyMetric(bits=18)
    for part in range(3):
        piece = slice(part * 400_000, (part + 1) * 400_000)
        exact.update(scores[piece], labels[piece])
        small.update(scores[piece], labels[piece])
    reference, result = exact.compute(), small.compute()
    for key in ("auprc", "fpr95", "auroc"):
        assert abs(result[key] - reference[key]) <= result["max_error_bound"] + 1e-12, key
    assert small.state_dict()["refined"].numel() > 0  # it refined its crowded bins
    assert result["max_error_bound"] < 1e-4


def test_cells_are_read_once_until_the_counts_change():
    """compute, curves and histogram share one reading of the state; any update, merge or reset starts afresh."""
    rng = np.random.default_rng(7)
    scores, labels = _clustered_msp(rng, 40_000)
    metric = AnomalyMetric(bits=14)
    metric.update(scores[:20_000], labels[:20_000])
    first = metric._state.cells()
    assert metric._state.cells() is first and metric.compute() == metric.compute()
    metric.update(scores[20_000:], labels[20_000:])
    assert metric._state.cells() is not first
    whole = AnomalyMetric(bits=14)
    whole.update(scores, labels)
    assert metric.compute() == whole.compute()  # not the stale reading of the first half
    other = AnomalyMetric(bits=14)
    other.update(scores[:5_000], labels[:5_000])
    before = metric.compute()
    metric.merge(other)
    assert metric.compute()["pixels"] == before["pixels"] + other.compute()["pixels"]
    metric.reset()
    with pytest.raises(ValueError):
        metric.compute()


def test_states_fed_in_turn_count_as_states_fed_alone():
    """States share their scratch buffers: feeding two in turn, slice sizes apart, changes nothing."""
    rng = np.random.default_rng(11)
    data = [(rng.normal(size=n).astype(dtype), rng.choice(np.array([0, 1, 255], np.uint8), size=n))
            for n, dtype in ((90_000, np.float32), (150_001, np.float64), (70_000, np.float32))]
    alone = [AnomalyMetric(bits=14), AnomalyMetric(bits=16)]
    for metric in alone:
        for scores, labels in data:
            metric.update(scores * (1 + metric.bits), labels)
    in_turn = [AnomalyMetric(bits=14), AnomalyMetric(bits=16)]
    for scores, labels in data:
        for metric in in_turn:
            metric.update(scores * (1 + metric.bits), labels)
    for a, b in zip(alone, in_turn):
        for key, value in a.state_dict().items():
            assert torch.equal(value, b.state_dict()[key]), key


@pytest.mark.parametrize("case", ["normal", "signed_zeros", "infinities", "one_value", "negative"])
def test_refined_bins_chosen_from_the_scores_span_equal_those_from_every_bin(case):
    """Choosing the refined bins reads only the coarse bins the held-back scores span: the same choice as reading
    them all, whatever the scores (signed zeros at either end, infinities, a single value)."""
    from roadanomaly.metrics._binned import BinnedState
    from roadanomaly.metrics._float_bins import zero_bin
    from roadanomaly.metrics._refine import bins_to_refine

    rng = np.random.default_rng(5)
    n = 20_000
    scores = {
        "normal": rng.normal(0.5, 0.01, n),
        "signed_zeros": np.where(rng.random(n) < 0.5, -0.0, rng.exponential(1e-3, n)),
        "infinities": np.concatenate([rng.normal(size=n - 2), [np.inf, -np.inf]]),
        "one_value": np.full(n, 0.25),
        "negative": -rng.exponential(2.0, n) - 0.0,
    }[case].astype(np.float32)
    labels = (rng.random(n) < 0.2).astype(np.uint8)
    state = BinnedState(14)
    state.update(torch.from_numpy(scores), torch.from_numpy(labels), False)
    pending = list(state._pending)
    for s, lab, void in pending:
        state._count_coarse(s, lab, void)
    first, stop = state._span_of(pending)
    coarse = state._coarse()
    assert not coarse[:, :first].any() and not coarse[:, stop:].any()
    everything = bins_to_refine(coarse, zero_bin(14), state.capacity)
    assert everything.numel() or case == "one_value"
    assert torch.equal(bins_to_refine(coarse, zero_bin(14), state.capacity, (first, stop)), everything)
