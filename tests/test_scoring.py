import numpy as np
import pytest
import torch
from scipy.special import logsumexp, softmax

from roadanomaly.outputs import PixelOutputs
from roadanomaly.scoring import ScoringConfig, available_methods, compute_scores


def _logits(seed=0, classes=20):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, classes, 5, 7, generator=g, dtype=torch.float64).float() * 4


@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0])
def test_logit_scores_match_direct_formulas(temperature):
    logits = _logits()
    out = PixelOutputs(logits=logits, void_channel=19)
    scores = compute_scores(out, ["msp", "maxlogit", "entropy", "energy", "void"], ScoringConfig(temperature))
    z = logits.double().numpy()
    known = z[:, :19] / temperature
    p = softmax(known, axis=1)
    np.testing.assert_allclose(scores["msp"], 1 - p.max(1), atol=1e-6)
    np.testing.assert_allclose(scores["maxlogit"], -z[:, :19].max(1), atol=1e-6)
    entropy = -(p * np.log(p)).sum(1) / np.log(19)
    np.testing.assert_allclose(scores["entropy"], entropy, atol=1e-6)
    np.testing.assert_allclose(scores["energy"], -temperature * logsumexp(known, axis=1), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(scores["void"], softmax(z / temperature, axis=1)[:, 19], atol=1e-6)


def test_include_void_uses_all_channels_and_no_void_model_has_no_void_method():
    logits = _logits(1)
    with_void = compute_scores(PixelOutputs(logits=logits, void_channel=19), ["msp"], ScoringConfig(include_void=True))
    np.testing.assert_allclose(with_void["msp"], 1 - softmax(logits.double().numpy(), 1).max(1), atol=1e-6)
    out = PixelOutputs(logits=_logits(2, 19))
    assert "void" not in available_methods(out)
    with pytest.raises(ValueError, match="'void' is not defined"):
        compute_scores(out, ["void"])


def test_mask_scores_match_direct_formulas():
    g = torch.Generator().manual_seed(3)
    p = torch.rand(1, 19, 4, 6, generator=g) * 0.3
    no_object = torch.rand(1, 4, 6, generator=g)
    max_class, mass = torch.rand(1, 4, 6, generator=g), torch.rand(1, 4, 6, generator=g) + 0.5
    anomaly, oe = torch.rand(1, 4, 6, generator=g), torch.rand(1, 19, 4, 6, generator=g)
    maps = {"no_object": no_object, "max_class": max_class, "mask_mass": mass, "anomaly": anomaly, "rba_oe": oe}
    out = PixelOutputs(class_scores=p, query_maps=maps)
    assert available_methods(out) == ["msp", "entropy", "rba", "noobject", "eam", "anomaly", "anomaly_norm", "rba_oe"]
    s = compute_scores(out, available_methods(out))
    q = p.double().numpy()
    np.testing.assert_allclose(s["msp"], 1 - q.max(1), atol=1e-6)
    np.testing.assert_allclose(s["eam"], 1 - max_class.numpy(), atol=1e-6)
    np.testing.assert_allclose(s["anomaly"], anomaly.numpy())
    np.testing.assert_allclose(s["anomaly_norm"], anomaly.numpy() / mass.numpy(), rtol=1e-6)
    np.testing.assert_allclose(s["rba_oe"], -np.tanh(oe.double().numpy()).sum(1), atol=1e-5)
    norm = q / q.sum(1, keepdims=True)
    np.testing.assert_allclose(s["entropy"], -(norm * np.log(norm)).sum(1) / np.log(19), atol=1e-6)
    np.testing.assert_allclose(s["rba"], -np.tanh(q).sum(1), atol=1e-5)
    np.testing.assert_allclose(s["noobject"], no_object.numpy())


def test_higher_score_means_less_confident():
    confident = torch.tensor([10.0] + [0.0] * 18).view(1, 19, 1, 1)
    unsure = torch.zeros(1, 19, 1, 1)
    for method in ["msp", "entropy", "maxlogit", "energy"]:
        a = compute_scores(PixelOutputs(logits=confident), [method])[method]
        b = compute_scores(PixelOutputs(logits=unsure), [method])[method]
        assert b.item() > a.item(), method


def test_resize_keeps_every_map():
    out = PixelOutputs(class_scores=torch.rand(1, 19, 4, 6), query_maps={"no_object": torch.rand(1, 4, 6)})
    big = out.resized((8, 12))
    assert big.class_scores.shape == (1, 19, 8, 12) and big.query_maps["no_object"].shape == (1, 8, 12)
    assert out.resized((4, 6)) is out


def test_methods_follow_from_the_declared_outputs():
    from roadanomaly.outputs import OutputSpec
    from roadanomaly.scoring import check_methods

    assert available_methods(OutputSpec("logits")) == ["msp", "maxlogit", "entropy", "energy"]
    assert available_methods(OutputSpec("logits", void_channel=19))[-1] == "void"
    assert available_methods(OutputSpec("mask", query_maps=("no_object",))) == ["msp", "entropy", "rba", "noobject"]
    assert check_methods(None, OutputSpec("logits")) == ["msp", "maxlogit", "entropy", "energy"]
    with pytest.raises(ValueError, match="method 'maxlogit' is not defined for this model"):
        check_methods(["msp", "maxlogit"], OutputSpec("mask"))


@pytest.mark.parametrize("void_channel", [0, 7, 19])
@pytest.mark.parametrize("include_void", [False, True])
def test_void_anywhere_and_extreme_logits_match_scipy(void_channel, include_void):
    """One softmax pass serves every method: a void channel first, inside or last, logits 100 apart (no overflow)."""
    logits = _logits(4) * 10.0  # spreads of ~+-120: naive exp overflows float32
    logits[0, void_channel, 0, :3] = torch.tensor([200.0, -200.0, 0.0])
    temperature = 0.7
    out = PixelOutputs(logits=logits, void_channel=void_channel)
    names = ["msp", "maxlogit", "entropy", "energy", "void"]
    scores = compute_scores(out, names, ScoringConfig(temperature, include_void=include_void))
    z = logits.double().numpy()
    known = z if include_void else np.delete(z, void_channel, axis=1)
    p = softmax(known / temperature, axis=1)
    np.testing.assert_allclose(scores["msp"], 1 - p.max(1), atol=1e-6)
    np.testing.assert_allclose(scores["maxlogit"], -known.max(1), atol=1e-4)
    logp = np.log(np.clip(p, 1e-300, None))
    np.testing.assert_allclose(scores["entropy"], -(p * logp).sum(1) / np.log(known.shape[1]), atol=1e-6)
    np.testing.assert_allclose(scores["energy"], -temperature * logsumexp(known / temperature, axis=1), rtol=1e-6)
    np.testing.assert_allclose(scores["void"], softmax(z / temperature, axis=1)[:, void_channel], atol=1e-6)
    assert all(bool(torch.isfinite(s).all()) for s in scores.values())


@pytest.mark.parametrize("chunk_pixels", [1, 13, 40, 56, 10**6])
def test_softmax_stats_in_blocks_of_rows_equal_one_pass(chunk_pixels):
    """Blocks of rows (one row, several, a ragged last block, everything) give the same statistics (up to the
    order of float32 additions over the channels)."""
    from roadanomaly.scoring import SoftmaxStats

    logits = _logits(5, classes=6)[:, :, :, :].repeat(1, 1, 2, 2)  # (2, 6, 10, 14)
    whole = SoftmaxStats.of(logits, 0.8, chunk_pixels=10**9)
    blocks = SoftmaxStats.of(logits, 0.8, chunk_pixels=chunk_pixels)
    z = logits.double().numpy() / 0.8
    np.testing.assert_allclose(np.log(whole.total.double().numpy()) + whole.top.double().numpy() / 0.8,
                               logsumexp(z, axis=1), rtol=1e-6)
    assert torch.equal(whole.top, blocks.top)
    for name in ("total", "weighted"):
        np.testing.assert_allclose(getattr(blocks, name), getattr(whole, name), rtol=1e-6, atol=1e-6, err_msg=name)
    assert blocks.classes == 6
