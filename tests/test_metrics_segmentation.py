"""ConfusionMatrix against scikit-learn's confusion_matrix, plus streaming, merging, saving and input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.metrics import confusion_matrix

from roadanomaly.metrics import ConfusionMatrix


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def reference(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore: int = 255) -> dict:
    """IoU, mIoU and pixel accuracy from scikit-learn's confusion matrix; predicted ignore = a miss."""
    pred, target = np.asarray(pred).ravel(), np.asarray(target).ravel()
    keep = target != ignore
    pred, target = pred[keep], target[keep]
    labels = list(range(num_classes))
    cm = confusion_matrix(target, pred, labels=labels)  # predictions outside `labels` are dropped here
    hits = np.diag(cm)
    per_target = np.bincount(target, minlength=num_classes)  # includes the pixels predicted as ignore
    union = per_target + cm.sum(0) - hits
    iou = [float(h / u) if u > 0 else None for h, u in zip(hits, union)]
    present = [v for v in iou if v is not None]
    return {"miou": float(np.mean(present)), "iou": iou, "pixel_accuracy": float(hits.sum() / target.size)}


def assert_matches(ours: dict, ref: dict) -> None:
    assert ours["miou"] == pytest.approx(ref["miou"], abs=1e-12)
    assert ours["pixel_accuracy"] == pytest.approx(ref["pixel_accuracy"], abs=1e-12)
    assert [v is None for v in ours["iou"]] == [v is None for v in ref["iou"]]
    for a, b in zip(ours["iou"], ref["iou"]):
        if a is not None:
            assert a == pytest.approx(b, abs=1e-12)


def random_maps(rng: np.random.Generator, shape: tuple[int, ...], num_classes: int, ignore: float = 0.1):
    target = rng.integers(0, num_classes, shape)
    pred = np.where(rng.random(shape) < 0.7, target, rng.integers(0, num_classes, shape))
    target[rng.random(shape) < ignore] = 255
    return pred, target


def test_matches_sklearn_on_cityscapes_like_maps():
    rng = np.random.default_rng(0)
    pred, target = random_maps(rng, (4, 128, 256), 19)
    pred[0, :5] = 255  # a model that can predict void
    metric = ConfusionMatrix()
    for p, t in zip(pred, target):
        metric.update(torch.from_numpy(p), torch.from_numpy(t))
    assert_matches(metric.compute(), reference(pred, target, 19))


def test_absent_classes_are_none_and_excluded_from_miou():
    target = np.array([[0, 0, 1], [1, 255, 255]])
    pred = np.array([[0, 1, 1], [1, 3, 255]])
    metric = ConfusionMatrix(num_classes=5)
    metric.update(pred, target)
    out = metric.compute()
    assert out["iou"] == [0.5, pytest.approx(2 / 3), None, None, None]
    assert out["miou"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert out["pixel_accuracy"] == pytest.approx(3 / 4)
    assert not np.isnan(out["miou"])


def test_predicted_ignore_counts_as_a_miss():
    metric = ConfusionMatrix(num_classes=2)
    metric.update(np.array([0, 255, 1, 1]), np.array([0, 0, 1, 1]))
    out = metric.compute()
    assert out["iou"] == [0.5, 1.0]
    assert out["pixel_accuracy"] == 0.75


@pytest.mark.filterwarnings("ignore:A single label was found")  # scikit-learn, when num_classes == 1
@settings(max_examples=50, deadline=None)
@given(
    num_classes=st.integers(1, 6),
    data=st.data(),
)
def test_matches_sklearn_on_arbitrary_maps(num_classes, data):
    values = st.one_of(st.integers(0, num_classes - 1), st.just(255))
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=6))
    target = data.draw(hnp.arrays(np.int64, shape, elements=values))
    pred = data.draw(hnp.arrays(np.int64, shape, elements=values))
    metric = ConfusionMatrix(num_classes=num_classes)
    metric.update(pred, target)
    if (target != 255).sum() == 0:
        with pytest.raises(ValueError, match="no valid"):
            metric.compute()
    else:
        assert_matches(metric.compute(), reference(pred, target, num_classes))


def test_streaming_merge_and_state_dict():
    rng = np.random.default_rng(1)
    pred, target = random_maps(rng, (6, 64, 64), 19)
    whole = ConfusionMatrix()
    whole.update(pred, target)

    first, second = ConfusionMatrix(), ConfusionMatrix()
    for i in range(3):
        first.update(pred[i], target[i])
        second.update(pred[i + 3], target[i + 3])
    assert first.merge(second).compute() == whole.compute()

    resumed = ConfusionMatrix()
    resumed.load_state_dict(first.state_dict())
    assert resumed.compute() == whole.compute()
    resumed.reset()
    with pytest.raises(ValueError, match="no valid"):
        resumed.compute()
    resumed.sync()  # no process group: nothing happens


def test_numpy_and_torch_dtypes_agree():
    rng = np.random.default_rng(2)
    pred, target = random_maps(rng, (32, 32), 19)
    expected = reference(pred, target, 19)
    variants = [
        (pred.astype(np.uint8), target.astype(np.uint8)),
        (torch.from_numpy(pred).int(), torch.from_numpy(target)),
        (torch.from_numpy(pred).t(), torch.from_numpy(target).t()),
    ]
    for p, t in variants:
        metric = ConfusionMatrix()
        metric.update(p, t)
        assert_matches(metric.compute(), expected)


def test_errors():
    metric = ConfusionMatrix(num_classes=3)
    with pytest.raises(ValueError, match=r"target values .* found -1, 3"):
        metric.update(np.array([0, 1, 2, 0]), np.array([0, -1, 3, 255]))
    with pytest.raises(ValueError, match=r"pred values .* found 7"):
        metric.update(np.array([0, 7]), np.array([0, 1]))
    with pytest.raises(ValueError, match="same shape"):
        metric.update(np.zeros((2, 2), dtype=np.int64), np.zeros(4, dtype=np.int64))
    with pytest.raises(TypeError, match="integer"):
        metric.update(np.zeros(2), np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match="no valid"):
        metric.compute()
    with pytest.raises(ValueError, match="ignore_index"):
        ConfusionMatrix(num_classes=3, ignore_index=1)
    with pytest.raises(ValueError, match="num_classes"):
        ConfusionMatrix(num_classes=0)
    with pytest.raises(ValueError, match="merge"):
        metric.merge(ConfusionMatrix(num_classes=4))
    with pytest.raises(ValueError, match="shape"):
        metric.load_state_dict(ConfusionMatrix(num_classes=4).state_dict())
