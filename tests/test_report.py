import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import average_precision_score

from results_fixtures import make_document
from roadanomaly.cli import main
from roadanomaly.report import format_table, results_document, write_json, write_report
from roadanomaly.report.overlays import ExtremesRecorder, average_precision


class _Page(HTMLParser):
    """Collects the results table's cells and every <img>'s attributes."""

    def __init__(self):
        super().__init__()
        self.rows, self.images, self._in_results, self._cell, self._bold = [], [], False, None, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._in_results = attrs.get("id") == "results"
        elif self._in_results and tag == "tr":
            self.rows.append([])
        elif self._in_results and tag == "td":
            self._cell = {"text": "", "value": attrs.get("data-value"), "key": attrs.get("data-key"), "bold": False}
        elif tag == "strong" and self._cell is not None:
            self._cell["bold"] = True
        elif tag == "img":
            self.images.append(attrs)

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_results = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data


def _parse(index: Path) -> _Page:
    page = _Page()
    page.feed(index.read_text(encoding="utf-8"))
    return page


def test_old_names_still_import_and_the_table_is_unchanged():
    document = make_document(datasets=("fs_static",), methods=("msp",))
    row = document["results"][0]
    table = format_table(document["results"])
    assert table.splitlines()[0].split() == ["dataset", "method", "AuPRC", "%", "FPR95", "%", "AUROC", "%", "images",
                                             "anomaly", "px", "%"]
    cells = table.splitlines()[2].split()
    assert cells[:5] == ["fs_static", "msp", f"{100 * row['auprc']:.2f}", f"{100 * row['fpr95']:.2f}",
                         f"{100 * row['auroc']:.2f}"]
    assert results_document({"size": "native"}, {"name": "m"}, [row]) == {
        "protocol": {"size": "native"}, "model": {"name": "m"}, "results": [row]}


def test_html_table_numbers_equal_the_document(tmp_path):
    document = make_document()
    page = _parse(write_report(document, tmp_path / "report"))
    body = [r for r in page.rows if r]
    assert len(body) == len(document["results"])
    for row, cells in zip(document["results"], body):
        assert [cells[0]["text"], cells[1]["text"]] == [row["dataset"], row["method"]]
        for cell, key in zip(cells[2:5], ("auprc", "fpr95", "auroc")):
            assert cell["key"] == key
            assert float(cell["value"]) == row[key]  # the exact fraction survives
            assert cell["text"] == f"{100 * row[key]:.2f}"
        assert cells[5]["text"] == str(row["images"])
        assert cells[6]["text"] == f"{100 * row['anomaly_pixels'] / row['pixels']:.2f}"
    # the bold cell of each (dataset, metric) is the best value: max AuPRC/AUROC, min FPR95
    for dataset in ("RoadAnomaly21", "fs_static"):
        rows = [(r, c) for r, c in zip(document["results"], body) if r["dataset"] == dataset]
        for i, key, pick in ((2, "auprc", max), (3, "fpr95", min), (4, "auroc", max)):
            best = pick(r[key] for r, _ in rows)
            assert [c[i]["bold"] for _, c in rows] == [r[key] == best for r, _ in rows]


def _png_size(path_or_bytes) -> tuple[int, int]:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return image.size


def test_every_plot_exists_is_a_png_of_the_stated_size_and_nothing_is_remote(tmp_path):
    document = make_document(methods=("msp", "maxlogit", "entropy", "energy"))
    index = write_report(document, tmp_path / "report")
    page = _parse(index)
    expected = {}
    for dataset in ("RoadAnomaly21", "fs_static"):
        expected[f"plots/{dataset}_pr.png"] = (600, 450)
        expected[f"plots/{dataset}_roc.png"] = (600, 450)
        expected[f"plots/{dataset}_histogram.png"] = (3 * 360, 2 * 260)  # 4 panels: 3 columns, 2 rows
    assert {img["src"] for img in page.images} == set(expected)
    for img in page.images:
        size = _png_size(index.parent / img["src"])
        assert size == expected[img["src"]] == (int(img["width"]), int(img["height"]))
    text = index.read_text()
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:)?//", text) and "http" not in text.lower()


def test_inline_report_is_a_single_file(tmp_path):
    index = write_report(make_document(datasets=("fs_static",)), tmp_path / "report", inline=True)
    page = _parse(index)
    assert len(page.images) == 3
    for img in page.images:
        assert img["src"].startswith("data:image/png;base64,")
        size = _png_size(base64.b64decode(img["src"].split(",", 1)[1]))
        assert size == (int(img["width"]), int(img["height"]))


def test_document_without_curves_still_reports_its_table(tmp_path):
    document = make_document(datasets=("fs_static",))
    del document["curves"], document["histograms"]
    page = _parse(write_report(document, tmp_path / "report"))
    assert page.images == [] and len([r for r in page.rows if r]) == 3
    assert "holds no curves or histograms" in (tmp_path / "report" / "index.html").read_text()


def test_average_precision_matches_sklearn_with_ties():
    rng = np.random.default_rng(3)
    for _ in range(20):
        labels = rng.random(300) < rng.uniform(0.02, 0.5)
        labels[0] = True
        scores = rng.integers(0, 6, 300).astype(np.float32)  # many ties
        assert average_precision(scores, labels) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    labels = np.array([0, 1, 0, 1, 1, 0], bool)
    as_uint8 = np.array([0, 255, 3, 200, 7, 1], np.uint8)
    assert average_precision(as_uint8, labels) == pytest.approx(average_precision_score(labels, as_uint8.astype(float)))
    with pytest.raises(ValueError):
        average_precision(np.ones(4), np.zeros(4, bool))


def _scene(rng, noise, size=(24, 32)):
    label = np.zeros(size, np.uint8)
    label[8:14, 10:18] = 1
    label[:3] = 255
    score = (label == 1).astype(np.float32) + noise * rng.normal(size=size).astype(np.float32)
    image = rng.integers(0, 256, (3, *size), dtype=np.uint8)
    return image, label, score


def test_extremes_recorder_keeps_the_k_best_and_worst_by_per_image_auprc(tmp_path):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    recorder = ExtremesRecorder(tmp_path / "report", k=2, max_side=64)  # images are smaller: no resizing
    expected = {"msp": {}, "energy": {}}
    for i in range(7):
        image, label, score = _scene(rng, noise=rng.uniform(0.1, 2.0))
        scores = {"msp": score, "energy": -score + 0.8 * rng.normal(size=score.shape).astype(np.float32)}
        path = f"/data/img_{i}.png"
        recorder.on_image("SynthAnomaly", path, torch.from_numpy(image), torch.from_numpy(label),
                          {m: torch.from_numpy(s) for m, s in scores.items()})
        valid = label != 255
        for method, s in scores.items():
            expected[method][path] = average_precision_score(label[valid] == 1, s[valid])
        assert all(len(heap) <= 2 for heap in [*recorder._best.values(), *recorder._worst.values()])
    clean = np.zeros((24, 32), np.uint8)  # no anomaly pixel: never ranked
    recorder.on_image("SynthAnomaly", "/data/clean.png", np.zeros((3, 24, 32), np.uint8), clean,
                      {"msp": np.zeros((24, 32), np.float32)})
    recorder.on_dataset_end("SynthAnomaly")
    assert recorder._best == {} and recorder._worst == {}
    document = make_document(datasets=("SynthAnomaly",))
    recorder.finish(document)
    items = document["overlays"]["items"]
    assert document["overlays"]["root"] == str((tmp_path / "report").resolve())
    for method, aps in expected.items():
        ranked = sorted(aps, key=aps.get, reverse=True)
        for kind, wanted in (("best", ranked[:2]), ("worst", ranked[::-1][:2])):
            chosen = sorted((i for i in items if i["method"] == method and i["kind"] == kind), key=lambda i: i["rank"])
            assert [i["image"] for i in chosen] == wanted
            assert [i["auprc"] for i in chosen] == pytest.approx([aps[p] for p in wanted], abs=1e-9)
            for item in chosen:
                assert not Path(item["path"]).is_absolute()
                assert _png_size(tmp_path / "report" / item["path"]) == (32, 24)
    assert all("clean" not in i["image"] for i in items)


def test_with_few_images_the_worst_do_not_repeat_the_best(tmp_path):
    rng = np.random.default_rng(5)
    recorder = ExtremesRecorder(tmp_path, k=2)
    aps = {}
    for i in range(3):
        image, label, score = _scene(rng, noise=0.4 * (i + 1))
        recorder.on_image("D", f"img_{i}.png", image, label, {"msp": score})
        valid = label != 255
        aps[f"img_{i}.png"] = average_precision_score(label[valid] == 1, score[valid])
    document = {"results": []}
    recorder.finish(document)
    ranked = sorted(aps, key=aps.get, reverse=True)
    items = document["overlays"]["items"]
    assert [(i["kind"], i["rank"], i["image"]) for i in items] == [
        ("best", 1, ranked[0]), ("best", 2, ranked[1]), ("worst", 1, ranked[2])]


def test_extremes_recorder_ranks_on_thumbnails_of_large_images(tmp_path):
    rng = np.random.default_rng(1)
    recorder = ExtremesRecorder(tmp_path, k=1, max_side=50)
    for i in range(3):
        image, label, score = _scene(rng, noise=0.5 * (i + 1), size=(100, 200))
        label[8:14, 10:18] = 0
        label[40:70, 80:130] = 1
        score = (label == 1) + 0.5 * (i + 1) * rng.normal(size=label.shape).astype(np.float32)
        recorder.on_image("D", f"img_{i}.jpg", image, label, {"msp": score})
    document = {"results": []}
    recorder.finish(document)
    items = document["overlays"]["items"]
    assert [(i["kind"], i["image"]) for i in items] == [("best", "img_0.jpg"), ("worst", "img_2.jpg")]
    for item in items:
        assert _png_size(tmp_path / item["path"]) == (50, 25)


def _saved_report_with_overlays(tmp_path: Path) -> Path:
    rng = np.random.default_rng(2)
    first = tmp_path / "first"
    recorder = ExtremesRecorder(first, k=1)
    for i in range(3):
        image, label, score = _scene(rng, noise=0.3 * (i + 1))
        recorder.on_image("fs_static", f"img_{i}.png", image, label, {"msp": score})
    document = make_document(datasets=("fs_static",), methods=("msp",))
    recorder.finish(document)
    write_json(first / "results.json", document)
    return first / "results.json"


def test_report_cli_reuses_the_overlays_a_results_file_names(tmp_path, capsys):
    results = _saved_report_with_overlays(tmp_path)
    assert main(["report", str(results), "--out", str(tmp_path / "second")]) == 0
    assert f"report written to {tmp_path / 'second' / 'index.html'}" in capsys.readouterr().out
    page = _parse(tmp_path / "second" / "index.html")
    overlays = [img["src"] for img in page.images if img["src"].startswith("overlays/")]
    assert len(overlays) == 2
    for src in overlays:
        assert (tmp_path / "second" / src).read_bytes() == (tmp_path / "first" / src).read_bytes()
    # the folder moved: the overlays are found beside the results file
    shutil.move(tmp_path / "first", tmp_path / "moved")
    assert main(["report", str(tmp_path / "moved" / "results.json"), "--out", str(tmp_path / "third")]) == 0
    assert len([i for i in _parse(tmp_path / "third" / "index.html").images if i["src"].startswith("overlays/")]) == 2
    # gone altogether: the page says so
    document = json.loads((tmp_path / "moved" / "results.json").read_text())
    shutil.rmtree(tmp_path / "moved" / "overlays")
    index = write_report(document, tmp_path / "fourth")
    assert "2 overlay image(s) named in the results were not found" in index.read_text()


@pytest.mark.parametrize(
    "content, problem",
    [
        (None, "no such results file"),
        ("{not json",
         "not readable JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"),
        ("[1, 2]", "not a roadanomaly results file: expected a JSON object, found a list"),
        ('{"protocol": {}}', 'not a roadanomaly results file: no "results" list'),
        ('{"results": [{"dataset": "a", "method": "msp", "auprc": 0.5}]}',
         "not a roadanomaly results file: results[0] lacks 'fpr95', 'auroc', 'pixels', 'anomaly_pixels', 'images'"),
        ('{"results": [{"dataset": "a", "method": "msp", "auprc": "high", "fpr95": 0, "auroc": 1, "pixels": 1, '
         '"anomaly_pixels": 1, "images": 1}]}',
         "not a roadanomaly results file: results[0].auprc is a string, expected a number or null"),
        ('{"results": [{"dataset": "a", "method": "msp", "auprc": 1, "fpr95": 0, "auroc": 1, "pixels": 1.5, '
         '"anomaly_pixels": 1, "images": 1}]}',
         "not a roadanomaly results file: results[0].pixels is a number, expected an integer"),
        ('{"results": [7]}', "not a roadanomaly results file: results[0] is a number, expected an object"),
        ('{"protocol": [], "results": []}', 'not a roadanomaly results file: "protocol" is a list, expected an object'),
    ],
)
def test_bad_results_files_are_one_line_user_errors(tmp_path, capsys, content, problem):
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content)
    assert main(["report", str(path), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == f"roadanomaly: error: {path}: {problem}\n"


def test_engine_observer_to_report_end_to_end(tmp_path):
    """The evaluation engine feeds the recorder; the saved document names the overlays; the page shows them."""
    import torch

    from fixtures import make_bundle, make_erfnet_checkpoint
    from roadanomaly.data.bundle import discover_bundles
    from roadanomaly.evaluation import EvaluationEngine
    from roadanomaly.inference import load_predictor
    from roadanomaly.protocol import EvalProtocol
    from roadanomaly.results import ResultsDocument

    torch.set_num_threads(1)
    make_bundle(tmp_path / "data", size=(32, 48), images=3)
    make_erfnet_checkpoint(tmp_path / "w.pth")
    report = tmp_path / "report"
    recorder = ExtremesRecorder(report, k=1)
    engine = EvaluationEngine(load_predictor("erfnet", tmp_path / "w.pth"), EvalProtocol(), ["msp", "energy"],
                              workers=0, progress_bars=False, observers=[recorder], output=tmp_path / "results.json")
    document = engine.run(discover_bundles(tmp_path / "data", ["fs_static"]))
    assert isinstance(document, ResultsDocument)
    saved = json.loads((tmp_path / "results.json").read_text())
    items = saved["overlays"]["items"]
    assert {(i["method"], i["kind"]) for i in items} == {(m, k) for m in ("msp", "energy") for k in ("best", "worst")}
    page = _parse(write_report(document, report))
    cells = [r for r in page.rows if r]
    assert [(c[0]["text"], c[1]["text"]) for c in cells] == [("fs_static", "msp"), ("fs_static", "energy")]
    for cells_row, row in zip(cells, saved["results"]):
        assert float(cells_row[2]["value"]) == row["auprc"]
    assert sorted(i["src"] for i in page.images if i["src"].startswith("overlays/")) == sorted(i["path"] for i in items)


def test_temperature_sweep_rows_are_their_own_methods_and_miou_is_shown(tmp_path):
    document = make_document(datasets=("fs_static",), methods=("msp",))
    swept = {**document["results"][0], "temperature": 2.0, "auprc": 0.5}
    document["results"].append(swept)
    document["segmentation"] = {"dataset": "/data/cityscapes", "split": "val", "miou": 0.45678}
    assert "msp T=2" in format_table(document["results"])
    index = write_report(document, tmp_path / "r")
    page = _parse(index)
    assert ("<p id='miou'>Segmentation mIoU on /data/cityscapes val: <strong>45.68 %</strong></p>"
            in index.read_text())
    labels = [(c[1]["text"], float(c[2]["value"])) for c in page.rows if c]
    assert labels == [("msp", document["results"][0]["auprc"]), ("msp T=2", 0.5)]


def _chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def test_report_renders_in_headless_chromium(tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("headless Chromium not found: apt-get install chromium chromium-driver (.ci/run does this)")
    rng = np.random.default_rng(4)
    report = tmp_path / "report"
    recorder = ExtremesRecorder(report, k=1)
    for i in range(2):
        image, label, score = _scene(rng, noise=0.5 * (i + 1), size=(96, 192))
        recorder.on_image("RoadAnomaly21", f"img_{i}.png", image, label, {"msp": score, "entropy": score ** 2})
    document = make_document()
    recorder.finish(document)
    index = write_report(document, report)
    shot = tmp_path / "shot.png"
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
               index.resolve().as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape == (2000, 1280, 3)

    def share(rgb):
        return float((np.abs(pixels - np.array(rgb)).sum(axis=-1) < 30).mean())

    # the plots were loaded and drawn: matplotlib's tab:orange and tab:green curves are on screen
    assert share((255, 127, 14)) > 1e-4 and share((44, 160, 44)) > 1e-4
    assert share((255, 255, 255)) > 0.3  # and the page is a page, not a blank colour
