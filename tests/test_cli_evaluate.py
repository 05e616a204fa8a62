import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.special import softmax
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from fixtures import make_bundle, make_erfnet_checkpoint, save_image
from roadanomaly.cli import main


def _independent_msp_metrics(model, folder, anomaly_value):
    """Run the model image by image and pool 1 - max softmax over the 19 known classes, with sklearn metrics."""
    scores, labels = [], []
    for image_path in sorted((folder / "images").iterdir()):
        image = np.asarray(Image.open(image_path).convert("RGB"), dtype=np.float32) / 255.0
        mask = np.asarray(Image.open(folder / "labels_masks" / f"{image_path.stem}.png"))
        x = torch.from_numpy(image).permute(2, 0, 1)[None]
        with torch.no_grad():
            logits = model(x)[0].double().numpy()
        msp = 1.0 - softmax(logits[:19], axis=0).max(axis=0)
        valid = mask != 255
        scores.append(msp[valid])
        labels.append(mask[valid] == anomaly_value)
    s, y = np.concatenate(scores), np.concatenate(labels)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return {"auprc": average_precision_score(y, s), "auroc": roc_auc_score(y, s),
            "fpr95": fpr[np.argmax(tpr >= 0.95)], "pixels": len(y), "anomaly_pixels": int(y.sum())}


def test_json_matches_an_independent_computation(tmp_path, capsys):
    bundle = make_bundle(tmp_path / "bundle", size=(32, 48), images=3)
    model = make_erfnet_checkpoint(tmp_path / "erfnet_pretrained.pth")
    out = tmp_path / "results.json"
    code = main(["evaluate", "--model", "erfnet", "--weights", str(tmp_path / "erfnet_pretrained.pth"),
                 "--data", str(bundle), "--datasets", "RoadAnomaly,RoadObstacle21", "--methods", "msp,maxlogit",
                 "--metric-mode", "exact", "--output", str(out), "--quiet", "--workers", "0"])
    assert code == 0
    document = json.loads(out.read_text())
    assert document["protocol"]["size"] == "native" and document["protocol"]["skip_images_without_anomaly"] is False
    assert document["model"]["name"] == "erfnet"
    rows = {(r["dataset"], r["method"]): r for r in document["results"]}
    assert set(rows) == {(d, m) for d in ("RoadAnomaly", "RoadObstacle21") for m in ("msp", "maxlogit")}
    for dataset, folder, anomaly_value in (("RoadAnomaly", "RoadAnomaly", 2), ("RoadObstacle21", "RoadObsticle21", 1)):
        expected = _independent_msp_metrics(model, bundle / folder, anomaly_value)
        row = rows[(dataset, "msp")]
        # the package scores in float32, the reference in float64: a few near-tied pixels may swap order
        for key in ("auprc", "auroc", "fpr95"):
            assert row[key] == pytest.approx(expected[key], abs=1e-4), (dataset, key)
        assert row["pixels"] == expected["pixels"] and row["anomaly_pixels"] == expected["anomaly_pixels"]
        assert row["images"] == 3
    table = capsys.readouterr().out
    assert "AuPRC %" in table and "RoadObstacle21" in table and str(out) in table


def test_fixed_size_protocol_is_recorded_and_changes_pixel_count(tmp_path):
    bundle = make_bundle(tmp_path / "bundle", size=(32, 48), images=2)
    make_erfnet_checkpoint(tmp_path / "w.pth")
    out = tmp_path / "r.json"
    assert main(["evaluate", "--weights", str(tmp_path / "w.pth"), "--data", str(bundle), "--datasets", "fs_static",
                 "--size", "16x24", "--output", str(out), "--quiet", "--workers", "0"]) == 0
    document = json.loads(out.read_text())
    assert document["protocol"]["size"] == "16x24"
    assert all(r["pixels"] <= 2 * 16 * 24 for r in document["results"])


def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", "roadanomaly", *args], capture_output=True, text=True)


def test_user_mistakes_exit_2_with_one_line_and_keep_finished_results(tmp_path):
    bundle = make_bundle(tmp_path / "bundle", size=(32, 48), images=2)
    make_erfnet_checkpoint(tmp_path / "w.pth")
    # the second dataset has a corrupt image: the first dataset's results must survive
    broken = sorted((bundle / "fs_static" / "images").iterdir())[1]
    broken.write_bytes(b"\x00not a jpeg")
    out = tmp_path / "r.json"
    result = _run_cli("evaluate", "--weights", str(tmp_path / "w.pth"), "--data", str(bundle),
                      "--datasets", "RoadAnomaly21,fs_static", "--output", str(out), "--quiet")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("roadanomaly: error:")]
    assert len(errors) == 1 and str(broken) in errors[0] and "cannot read image" in errors[0]
    assert "Traceback" not in result.stderr
    kept = json.loads(out.read_text())["results"]
    assert {r["dataset"] for r in kept} == {"RoadAnomaly21"}


@pytest.mark.parametrize(
    "setup, expected",
    [
        ("label_size", "label is 8x8 but its image is 32x48"),
        ("label_values", "unknown label values [9]"),
        ("empty", "no images found"),
        ("checkpoint", "checkpoint does not fit the model"),
        ("method", "method 'rba' is not defined for this model"),
        ("eomt_option", "--crop-size does not apply to --model erfnet"),
    ],
)
def test_bad_input_messages(tmp_path, setup, expected):
    bundle = make_bundle(tmp_path / "bundle", size=(32, 48), images=1)
    make_erfnet_checkpoint(tmp_path / "w.pth")
    weights = tmp_path / "w.pth"
    label = next((bundle / "RoadAnomaly21" / "labels_masks").iterdir())
    extra = []
    if setup == "label_size":
        save_image(label, np.zeros((8, 8), np.uint8))
    elif setup == "label_values":
        save_image(label, np.full((32, 48), 9, np.uint8))
    elif setup == "empty":
        for path in (bundle / "RoadAnomaly21" / "images").iterdir():
            path.unlink()
    elif setup == "checkpoint":
        state = torch.load(weights, weights_only=True)
        state.pop("module.decoder.layers.1.bn2.bias")
        torch.save(state, weights)
    elif setup == "method":
        extra = ["--methods", "msp,rba"]
    elif setup == "eomt_option":
        extra = ["--crop-size", "64"]
    result = _run_cli("evaluate", "--weights", str(weights), "--data", str(bundle), "--datasets", "RoadAnomaly21",
                      "--output", str(tmp_path / "r.json"), "--quiet", *extra)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_eomt_official_checkpoint_through_the_cli(tmp_path):
    from eomt_fixtures import Tiny, official_state_dict
    from roadanomaly.inference import load_predictor

    tiny = Tiny(classes=19)
    torch.save(official_state_dict(tiny), tmp_path / "eomt.bin")
    bundle = make_bundle(tmp_path / "bundle", size=(32, 48), images=2)
    out = tmp_path / "r.json"
    assert main(["evaluate", "--model", "eomt", "--weights", str(tmp_path / "eomt.bin"), "--data", str(bundle),
                 "--datasets", "RoadAnomaly21", "--metric-mode", "exact", "--output", str(out), "--quiet",
                 "--workers", "0"]) == 0
    document = json.loads(out.read_text())
    assert document["model"]["name"] == "eomt"
    rows = {r["method"]: r for r in document["results"]}
    assert set(rows) == {"msp", "entropy", "rba", "noobject", "eam"}
    # independent scoring: numpy formulas on the predictor's class scores, sklearn metrics
    predictor = load_predictor("eomt", tmp_path / "eomt.bin")
    rba, eam, labels = [], [], []
    for image_path in sorted((bundle / "RoadAnomaly21" / "images").iterdir()):
        image = torch.from_numpy(np.asarray(Image.open(image_path).convert("RGB"))).permute(2, 0, 1)[None]
        mask = np.asarray(Image.open(bundle / "RoadAnomaly21" / "labels_masks" / f"{image_path.stem}.png"))
        p = predictor(image).class_scores[0].double().numpy()
        valid = mask != 255
        rba.append(-np.tanh(p).sum(0)[valid])
        eam.append(_independent_eam(predictor.model, image)[valid])
        labels.append(mask[valid] == 1)
    y = np.concatenate(labels)
    for method, values in (("rba", rba), ("eam", eam)):
        s = np.concatenate(values)
        assert rows[method]["auprc"] == pytest.approx(average_precision_score(y, s), abs=1e-4), method
        assert rows[method]["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-4), method


def _independent_eam(model, image):
    """EAM = 1 - sum_q sigmoid(mask_q) max_k softmax(class_q)_k on one 32x48 image: the crop is 64, so the image is
    scaled to 64x96, cut into 64x64 windows at 0 and 32, averaged where they overlap and resized back."""
    F = torch.nn.functional
    x = F.interpolate(image.double(), size=(64, 96), mode="bilinear", antialias=True)
    total, count = torch.zeros(64, 96, dtype=torch.float64), torch.zeros(64, 96, dtype=torch.float64)
    model = model.double()
    for left in (0, 32):
        with torch.no_grad():
            out = model.forward_all(x[..., left : left + 64])
        masks = F.interpolate(out.mask_logits[-1], size=(64, 64), mode="bilinear").sigmoid()
        best = out.class_logits[-1].softmax(-1)[..., :-1].max(-1).values
        total[:, left : left + 64] += torch.einsum("bqhw,bq->hw", masks, best)
        count[:, left : left + 64] += 1
    model.float()
    eam = 1.0 - total / count
    return F.interpolate(eam[None, None], size=(32, 48), mode="bilinear")[0, 0].numpy()


@pytest.mark.parametrize("model", ["erfnet", "eomt"])
def test_cityscapes_miou_matches_an_independent_confusion_matrix(tmp_path, model):
    from sklearn.metrics import confusion_matrix

    from eomt_fixtures import Tiny, official_state_dict
    from roadanomaly.data.labels import ID_TO_TRAIN_ID
    from roadanomaly.inference import load_predictor
    from fixtures import make_cityscapes

    cityscapes = make_cityscapes(tmp_path / "cs", "val", size=(32, 64), images=2)
    weights = tmp_path / ("eomt.bin" if model == "eomt" else "erfnet.pth")
    if model == "eomt":
        torch.save(official_state_dict(Tiny(classes=19)), weights)
    else:
        make_erfnet_checkpoint(weights)
    out = tmp_path / "r.json"
    assert main(["evaluate", "--model", model, "--weights", str(weights), "--cityscapes", str(cityscapes),
                 "--output", str(out), "--quiet", "--workers", "0"]) == 0
    reported = json.loads(out.read_text())["segmentation"]

    predictor = load_predictor(model, weights)
    predictions, targets = [], []
    for image_path in sorted((cityscapes / "leftImg8bit" / "val").glob("*/*.png")):
        image = torch.from_numpy(np.asarray(Image.open(image_path).convert("RGB"))).permute(2, 0, 1)[None]
        label_path = str(image_path).replace("leftImg8bit", "gtFine", 1).replace("_leftImg8bit.png", "_gtFine_labelIds.png")
        target = ID_TO_TRAIN_ID[np.asarray(Image.open(label_path))]
        outputs = predictor(image)
        scores = outputs.class_scores if model == "eomt" else outputs.logits[:, :19]
        predictions.append(scores[0].argmax(0).numpy()[target != 255])
        targets.append(target[target != 255])
    matrix = confusion_matrix(np.concatenate(targets), np.concatenate(predictions), labels=list(range(19)))
    union = matrix.sum(0) + matrix.sum(1) - np.diag(matrix)
    iou = np.diag(matrix)[union > 0] / union[union > 0]
    assert reported["miou"] == pytest.approx(iou.mean(), abs=1e-9)


def test_report_option_writes_a_page_with_the_json_numbers(tmp_path):
    bundle = make_bundle(tmp_path / "bundle", size=(32, 48), images=2)
    make_erfnet_checkpoint(tmp_path / "w.pth")
    out, report = tmp_path / "r.json", tmp_path / "report"
    assert main(["evaluate", "--weights", str(tmp_path / "w.pth"), "--data", str(bundle), "--datasets",
                 "RoadAnomaly21", "--methods", "msp,energy", "--output", str(out), "--report", str(report),
                 "--quiet", "--workers", "0"]) == 0
    page = (report / "index.html").read_text()
    for row in json.loads(out.read_text())["results"]:
        assert f"{100 * row['auprc']:.2f}" in page and f"{100 * row['fpr95']:.2f}" in page
    overlays = json.loads(out.read_text())["overlays"]["items"]
    assert overlays and all((report / item["path"]).is_file() for item in overlays)


def test_onnxruntime_backend_gives_the_torch_numbers(tmp_path):
    pytest.importorskip("onnxruntime")
    bundle = make_bundle(tmp_path / "bundle", size=(32, 48), images=2)
    make_erfnet_checkpoint(tmp_path / "w.pth")
    rows = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / f"{backend}.json"
        assert main(["evaluate", "--weights", str(tmp_path / "w.pth"), "--backend", backend, "--data", str(bundle),
                     "--datasets", "RoadAnomaly21", "--methods", "msp,energy", "--metric-mode", "exact",
                     "--output", str(out), "--quiet", "--workers", "0"]) == 0
        rows[backend] = {r["method"]: r for r in json.loads(out.read_text())["results"]}
    for method in ("msp", "energy"):
        for key in ("auprc", "fpr95", "auroc"):
            assert rows["onnxruntime"][method][key] == pytest.approx(rows["torch"][method][key], abs=1e-4)
    result = _run_cli("evaluate", "--model", "python:x.py:Net", "--weights", str(tmp_path / "w.pth"),
                      "--backend", "onnxruntime", "--data", str(bundle))
    assert result.returncode == 2
    assert result.stderr.strip() == "roadanomaly: error: --backend does not apply to --model python"
