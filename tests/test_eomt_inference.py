"""EoMT windowed semantic inference: window layout, stitching, per-pixel maps, query heads, loading."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from eomt_fixtures import Tiny, dinov2_state_dict, official_state_dict
from roadanomaly.errors import UserError
from roadanomaly.inference import load_predictor
from roadanomaly.inference.eomt import (
    EoMTPredictor,
    per_pixel_maps,
    predict_semantic,
    scaled_size,
    window_starts,
    windows,
)
from roadanomaly.models.eomt import EoMT, EoMTConfig, EoMTOutput
from roadanomaly.models.eomt_checkpoints import load_eomt


def uint8_images(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> EoMT:
    path = tmp_path_factory.mktemp("eomt") / "eomt.ckpt"
    torch.save({"state_dict": official_state_dict(Tiny(), seed=2)}, path)
    return load_eomt(path)


# ------------------------------------------------------------------------------------------ window layout
def test_window_starts():
    assert window_starts(2048, 1024) == [0, 1024]
    assert window_starts(1024, 1024) == [0]
    assert window_starts(2100, 1024) == [0, 538, 1076]
    assert window_starts(128, 64) == [0, 64]
    assert window_starts(160, 64) == [0, 48, 96]
    for length in range(64, 400, 7):
        starts = window_starts(length, 64)
        assert len(starts) == math.ceil(length / 64) and starts[0] == 0 and starts[-1] == length - 64
        steps = {b - a for a, b in zip(starts, starts[1:])}
        assert not steps or (max(steps) - min(steps) <= 1 and max(steps) <= 64)


def test_scaled_size_and_windows():
    assert scaled_size((1024, 2048), 1024) == (1024, 2048)
    assert scaled_size((512, 1024), 1024) == (1024, 2048)
    assert scaled_size((50, 130), 64) == (64, 166)
    assert windows((1024, 2048), 1024) == [(0, 0, 1024, 1024), (0, 1024, 1024, 2048)]
    assert windows((2048, 1024), 1024) == [(0, 0, 1024, 1024), (1024, 0, 2048, 1024)]  # portrait: along H


# --------------------------------------------------------------------------------------- spy model (fast)
class SpyEoMT(nn.Module):
    """Records its inputs; predicts all-zero mask logits (sigmoid 1/2) and fixed class logits, shaped as EoMT's."""

    def __init__(self, crop: int = 1024, classes: int = 3, queries: int = 2) -> None:
        super().__init__()
        self.config = EoMTConfig(
            width=8, depth=1, heads=1, img_size=(crop, crop), num_classes=classes, num_q=queries, num_blocks=1
        )
        self.class_logits = torch.randn(queries, classes + 1, generator=torch.Generator().manual_seed(0))
        self.calls: list[torch.Tensor] = []

    def forward_all(self, x: torch.Tensor) -> EoMTOutput:
        self.calls.append(x.clone())
        b, q = x.shape[0], self.config.num_q
        masks = torch.zeros(b, q, x.shape[-2] // 4, x.shape[-1] // 4)
        classes = self.class_logits.expand(b, -1, -1)
        return EoMTOutput([masks], [classes], torch.zeros(b, q, self.config.width))


def test_two_windows_on_cityscapes_size():
    spy = SpyEoMT()
    predictor = EoMTPredictor(spy, window_batch=8)
    images = uint8_images(1, 1024, 2048)
    out = predictor(images)
    assert len(spy.calls) == 1 and spy.calls[0].shape == (2, 3, 1024, 1024)  # two windows, one batched pass
    torch.testing.assert_close(spy.calls[0][0], images[0, :, :, :1024].float())
    torch.testing.assert_close(spy.calls[0][1], images[0, :, :, 1024:].float())
    # a pixel-wise constant model gives the constant back everywhere
    probs = spy.class_logits.softmax(-1)
    expected = 0.5 * probs[:, :-1].sum(0)
    assert out.class_scores.shape == (1, 3, 1024, 2048)
    torch.testing.assert_close(out.class_scores, expected.reshape(1, 3, 1, 1).expand(1, 3, 1024, 2048))
    no_object = torch.full((1, 1024, 2048), 0.5 * float(probs[:, -1].sum()))
    torch.testing.assert_close(out.query_maps["no_object"], no_object)


def test_one_forward_per_window_and_resizing():
    spy = SpyEoMT(crop=64)
    predictor = EoMTPredictor(spy, window_batch=1)
    out = predictor(uint8_images(2, 50, 100))  # -> 64 x 128: two windows per image
    assert len(spy.calls) == 4 and all(c.shape == (1, 3, 64, 64) for c in spy.calls)
    assert out.class_scores.shape == (2, 3, 50, 100) and out.query_maps["no_object"].shape == (2, 50, 100)
    EoMTPredictor(spy, window_batch=16)(uint8_images(2, 50, 100))
    assert len(spy.calls) == 5


# -------------------------------------------------------------------------------------------- real model
def manual(model: EoMT, x: torch.Tensor, boxes, size) -> tuple[torch.Tensor, torch.Tensor]:
    """Class scores and no-object map computed window by window, averaged where windows overlap."""
    b = x.shape[0]
    scores, no_object = torch.zeros(b, model.config.num_classes, *size), torch.zeros(b, *size)
    count = torch.zeros(size)
    for t, l, bt, r in boxes:
        with torch.no_grad():
            out = model.forward_all(x[:, :, t:bt, l:r])
        masks = F.interpolate(out.mask_logits[-1], size=(bt - t, r - l), mode="bilinear").sigmoid()
        probs = out.class_logits[-1].softmax(-1)
        scores[:, :, t:bt, l:r] += torch.einsum("bqhw,bqc->bchw", masks, probs[..., :-1])
        no_object[:, t:bt, l:r] += torch.einsum("bqhw,bq->bhw", masks, probs[..., -1])
        count[t:bt, l:r] += 1
    return scores / count, no_object / count


@pytest.mark.parametrize("width", [128, 160])
def test_windows_stitch_real_model(tiny_model, width):
    predictor = EoMTPredictor(tiny_model, crop_size=64)
    images = uint8_images(2, 64, width)
    out = predictor(images)
    boxes = [(0, s, 64, s + 64) for s in ([0, 64] if width == 128 else [0, 48, 96])]
    scores, no_object = manual(tiny_model, images.float(), boxes, (64, width))
    torch.testing.assert_close(out.class_scores, scores, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.query_maps["no_object"], no_object, atol=1e-5, rtol=1e-5)
    # P_c summed over classes plus no-object is the sum of the masks' sigmoids, at most Q
    total = out.class_scores.sum(1) + out.query_maps["no_object"]
    assert (total > 0).all() and (total <= tiny_model.config.num_q).all()


def test_resized_input(tiny_model):
    predictor = EoMTPredictor(tiny_model, crop_size=64)
    images = uint8_images(1, 40, 80)
    out = predictor(images)
    x = F.interpolate(images.float(), size=(64, 128), mode="bilinear", antialias=True)
    scores, _ = manual(tiny_model, x, [(0, 0, 64, 64), (0, 64, 64, 128)], (64, 128))
    expected = F.interpolate(scores, size=(40, 80), mode="bilinear")
    torch.testing.assert_close(out.class_scores, expected, atol=1e-5, rtol=1e-5)
    assert predict_semantic(predictor, images).shape == (1, 40, 80)
    assert torch.equal(predict_semantic(predictor, images), out.class_scores.argmax(1))


def test_query_heads_plug_in(tiny_model):
    seen = {}

    def no_object_again(queries: torch.Tensor, class_logits: torch.Tensor) -> torch.Tensor:
        seen["queries"] = queries
        return class_logits.softmax(-1)[..., -1]

    head = nn.Sequential(nn.Linear(tiny_model.config.width, 1), nn.Flatten(-2), nn.Sigmoid())
    vector = nn.Linear(tiny_model.config.width, 2)
    heads = {"again": no_object_again, "anomaly": lambda q, c: head(q), "pair": lambda q, c: vector(q)}
    predictor = EoMTPredictor(tiny_model, crop_size=64, query_heads=heads)
    assert predictor.spec.query_maps == ("no_object", "max_class", "mask_mass", "again", "anomaly", "pair")
    images = uint8_images(2, 64, 128)
    out = predictor(images)
    assert set(out.query_maps) == set(predictor.spec.query_maps)
    torch.testing.assert_close(out.query_maps["again"], out.query_maps["no_object"])
    assert seen["queries"].shape == (4, tiny_model.config.num_q, tiny_model.config.width)  # 2 images x 2 windows
    # every map against the window-by-window formula sum_q w_q sigmoid(mask_q)
    expected = {name: torch.zeros(2, *shape, 64, 128) for name, shape in
                [("anomaly", ()), ("max_class", ()), ("mask_mass", ()), ("pair", (2,))]}
    for left in (0, 64):
        with torch.no_grad():
            o = tiny_model.forward_all(images[:, :, :, left : left + 64].float())
            masks = F.interpolate(o.mask_logits[-1], size=(64, 64), mode="bilinear").sigmoid()
            probs = o.class_logits[-1].softmax(-1)
            weights = {"anomaly": head(o.queries), "max_class": probs[..., :-1].max(-1).values,
                       "mask_mass": torch.ones_like(probs[..., 0])}
            for name, w in weights.items():
                expected[name][..., left : left + 64] = torch.einsum("bqhw,bq->bhw", masks, w)
            expected["pair"][..., left : left + 64] = torch.einsum("bqhw,bqk->bkhw", masks, vector(o.queries))
    for name, value in expected.items():
        torch.testing.assert_close(out.query_maps[name], value, atol=1e-5, rtol=1e-5)
    for builtin in ("no_object", "max_class", "mask_mass"):
        with pytest.raises(ValueError, match=f"{builtin!r} is built in"):
            EoMTPredictor(tiny_model, query_heads={builtin: no_object_again})


def test_per_pixel_maps_formula():
    mask_logits, class_logits = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 5)
    scores, maps = per_pixel_maps(mask_logits, class_logits, (8, 8), {"w": torch.ones(1, 3)})
    sig = F.interpolate(mask_logits, (8, 8), mode="bilinear").sigmoid()
    p = class_logits.softmax(-1)  # softmax over all C + 1 columns, then the no-object column dropped
    torch.testing.assert_close(scores[0, 2], (sig[0] * p[0, :, 2, None, None]).sum(0))
    torch.testing.assert_close(maps["w"], sig.sum(1))
    torch.testing.assert_close(maps["no_object"][0], (sig[0] * p[0, :, -1, None, None]).sum(0))


def test_autocast_bf16_close_to_fp32(tiny_model):
    images = uint8_images(1, 64, 128)
    reference = EoMTPredictor(tiny_model, crop_size=64)(images)
    fast = EoMTPredictor(tiny_model, crop_size=64, autocast="bf16")(images)
    assert fast.class_scores.dtype == torch.float32
    assert (fast.class_scores - reference.class_scores).abs().max() < 0.1
    with pytest.raises(UserError):
        EoMTPredictor(tiny_model, autocast="int8")
    with pytest.raises(UserError):
        EoMTPredictor(tiny_model, crop_size=60)


def test_load_predictor(tmp_path):
    path = tmp_path / "eomt.ckpt"
    torch.save({"state_dict": official_state_dict(Tiny())}, path)
    predictor = load_predictor("eomt", path, "cpu")
    assert predictor.device == "cpu"
    info = predictor.info
    summary = (info["name"], info["classes"], info["queries"], info["crop"], info["layout"])
    assert summary == ("eomt", 4, 6, [64, 64], "official")
    assert info["weights"] == str(path)
    out = predictor(uint8_images(1, 64, 96))
    assert out.class_scores.shape == (1, 4, 64, 96) and out.logits is None
    torch.save(dinov2_state_dict(width=64, depth=1, side=4), tmp_path / "dino.pth")
    with pytest.raises(UserError, match="DINOv2"):
        load_predictor("eomt", tmp_path / "dino.pth")
