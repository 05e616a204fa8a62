import numpy as np
import pytest
import torch

from roadanomaly.metrics import AnomalyMetric
from roadanomaly.metrics.components import ComponentMetric, component_metrics
from roadanomaly.metrics.smiyc import SmiycPixelMetric, frame_bins, smiyc_pixel_metrics
from roadanomaly.protocol import PROTOCOL_PRESETS, EvalProtocol
from roadanomaly.scoring import ScoringConfig


def toolkit_reference(frames, num_bins=768):
    """The SMIYC toolkit's PixBinaryClass, re-derived step by step from its definition (float16 scores)."""
    thresholds, tp_rel, fp_rel, num_pos, num_neg = [], [], [], 0, 0
    for scores, labels in frames:
        roi = labels != 255
        prob = scores.astype(np.float16)[roi]
        gt = labels[roi].astype(bool)
        bins = [np.array([0.0, 1.0])]
        for part in (prob[gt], prob[~gt]):
            if part.size:
                bins.append(np.quantile(part, np.linspace(0, 1, min(num_bins // 2, part.size))))
        bins = np.unique(np.concatenate(bins))
        tp_hist, edges = np.histogram(prob[gt], bins=bins)
        fp_hist, _ = np.histogram(prob[~gt], bins=bins)
        thresholds.append(edges[::-1][1:])
        tp_rel.append(tp_hist[::-1])
        fp_rel.append(fp_hist[::-1])
        num_pos += gt.sum()
        num_neg += (~gt).sum()
    thresholds = np.concatenate(thresholds)
    order = np.argsort(thresholds)[::-1]
    tp = np.cumsum(np.concatenate(tp_rel)[order].astype(np.float64))
    fp = np.cumsum(np.concatenate(fp_rel)[order].astype(np.float64))
    thresholds = thresholds[order]
    keep = np.concatenate([[0], np.nonzero(thresholds[:-1] != thresholds[1:])[0], [len(tp) - 1]])
    tp, fp, point_thresholds = tp[keep], fp[keep], thresholds[keep]
    if tp[0] != 0 or fp[0] != 0:
        tp, fp = np.concatenate([[0], tp]), np.concatenate([[0], fp])
        point_thresholds = np.concatenate([[np.inf], point_thresholds])
    fn = num_pos - tp
    tpr, fpr = tp / num_pos, fp / num_neg
    precision = np.ones(len(tp))
    precision[tp + fp > 0] = tp[tp + fp > 0] / (tp + fp)[tp + fp > 0]
    f1 = 2 * tp / (2 * tp + fp + fn)
    at95 = np.searchsorted(tpr, 0.95)
    return {
        "auprc": np.sum(np.diff(tpr) * precision[1:]),
        "fpr95": fpr[at95],
        "auroc": np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2),  # np.trapz / np.trapezoid
        "best_f1_threshold": point_thresholds[np.nanargmax(f1)],
    }


def test_frame_bins_equal_numpy_quantile_and_histogram():
    rng = np.random.default_rng(4)
    for trial in range(300):
        n = int(rng.integers(1, 1500))
        spread = [rng.random(n), rng.normal(0, 40, n), rng.integers(-3, 4, n) * 0.01, np.exp(rng.normal(0, 2, n))]
        values = spread[trial % 4].astype(np.float16)
        is_anomaly = rng.random(n) < rng.random()
        thresholds, pos, neg = frame_bins(values, is_anomaly)
        edges = [np.array([0.0, 1.0])]
        for part in (values[is_anomaly], values[~is_anomaly]):
            if part.size:
                edges.append(np.quantile(part, np.linspace(0, 1, min(384, part.size))))
        edges = np.unique(np.concatenate(edges))
        np.testing.assert_array_equal(thresholds, edges[:-1][::-1])
        np.testing.assert_array_equal(pos, np.histogram(values[is_anomaly], edges)[0][::-1])
        np.testing.assert_array_equal(neg, np.histogram(values[~is_anomaly], edges)[0][::-1])


def smiyc_frames(seed, count=5, shape=(30, 40)):
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(count):
        labels = np.zeros(shape, np.uint8)
        labels[5 : 5 + rng.integers(8, 22), 3 : 3 + rng.integers(8, 30)] = 1  # 64..588 anomaly pixels
        labels[: rng.integers(0, 6)] = 255
        scores = rng.normal(0.3, 0.2, shape) + 0.5 * (labels == 1) * rng.random(shape)
        if k == 0:
            scores *= 3.0  # scores outside [0, 1] widen the outer bins
        frames.append((scores.astype(np.float32), labels))
    return frames


@pytest.mark.parametrize("seed, repeated", [(0, False), (1, False), (2, False), (3, True)])
def test_smiyc_pixel_metric_matches_the_toolkit_definition(seed, repeated):
    frames = smiyc_frames(seed)
    if repeated:  # frames seen twice: thresholds tie across frames, the highest ones included
        frames = frames[:3] * 2
    metric = SmiycPixelMetric()
    for scores, labels in frames:
        metric.update(torch.from_numpy(scores), torch.from_numpy(labels))
    expected = toolkit_reference(frames)
    got = metric.compute()
    for key in ("auprc", "fpr95", "auroc"):
        assert got[key] == pytest.approx(expected[key], abs=1e-4)
    assert metric.best_f1_threshold() == expected["best_f1_threshold"]
    valid = np.concatenate([l[l != 255] for _, l in frames])
    assert (got["pixels"], got["anomaly_pixels"]) == (valid.size, int((valid == 1).sum()))


def test_hand_computed_extremes():
    labels = np.zeros((10, 10), np.uint8)
    labels[:3] = 1  # 30 anomaly, 70 in-distribution pixels per frame
    frames = [(np.full((10, 10), 0.3), labels)] * 3
    # One score: a single point (90 TP, 210 FP) after (0, 0): AP = its precision 0.3, AUROC = 0.5, FPR95 = 1.
    constant = smiyc_pixel_metrics(frames)
    assert (constant["auprc"], constant["auroc"], constant["fpr95"]) == pytest.approx((0.3, 0.5, 1.0), abs=1e-15)
    # Separated: the bin at threshold 0.9 holds all anomalies, then the one at 0.1 all others: AP 1, FPR95 0.
    separated = [(np.where(labels == 1, 0.9, 0.1), labels)] * 3
    values = smiyc_pixel_metrics(separated)
    assert (values["auprc"], values["auroc"], values["fpr95"]) == (1.0, 1.0, 0.0)
    metric = SmiycPixelMetric()
    metric.update(*separated[0])
    assert metric.best_f1_threshold() == pytest.approx(0.9, abs=1e-3)  # float16(0.9), the anomalies' bin edge


def test_smiyc_state_merges_and_round_trips():
    frames = smiyc_frames(9, count=6)
    whole, parts = SmiycPixelMetric(), [SmiycPixelMetric(), SmiycPixelMetric()]
    for k, (s, l) in enumerate(frames):
        whole.update(s, l)
        parts[k % 2].update(s, l)
    restored = SmiycPixelMetric()
    restored.load_state_dict(parts[1].state_dict())
    merged = parts[0].merge(restored)
    assert merged.compute() == whole.compute()
    assert merged.best_f1_threshold() == whole.best_f1_threshold()
    with pytest.raises(ValueError, match="no anomaly"):
        smiyc_pixel_metrics([(np.zeros((3, 3)), np.zeros((3, 3), np.uint8))])
    with pytest.raises(ValueError, match="float16 range"):
        smiyc_pixel_metrics([(np.full((3, 3), 1e6), np.ones((3, 3), np.uint8))])
    with pytest.raises(ValueError, match="keys"):
        SmiycPixelMetric().load_state_dict({"totals": torch.zeros(2)})
    with pytest.raises(ValueError, match=r"one 2-D frame per update, got \(2, 3, 3\)"):
        SmiycPixelMetric().update(torch.zeros(2, 3, 3), torch.zeros(2, 3, 3, dtype=torch.uint8))


def test_presets_are_named_data():
    assert list(PROTOCOL_PRESETS) == ["native", "course", "smiyc-anomaly", "smiyc-obstacle"]
    assert EvalProtocol.preset("native") == EvalProtocol()
    course = EvalProtocol.preset("COURSE")
    assert (course.size, course.skip_no_anomaly, course.scoring.include_void) == ("512x1024", True, False)
    assert course.target_size(1080, 1920) == (512, 1024)
    anomaly, obstacle = EvalProtocol.preset("smiyc-anomaly"), EvalProtocol.preset("smiyc-obstacle")
    assert (anomaly.pixel_metric, anomaly.components, obstacle.components) == ("smiyc", "anomaly", "obstacle")
    tweaked = EvalProtocol.preset("course", size="256", scoring=ScoringConfig(temperature=2.0))
    assert (tweaked.name, tweaked.size, tweaked.skip_no_anomaly, tweaked.scoring.temperature) == (
        "course", "256", True, 2.0)
    with pytest.raises(ValueError, match=r"unknown protocol 'fast' \(known: native, course, smiyc-anomaly, smiyc-obstacle\)"):
        EvalProtocol.preset("fast")
    with pytest.raises(ValueError, match="unknown protocol field"):
        EvalProtocol.preset("native", resolution="512")
    with pytest.raises(ValueError, match="unknown component track 'lane'"):
        EvalProtocol(components="lane")


def test_every_result_records_its_protocol():
    for name, protocol in PROTOCOL_PRESETS.items():
        document = protocol.to_dict()
        assert document["name"] == name
        assert {"size", "skip_images_without_anomaly", "temperature", "include_void_in_softmax", "void_label",
                "pixels"} <= document.keys()
    smiyc = PROTOCOL_PRESETS["smiyc-obstacle"].to_dict()
    assert smiyc["scores_dtype"] == "float16"
    assert (smiyc["components"]["min_predicted_component_px"], smiyc["components"]["min_ground_truth_component_px"]) \
        == (50, 10)
    assert PROTOCOL_PRESETS["native"].to_dict()["components"] is None


def test_new_metrics_builds_what_the_protocol_defines():
    native = PROTOCOL_PRESETS["native"].new_metrics("exact")
    assert list(native) == ["pixel"] and isinstance(native["pixel"], AnomalyMetric) and native["pixel"].mode == "exact"
    with pytest.raises(ValueError, match="mode must be one of"):
        PROTOCOL_PRESETS["native"].new_metrics("fast")
    sizes = {}
    for name in ("smiyc-anomaly", "smiyc-obstacle"):
        metrics = PROTOCOL_PRESETS[name].new_metrics()
        assert isinstance(metrics["pixel"], SmiycPixelMetric) and isinstance(metrics["components"], ComponentMetric)
        sizes[name] = (metrics["components"].min_pred_size, metrics["components"].min_gt_size)
    assert sizes == {"smiyc-anomaly": (500, 100), "smiyc-obstacle": (50, 10)}
    fixed = EvalProtocol.preset("native", components="anomaly", component_threshold=0.4).new_metrics()
    assert fixed["components"].threshold == 0.4


def test_smiyc_components_use_the_pixel_best_f1_threshold_on_float16_scores():
    rng = np.random.default_rng(2)
    frames = []
    for _ in range(3):
        labels = np.zeros((40, 60), np.uint8)
        labels[10:25, 10:30] = 1  # 300 px object
        labels[30:34, 45:48] = 1  # 12 px object (kept on the obstacle track: >= 10)
        labels[:3] = 255
        scores = rng.random((40, 60)) * 0.5 + 0.45 * (labels == 1) + 1e-5  # float16 rounding moves some ties
        frames.append((scores, labels))
    metrics = PROTOCOL_PRESETS["smiyc-obstacle"].new_metrics()
    for scores, labels in frames:
        for metric in metrics.values():
            metric.update(scores, labels)
    row = {}
    for metric in metrics.values():
        row.update(metric.compute())
    threshold = metrics["pixel"].best_f1_threshold()
    half = [(s.astype(np.float16), l) for s, l in frames]
    expected = component_metrics(half, threshold=threshold, track="obstacle")
    assert row["component_threshold"] == threshold
    for key in ("siou", "ppv", "mean_f1"):
        assert row[key] == expected[key] and 0 <= row[key] <= 1
    assert row["gt_components"] == 6
