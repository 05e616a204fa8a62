import os
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from nbclient import NotebookClient
from PIL import Image
from scipy.special import softmax
from sklearn.metrics import average_precision_score, roc_auc_score

from roadanomaly.models.erfnet import ERFNet

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "inference.ipynb"


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook executed in a fresh kernel that imports this checkout's package."""
    run_dir = tmp_path_factory.mktemp("notebook")
    environment = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
                   "OMP_NUM_THREADS": "1"}
    saved = {k: os.environ.get(k) for k in environment}
    os.environ.update(environment)
    try:
        notebook = nbformat.read(NOTEBOOK, as_version=4)
        NotebookClient(notebook, timeout=120, kernel_name="python3",
                       resources={"metadata": {"path": str(run_dir)}}).execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return notebook


def test_notebook_runs_without_errors_and_plots(executed):
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert all(o.get("output_type") != "error" for c in code for o in c.get("outputs", []))
    assert any("image/png" in o.get("data", {}) for o in code[-1].get("outputs", []))


def test_notebook_metrics_match_an_independent_computation(executed):
    code = [c for c in executed.cells if c.cell_type == "code"]
    workdir = Path(re.search(r"working in (\S+)", _text(code[0]))[1])
    printed = {m[1]: {k: float(v) / 100 for k, v in zip(("auprc", "fpr95", "auroc"), m.groups()[1:])}
               for m in re.finditer(r"^(\w+)\s+AuPRC\s+([\d.]+) %\s+FPR95\s+([\d.]+) %\s+AUROC\s+([\d.]+) %",
                                    _text(code[-2]), re.M)}
    assert set(printed) == {"msp", "maxlogit", "entropy", "energy", "void"}
    model = ERFNet(num_classes=20)
    model.load_state_dict(torch.load(workdir / "erfnet_random.pth"))
    model.eval()
    folder = workdir / "bundle" / "SynthAnomaly"
    scores, labels = [], []
    for image_path in sorted((folder / "images").iterdir()):
        image = np.asarray(Image.open(image_path).convert("RGB"), dtype=np.float32) / 255.0
        mask = np.asarray(Image.open(folder / "labels_masks" / f"{image_path.stem}.png"))
        with torch.no_grad():
            logits = model(torch.from_numpy(image).permute(2, 0, 1)[None])[0].double().numpy()
        valid = mask != 255
        scores.append((1.0 - softmax(logits[:19], axis=0).max(axis=0))[valid])
        labels.append(mask[valid] == 1)
    s, y = np.concatenate(scores), np.concatenate(labels)
    assert printed["msp"]["auprc"] == pytest.approx(average_precision_score(y, s), abs=2e-5)
    assert printed["msp"]["auroc"] == pytest.approx(roc_auc_score(y, s), abs=2e-5)
