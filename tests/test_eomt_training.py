"""EoMT training pieces: annealing, layer-wise lr and warmup, targets and augmentation, stream order, overfitting."""

import math

import numpy as np
import pytest
import torch

from roadanomaly.models.eomt import EoMT, EoMTConfig
from roadanomaly.training.eomt.annealing import mask_probabilities
from roadanomaly.training.eomt.criterion import LossConfig, mask_classification_loss
from roadanomaly.training.eomt.data import Augment, collate, pad_and_crop, semantic_targets
from roadanomaly.training.eomt.optim import build_optimizer, warmup_poly_factor
from roadanomaly.training.streams import IndexedStream

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CITYSCAPES_STARTS = (3317, 6634, 9951, 13268)
CITYSCAPES_ENDS = (6634, 9951, 13268, 16585)


def tiny(depth=3, num_blocks=2, **kw):
    torch.manual_seed(0)
    options = dict(width=64, depth=depth, heads=2, patch=8, num_registers=1, img_size=(32, 32), num_classes=4,
                   num_q=6, num_blocks=num_blocks)
    return EoMT(EoMTConfig(**{**options, **kw}))


# ------------------------------------------------------------------------------------------------ annealing
@pytest.mark.parametrize(
    "step,expected",
    [
        (0, [1, 1, 1, 1]),
        (3316, [1, 1, 1, 1]),
        (3317, [1, 1, 1, 1]),
        (3317 + 3317 // 4, [(1 - (3317 // 4) / 3317) ** 0.9, 1, 1, 1]),
        (6634, [0, 1, 1, 1]),
        (6634 + 3317 * 3 // 4, [0, (1 - (3317 * 3 // 4) / 3317) ** 0.9, 1, 1]),
        (13268, [0, 0, 0, 1]),
        (16584, [0, 0, 0, (1 / 3317) ** 0.9]),
        (16585, [0, 0, 0, 0]),
        (30000, [0, 0, 0, 0]),
    ],
)
def test_cityscapes_annealing_probabilities(step, expected):
    np.testing.assert_allclose(mask_probabilities(step, CITYSCAPES_STARTS, CITYSCAPES_ENDS, 0.9), expected, rtol=1e-12)


def test_annealing_halfway_value():
    assert mask_probabilities(150, [100], [200], 0.9)[0] == pytest.approx(0.5 ** 0.9)
    with pytest.raises(ValueError, match="end after it starts"):
        mask_probabilities(0, [5], [5])


def test_block_at_probability_zero_builds_no_mask_and_inference_never_masks(monkeypatch):
    model = tiny().train()
    calls = []
    original = model._attn_mask
    monkeypatch.setattr(model, "_attn_mask", lambda *a: calls.append(a[-1]) or original(*a))
    x = torch.rand(2, 3, 32, 32) * 255
    model.attn_mask_probs.copy_(torch.tensor([0.0, 0.6]))
    out = model.forward_all(x)
    assert calls == [pytest.approx(0.6)]  # only the second query block builds a mask
    assert len(out.mask_logits) == 3  # both blocks still predict (deep supervision) and the final output
    calls.clear()
    model.masked_attn = False  # what validation and the exported model use
    model.forward_all(x)
    assert calls == []


def test_masks_dropped_per_image_and_query_with_probability_one_minus_p():
    model = tiny(num_q=400, num_blocks=1)
    model.mask_generator = torch.Generator().manual_seed(0)
    logits = torch.full((3, 400, 4, 4), -5.0)  # every query sees no patch unless its mask is dropped
    mask = model._attn_mask(logits, (4, 4), 400 + 2 + 16, 0.3)[:, 0, :400, 402:]
    dropped = mask.all(-1).float()  # a dropped mask lets the query see every patch
    assert ((mask.any(-1)) == mask.all(-1)).all()
    assert abs(float(dropped.mean()) - 0.7) < 0.04


# ------------------------------------------------------------------------------------------- optimisation
def lr_of(optimizer, param):
    return next(g["lr"] for g in optimizer.param_groups if any(p is param for p in g["params"]))


def test_layerwise_lr_decay_of_chosen_parameters():
    model = tiny(depth=4)
    optimizer, _ = build_optimizer(model, lr=1e-4, llrd=0.8, warmup=(0, 0), total_steps=10)
    e = model.encoder
    expected = {
        e.blocks[0].attn.qkv.weight: 1e-4 * 0.8**3,
        e.blocks[1].mlp.fc1.bias: 1e-4 * 0.8**2,
        e.blocks[2].norm1.weight: 1e-4 * 0.8,
        e.blocks[3].ls2.gamma: 1e-4,
        e.patch_embed.proj.weight: 1e-4 * 0.8**3,
        e.pos_embed: 1e-4 * 0.8**3,
        e.cls_token: 1e-4 * 0.8**3,
        e.reg_token: 1e-4 * 0.8**3,
        e.norm.weight: 1e-4,
        model.q.weight: 1e-4,
        model.class_head.weight: 1e-4,
        model.mask_head[4].bias: 1e-4,
        model.upscale[0].conv1.weight: 1e-4,
    }
    for param, lr in expected.items():
        assert lr_of(optimizer, param) == pytest.approx(lr, rel=1e-12)
    grouped = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # every parameter exactly once
    assert all(g["weight_decay"] == 0.05 for g in optimizer.param_groups)


def test_two_stage_warmup_then_poly_decay():
    model = tiny(depth=2)
    optimizer, scheduler = build_optimizer(model, lr=1e-3, llrd=0.5, warmup=(2, 4), total_steps=20, poly_power=0.9)
    head, block0 = model.class_head.weight, model.encoder.blocks[0].mlp.fc1.weight
    seen = {}
    for step in range(21):
        seen[step] = (lr_of(optimizer, head), lr_of(optimizer, block0))
        optimizer.step()
        scheduler.step()
    by_hand = {
        0: (0.0, 0.0),
        1: (0.5e-3, 0.0),
        2: (1e-3, 0.0),
        4: (1e-3 * (1 - 2 / 18) ** 0.9, 0.5e-3 * 2 / 4),
        6: (1e-3 * (1 - 4 / 18) ** 0.9, 0.5e-3),
        11: (1e-3 * (1 - 9 / 18) ** 0.9, 0.5e-3 * (1 - 5 / 14) ** 0.9),
        20: (0.0, 0.0),
    }
    for step, (h, b) in by_hand.items():
        assert seen[step] == (pytest.approx(h, abs=1e-15), pytest.approx(b, abs=1e-15)), step
    assert warmup_poly_factor(25, (2, 4), 20, backbone=True) == 0.0


# --------------------------------------------------------------------------------------------------- data
def test_semantic_targets_one_mask_per_present_class():
    ids = np.array([[0, 0, 255], [7, 7, 0], [25, 7, 255]], np.uint8)
    target = semantic_targets(ids, num_classes=19)
    assert target.labels.tolist() == [0, 7]  # void and ids beyond the classes give no mask
    np.testing.assert_array_equal(target.masks[0].numpy(), ids == 0)
    np.testing.assert_array_equal(target.masks[1].numpy(), ids == 7)
    assert semantic_targets(np.full((2, 2), 255, np.uint8)).masks.shape == (0, 2, 2)


def test_pad_and_crop_pads_with_void_and_keeps_pixels_aligned():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    label = np.arange(6, dtype=np.uint8).reshape(2, 3)
    out_image, out_label = pad_and_crop(image, label, (4, 4), np.random.default_rng(0))
    assert out_image.shape == (4, 4, 3) and out_label.shape == (4, 4)
    assert (out_label[2:] == 255).all() and (out_label[:, 3] == 255).all() and (out_image[2:] == 0).all()
    np.testing.assert_array_equal(out_label[:2, :3], label)


def test_augment_is_deterministic_per_sample_and_labels_follow_pixels():
    label = np.repeat(np.array([0, 3, 5, 255], np.uint8), 8)[None].repeat(16, 0)  # vertical bands
    palette = np.array([[200, 0, 0], [0, 200, 0], [0, 0, 200], [90, 90, 90]], np.uint8)
    image = palette[np.searchsorted([0, 3, 5, 255], label)]
    augment = Augment(crop=(16, 16), resize=(16, 32), scale_range=(0.75, 1.5), color_jitter=False, seed=3)
    a, b = augment(7, image, label), augment(7, image, label)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1].masks, b[1].masks)
    assert not all(torch.equal(augment(k, image, label)[0], a[0]) for k in range(8, 12))
    pixels, target = a
    assert pixels.shape == (3, 16, 16) and pixels.dtype == torch.uint8
    assert len(target.labels) >= 2
    for mask, cls in zip(target.masks, target.labels.tolist()):  # labelled pixels show their class's colour
        colour = torch.tensor(palette[[0, 3, 5].index(cls)], dtype=torch.uint8)
        exact = (pixels.permute(1, 2, 0)[mask] == colour).all(-1).float().mean()
        assert exact > 0.75  # all but the bilinearly blended band edges
    images, targets = collate([a, b])
    assert images.shape == (2, 3, 16, 16) and len(targets) == 2


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_stream_order_does_not_depend_on_workers(workers):
    stream = IndexedStream(lambda k: k, batch_size=4, start_batch=5)
    per_worker = [stream.indices(w, workers) for w in range(workers)]
    order = []
    for batch in range(6):  # the DataLoader takes whole batches from the workers in turn
        it = per_worker[batch % workers]
        order += [next(it) for _ in range(4)]
    assert order == list(range(20, 44))
    stream.rank, stream.world_size = 1, 2  # DDP: rank 1 of 2 takes every other batch of the global order
    first = stream.indices()
    assert [next(first) for _ in range(8)] == [44, 45, 46, 47, 52, 53, 54, 55]


# --------------------------------------------------------------------------------------------- overfitting
def test_a_tiny_eomt_overfits_one_batch():
    model = tiny(depth=2, num_blocks=1, num_registers=0).train()
    model.attn_mask_probs.zero_()
    g = np.random.default_rng(0)
    ids = np.zeros((2, 32, 32), np.uint8)
    ids[0, 16:], ids[1, :, 20:] = 1, 2
    ids[1, :8] = 3
    colours = np.array([[30, 30, 30], [220, 40, 40], [40, 220, 40], [40, 40, 220]])
    images = torch.from_numpy(colours[ids] + g.integers(-10, 11, (2, 32, 32, 3))).permute(0, 3, 1, 2).float()
    targets = [semantic_targets(i, num_classes=4) for i in ids]
    optimizer, scheduler = build_optimizer(model, lr=2e-3, llrd=1.0, warmup=(0, 0), total_steps=1000)
    config = LossConfig(num_points=256)
    losses = []
    for step in range(40):
        out = model.forward_all(images)
        loss, _ = mask_classification_loss(out.mask_logits, out.class_logits, targets, config,
                                           torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
    assert math.isfinite(losses[-1]) and min(losses[-5:]) <= 0.5 * losses[0], losses


def test_schedule_clock_follows_steps_or_wall_time():
    from roadanomaly.training.eomt.optim import ScheduleClock

    assert ScheduleClock(100).step(37) == 37
    clock = ScheduleClock(100, minutes=1.0)
    clock.elapsed_before = 30.0  # half the budget spent by an earlier run
    clock.start()
    assert clock.step(7) == 50
    clock.elapsed_before = 600.0
    assert clock.step(7) == 100  # never past the schedule's end
