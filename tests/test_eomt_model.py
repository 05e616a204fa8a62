"""EoMT model: configuration, shapes, masked attention, position embedding resampling."""

from __future__ import annotations

import pytest
import torch

from roadanomaly.models.eomt import SIZES, EoMT, EoMTConfig
from roadanomaly.models.vit import Block, resample_grid


def tiny_config(**overrides) -> EoMTConfig:
    base = dict(width=32, depth=3, heads=2, img_size=(64, 64), num_classes=4, num_q=5, num_blocks=2)
    return EoMTConfig(**{**base, **overrides})


def tiny_model(probs: float = 0.0, seed: int = 0, **overrides) -> EoMT:
    """A tiny EoMT whose blocks matter (LayerScale 0.5, random registers) so that masking has an effect."""
    torch.manual_seed(seed)
    model = EoMT(tiny_config(**overrides)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.5)
            elif "token" in name:
                p.normal_()
        model.attn_mask_probs.fill_(probs)
    return model


def images(b: int = 2, h: int = 64, w: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 255


def test_presets_and_defaults():
    expected = {"S": (384, 12, 6, 3), "B": (768, 12, 12, 3), "L": (1024, 24, 16, 4)}
    for size, (width, depth, heads, blocks) in expected.items():
        c = EoMTConfig.preset(size)
        assert (c.width, c.depth, c.heads, c.num_blocks) == (width, depth, heads, blocks)
        assert (c.patch, c.num_registers) == (16, 4)
        assert (c.num_q, c.num_classes, c.img_size, c.grid, c.num_upscale) == (100, 19, (1024, 1024), (64, 64), 2)
        assert c.size_name == size
    assert tiny_config(patch=8, img_size=(64, 64)).num_upscale == 1
    assert tiny_config(patch=32, img_size=(64, 64)).num_upscale == 3
    assert tiny_config().size_name == "custom"
    with pytest.raises(ValueError):
        EoMTConfig.preset("XL")
    with pytest.raises(ValueError):
        tiny_config(img_size=(60, 64))


def test_config_dict_round_trip():
    c = tiny_config(class_names=("a", "b", "c", "d"), img_size=(64, 128))
    assert EoMTConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown"):
        EoMTConfig.from_dict({**c.to_dict(), "bogus": 1})


def test_parameter_names_follow_timm():
    names = set(tiny_model().state_dict())
    for key in [
        "encoder.cls_token", "encoder.reg_token", "encoder.pos_embed", "encoder.patch_embed.proj.weight",
        "encoder.blocks.2.norm1.weight", "encoder.blocks.2.attn.qkv.weight", "encoder.blocks.2.attn.proj.bias",
        "encoder.blocks.2.ls1.gamma", "encoder.blocks.2.norm2.bias", "encoder.blocks.2.mlp.fc1.weight",
        "encoder.blocks.2.mlp.fc2.weight", "encoder.blocks.2.ls2.gamma", "encoder.norm.weight", "q.weight",
        "class_head.weight", "mask_head.0.weight", "mask_head.2.weight", "mask_head.4.bias",
        "upscale.1.conv1.weight", "upscale.1.conv2.weight", "upscale.1.norm.weight", "attn_mask_probs",
        "pixel_mean", "pixel_std",
    ]:  # fmt: skip
        assert key in names, key
    assert "upscale.1.conv2.bias" not in names
    assert "encoder.reg_token" not in EoMT(tiny_config(num_registers=0)).state_dict()


def test_forward_shapes():
    model = tiny_model()
    x = images(2, 64, 96)
    with torch.no_grad():
        out = model.forward_all(x)
        masks, classes = model(x)
    assert len(out.mask_logits) == len(out.class_logits) == 1  # trained state: only the final prediction
    assert masks[-1].shape == (2, 5, 16, 24) and classes[-1].shape == (2, 5, 5)
    assert out.queries.shape == (2, 5, 32)
    torch.testing.assert_close(out.mask_logits[-1], masks[-1])
    # the queries are what the class head reads
    torch.testing.assert_close(model.class_head(out.queries), out.class_logits[-1])
    model.train()
    masks, classes = model(x)
    assert len(masks) == len(classes) == model.num_blocks + 1  # deep supervision: one per query block + final
    sum(m.sum() for m in masks).backward()
    assert model.q.weight.grad is not None and model.encoder.patch_embed.proj.weight.grad is not None


def test_eval_masking_follows_probabilities():
    x = images()
    with torch.no_grad():
        assert len(tiny_model(probs=1.0).forward_all(x).mask_logits) == 3
        assert len(tiny_model(probs=0.0).forward_all(x).mask_logits) == 1


def test_masked_attention_changes_output():
    model, x = tiny_model(), images()
    with torch.no_grad():
        off = model.forward_all(x, masked_attn=False).mask_logits[-1]
        on = model.forward_all(x, masked_attn=True)
        model.masked_attn = True
        on_flag = model.forward_all(x)
    assert len(on.mask_logits) == 3
    assert (on.mask_logits[-1] - off).abs().max() > 1e-3
    torch.testing.assert_close(on_flag.mask_logits[-1], on.mask_logits[-1])
    # forced masking = annealing probability 1 (no query's mask disabled), deterministic
    with torch.no_grad():
        torch.testing.assert_close(tiny_model(probs=1.0).forward_all(x).mask_logits[-1], on.mask_logits[-1])


def test_flipped_mask_changes_output(monkeypatch):
    model, x = tiny_model(), images()
    with torch.no_grad():
        masked = model.forward_all(x, masked_attn=True).mask_logits[-1]
    make_mask = model._attn_mask

    def flipped(*args, **kwargs):
        mask = make_mask(*args, **kwargs)
        start = model.num_q + model.encoder.num_prefix_tokens
        mask[:, :, : model.num_q, start:] = ~mask[:, :, : model.num_q, start:]
        return mask

    monkeypatch.setattr(model, "_attn_mask", flipped)
    with torch.no_grad():
        flipped_out = model.forward_all(x, masked_attn=True).mask_logits[-1]
    assert (flipped_out - masked).abs().max() > 1e-3


def test_all_allowed_mask_equals_no_mask():
    torch.manual_seed(0)
    block, tokens = Block(32, 2), torch.randn(2, 30, 32)
    with torch.no_grad():
        torch.testing.assert_close(block(tokens, torch.ones(2, 1, 30, 30, dtype=torch.bool)), block(tokens))
    # training with probability 0: masks are computed but every query's mask is disabled
    model, x = tiny_model(probs=0.0), images()
    with torch.no_grad():
        reference = model.forward_all(x, masked_attn=False).mask_logits[-1]
        model.train()
        out = model.forward_all(x)
    assert len(out.mask_logits) == 3
    torch.testing.assert_close(out.mask_logits[-1], reference)


def test_attention_mask_layout():
    model = tiny_model()  # 5 queries, 1 CLS + 4 registers, 4x4 patches
    logits = torch.randn(2, 5, 16, 16)
    mask = model._attn_mask(logits, (4, 4), 5 + 5 + 16, prob=None)
    assert mask.shape == (2, 1, 26, 26) and mask.dtype == torch.bool
    mask = mask[:, 0]
    assert mask[:, 5:].all()  # CLS, registers and patches attend everywhere
    assert mask[:, :5, :10].all()  # queries see queries, CLS and registers
    inside = torch.nn.functional.interpolate(logits, (4, 4), mode="bilinear").flatten(2) > 0
    assert torch.equal(mask[:, :5, 10:], inside)
    assert model._attn_mask(logits, (4, 4), 26, prob=0.0).all()  # probability 0: every mask disabled


def test_random_disabling_rate():
    model = tiny_model(num_q=50)
    torch.manual_seed(0)
    mask = model._attn_mask(torch.full((40, 50, 16, 16), -1.0), (4, 4), 50 + 5 + 16, prob=0.25)
    disabled = mask[:, 0, :50, 55:].all(dim=-1).float().mean()
    assert 0.7 < disabled < 0.8  # a query's mask is off with probability 1 - p


def test_position_embedding_resampling():
    model = tiny_model()
    assert resample_grid(model.encoder.pos_embed, (4, 4), (4, 4)) is model.encoder.pos_embed
    constant = torch.ones(1, 16, 8) * 3
    torch.testing.assert_close(resample_grid(constant, (4, 4), (6, 10)), torch.ones(1, 60, 8) * 3)
    with torch.no_grad():
        masks, _ = model(images(1, 96, 128))
    assert masks[-1].shape == (1, 5, 24, 32)


def test_pixels_are_normalised_inside():
    model = tiny_model()
    torch.testing.assert_close(model.pixel_mean.flatten(), torch.tensor([0.485, 0.456, 0.406]) * 255)
    torch.testing.assert_close(model.pixel_std.flatten(), torch.tensor([0.229, 0.224, 0.225]) * 255)
    x = images()
    with torch.no_grad():
        reference = model(x)[0][-1]
        model.pixel_mean.zero_()
        model.pixel_std.fill_(1.0)
        normalised = (x - torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1) * 255) / (
            torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1) * 255
        )
        torch.testing.assert_close(model(normalised)[0][-1], reference, atol=1e-5, rtol=1e-5)


def test_presets_build():
    # the S preset builds with the right parameter count (DINOv2 ViT-S/14 encoder ~21.7M + EoMT heads)
    model = EoMT(EoMTConfig.preset("S"))
    encoder = sum(p.numel() for p in model.encoder.parameters())
    assert 21_000_000 < encoder < 23_500_000
    assert SIZES["L"]["num_blocks"] == 4
