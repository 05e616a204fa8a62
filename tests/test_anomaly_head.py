"""EoMT-EXT anomaly head: gradients only where allowed, cached == full loss, save/load, the scores it feeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from roadanomaly.data.outlier_exposure import (
    OutlierPaster,
    PasteConfig,
    SynthOutlierSource,
)
from roadanomaly.errors import UserError
from roadanomaly.inference.eomt import EoMTPredictor
from roadanomaly.models.anomaly_head import (
    AnomalyHead,
    RbaOEHead,
    base_identity,
    load_anomaly_heads,
    merge_into_checkpoint,
    read_anomaly_heads,
    save_anomaly_heads,
)
from roadanomaly.models.eomt import EoMT, EoMTConfig
from roadanomaly.models.eomt_checkpoints import load_eomt
from roadanomaly.scoring import compute_scores
from roadanomaly.training.anomaly_head_config import AnomalyHeadTrainConfig
from roadanomaly.training.anomaly_head_data import PastedTrainSet
from roadanomaly.training.anomaly_head_losses import match_all, rba_pixel_scores
from roadanomaly.training.eomt.matcher import MatchCosts, hungarian_match
from roadanomaly.training.anomaly_head_module import (
    AnomalyHeadModule,
    QueryCache,
    query_batch,
)

CROP = 32


def tiny_base(seed: int = 0) -> EoMT:
    torch.manual_seed(seed)
    config = EoMTConfig(width=32, depth=3, heads=2, img_size=(CROP, CROP), num_classes=19, num_q=6, num_blocks=2)
    model = EoMT(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.5)
    return model


def tiny_samples(n: int = 4, copies: int = 2) -> PastedTrainSet:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 64, 3)).astype(np.uint8) for _ in range(n)]
    labels = []
    for _ in range(n):
        lab = np.full((32, 64), 10, np.uint8)
        lab[12:] = 0
        lab[20:, 40:] = 1
        lab[:2] = 255
        labels.append(lab)
    paster = OutlierPaster([SynthOutlierSource(32)], PasteConfig(count=(1, 2), min_pixels=1))
    return PastedTrainSet(images, labels, paster, CROP, num_points=128, copies=copies, seed=0)


def config(**kw) -> AnomalyHeadTrainConfig:
    return AnomalyHeadTrainConfig(hidden=16, num_points=128, **kw)


@pytest.mark.parametrize("head_blocks", [0, 1])
def test_head_gets_gradients_and_nothing_frozen_changes(head_blocks: int) -> None:
    base = tiny_base()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    module = AnomalyHeadModule(base, config(head_blocks=head_blocks))
    assert len(module.head.blocks) == head_blocks
    samples = tiny_samples()
    head_before = [p.clone() for p in module.head.parameters()]
    rba_before = [p.clone() for p in module.rba_oe.parameters()]
    optimizer = torch.optim.SGD([*module.head.parameters(), *module.rba_oe.parameters()], lr=0.5)
    module.train()
    for step in range(3):
        optimizer.zero_grad()
        loss = module.losses([samples[i] for i in range(4)])["loss"]
        loss.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.head.parameters())
        assert all(p.grad is None for p in base.parameters())
        optimizer.step()
    assert not base.training  # the base keeps inference behaviour during training
    for k, v in base.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(not torch.equal(a, b) for a, b in zip(head_before, module.head.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(rba_before, module.rba_oe.parameters()))


def test_fine_tuning_the_class_head_changes_only_it() -> None:
    base = tiny_base()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    module = AnomalyHeadModule(base, config(train=("class_head",)))
    assert set(module.base_trainable) == {"class_head.weight", "class_head.bias"}
    optimizer = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=0.5)
    samples = tiny_samples()
    loss = module.losses([samples[i] for i in range(4)])
    assert set(loss) == {"head", "rba_oe", "class", "loss"}
    loss["loss"].backward()
    optimizer.step()
    changed = {k for k, v in base.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"class_head.weight", "class_head.bias"}
    assert set(module.base_overrides()) == changed


def test_last_blocks_add_a_mask_loss_and_need_the_full_path() -> None:
    module = AnomalyHeadModule(tiny_base(), config(train=("last_blocks",), last_blocks=1, baseline=False))
    assert "encoder.blocks.2.attn.qkv.weight" in module.base_trainable
    assert "encoder.blocks.1.attn.qkv.weight" not in module.base_trainable
    samples = tiny_samples()
    losses = module.losses([samples[i] for i in range(2)])
    assert set(losses) == {"head", "mask", "loss"}
    losses["loss"].backward()
    assert module.base_trainable["encoder.blocks.2.attn.qkv.weight"].grad.abs().sum() > 0
    with pytest.raises(UserError, match="the cached path needs a frozen base"):
        config(train=("mask_head",), cached=True)
    with pytest.raises(UserError, match="unknown trainable part 'decoder'"):
        config(train=("decoder",))


@pytest.mark.parametrize("head_blocks", [0, 2])
def test_cached_path_gives_the_same_loss_as_the_full_path(head_blocks: int) -> None:
    base = tiny_base()
    module = AnomalyHeadModule(base, config(head_blocks=head_blocks))
    samples = tiny_samples()
    cache = QueryCache(base, samples, module.costs, batch_size=3, keep_block_input=module.head.reads_block)
    assert (cache.block_input is None) == (head_blocks == 0)
    assert len(cache) == len(samples) == 8
    for indices in ([0, 1, 2, 3], [7, 2, 5]):
        full = module.losses([samples[i] for i in indices])
        cached = module.losses(cache.collate(indices))
        for key in full:
            torch.testing.assert_close(cached[key], full[key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("blocks", [1, 2])
def test_head_blocks_copied_from_the_base_give_back_its_queries(blocks: int) -> None:
    base = tiny_base()
    base.attn_mask_probs.zero_()  # annealed: inference without masked attention, as the head's blocks run
    head = AnomalyHead.from_base(base, 16, blocks)
    assert head.reads_block == 3 - blocks
    with torch.no_grad():
        out = base.forward_all(torch.rand(2, 3, CROP, CROP) * 255, keep_block_input=head.reads_block)
        assert out.block_input.shape == (2, 6 + 5 + 4, 32)  # queries, CLS + 4 registers, 2 x 2 patches
        torch.testing.assert_close(head.embed(out.queries, out.block_input), out.queries, rtol=0, atol=1e-6)
        assert base.forward_all(torch.zeros(1, 3, CROP, CROP)).block_input is None
    with pytest.raises(UserError, match="the head can copy 0..2 of this EoMT's query blocks, not 3"):
        AnomalyHead.from_base(base, 16, 3)
    with pytest.raises(ValueError, match="it needs the tokens entering block"):
        head(out.queries)


def test_samples_are_deterministic_and_points_read_the_targets() -> None:
    samples = tiny_samples()
    a, b = samples[5], samples[5]
    assert torch.equal(a.image, b.image) and torch.equal(a.coords, b.coords)
    xs = (a.coords[:, 0] * CROP - 0.5).round().long()
    ys = (a.coords[:, 1] * CROP - 0.5).round().long()
    torch.testing.assert_close(a.point_targets.float(), a.masks[:, ys, xs].float())
    anomaly = a.masks[a.anomaly].any(dim=0)[ys, xs]
    assert torch.equal(a.point_labels == 1, anomaly)
    assert len(set(zip(xs.tolist(), ys.tolist()))) == len(xs)  # distinct pixels


def test_paste_settings_reach_the_paster() -> None:
    from roadanomaly.training.anomaly_head import paster_of

    paste = paster_of(config(paste_min_height=20, feather=1.5, paste_count=(2, 4))).config
    assert (paste.min_height, paste.feather, paste.count) == (20, 1.5, (2, 4))
    assert paster_of(config()).config.min_height == PasteConfig().min_height == 6


def test_save_load_round_trip_and_refusal_on_another_base(tmp_path) -> None:
    base = tiny_base()
    head, rba = AnomalyHead(32, 16), RbaOEHead(base.class_head)
    with torch.no_grad():
        rba.linear.weight.add_(0.3)
    path = save_anomaly_heads(tmp_path / "h.safetensors", base_identity(base), head, rba)
    loaded = load_anomaly_heads(path, tiny_base())
    q, logits = torch.randn(2, 6, 32), torch.randn(2, 6, 20)
    torch.testing.assert_close(loaded["anomaly"](q, logits), head(q, logits), rtol=0, atol=0)
    torch.testing.assert_close(loaded["rba_oe"](q, logits), rba(q, logits), rtol=0, atol=0)
    other = tiny_base(seed=1)
    with pytest.raises(UserError, match=r"h.safetensors: trained on another base model \(width 32, depth 3, 19 "):
        load_anomaly_heads(path, other)
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(UserError, match="not a readable safetensors file"):
        load_anomaly_heads(tmp_path / "junk.safetensors", base)


def test_a_head_with_blocks_round_trips_and_scores_through_the_predictor(tmp_path) -> None:
    base = tiny_base()
    base.attn_mask_probs.zero_()
    mlp_only, with_block = AnomalyHead(32, 16), AnomalyHead.from_base(base, 16, blocks=1)
    with_block.mlp.load_state_dict(mlp_only.mlp.state_dict())
    image = torch.randint(0, 256, (1, 3, CROP, CROP), dtype=torch.uint8)

    def anomaly_map(head: AnomalyHead) -> torch.Tensor:
        return compute_scores(EoMTPredictor(base, query_heads={"anomaly": head})(image), ["anomaly"])["anomaly"]

    # copied, untouched blocks give back the base's queries, so the same MLP gives the same map
    torch.testing.assert_close(anomaly_map(with_block), anomaly_map(mlp_only), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        with_block.blocks[0].mlp.fc2.bias.add_(torch.linspace(-1.0, 1.0, 32))
    changed = anomaly_map(with_block)
    assert (changed - anomaly_map(mlp_only)).abs().max() > 1e-3
    path = save_anomaly_heads(tmp_path / "h.safetensors", base_identity(base), with_block)
    other = tiny_base()
    other.attn_mask_probs.zero_()
    loaded = load_anomaly_heads(path, other)["anomaly"]
    assert loaded.reads_block == 2 and len(loaded.blocks) == 1
    torch.testing.assert_close(anomaly_map(loaded), changed, rtol=0, atol=0)


def test_a_head_file_from_before_head_blocks_loads_as_an_mlp_head(tmp_path) -> None:
    import json

    from safetensors.torch import load_file, save_file

    base, head = tiny_base(), AnomalyHead(32, 16)
    path = save_anomaly_heads(tmp_path / "h.safetensors", base_identity(base), head)
    meta = read_anomaly_heads(path)[0]
    meta["anomaly"] = {"width": 32, "hidden": 16}  # all that files recorded before heads had blocks
    save_file(load_file(str(path)), str(path), metadata={"roadanomaly": json.dumps(meta)})
    loaded = load_anomaly_heads(path, base)["anomaly"]
    assert len(loaded.blocks) == 0 and loaded.reads_block is None
    q = torch.randn(2, 6, 32)
    torch.testing.assert_close(loaded(q), head(q), rtol=0, atol=0)


def test_fine_tuned_base_parameters_travel_and_merge(tmp_path) -> None:
    base = tiny_base()
    identity = base_identity(base)
    tuned = {"class_head.bias": torch.arange(20.0)}
    path = save_anomaly_heads(tmp_path / "h.safetensors", identity, AnomalyHead(32, 16), None, tuned)
    fresh = tiny_base()
    heads = load_anomaly_heads(path, fresh)
    assert set(heads) == {"anomaly"}
    assert torch.equal(fresh.class_head.bias, tuned["class_head.bias"])
    merged = merge_into_checkpoint(path, tiny_base(), tmp_path / "merged")
    model = load_eomt(merged)
    assert torch.equal(model.class_head.bias, tuned["class_head.bias"])
    again = load_anomaly_heads(merged, model)
    q = torch.randn(1, 6, 32)
    torch.testing.assert_close(again["anomaly"](q, None), heads["anomaly"](q, None), rtol=0, atol=0)
    with pytest.raises(UserError, match="trained on another base model"):
        load_anomaly_heads(merged, tiny_base())  # the merged heads belong to the tuned base


def test_scores_against_a_direct_formula() -> None:
    base = tiny_base()
    head, rba = AnomalyHead(32, 16), RbaOEHead(base.class_head)
    with torch.no_grad():
        rba.linear.bias.add_(torch.linspace(-1, 1, 20))
    predictor = EoMTPredictor(base, query_heads={"anomaly": head, "rba_oe": rba})
    image = torch.randint(0, 256, (1, 3, CROP, CROP), dtype=torch.uint8)
    scores = compute_scores(predictor(image), ["anomaly", "anomaly_norm", "rba_oe"])
    with torch.no_grad():
        out = base.forward_all(image.float())
        masks = F.interpolate(out.mask_logits[-1], (CROP, CROP), mode="bilinear", align_corners=False).sigmoid()
        p_anomaly = head.mlp(out.queries).softmax(-1)[..., 1]
        anomaly = (p_anomaly[..., None, None] * masks).sum(1)
        probs = rba.linear(out.queries).softmax(-1)[..., :-1]
        rba_oe = -torch.tanh(torch.einsum("bqc,bqhw->bchw", probs, masks)).sum(1)
    torch.testing.assert_close(scores["anomaly"], anomaly, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scores["anomaly_norm"], anomaly / masks.sum(1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scores["rba_oe"], rba_oe, rtol=1e-5, atol=1e-6)
    # the training loss reads the same pixel score at points
    logits = F.interpolate(out.mask_logits[-1], (CROP, CROP), mode="bilinear", align_corners=False)
    at = rba_pixel_scores(rba.linear(out.queries), logits.flatten(2))
    torch.testing.assert_close(at.reshape(1, CROP, CROP), rba_oe, rtol=1e-5, atol=1e-6)


def test_query_batch_reads_mask_logits_at_pixel_centres() -> None:
    base = tiny_base()
    samples = tiny_samples()
    qb = query_batch(base, [samples[0]], MatchCosts())
    with torch.no_grad():
        out = base.forward_all(samples[0].image[None])
    logits = F.interpolate(out.mask_logits[-1], (CROP, CROP), mode="bilinear", align_corners=False)[0]
    xs = (samples[0].coords[:, 0] * CROP - 0.5).round().long()
    ys = (samples[0].coords[:, 1] * CROP - 0.5).round().long()
    torch.testing.assert_close(qb.point_logits[0].detach(), logits[:, ys, xs], rtol=1e-5, atol=1e-5)


def test_split_matching_equals_the_hungarian_matcher() -> None:
    base = tiny_base()
    samples = tiny_samples()
    costs = MatchCosts(mask=5.0, cls=2.0, dice=5.0)
    qb = query_batch(base, [samples[i] for i in range(4)], costs)
    logits = torch.randn(4, 6, 3)
    labels = [a.long() for a in qb.anomaly]
    keep = [torch.ones_like(a) for a in qb.anomaly]
    ours = match_all(logits, qb, labels, keep, costs)
    for i, (q, t) in enumerate(ours):
        rq, rt = hungarian_match(qb.point_logits[i].detach(), logits[i], qb.point_targets[i], labels[i], costs)
        assert torch.equal(q, rq) and torch.equal(t, rt)


@pytest.mark.parametrize("name", ["anomaly_head_synthroads.yaml", "anomaly_head_demo.yaml"])
def test_packaged_recipes_load(name: str) -> None:
    from roadanomaly.training.anomaly_head_demo import SYNTHROADS_RECIPE

    recipe = AnomalyHeadTrainConfig.from_yaml(SYNTHROADS_RECIPE.parent / name, epochs=3)
    assert recipe.outliers == ("synth",) and recipe.size == (128, 256) and recipe.epochs == 3
    assert recipe.use_cache and recipe.baseline


def test_pixel_term_against_a_direct_formula() -> None:
    """Class-balanced BCE of sum_q sigmoid(m_q) P_q(anomaly) / sum_q sigmoid(m_q) at the points, void ignored."""
    from roadanomaly.training.anomaly_head_losses import pixel_anomaly_loss

    g = torch.Generator().manual_seed(5)
    head_logits = torch.randn(2, 4, 3, generator=g)
    point_logits = torch.randn(2, 4, 9, generator=g) * 3
    labels = torch.tensor([[0, 1, 255, 0, 0, 1, 0, 255, 0], [0, 0, 0, 0, 1, 0, 0, 0, 0]])
    loss = pixel_anomaly_loss(head_logits, point_logits, labels)
    p = torch.softmax(head_logits.double(), -1)[..., 1].numpy()
    m = 1 / (1 + np.exp(-point_logits.double().numpy()))
    score = (p[:, :, None] * m).sum(1) / m.sum(1)
    lab = labels.numpy()
    expected = -np.log(1 - score[lab == 0]).mean() - np.log(score[lab == 1]).mean()
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    # no anomaly point at all: only the inlier half remains
    only_inliers = pixel_anomaly_loss(head_logits, point_logits, torch.where(labels == 1, 0, labels))
    lab0 = np.where(lab == 1, 0, lab)
    assert float(only_inliers) == pytest.approx(-np.log(1 - score[lab0 == 0]).mean(), rel=1e-5)


def test_pixel_term_is_off_by_default_and_adds_to_the_loss_when_weighted() -> None:
    base, samples = tiny_base(), tiny_samples()
    batch = [samples[i] for i in range(4)]
    with torch.no_grad():
        with_pixel = AnomalyHeadModule(base, config(baseline=False, pixel_weight=1.0)).losses(batch)
        without = AnomalyHeadModule(base, config(baseline=False)).losses(batch)
    assert set(with_pixel) == {"head", "pixel", "loss"} and set(without) == {"head", "loss"}
    assert float(with_pixel["loss"]) == pytest.approx(float(with_pixel["head"] + with_pixel["pixel"]))


def test_a_head_reading_class_probabilities_scores_and_round_trips(tmp_path) -> None:
    base = tiny_base()
    head = AnomalyHead.from_base(base, 16, class_inputs=True)
    assert head.class_inputs == 20 and head.mlp[0].in_features == 32 + 20
    image = torch.randint(0, 256, (1, 3, CROP, CROP), dtype=torch.uint8)
    anomaly = compute_scores(EoMTPredictor(base, query_heads={"anomaly": head})(image), ["anomaly"])["anomaly"]
    with torch.no_grad():
        out = base.forward_all(image.float())
        masks = F.interpolate(out.mask_logits[-1], (CROP, CROP), mode="bilinear", align_corners=False).sigmoid()
        inputs = torch.cat([out.queries, out.class_logits[-1].softmax(-1)], dim=-1)
        expected = (head.mlp(inputs).softmax(-1)[..., 1][..., None, None] * masks).sum(1)
    torch.testing.assert_close(anomaly, expected, rtol=1e-5, atol=1e-6)
    path = save_anomaly_heads(tmp_path / "h.safetensors", base_identity(base), head)
    loaded = load_anomaly_heads(path, tiny_base())["anomaly"]
    q, logits = torch.randn(2, 6, 32), torch.randn(2, 6, 20)
    assert loaded.class_inputs == 20
    torch.testing.assert_close(loaded(q, logits), head(q, logits), rtol=0, atol=0)
    assert (head(q, logits) - head(q, logits.flip(-1))).abs().max() > 1e-4  # it does read the class logits
    with pytest.raises(ValueError, match="reads the base's 20 class logits per query, got None"):
        head(q)


def test_a_head_with_its_own_masks_starts_at_the_base_masks_and_draws_its_map_with_them(tmp_path) -> None:
    base = tiny_base()
    base.attn_mask_probs.zero_()
    head = AnomalyHead.from_base(base, 16, blocks=1, masks=True)
    image = torch.randint(0, 256, (1, 3, CROP, CROP), dtype=torch.uint8)
    with torch.no_grad():
        out = base.forward_all(image.float(), keep_block_input=head.reads_block)
        weights, own = head(out.queries, None, out.block_input)
        # copies of untouched blocks, mask head and upscaling give back the base's masks
        torch.testing.assert_close(own, out.mask_logits[-1], rtol=1e-5, atol=1e-5)
        head.mask_head[-1].bias.add_(torch.linspace(-2.0, 2.0, 32))
        weights, own = head(out.queries, None, out.block_input)
        assert (own - out.mask_logits[-1]).abs().max() > 1e-2
        masks = F.interpolate(own, (CROP, CROP), mode="bilinear", align_corners=False).sigmoid()
        expected = (weights[..., None, None] * masks).sum(1)
    predictor = EoMTPredictor(base, query_heads={"anomaly": head})
    assert "anomaly_mass" in predictor.spec.query_maps
    scores = compute_scores(predictor(image), ["anomaly", "anomaly_norm"])
    torch.testing.assert_close(scores["anomaly"], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scores["anomaly_norm"], expected / masks.sum(1), rtol=1e-5, atol=1e-6)
    path = save_anomaly_heads(tmp_path / "h.safetensors", base_identity(base), head)
    other = tiny_base()
    other.attn_mask_probs.zero_()
    loaded = load_anomaly_heads(path, other)["anomaly"]
    assert loaded.own_masks and loaded.prefix == 5 and len(loaded.upscale) == base.config.num_upscale
    for a, b in zip(loaded(out.queries, None, out.block_input), head(out.queries, None, out.block_input)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(UserError, match="head_masks needs head_blocks > 0"):
        config(head_masks=True)


def test_a_head_with_its_own_masks_learns_them_and_caches_like_the_full_path() -> None:
    base = tiny_base()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    module = AnomalyHeadModule(base, config(head_blocks=1, head_masks=True, pixel_weight=1.0))
    samples = tiny_samples()
    cache = QueryCache(base, samples, module.costs, batch_size=3, keep_block_input=module.head.reads_block)
    full = module.losses([samples[i] for i in (0, 3, 5)])
    cached = module.losses(cache.collate([0, 3, 5]))
    assert set(full) == {"head", "pixel", "head_mask", "rba_oe", "loss"}
    for key in full:
        torch.testing.assert_close(cached[key], full[key], rtol=1e-5, atol=1e-6)
    cached["loss"].backward()
    assert module.head.mask_head[0].weight.grad.abs().sum() > 0
    assert module.head.upscale[0].conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in base.parameters())
    assert all(torch.equal(v, before[k]) for k, v in base.state_dict().items())
