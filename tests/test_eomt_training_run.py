"""EoMT training end to end on tiny models: exact resume, evaluate/convert accept the output, transformers agrees."""

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from fixtures import make_learnable_cityscapes
from roadanomaly.cli import main
from roadanomaly.training.eomt.config import EoMTTrainConfig
from roadanomaly.training.eomt.train import train_eomt

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(width=64, depth=2, heads=1, patch=8, num_registers=1, img_size=[32, 32], num_q=6, num_blocks=1)


def settings(**overrides):
    base = dict(model=TINY, scale_range=[0.75, 1.5], batch_size=2, max_steps=8, val_every=100,
                checkpoint_every=100, warmup_steps=[1, 1], anneal_starts=[1], anneal_ends=[6], lr=1e-3,
                loss={"num_points": 64}, workers=0, precision="32-true", accelerator="cpu", devices=1)
    return {**base, **overrides}


@pytest.fixture(scope="module")
def cityscapes(tmp_path_factory):
    return make_learnable_cityscapes(tmp_path_factory.mktemp("cs"), {"train": 6, "val": 2}, size=(32, 64))


def test_resume_reproduces_the_next_steps_exactly(tmp_path, cityscapes):
    """Steps 2 and 3 lie inside the annealing (random mask dropping), step 3 also depends on AdamW's moments and the
    scheduler: a run stopped at step 2 and resumed must give the same losses and weights as an uninterrupted one."""
    one_go = train_eomt(EoMTTrainConfig(**settings(data=str(cityscapes), output=str(tmp_path / "a"), stop_at_step=4)),
                        progress=False)
    first = train_eomt(EoMTTrainConfig(**settings(data=str(cityscapes), output=str(tmp_path / "b"), stop_at_step=2)),
                       progress=False)
    rest = train_eomt(EoMTTrainConfig(**settings(data=str(cityscapes), output=str(tmp_path / "b"), stop_at_step=4)),
                      resume=True, progress=False)
    assert [s for s, _ in one_go.losses] == [0, 1, 2, 3] and one_go.steps == rest.steps == 4
    assert first.losses == one_go.losses[:2]
    assert rest.losses == one_go.losses[2:]
    a, b = load_file(one_go.weights / "model.safetensors"), load_file(rest.weights / "model.safetensors")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert float(a["attn_mask_probs"].abs().sum()) == 0  # exported for inference: no masked attention

    # the reported validation mIoU is what `roadanomaly evaluate` gives for the exported weights
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--model", "eomt", "--weights", str(rest.weights), "--cityscapes", str(cityscapes),
                 "--output", str(out), "--quiet", "--workers", "0"]) == 0
    assert json.loads(out.read_text())["segmentation"]["miou"] == pytest.approx(rest.val_miou, abs=1e-12)


def test_synthroads_stream_model_converts_to_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    from eomt_fixtures import hf_reference
    from roadanomaly.models.eomt_checkpoints import load_eomt

    config = EoMTTrainConfig(**settings(output=str(tmp_path / "run"), train_source="synthroads",
                                        synthroads_size=[64, 128], resize=[32, 64], stop_at_step=2,
                                        max_val_images=1, val_size="32x64"))  # fmt: skip
    result = train_eomt(config, progress=False)
    assert len(result.losses) == 2 and result.curve[-1]["step"] == 2 and 0 <= result.val_miou <= 1
    assert main(["convert", str(result.weights), str(tmp_path / "hf"), "--to", "hf"]) == 0
    hf = transformers.EomtForUniversalSegmentation.from_pretrained(tmp_path / "hf").eval()
    ours = load_eomt(result.weights)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        out = ours.forward_all(x)
    mask_logits, class_logits = hf_reference(hf, x)
    torch.testing.assert_close(out.mask_logits[-1], mask_logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.class_logits[-1], class_logits, atol=1e-4, rtol=1e-4)


def test_train_eomt_cli_runs_resumes_and_reports_errors(tmp_path, cityscapes, capsys):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(settings(stop_at_step=1, output=str(tmp_path / "run"))))
    assert main(["train", "eomt", "--config", str(recipe), "--data", str(cityscapes), "--quiet"]) == 0
    assert "steps: 1" in capsys.readouterr().out
    recipe.write_text(yaml.safe_dump(settings(stop_at_step=2, output=str(tmp_path / "run"))))
    assert main(["train", "eomt", "--config", str(recipe), "--data", str(cityscapes), "--quiet", "--resume"]) == 0
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2

    assert main(["train", "eomt", "--config", str(recipe), "--data", str(cityscapes), "--output",
                 str(tmp_path / "other"), "--resume", "--quiet"]) == 2
    last = tmp_path / "other" / "checkpoints" / "last.ckpt"
    assert capsys.readouterr().err.strip() == f"roadanomaly: error: {last}: no checkpoint to resume from"
    recipe.write_text("model: {width: 64}\nbogus: 1\n")
    assert main(["train", "eomt", "--config", str(recipe)]) == 2
    assert capsys.readouterr().err.strip() == f"roadanomaly: error: {recipe}: unknown config fields: bogus"
