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
    model = load_erfnet(result.weights)
    assert model.num_classes == 20

    bundle = make_bundle(tmp_path / "bundle", images=2)
    out = tmp_path / "results.json"
    code = main(["evaluate", "--weights", str(result.weights), "--data", str(bundle), "--datasets", "RoadAnomaly21",
                 "--cityscapes", str(data), "--output", str(out), "--quiet", "--workers", "0"])
    assert code == 0
    # the exported weights score on the validation split exactly the mIoU training reported for them
    assert json.loads(out.read_text())["segmentation"]["miou"] == pytest.approx(result.val_miou, abs=1e-6)
    rows = json.loads(out.read_text())["results"]
    assert {r["method"] for r in rows} == {"msp", "maxlogit", "entropy", "energy", "void"}

    # last.ckpt holds the last epoch (2 steps each: 8 images, batch 4) whichever epoch scored best
    last = tmp_path / "run" / "full" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 4 * 2
    # resume the whole-network stage for more epochs from its last checkpoint: exactly one more epoch runs
    more = ERFNetTrainConfig(**{**config.__dict__, "epochs": 5})
    train_erfnet(more, resume=last, progress=False)
    assert torch.load(last, weights_only=True)["global_step"] == 5 * 2
    assert len(_epoch_losses(tmp_path / "run" / "logs" / "full")) == 1


def test_erfnet_training_data_is_read_from_disk_per_item(tmp_path):
    """Nothing is decoded up front: a file changed after construction is what the next item shows."""
    import numpy as np
    from PIL import Image

    from roadanomaly.data.cityscapes import CityscapesDataset
    from roadanomaly.data.labels import ID_TO_TRAIN_ID
    from roadanomaly.training.data import SegmentationTrainSet

    data = make_learnable_cityscapes(tmp_path / "cs", {"train": 3})
    source = CityscapesDataset(data, "train")
    train_set = SegmentationTrainSet(source, augment=False)
    labels = [ID_TO_TRAIN_ID[np.asarray(Image.open(p))] for p in source.label_paths]
    counts = np.bincount(np.concatenate([lb.ravel() for lb in labels]), minlength=256)[:19]
    np.testing.assert_allclose(train_set.class_frequencies(), counts / counts.sum())
    Image.fromarray(np.zeros((32, 64, 3), np.uint8)).save(source.image_paths[1])
    image, label = train_set[1]
    assert float(image.abs().sum()) == 0.0 and torch.equal(label, torch.from_numpy(labels[1]).long())


def test_train_cli_lists_each_model_module_and_skips_absent_ones(monkeypatch):
    from roadanomaly.cli import build_parser
    from roadanomaly.cli import train as train_cli

    monkeypatch.setattr(train_cli, "TRAINERS", ("train_erfnet", "train_no_such_model", "train_eomt"))
    parser = build_parser()
    args = parser.parse_args(["train", "eomt", "--config", "x.yaml"])
    assert args.model == "eomt" and args.run.__module__ == "roadanomaly.cli.train_eomt"
    args = parser.parse_args(["train", "erfnet", "--crop", "32x48", "--encoder-epochs", "2"])
    assert args.run.__module__ == "roadanomaly.cli.train_erfnet" and args.crop == (32, 48)
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "no_such_model"])
