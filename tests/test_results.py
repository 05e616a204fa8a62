"""The results document: written, read back unchanged; malformed files are one-line user errors."""

import json

import pytest

from roadanomaly.errors import UserError
from roadanomaly.results import AnomalyResult, ResultsDocument


def _document() -> ResultsDocument:
    rows = [AnomalyResult("RoadAnomaly21", "msp", 0.25, 0.5, 0.75, 100, 10, 2),
            AnomalyResult("RoadAnomaly21", "msp", 0.3, 0.4, 0.8, 100, 10, 2, temperature=2.0, siou=0.1, ppv=0.2,
                          mean_f1=0.05)]
    return ResultsDocument({"size": "native"}, {"name": "erfnet"}, rows, {"miou": 0.5},
                           curves=[{"dataset": "RoadAnomaly21", "method": "msp", "pr": {"recall": [0, 1]}}],
                           extras={"wall_time_s": 3.5})


def test_round_trip_through_a_file(tmp_path):
    document = _document()
    document.save(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["results"][0] == {"dataset": "RoadAnomaly21", "method": "msp", "auprc": 0.25, "fpr95": 0.5,
                                  "auroc": 0.75, "pixels": 100, "anomaly_pixels": 10, "images": 2}
    assert data["results"][1]["temperature"] == 2.0 and data["results"][1]["siou"] == 0.1
    assert data["wall_time_s"] == 3.5 and data["segmentation"] == {"miou": 0.5}
    loaded = ResultsDocument.load(tmp_path / "r.json")
    assert loaded == document
    assert loaded.row("RoadAnomaly21", "msp", 2.0).mean_f1 == 0.05


@pytest.mark.parametrize("text, problem", [
    ("{", "not readable JSON"),
    ('{"protocol": {}}', "not a roadanomaly results document (no 'results' list)"),
    ('{"results": [7]}', "result row 0 is not an object"),
    ('{"results": [], "protocol": [1]}', "'protocol' is not an object"),
    ('{"results": [{"dataset": "A"}]}', "malformed result row"),
])
def test_malformed_documents_name_the_file(tmp_path, text, problem):
    path = tmp_path / "r.json"
    path.write_text(text)
    with pytest.raises(UserError) as caught:
        ResultsDocument.load(path)
    assert str(caught.value).startswith(f"{path}: {problem}")
    with pytest.raises(UserError, match="no such results file"):
        ResultsDocument.load(tmp_path / "missing.json")
