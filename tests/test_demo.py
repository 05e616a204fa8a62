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
