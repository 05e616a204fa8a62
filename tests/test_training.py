import csv
import json

import pytest
import torch

from fixtures import make_bundle, make_learnable_cityscapes
from roadanomaly.cli import main
from roadanomaly.models.erfnet_checkpoints import load_erfnet
from roadanomaly.training.config import ERFNetTrainConfig
from roadanomaly.training.train_erfnet import train_erfnet


def _epoch_losses(log_dir):
    with open(log_dir / "metrics.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("train/loss_epoch")]
    return [float(r["train/loss_epoch"]) for r in rows]


@pytest.mark.slow
def test_two_stage_training_lowers_the_loss_and_exports_evaluable_weights(tmp_path, capsys):
    data = make_learnable_cityscapes(tmp_path / "cs", {"train": 8, "val": 2})
    config = ERFNetTrainConfig(data=str(data), output=str(tmp_path / "run"), batch_size=4, encoder_epochs=1,
                               epochs=4, lr=2e-3, crop=(32, 48))
    result = train_erfnet(config, progress=False)
    losses = _epoch_losses(tmp_path / "run" / "logs" / "full")
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert (tmp_path / "run" / "encoder" / "last.ckpt").is_file()
    assert 0.0 <= result.val_miou <= 1.0
    model = load_erfnet(result.weights)
    assert model.num_classes == 20

    bundle = make_bundle(tmp_path / "bundle", images=2)
    out = tmp_path / "results.json"
    code = main(["evaluate", "--weights", str(result.weights), "--data", str(bundle), "--datasets", "RoadAnomaly21",
                 "--output", str(out), "--quiet", "--workers", "0"])
    assert code == 0
    rows = json.loads(out.read_text())["results"]
    assert {r["method"] for r in rows} == {"msp", "maxlogit", "entropy", "energy", "void"}

    # resume the whole-network stage for more epochs from its last checkpoint
    more = ERFNetTrainConfig(**{**config.__dict__, "epochs": 5})
    train_erfnet(more, resume=tmp_path / "run" / "full" / "last.ckpt", progress=False)
    state = torch.load(tmp_path / "run" / "full" / "last.ckpt", weights_only=True)
    assert state["epoch"] == 5
