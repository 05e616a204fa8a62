"""The registry of model kinds: names, options, targets, a kind added in one entry, ERFNet as a LogitsPredictor."""

import numpy as np
import pytest
import torch

from fixtures import make_erfnet_checkpoint
from roadanomaly.errors import UserError
from roadanomaly.inference import MODEL_KINDS, load_predictor, model_kind, model_kind_names
from roadanomaly.inference.pixel_model import LogitsPredictor
from roadanomaly.inference.registry import ModelKind, register_model_kind
from roadanomaly.outputs import OutputSpec

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PIXEL = {"void_channel", "mean", "std", "pad_to"}


def test_every_kind_is_one_entry_with_its_options():
    assert model_kind_names() == ["erfnet", "eomt", "python:FILE.py:NAME", "torchscript", "exported", "onnx"]
    assert MODEL_KINDS["erfnet"].options == {"backend"}
    assert MODEL_KINDS["eomt"].options == {"crop_size", "autocast", "head", "backend"}
    assert MODEL_KINDS["python"].options == PIXEL | {"model_kwargs"} and MODEL_KINDS["python"].takes_target
    for name in ("torchscript", "exported", "onnx"):
        assert MODEL_KINDS[name].options == PIXEL and not MODEL_KINDS[name].takes_target


def test_specs_with_and_without_targets():
    assert model_kind("python:models/net.py:ENet") == (MODEL_KINDS["python"], "models/net.py:ENet")
    assert model_kind("onnx") == (MODEL_KINDS["onnx"], None)
    problems = {
        "python": "model kind 'python' needs a target: python:FILE.py:NAME",
        "onnx:net.onnx": "model kind 'onnx' takes no ':' argument (got 'onnx:net.onnx')",
        "enet": "unknown model kind 'enet' (known: erfnet, eomt, python:FILE.py:NAME, torchscript, exported, onnx)",
    }
    for spec, problem in problems.items():
        with pytest.raises(UserError) as error:
            model_kind(spec)
        assert str(error.value) == problem


def test_options_of_other_kinds_are_refused(tmp_path):
    with pytest.raises(UserError) as error:
        load_predictor("erfnet", tmp_path / "w.pth", mean=[0.5, 0.5, 0.5], pad_to=32)
    assert str(error.value) == "--mean, --pad-to does not apply to --model erfnet"
    with pytest.raises(UserError) as error:
        load_predictor("onnx", tmp_path / "net.onnx", model_kwargs='{"a": 1}')
    assert str(error.value) == "--model-kwargs does not apply to --model onnx"


def test_a_new_kind_is_one_registration(tmp_path):
    weights = tmp_path / "scale.txt"
    weights.write_text("2.0")

    def load(path, device="cpu", **shared):
        scale = float(path.read_text())
        return LogitsPredictor(lambda x: torch.cat([x * scale, -x], dim=1), device, source=path, **shared)

    register_model_kind(ModelKind("scaled", "test kind", load, options=frozenset({"void_channel"})))
    try:
        predictor = load_predictor("scaled", weights, void_channel=5)
        assert (predictor.output_kind, predictor.void_channel) == ("logits", 5)
        images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 3, 4, 5), dtype=np.uint8))
        x = images.double().numpy() / 255.0
        np.testing.assert_allclose(predictor(images).logits.numpy(), np.concatenate([2 * x, -x], 1), atol=1e-6)
        assert "scaled" in model_kind_names()
    finally:
        del MODEL_KINDS["scaled"]


@pytest.mark.parametrize("classes, void", [(20, 19), (19, None)])
def test_erfnet_is_a_logits_predictor_that_pads_to_8_and_crops_back(tmp_path, classes, void):
    model = make_erfnet_checkpoint(tmp_path / "erfnet.pth", num_classes=classes, prefix="module.")
    predictor = load_predictor("erfnet", tmp_path / "erfnet.pth")
    assert isinstance(predictor, LogitsPredictor)
    assert (predictor.output_kind, predictor.void_channel) == ("logits", void)  # known before any forward
    assert predictor.spec == OutputSpec("logits", void)
    assert predictor.info == {"name": "erfnet", "classes": classes, "weights": str(tmp_path / "erfnet.pth")}
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, 3, 21, 30), dtype=np.uint8))
    padded = torch.zeros(2, 3, 24, 32)
    padded[:, :, :21, :30] = images.float() / 255.0
    with torch.no_grad():
        expected = model(padded)[:, :, :21, :30]
    outputs = predictor(images)
    assert torch.equal(outputs.logits, expected) and outputs.void_channel == void
