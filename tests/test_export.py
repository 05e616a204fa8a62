"""ONNX export of ERFNet and EoMT, the onnxruntime backends against eager PyTorch, and the folded-BN ERFNet."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from eomt_fixtures import Tiny, official_state_dict
from fixtures import make_erfnet_checkpoint
from roadanomaly.cli import main
from roadanomaly.errors import UserError
from roadanomaly.models.erfnet import ERFNet
from roadanomaly.models.erfnet_fused import fold_bn, fuse_erfnet

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

TOL = 1e-4


def uint8_images(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------- folded batch norm
def randomise_bn(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(1 + 0.2 * torch.randn(m.num_features, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.num_features, generator=g))


@pytest.mark.parametrize("kind", [nn.Conv2d, nn.ConvTranspose2d])
def test_fold_bn_equals_conv_then_bn(kind):
    torch.manual_seed(0)
    conv = kind(4, 6, 3, stride=2, padding=1)
    bn = nn.BatchNorm2d(6, eps=1e-3)
    randomise_bn(bn)
    bn.eval()
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = fold_bn(conv, scale, bn.bias - scale * bn.running_mean)
    x = torch.randn(2, 4, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), bn(conv(x)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("channels_last", [True, False])
def test_fused_erfnet_matches_eager(channels_last):
    torch.manual_seed(1)
    model = ERFNet(20).eval()
    randomise_bn(model, seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fuse_erfnet(model, channels_last=channels_last)
    assert (fused.num_classes, fused.void_channel) == (20, 19)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    x = torch.rand(2, 3, 32, 48)
    with torch.inference_mode():
        expected, got = model(x), fused(x)
    assert got.is_contiguous() and got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=TOL, rtol=0)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the source model is untouched


# ------------------------------------------------------------------------------------------------- ERFNet ONNX
@pytest.fixture(scope="module")
def erfnet_export(tmp_path_factory):
    """An ERFNet checkpoint and its export through the CLI (once for the module: an export takes ~10 s)."""
    folder = tmp_path_factory.mktemp("erfnet_onnx")
    model = make_erfnet_checkpoint(folder / "erfnet.pth", seed=3)
    code = main(["export", "--model", "erfnet", "--weights", str(folder / "erfnet.pth"),
                 "--output", str(folder / "erfnet.onnx"), "--check-size", "40x72"])  # fmt: skip
    return model, folder, code


def test_erfnet_export_cli_checks_against_eager(erfnet_export, capsys):
    _, folder, code = erfnet_export
    assert code == 0
    from roadanomaly.export import read_metadata

    assert read_metadata(folder / "erfnet.onnx") == {"roadanomaly.kind": "erfnet", "roadanomaly.num_classes": "20"}
    # a second export to the same file needs --force
    assert main(["export", "--weights", str(folder / "erfnet.pth"), "--output", str(folder / "erfnet.onnx")]) == 2
    assert "exists already (use --force to overwrite)" in capsys.readouterr().err


def test_onnx_erfnet_predictor_matches_torch(erfnet_export):
    from roadanomaly.inference.backends import OnnxERFNet, load_erfnet_predictor_on
    from roadanomaly.inference.erfnet import ERFNetPredictor

    model, folder, _ = erfnet_export
    net = OnnxERFNet(folder / "erfnet.onnx")
    assert (net.num_classes, net.void_channel) == (20, 19)
    reference = ERFNetPredictor(model)
    for backend, weights in (("onnxruntime", "erfnet.onnx"), ("torch", "erfnet.pth")):
        predictor = load_erfnet_predictor_on(folder / weights, backend, fused=backend == "torch")
        assert predictor.info["backend"] == backend
        for shape in ((1, 37, 61), (3, 24, 40)):  # dynamic batch and size, padding to a multiple of 8
            images = uint8_images(*shape[:1], *shape[1:])
            expected, got = reference(images), predictor(images)
            assert got.void_channel == 19
            torch.testing.assert_close(got.logits, expected.logits, atol=TOL, rtol=0)


def test_benchmark_cli_onnxruntime_row(erfnet_export, tmp_path):
    _, folder, _ = erfnet_export
    out = tmp_path / "bench.json"
    code = main(["benchmark", "--weights", str(folder / "erfnet.onnx"), "--backend", "onnxruntime",
                 "--resolution", "32x48", "--batch", "2", "--repeats", "2", "--warmup", "0",
                 "--output", str(out)])  # fmt: skip
    assert code == 0
    (entry,) = json.loads(out.read_text())["results"]
    assert (entry["backend"], entry["batch"], entry["repeats"]) == ("onnxruntime", 2, 2)


def test_onnx_kind_mismatch_and_foreign_files(erfnet_export, tmp_path):
    from roadanomaly.inference.backends import OnnxEoMT

    _, folder, _ = erfnet_export
    with pytest.raises(UserError, match="holds an exported erfnet, not an eomt"):
        OnnxEoMT(folder / "erfnet.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(UserError, match="not a readable ONNX model"):
        OnnxEoMT(bad)


# --------------------------------------------------------------------------------------------------- EoMT ONNX
@pytest.fixture(scope="module")
def eomt_export(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eomt_onnx")
    torch.save({"state_dict": official_state_dict(Tiny(), seed=4, mask_probs=0.0)}, folder / "eomt.ckpt")
    code = main(["export", "--model", "eomt", "--weights", str(folder / "eomt.ckpt"),
                 "--output", str(folder / "eomt.onnx")])  # fmt: skip
    return folder, code


def test_eomt_export_and_backend_match_torch(eomt_export):
    from roadanomaly.export import read_metadata
    from roadanomaly.inference.backends import OnnxEoMT, load_eomt_predictor_on
    from roadanomaly.models.eomt import EoMTConfig
    from roadanomaly.models.eomt_checkpoints import load_eomt

    folder, code = eomt_export
    assert code == 0
    model = load_eomt(folder / "eomt.ckpt")
    meta = read_metadata(folder / "eomt.onnx")
    assert EoMTConfig.from_dict(json.loads(meta["roadanomaly.config"])) == model.config
    net = OnnxEoMT(folder / "eomt.onnx")
    # the raw graph on crops of several sizes (dynamic batch, height, width) against the eager final prediction
    for shape in ((1, 64, 64), (3, 32, 80)):
        x = torch.rand(shape[0], 3, *shape[1:], generator=torch.Generator().manual_seed(5)) * 255
        with torch.no_grad():
            expected = model.forward_all(x)
        got = net.forward_all(x)
        assert len(got.mask_logits) == len(got.class_logits) == 1
        for a, b in ((got.mask_logits[0], expected.mask_logits[-1]), (got.class_logits[0], expected.class_logits[-1]),
                     (got.queries, expected.queries)):  # fmt: skip
            torch.testing.assert_close(a, b, atol=TOL, rtol=0)
    # the windowed predictor runs unchanged on the drop-in: two windows over a 64x112 image
    reference = load_eomt_predictor_on(folder / "eomt.ckpt", "torch")
    for weights in ("eomt.onnx", "eomt.ckpt"):
        predictor = load_eomt_predictor_on(folder / weights, "onnxruntime")
        images = uint8_images(2, 64, 112, seed=6)
        expected, got = reference(images), predictor(images)
        torch.testing.assert_close(got.class_scores, expected.class_scores, atol=TOL, rtol=0)
        torch.testing.assert_close(got.query_maps["no_object"], expected.query_maps["no_object"], atol=TOL, rtol=0)
    with pytest.raises(UserError, match="--autocast applies to the torch backend only"):
        load_eomt_predictor_on(folder / "eomt.onnx", "onnxruntime", autocast="bf16")


def test_eomt_with_masked_attention_does_not_export(tmp_path, capsys):
    torch.save({"state_dict": official_state_dict(Tiny(), mask_probs=1.0)}, tmp_path / "eomt.ckpt")
    code = main(["export", "--model", "eomt", "--weights", str(tmp_path / "eomt.ckpt"),
                 "--output", str(tmp_path / "eomt.onnx")])  # fmt: skip
    assert code == 2
    assert "only annealed models (all 0) export" in capsys.readouterr().err
    assert not (tmp_path / "eomt.onnx").exists()


def test_export_output_must_be_onnx(tmp_path, capsys):
    make_erfnet_checkpoint(tmp_path / "erfnet.pth")
    assert main(["export", "--weights", str(tmp_path / "erfnet.pth"), "--output", str(tmp_path / "m.pt")]) == 2
    assert f"{tmp_path / 'm.pt'}: the output file must end in .onnx" in capsys.readouterr().err
