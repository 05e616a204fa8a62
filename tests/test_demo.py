import json

import pytest

from roadanomaly.demo import DemoConfig, run_demo
from roadanomaly.training.config import ERFNetTrainConfig


@pytest.mark.slow
def test_demo_runs_end_to_end_and_reuses_its_cache(tmp_path, capsys):
    config = DemoConfig(
        size=(64, 128), train_images=6, val_images=2, anomaly_images=2, obstacle_images=2,
        train=ERFNetTrainConfig(batch_size=3, epochs=1, crop=None, resize=(64, 128)),
        eval_size="64x128",
    )
    document = run_demo(tmp_path, config, progress=False)
    first = capsys.readouterr().out
    assert "training ERFNet" in first and "results written to" in first
    assert {r["dataset"] for r in document["results"]} == {"SynthAnomaly", "SynthObstacle"}
    assert {r["method"] for r in document["results"]} == {"msp", "maxlogit", "entropy", "energy", "void"}
    assert all(r["images"] == 2 and r["anomaly_pixels"] > 0 for r in document["results"])
    assert document["protocol"]["size"] == "64x128"
    assert 0.0 <= document["segmentation"]["miou"] <= 1.0
    assert json.loads((tmp_path / "results.json").read_text())["results"] == document["results"]

    again = run_demo(tmp_path, config, progress=False)
    second = capsys.readouterr().out
    assert "already generated" in second and "using cached ERFNet weights" in second
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
