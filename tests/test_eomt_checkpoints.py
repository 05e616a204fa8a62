"""EoMT checkpoints: official / Hugging Face / roadanomaly / DINOv2 layouts, conversion, strictness."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from eomt_fixtures import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Tiny,
    dinov2_state_dict,
    hf_model,
    hf_reference,
    official_state_dict,
    official_to_hf,
)
from roadanomaly.errors import UserError
from roadanomaly.models.eomt import EoMT
from roadanomaly.models.eomt_checkpoints import (
    detect_layout,
    load_eomt,
    load_eomt_checkpoint,
    read_state_dict,
    resample_patch_kernel,
    save_eomt,
)

T = Tiny()


def images(t: Tiny = T, b: int = 2, seed: int = 3) -> torch.Tensor:
    return torch.rand(b, 3, *t.img_size, generator=torch.Generator().manual_seed(seed)) * 255


def ours(model: EoMT, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        out = model.forward_all(x)
    return out.mask_logits[-1], out.class_logits[-1]


def assert_same(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor], tol: float = 1e-5):
    torch.testing.assert_close(a[0], b[0], atol=tol, rtol=tol)
    torch.testing.assert_close(a[1], b[1], atol=tol, rtol=tol)


def assert_matches_transformers(model: EoMT, hf, x: torch.Tensor) -> None:
    """Same mask and class logits as transformers: to 1e-5 (relative to the logits' scale) in float32, and in
    float64, where rounding noise is gone, to 1e-10 without masking. With masking, transformers' SDPA path mishandles
    float64 (its float32 additive mask), and its eager path takes the softmax in float32: 1e-6 there."""
    reference = hf_reference(hf, x)
    scale = max(1.0, float(reference[0].abs().max()))
    assert_same(ours(model, x), reference, tol=1e-5 * scale)
    masked = bool((model.attn_mask_probs > 0).any())
    model, hf = model.double(), hf.double()
    if masked:
        hf.set_attn_implementation("eager")
    with torch.no_grad():  # the pixel statistics exactly, not as stored in float32
        model.pixel_mean.copy_(torch.tensor(IMAGENET_MEAN, dtype=torch.float64).reshape(1, 3, 1, 1) * 255)
        model.pixel_std.copy_(torch.tensor(IMAGENET_STD, dtype=torch.float64).reshape(1, 3, 1, 1) * 255)
    assert_same(ours(model, x.double()), hf_reference(hf, x.double()), tol=1e-6 * scale if masked else 1e-10)


def save_official(path: Path, sd: dict[str, torch.Tensor]) -> Path:
    torch.save({"state_dict": sd, "epoch": 1, "global_step": 10} if path.suffix == ".ckpt" else sd, path)
    return path


def convert_cli(argv: list[str]) -> int:
    """Run ``roadanomaly convert`` through its own parser, reporting UserErrors as the CLI does (exit 2)."""
    from roadanomaly.cli import convert

    parser = argparse.ArgumentParser(prog="roadanomaly")
    convert.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["convert", *argv])
    try:
        return convert.run(args)
    except UserError as error:
        print(f"roadanomaly: error: {error}", file=sys.stderr)
        return 2


# ----------------------------------------------------------------------------------------------- layouts
@pytest.mark.parametrize("suffix", [".ckpt", ".bin"])
@pytest.mark.parametrize("probs", [0.0, 1.0])
def test_official_matches_transformers(tmp_path, suffix, probs):
    pytest.importorskip("transformers")
    sd = official_state_dict(T, mask_probs=probs)
    model, layout = load_eomt_checkpoint(save_official(tmp_path / f"eomt{suffix}", sd))
    assert layout == "official"
    c = model.config
    assert (c.width, c.depth, c.heads, c.num_registers, c.img_size) == (T.width, T.depth, T.heads, 4, T.img_size)
    assert (c.num_classes, c.num_q, c.num_blocks, c.num_upscale) == (T.classes, T.queries, T.blocks, T.upscale)
    x = images()
    hf = hf_model(T, official_to_hf(sd, T))
    reference = hf_reference(hf, x)
    assert (reference[0] > 0).any() and (reference[0] < 0).any()  # masks are neither empty nor full
    assert_matches_transformers(model, hf, x)


@pytest.mark.parametrize("probs", [0.0, 1.0])
def test_hf_folder_matches_transformers(tmp_path, probs):
    pytest.importorskip("transformers")
    t = Tiny(registers=4, queries=7, classes=3)
    torch.manual_seed(0)
    hf = hf_model(t)
    with torch.no_grad():  # move off the special initial values (LayerScale 1, zero registers)
        for name, p in hf.named_parameters():
            p.add_(torch.randn_like(p) * 0.1)
        hf.attn_mask_probs.fill_(probs)
    hf.save_pretrained(tmp_path / "hf")
    assert detect_layout(tmp_path / "hf") == "hf"
    model = load_eomt(tmp_path / "hf")
    assert (model.config.num_q, model.config.num_classes, model.config.heads) == (7, 3, t.heads)
    assert_matches_transformers(model, hf, images(t))


def test_official_convert_to_hf_and_back(tmp_path):
    transformers = pytest.importorskip("transformers")
    sd = official_state_dict(T, seed=5, mask_probs=0.0)
    src = save_official(tmp_path / "eomt.ckpt", sd)
    x = images()
    expected = ours(load_eomt(src), x)

    assert convert_cli(["--to", "hf", str(src), str(tmp_path / "hf")]) == 0
    assert_same(ours(load_eomt(tmp_path / "hf"), x), expected)
    # transformers itself reads what we wrote, with nothing missing or left over
    hf, info = transformers.EomtForUniversalSegmentation.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert_same(hf_reference(hf.eval(), x), expected)

    # hf -> official gives back the very same state dict
    assert convert_cli(["--to", "official", str(tmp_path / "hf"), str(tmp_path / "back.bin")]) == 0
    back = read_state_dict(tmp_path / "back.bin")
    assert set(back) == set(sd)
    for key, value in sd.items():
        torch.testing.assert_close(back[key], value, msg=key)
    # ... and as a Lightning checkpoint
    save_eomt(load_eomt(tmp_path / "hf"), tmp_path / "back.ckpt", "official")
    assert set(torch.load(tmp_path / "back.ckpt", weights_only=True)["state_dict"]) == set(sd)


def test_roadanomaly_folder_round_trip(tmp_path):
    model = load_eomt(save_official(tmp_path / "eomt.bin", official_state_dict(T)))
    model.config.class_names = ("a", "b", "c", "d")
    save_eomt(model, tmp_path / "ours")
    meta = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert meta["format"] == "roadanomaly-eomt" and meta["config"]["width"] == T.width
    again, layout = load_eomt_checkpoint(tmp_path / "ours")
    assert layout == "roadanomaly" and again.config == model.config
    x = images()
    assert_same(ours(again, x), ours(model, x), tol=0)
    # class names survive a trip through the HF layout
    save_eomt(again, tmp_path / "hf", "hf")
    assert load_eomt(tmp_path / "hf").config.class_names == ("a", "b", "c", "d")


def test_bare_state_dicts_and_other_folder_files(tmp_path):
    model = load_eomt(save_official(tmp_path / "eomt.bin", official_state_dict(T)))
    x = images()
    expected = ours(model, x)
    # our names in a plain .pt, pixel statistics left out (ImageNet then)
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith("pixel_")}
    torch.save(sd, tmp_path / "ours.pt")
    model2, layout = load_eomt_checkpoint(tmp_path / "ours.pt")
    assert layout == "roadanomaly" and model2.config == model.config
    assert_same(ours(model2, x), expected, tol=0)
    # an HF folder holding pytorch_model.bin, and one with sharded safetensors
    save_eomt(model, tmp_path / "hf", "hf")
    from safetensors.torch import load_file, save_file

    weights = load_file(str(tmp_path / "hf" / "model.safetensors"))
    (tmp_path / "hf" / "model.safetensors").unlink()
    torch.save(weights, tmp_path / "hf" / "pytorch_model.bin")
    assert_same(ours(load_eomt(tmp_path / "hf"), x), expected, tol=0)
    (tmp_path / "hf" / "pytorch_model.bin").unlink()
    keys = sorted(weights)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for name, part in shards.items():
        save_file({k: weights[k] for k in part}, str(tmp_path / "hf" / name))
    index = {"weight_map": {k: name for name, part in shards.items() for k in part}}
    (tmp_path / "hf" / "model.safetensors.index.json").write_text(json.dumps(index))
    assert_same(ours(load_eomt(tmp_path / "hf"), x), expected, tol=0)


def test_no_registers_and_class_position(tmp_path):
    t = Tiny(registers=0)
    sd = official_state_dict(t)
    bb = "network.encoder.backbone."
    x = images(t)
    plain = ours(load_eomt(save_official(tmp_path / "plain.bin", sd)), x)
    # a table with a leading class position: it is folded into the CLS token
    cls_pos = torch.randn(1, 1, t.width)
    sd2 = dict(sd)
    sd2[bb + "pos_embed"] = torch.cat([cls_pos, sd[bb + "pos_embed"]], dim=1)
    sd2[bb + "cls_token"] = sd[bb + "cls_token"] - cls_pos
    model = load_eomt(save_official(tmp_path / "cls.bin", sd2))
    assert model.config.num_registers == 0
    assert_same(ours(model, x), plain, tol=1e-4)  # (cls - p) + p is cls up to rounding
    save_eomt(model, tmp_path / "hf", "hf")
    assert_same(ours(load_eomt(tmp_path / "hf"), x), plain, tol=1e-4)


def test_non_square_grid_needs_img_size(tmp_path):
    t = Tiny(grid=(4, 8))
    path = save_official(tmp_path / "wide.bin", official_state_dict(t))
    with pytest.raises(UserError, match="img_size"):
        load_eomt(path)
    model = load_eomt(path, img_size=(64, 128))
    assert model.config.img_size == (64, 128)
    with pytest.raises(UserError, match="square"):
        save_eomt(model, tmp_path / "hf", "hf")


def test_package_does_not_import_transformers(tmp_path):
    path = save_official(tmp_path / "eomt.ckpt", official_state_dict(T))
    code = (
        "import sys, torch\n"
        "from roadanomaly.inference import load_predictor\n"
        f"p = load_predictor('eomt', r'{path}')\n"
        "p(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))\n"
        "assert 'transformers' not in sys.modules, 'transformers imported'\n"
    )
    src = Path(__file__).resolve().parents[1] / "src"
    result = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(src)}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------------------------------- strictness
def _error(path: Path, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        load_eomt(path, **kwargs)
    return str(info.value)


def test_mismatched_official_checkpoints(tmp_path):
    sd = official_state_dict(T)
    missing = {k: v for k, v in sd.items() if k != "network.mask_head.2.weight"}
    message = _error(save_official(tmp_path / "missing.ckpt", missing))
    assert "missing keys: network.mask_head.2.weight" in message and "official" in message

    extra = {**sd, "network.extra_head.weight": torch.zeros(3)}
    assert "unexpected keys: network.extra_head.weight" in _error(save_official(tmp_path / "extra.ckpt", extra))

    shaped = {**sd, "network.mask_head.0.bias": torch.zeros(T.width + 1)}
    message = _error(save_official(tmp_path / "shape.ckpt", shaped))
    assert "wrong shapes: network.mask_head.0.bias (129,) vs expected (128,)" in message

    no_blocks = {k: v for k, v in sd.items() if "blocks.1." not in k}
    assert "missing keys: network.encoder.backbone.blocks.1." in _error(save_official(tmp_path / "b.ckpt", no_blocks))

    no_queries = {k: v for k, v in sd.items() if k != "network.q.weight"}
    assert "q.weight" in _error(save_official(tmp_path / "q.ckpt", no_queries))


def test_mismatched_hf_and_our_folders(tmp_path):
    model = load_eomt(save_official(tmp_path / "eomt.bin", official_state_dict(T)))
    save_eomt(model, tmp_path / "hf", "hf")
    from safetensors.torch import load_file, save_file

    weights = load_file(str(tmp_path / "hf" / "model.safetensors"))
    del weights["layers.1.attention.k_proj.weight"]
    save_file(weights, str(tmp_path / "hf" / "model.safetensors"))
    assert "missing keys: layers.1.attention.k_proj.weight" in _error(tmp_path / "hf")

    save_eomt(model, tmp_path / "ours")
    config = json.loads((tmp_path / "ours" / "config.json").read_text())
    config["config"]["num_q"] += 1
    (tmp_path / "ours" / "config.json").write_text(json.dumps(config))
    assert "wrong shapes: q.weight (6, 128) vs expected (7, 128)" in _error(tmp_path / "ours")


def test_unreadable_inputs(tmp_path):
    assert "no such file" in _error(tmp_path / "nothing.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint at all")
    assert _error(tmp_path / "junk.ckpt") == (
        f"{tmp_path / 'junk.ckpt'}: not a PyTorch checkpoint (neither a zip archive nor a pickle)")
    (tmp_path / "empty").mkdir()
    assert "no config.json" in _error(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"model_type": "bert"}')
    assert "neither" in _error(tmp_path / "other")
    torch.save({"weights": [1, 2, 3]}, tmp_path / "list.pt")
    assert "state dict" in _error(tmp_path / "list.pt")
    torch.save({"a.weight": torch.zeros(2)}, tmp_path / "foreign.pt")
    assert "unrecognised keys a.weight" in _error(tmp_path / "foreign.pt")


class _Opaque:
    """Stands for a Lightning hyper-parameter object that plain-tensor loading refuses."""


def test_pickled_objects_need_trust(tmp_path):
    path = tmp_path / "eomt.ckpt"
    torch.save({"state_dict": official_state_dict(T), "hyper_parameters": _Opaque()}, path)
    assert "trust_pickle" in _error(path)
    assert load_eomt(path, trust_pickle=True).config.width == T.width


# ----------------------------------------------------------------------------------------------- DINOv2
def test_flexivit_patch_resize_keeps_embeddings():
    torch.manual_seed(0)
    w14 = torch.randn(16, 3, 14, 14) / (3 * 196) ** 0.5
    w16 = resample_patch_kernel(w14, 16)
    assert w16.shape == (16, 3, 16, 16)
    # a patch resized the way the kernel was: same embedding
    x14 = torch.rand(4, 3, 14, 14)
    x16 = F.interpolate(x14.double(), size=(16, 16), mode="bicubic", align_corners=False, antialias=True).float()
    torch.testing.assert_close(F.conv2d(x16, w16, stride=16), F.conv2d(x14, w14, stride=14), atol=1e-5, rtol=1e-4)

    # a smooth image patch sampled at both resolutions: nearly the same embedding
    def smooth(n: int) -> torch.Tensor:
        c = (torch.arange(n) + 0.5) / n
        y, x = torch.meshgrid(c, c, indexing="ij")
        return torch.stack([torch.sin(2 * y + 1) + 0.5 * x, torch.cos(3 * x) * y, 0.3 + 0.4 * x * y])[None]

    e14, e16 = F.conv2d(smooth(14), w14, stride=14), F.conv2d(smooth(16), w16, stride=16)
    assert ((e16 - e14).norm() / e14.norm()) < 0.01
    naive = F.conv2d(smooth(16), F.interpolate(w14, size=(16, 16), mode="bicubic"), stride=16)
    assert ((naive - e14).norm() / e14.norm()) > 0.1  # plain kernel interpolation would not do


@pytest.mark.parametrize("facebook_names", [False, True])
def test_dinov2_initialises_the_encoder(tmp_path, facebook_names):
    sd = dinov2_state_dict(
        width=128, depth=2, registers=4, side=5, class_position=facebook_names, facebook_names=facebook_names
    )
    path = tmp_path / "dinov2.pth"
    torch.save(sd, path)
    assert detect_layout(path) == "dinov2"
    model, layout = load_eomt_checkpoint(path, img_size=(96, 64), dinov2={"num_classes": 7, "num_q": 9})
    c = model.config
    assert layout == "dinov2"
    assert (c.width, c.depth, c.heads, c.patch, c.num_registers) == (128, 2, 2, 16, 4)
    assert (c.img_size, c.num_classes, c.num_q, c.num_blocks) == ((96, 64), 7, 9, 2)
    enc = model.encoder
    cls = sd["cls_token"] + (sd["pos_embed"][:, :1] if facebook_names else 0)
    torch.testing.assert_close(enc.cls_token.data, cls)
    torch.testing.assert_close(enc.reg_token.data, sd["register_tokens" if facebook_names else "reg_token"])
    grid = sd["pos_embed"][:, int(facebook_names) :].reshape(1, 5, 5, 128).permute(0, 3, 1, 2)
    resampled = F.interpolate(grid, size=(6, 4), mode="bicubic", align_corners=False, antialias=True)
    torch.testing.assert_close(enc.pos_embed.data, resampled.permute(0, 2, 3, 1).reshape(1, 24, 128))
    kernel = resample_patch_kernel(sd["patch_embed.proj.weight"], 16)
    torch.testing.assert_close(enc.patch_embed.proj.weight.data, kernel)
    torch.testing.assert_close(enc.blocks[1].attn.qkv.weight.data, sd["blocks.1.attn.qkv.weight"])
    assert (model.attn_mask_probs == 1).all()  # training starts with masked attention
    with torch.no_grad():
        assert model(torch.rand(1, 3, 96, 64) * 255)[0][-1].shape == (1, 9, 24, 16)


def test_dinov2_from_training_checkpoint_and_strictness(tmp_path):
    sd = dinov2_state_dict(width=64, depth=2, registers=0, side=4, class_position=True)
    teacher = {f"backbone.{k}": v for k, v in sd.items()} | {"dino_head.mlp.0.weight": torch.zeros(2, 2)}
    torch.save({"teacher": teacher}, tmp_path / "teacher.pth")
    model = load_eomt(tmp_path / "teacher.pth", img_size=(64, 64))
    assert model.config.num_registers == 0 and model.config.heads == 1
    torch.save({**sd, "blocks.0.attn.q_norm.weight": torch.zeros(64)}, tmp_path / "bad.pth")
    assert "unexpected keys: blocks.0.attn.q_norm.weight" in _error(tmp_path / "bad.pth")
    torch.save({k: v for k, v in sd.items() if k != "blocks.1.ls2.gamma"}, tmp_path / "bad2.pth")
    assert "missing keys: blocks.1.ls2.gamma" in _error(tmp_path / "bad2.pth")


# -------------------------------------------------------------------------------------------------- CLI
def test_convert_cli(tmp_path, capsys):
    from roadanomaly.cli import convert

    parser = argparse.ArgumentParser(prog="roadanomaly")
    sub = convert.add_parser(parser.add_subparsers(dest="command"))
    help_text = sub.format_help()
    for word in ("official", "hf", "roadanomaly", "dinov2", "--to", "--img-size", "--trust-pickle"):
        assert word in help_text
    src = save_official(tmp_path / "eomt.ckpt", official_state_dict(T))
    assert convert_cli(["--to", "roadanomaly", str(src), str(tmp_path / "ours")]) == 0
    assert "official" in capsys.readouterr().out
    assert convert_cli(["--to", "roadanomaly", str(src), str(tmp_path / "ours")]) == 2
    assert "exists already" in capsys.readouterr().err
    assert convert_cli(["--to", "official", str(tmp_path / "ours"), str(tmp_path / "x.txt")]) == 2
    assert "ending .ckpt" in capsys.readouterr().err
    torch.save(dinov2_state_dict(width=64, depth=2, side=4), tmp_path / "dino.pth")
    argv = ["--to", "hf", "--img-size", "64", "--num-classes", "5", str(tmp_path / "dino.pth"), str(tmp_path / "d")]
    assert convert_cli(argv) == 0
    assert load_eomt(tmp_path / "d").config.num_classes == 5


def test_convert_registered_in_main_cli(tmp_path, capsys):
    import roadanomaly.cli as cli

    if "convert" not in cli.SUBCOMMANDS:
        pytest.skip("convert is not registered in roadanomaly.cli.SUBCOMMANDS")
    src = save_official(tmp_path / "eomt.ckpt", official_state_dict(T))
    assert cli.main(["convert", "--to", "hf", str(src), str(tmp_path / "hf")]) == 0
    assert cli.main(["convert", "--to", "hf", str(src), str(tmp_path / "hf")]) == 2
    assert capsys.readouterr().err.startswith("roadanomaly: error: ")
