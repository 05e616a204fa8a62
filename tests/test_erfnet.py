import pytest
import torch

from fixtures import make_erfnet_checkpoint
from roadanomaly.errors import UserError
from roadanomaly.models.erfnet import ERFNet
from roadanomaly.models.erfnet_checkpoints import load_erfnet


def test_shapes_follow_the_published_architecture():
    model = ERFNet(20).eval()
    x = torch.rand(1, 3, 64, 128)
    with torch.no_grad():
        assert model(x).shape == (1, 20, 64, 128)
        assert model(x, only_encode=True).shape == (1, 20, 8, 16)
    # encoder: 1 initial + 1 down + 5 nb(64) + 1 down + 8 nb(128); decoder: 2 upsamplers + 4 nb
    assert len(model.encoder.layers) == 15 and len(model.decoder.layers) == 6
    dilations = [layer.conv3x1_2.dilation[0] for layer in model.encoder.layers[7:]]
    assert dilations == [2, 4, 8, 16, 2, 4, 8, 16]
    assert model.decoder.output_conv.kernel_size == (2, 2) and model.decoder.output_conv.stride == (2, 2)
    # the public checkpoint has 2.07 M parameters
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(2.07e6, rel=0.01)
    assert model.void_channel == 19 and ERFNet(19).void_channel is None


@pytest.mark.parametrize("prefix", ["module.", "", "model."])
def test_checkpoint_layouts_load_to_identical_outputs(tmp_path, prefix):
    reference = make_erfnet_checkpoint(tmp_path / "erfnet.pth", prefix=prefix)
    loaded = load_erfnet(tmp_path / "erfnet.pth")
    x = torch.rand(2, 3, 32, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), reference(x), rtol=0, atol=0)
    assert not loaded.training


def test_lightning_checkpoint_and_class_count_inferred(tmp_path):
    model = ERFNet(19)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}, "epoch": 3},
               tmp_path / "last.ckpt")
    assert load_erfnet(tmp_path / "last.ckpt").num_classes == 19


def test_checkpoint_that_does_not_fit_names_the_differences(tmp_path):
    state = {f"module.{k}": v for k, v in ERFNet(20).state_dict().items()}
    del state["module.encoder.layers.3.bn1.weight"]
    state["module.encoder.extra.weight"] = torch.zeros(1)
    state["module.encoder.output_conv.weight"] = torch.zeros(20, 64, 1, 1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(UserError) as info:
        load_erfnet(tmp_path / "bad.pth")
    message = str(info.value)
    assert str(tmp_path / "bad.pth") in message and "\n" not in message
    assert "encoder.layers.3.bn1.weight" in message and "encoder.extra.weight" in message
    assert "encoder.output_conv.weight (20, 64, 1, 1) vs expected (20, 128, 1, 1)" in message


def test_unreadable_and_foreign_files(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=r"junk\.pth: not a PyTorch checkpoint \(neither a zip archive nor a pickle\)$"):
        load_erfnet(tmp_path / "junk.pth")
    torch.save({"backbone.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="not an ERFNet checkpoint"):
        load_erfnet(tmp_path / "other.pth")
    with pytest.raises(UserError, match="no such file"):
        load_erfnet(tmp_path / "missing.pth")
