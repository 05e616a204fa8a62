"""The registry of EoMT checkpoint layouts: round trips of every writable layout, detection, a new layout."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from eomt_fixtures import Tiny, dinov2_state_dict, official_state_dict
from test_eomt_checkpoints import convert_cli
from roadanomaly.errors import UserError
from roadanomaly.models import eomt_checkpoints
from roadanomaly.models.eomt import EoMT, EoMTConfig
from roadanomaly.models.eomt_checkpoints import detect_layout, load_eomt, load_eomt_checkpoint, save_eomt
from roadanomaly.models.eomt_layouts import (
    REGISTRY,
    CheckpointLayout,
    Decoded,
    Source,
    layout_names,
    open_source,
    register_layout,
    writable_layout_names,
)
from roadanomaly.models.eomt_layouts.common import read_folder_weights
from roadanomaly.models.eomt_layouts.shapes import infer_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CONFIG = EoMTConfig(
    width=128, depth=3, heads=2, patch=16, num_registers=4, img_size=(64, 64), num_classes=4, num_q=6, num_blocks=2
)


def random_model(config: EoMTConfig = CONFIG, seed: int = 0) -> EoMT:
    """An EoMT with every weight moved off its initial value, and pixel statistics that are not ImageNet's."""
    torch.manual_seed(seed)
    model = EoMT(config).eval()
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.add_(torch.randn_like(tensor) * 0.1)
        model.attn_mask_probs.copy_(torch.tensor([1.0, 0.0]))
        model.pixel_mean.copy_(torch.tensor([120.0, 110.0, 100.0]).reshape(1, 3, 1, 1))
        model.pixel_std.copy_(torch.tensor([60.0, 55.0, 50.0]).reshape(1, 3, 1, 1))
    return model


def outputs(model: EoMT, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(2, 3, *model.config.img_size, generator=torch.Generator().manual_seed(seed)) * 255
    with torch.no_grad():
        out = model.forward_all(x)
    return out.mask_logits[-1], out.class_logits[-1]


def destination(tmp_path: Path, layout: CheckpointLayout, stem: str = "model") -> Path:
    return tmp_path / (stem + (layout.file_suffixes[0] if layout.file_suffixes else ""))


def file_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors a written checkpoint holds, in its own names."""
    source = open_source(path)
    return read_folder_weights(path) if source.is_folder else source.state_dict


# ---------------------------------------------------------------------------------------------- registry
def test_registry_holds_the_builtin_layouts_in_detection_order():
    assert layout_names() == ("official", "hf", "roadanomaly", "dinov2")
    assert writable_layout_names() == ("official", "hf", "roadanomaly")
    assert eomt_checkpoints.LAYOUTS == layout_names()
    assert eomt_checkpoints.WRITABLE_LAYOUTS == writable_layout_names()
    assert all(REGISTRY[name].name == name for name in REGISTRY)


@pytest.mark.parametrize("name", writable_layout_names())
def test_write_detect_read_round_trip(tmp_path, name):
    layout = REGISTRY[name]
    model = random_model()
    dst = layout.write(model, destination(tmp_path, layout))
    assert detect_layout(dst) == name
    # what was written is exactly what the layout expects of this model (loss weights aside)
    written = {k: tuple(v.shape) for k, v in file_tensors(dst).items() if not k.startswith("criterion.")}
    assert written == layout.expected_keys(model)

    again, detected = load_eomt_checkpoint(dst)
    assert detected == name and again.config == model.config
    before, after = model.state_dict(), again.state_dict()
    assert set(after) == set(before)
    for key, value in before.items():
        if key in ("pixel_mean", "pixel_std"):  # scaled to 0..1 and back by the official / HF layouts
            torch.testing.assert_close(after[key], value, rtol=1e-6, atol=0, msg=key)
        else:
            assert torch.equal(after[key], value), key
    expected = outputs(model)
    for got, want in zip(outputs(again), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_read_only_layouts_are_refused_for_writing(tmp_path, capsys):
    model = random_model()
    with pytest.raises(ValueError, match=r"unknown layout 'dinov2' \(writable: official, hf, roadanomaly\)"):
        save_eomt(model, tmp_path / "x", "dinov2")
    with pytest.raises(SystemExit):
        convert_cli(["--to", "dinov2", str(tmp_path / "a"), str(tmp_path / "b")])
    assert "invalid choice: 'dinov2'" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- detection
def _official_ckpt(tmp_path: Path) -> Path:
    torch.save({"state_dict": official_state_dict(Tiny()), "epoch": 1}, tmp_path / "eomt.ckpt")
    return tmp_path / "eomt.ckpt"


def _official_bare_names(tmp_path: Path) -> Path:  # saved without the Lightning module's "network." prefix
    sd = {k.removeprefix("network."): v for k, v in official_state_dict(Tiny()).items()}
    torch.save(sd, tmp_path / "eomt.bin")
    return tmp_path / "eomt.bin"


def _hf_folder(tmp_path: Path) -> Path:
    return save_eomt(random_model(), tmp_path / "hf", "hf")


def _hf_weights_file(tmp_path: Path) -> Path:
    folder = save_eomt(random_model(), tmp_path / "hf", "hf")
    return Path(shutil.copy(folder / "model.safetensors", tmp_path / "weights.safetensors"))


def _roadanomaly_folder(tmp_path: Path) -> Path:
    return save_eomt(random_model(), tmp_path / "ours")


def _roadanomaly_weights_file(tmp_path: Path) -> Path:
    torch.save(random_model().state_dict(), tmp_path / "ours.pt")
    return tmp_path / "ours.pt"


def _dinov2_timm(tmp_path: Path) -> Path:
    torch.save(dinov2_state_dict(width=64, depth=2, side=4), tmp_path / "dinov2.pth")
    return tmp_path / "dinov2.pth"


def _dinov2_facebook_training(tmp_path: Path) -> Path:
    sd = dinov2_state_dict(width=64, depth=2, side=4, class_position=True, facebook_names=True)
    torch.save({"teacher": {f"backbone.{k}": v for k, v in sd.items()}}, tmp_path / "teacher.pth")
    return tmp_path / "teacher.pth"


FIXTURES = {
    "official .ckpt": (_official_ckpt, "official"),
    "official without network.": (_official_bare_names, "official"),
    "hf folder": (_hf_folder, "hf"),
    "hf weights file": (_hf_weights_file, "hf"),
    "roadanomaly folder": (_roadanomaly_folder, "roadanomaly"),
    "roadanomaly weights file": (_roadanomaly_weights_file, "roadanomaly"),
    "dinov2 timm": (_dinov2_timm, "dinov2"),
    "dinov2 facebookresearch training checkpoint": (_dinov2_facebook_training, "dinov2"),
}


def test_every_registered_layout_has_a_detection_fixture():
    assert {layout for _, layout in FIXTURES.values()} == set(layout_names())


@pytest.mark.parametrize("fixture", FIXTURES)
def test_exactly_one_layout_detects_each_fixture(tmp_path, fixture):
    make, expected = FIXTURES[fixture]
    path = make(tmp_path)
    source = open_source(path)
    assert [name for name, layout in REGISTRY.items() if layout.detect(source)] == [expected]
    assert detect_layout(path) == expected
    assert load_eomt_checkpoint(path, img_size=(64, 64))[1] == expected


def test_what_no_layout_detects(tmp_path):
    torch.save({"a.weight": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(UserError, match="not an EoMT or DINOv2 checkpoint: unrecognised keys a.weight"):
        detect_layout(tmp_path / "foreign.pt")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(UserError) as info:
        detect_layout(tmp_path / "other")
    assert info.value.where == str(tmp_path / "other" / "config.json")
    assert info.value.problem == "neither an EoMT Hugging Face config (model_type 'eomt') nor ours"


def test_official_pixel_statistics_are_optional(tmp_path):
    sd = {k: v for k, v in official_state_dict(Tiny()).items() if "pixel_" not in k}
    torch.save(sd, tmp_path / "eomt.bin")
    model = load_eomt(tmp_path / "eomt.bin")
    fresh = EoMT(model.config)
    assert torch.equal(model.pixel_mean, fresh.pixel_mean) and torch.equal(model.pixel_std, fresh.pixel_std)


# ------------------------------------------------------------------------------------------ a new layout
class ToyLayout(CheckpointLayout):
    """One ``.toy.pt`` file holding our state dict under ``toy.``-prefixed keys; the configuration from shapes."""

    name = "toy"
    description = "a toy layout of the tests: our names under 'toy.' in one .pt file"
    writable = True
    file_suffixes = (".pt",)

    def detect(self, source: Source) -> bool:
        return not source.is_folder and all(k.startswith("toy.") for k in source.state_dict)

    def read(self, source: Source, img_size=None, heads=None, **options: Any) -> Decoded:
        ours = {k.removeprefix("toy."): v for k, v in source.state_dict.items()}
        return Decoded(ours, infer_config(dict(ours), source.where, img_size, heads), dict(source.state_dict))

    def expected_keys(self, model: EoMT) -> dict[str, tuple[int, ...]]:
        return {"toy." + k: tuple(v.shape) for k, v in model.state_dict().items()}

    def write(self, model: EoMT, dst: Path) -> Path:
        torch.save({"toy." + k: v for k, v in model.state_dict().items()}, dst)
        return dst


@pytest.fixture
def toy_layout():
    layout = register_layout(ToyLayout())
    yield layout
    del REGISTRY[layout.name]


def test_a_new_layout_is_one_registration(tmp_path, capsys, toy_layout):
    assert layout_names()[-1] == "toy" and "toy" in eomt_checkpoints.WRITABLE_LAYOUTS
    model = random_model()
    src = save_eomt(model, tmp_path / "ours")
    # convert offers it, documents it and writes it
    from roadanomaly.cli import convert

    parser = argparse.ArgumentParser(prog="roadanomaly")
    help_text = convert.add_parser(parser.add_subparsers(dest="command")).format_help()
    assert "toy          a toy layout of the tests" in help_text and "--to {official,hf,roadanomaly,toy}" in help_text
    assert convert_cli(["--to", "toy", str(src), str(tmp_path / "m.pt")]) == 0
    assert "(roadanomaly) -> " in capsys.readouterr().out
    assert set(torch.load(tmp_path / "m.pt", weights_only=True)) == {"toy." + k for k in model.state_dict()}
    # the generic load detects it, checks it strictly and gives the same model back
    again, layout = load_eomt_checkpoint(tmp_path / "m.pt")
    assert layout == "toy" and again.config == model.config
    for got, want in zip(outputs(again), outputs(model)):
        assert torch.equal(got, want)
    # ... and it converts onwards as a source
    assert convert_cli(["--to", "hf", str(tmp_path / "m.pt"), str(tmp_path / "hf")]) == 0
    assert "(toy) -> " in capsys.readouterr().out
    sd = torch.load(tmp_path / "m.pt", weights_only=True)
    del sd["toy.mask_head.2.bias"]
    torch.save(sd, tmp_path / "broken.pt")
    with pytest.raises(UserError) as info:
        load_eomt(tmp_path / "broken.pt")
    message = f"{tmp_path / 'broken.pt'}: does not fit the EoMT it describes (toy layout): 1 missing keys: "
    assert str(info.value) == message + "toy.mask_head.2.bias"


def test_written_hf_folder_has_its_three_files(tmp_path):
    dst = save_eomt(random_model(), tmp_path / "hf", "hf")
    assert sorted(p.name for p in dst.iterdir()) == ["config.json", "model.safetensors", "preprocessor_config.json"]
    pre = json.loads((dst / "preprocessor_config.json").read_text())
    torch.testing.assert_close(torch.tensor(pre["image_mean"]) * 255, torch.tensor([120.0, 110.0, 100.0]))
