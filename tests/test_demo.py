import json

import pytest

from roadanomaly.cli import main

from roadanomaly.demo import EOMT_METHODS, HEAD_RECIPE, DemoConfig, run_demo
from roadanomaly.training.anomaly_head_config import AnomalyHeadTrainConfig
from roadanomaly.training.config import ERFNetTrainConfig
from roadanomaly.training.eomt.config import EoMTTrainConfig

TINY_EOMT = EoMTTrainConfig(
    model=dict(width=32, depth=2, heads=2, patch=16, num_registers=0, img_size=[64, 64], num_q=5, num_blocks=1,
               num_classes=19),
    val_size="64x128", resize=(64, 128), batch_size=2, max_steps=3, val_every=3, checkpoint_every=3,
    warmup_steps=(1, 2), anneal_starts=(1,), anneal_ends=(2,), loss={"num_points": 64}, workers=0, threads=1,
    accelerator="cpu", devices=1, precision="32-true",
)


@pytest.mark.slow
def test_demo_runs_end_to_end_and_reuses_its_cache(tmp_path, capsys):
    config = DemoConfig(
        size=(64, 128), train_images=6, val_images=2, anomaly_images=2, obstacle_images=2,
        train=ERFNetTrainConfig(batch_size=3, epochs=1, crop=None, resize=(64, 128)),
        eomt=TINY_EOMT,
        head=AnomalyHeadTrainConfig.from_yaml(HEAD_RECIPE, size=(64, 128), epochs=1, hidden=8, num_points=64),
        eval_size="64x128",
    )
    document = run_demo(tmp_path, config, progress=False)
    first = capsys.readouterr().out
    assert "training ERFNet" in first and "training EoMT" in first and "results written to" in first
    assert {r["dataset"] for r in document["results"]} == {"SynthAnomaly", "SynthObstacle"}
    eomt_rows = json.loads((tmp_path / "results_eomt.json").read_text())["results"]
    assert [r["method"] for r in eomt_rows] == list(EOMT_METHODS) * 2
    for row in eomt_rows:  # the one table prints every EoMT row under its model's name
        assert f"eomt {row['method']}" in first
    assert {r["method"] for r in document["results"]} == {"msp", "maxlogit", "entropy", "energy", "void"}
    assert all(r["images"] == 2 and r["anomaly_pixels"] > 0 for r in document["results"])
    assert document["protocol"]["size"] == "64x128"
    evaluated = tmp_path / "again.json"  # the demo's mIoU is what evaluate gives for its weights
    assert main(["evaluate", "--weights", str(tmp_path / "erfnet" / "erfnet.pth"), "--cityscapes",
                 str(tmp_path / "synthroads" / "cityscapes"), "--size", "64x128", "--output", str(evaluated),
                 "--quiet", "--workers", "0"]) == 0
    assert json.loads(evaluated.read_text())["segmentation"]["miou"] == document["segmentation"]["miou"]
    assert json.loads((tmp_path / "results.json").read_text())["results"] == document["results"]

    again = run_demo(tmp_path, config, progress=False)
    second = capsys.readouterr().out
    assert "already generated" in second and "using cached ERFNet weights" in second
    assert "using the cached EoMT" in second
    assert again["results"] == document["results"]


def test_synth_command_writes_trees_the_loaders_read(tmp_path, capsys):
    from roadanomaly.cli import main
    from roadanomaly.data.bundle import discover_bundles
    from roadanomaly.data.cityscapes import CityscapesDataset

    assert main(["synth", "--output", str(tmp_path), "--train", "2", "--val", "1", "--anomaly", "1",
                 "--obstacle", "1", "--size", "64x128"]) == 0
    assert len(CityscapesDataset(tmp_path / "cityscapes", "train")) == 2
    bundles = discover_bundles(tmp_path / "bundle")
    assert [b.name for b in bundles] == ["SynthAnomaly", "SynthObstacle"]
    assert bundles[1][0].label.shape == (64, 128)
    assert main(["synth", "--output", str(tmp_path / "x"), "--size", "64"]) == 2
    assert "--size must be HxW" in capsys.readouterr().err
