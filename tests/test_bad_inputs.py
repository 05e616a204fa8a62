"""Every case of the bad-input corpus (tests/bad_inputs.py) through the real CLI, in a subprocess.

A bad file or option must end the run with exit code 2 and exactly one line on stderr, ``roadanomaly: error:
<file>: <problem>``, never a traceback; what was computed before the failure stays in the results file, and the
progress file lets ``--resume`` finish, once the file is fixed, with the numbers of a clean run. Accepted inputs
(grey, palette, RGBA, 16-bit images, palette and 16-bit masks, hidden files) exit 0 with the clean numbers.

The subprocesses of all selected cases run a few at a time from one module fixture (each spends most of its time
importing torch).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import bad_inputs as corpus
import roadanomaly
from bad_inputs import CASES, CLEAN, CLEAN_CITYSCAPES, FIRST, LATER, Case, Damage, Tree
from roadanomaly.data.bundle import AnomalyBundle, discover_bundles
from roadanomaly.data.io import read_image, read_label
from roadanomaly.errors import UserError
from roadanomaly.evaluation import EvaluationEngine
from roadanomaly.evaluation.progress import Progress
from roadanomaly.outputs import OutputSpec, PixelOutputs
from roadanomaly.protocol import EvalProtocol

ERRORS = [case for case in CASES if case.problem is not None]
ACCEPTED = [case for case in CASES if case.problem is None]
SEGMENTATION = "segmentation"


@dataclass
class Run:
    code: int
    stderr: str
    results: list[dict] | None
    """The results file's rows after the run (None: no results file)."""
    segmentation: dict | None
    progress: Progress | None
    """The progress file after the run (None: none was left)."""


@dataclass
class Played:
    tree: Tree
    damage: Damage
    first: Run
    resumed: Run | None = None


def _kind_missing(case: Case) -> str | None:
    """Why ``case`` cannot run here (its model kind is not registered yet), or None."""
    if case.kind is None:
        return None
    from roadanomaly.inference import model_kind_names

    if case.kind not in {name.partition(":")[0] for name in model_kind_names()}:
        return f"model kind {case.kind!r} is not registered in this checkout"
    if case.kind == "onnx" and importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed"
    return None


def _environment() -> dict[str, str]:
    """The subprocesses import this checkout's package and use one thread each (several run at once)."""
    source = str(Path(roadanomaly.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": source if not path else f"{source}{os.pathsep}{path}",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _cli(args: list[str], output: Path) -> Run:
    done = subprocess.run([sys.executable, "-m", "roadanomaly", *args], capture_output=True, text=True,
                          env=_environment(), timeout=600, check=False)
    document = json.loads(output.read_text()) if output.exists() else None
    progress_file = output.with_name(output.name + ".progress.pt")
    progress = Progress.load(progress_file) if progress_file.exists() else None
    return Run(done.returncode, done.stderr, None if document is None else document["results"],
               None if document is None else document.get("segmentation"), progress)


def _play(case: Case, pristine: Tree, root: Path) -> Played:
    tree = corpus.fresh_copy(pristine, root)
    damage = case.damage(tree)
    output = tree.root / "results.json"
    played = Played(tree, damage, _cli(case.arguments(tree, damage, output), output))
    if case.resume:
        damage.repair()
        played.resumed = _cli([*case.arguments(tree, damage, output), "--resume"], output)
    return played


@pytest.fixture(scope="module")
def played(request, tmp_path_factory) -> dict[str, Played]:
    """Every case selected in this session, played once; the clean runs they are compared with always."""
    selected = {item.callspec.params["case"].name for item in request.session.items
                if item.module is request.module and hasattr(item, "callspec") and "case" in item.callspec.params}
    cases = [c for c in CASES if c.name in selected and _kind_missing(c) is None] + [CLEAN, CLEAN_CITYSCAPES]
    base = tmp_path_factory.mktemp("bad_inputs")
    pristine = corpus.build_pristine(base / "pristine")
    with ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 1))) as pool:
        futures = {case.name: pool.submit(_play, case, pristine, base / case.name) for case in cases}
        return {name: future.result() for name, future in futures.items()}


def _rows(run: Run, dataset: str | None = None) -> list[dict]:
    assert run.results is not None, "no results file"
    return [row for row in run.results if dataset is None or row["dataset"] == dataset]


@pytest.mark.parametrize("case", ERRORS, ids=lambda c: c.name)
def test_bad_input_is_one_line_naming_the_file_and_exit_2(case, played):
    missing = _kind_missing(case)
    if missing:
        pytest.skip(missing)
    run, tree, damage = played[case.name].first, played[case.name].tree, played[case.name].damage
    assert "Traceback" not in run.stderr
    assert run.code == 2, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    where = "" if damage.path is None else f"{damage.path}: "
    expected = f"roadanomaly: error: {where}{case.expected_problem(tree)}"
    if case.prefix:  # a library's words follow in parentheses, on the same line
        assert lines[0].startswith(expected) and lines[0].endswith(")"), lines[0]
    else:
        assert lines[0] == expected


@pytest.mark.parametrize("case", [c for c in ERRORS if c.after_first], ids=lambda c: c.name)
def test_a_later_failure_keeps_what_was_computed(case, played):
    """The first dataset's rows (equal to a clean run's) are in the results file; the progress file holds the
    dataset under way with the images counted before the bad one."""
    missing = _kind_missing(case)
    if missing:
        pytest.skip(missing)
    run = played[case.name].first
    clean = played[CLEAN_CITYSCAPES.name if case.cityscapes else CLEAN.name].first
    assert {row["dataset"] for row in _rows(run)} == {FIRST}
    if case.same_model:
        assert _rows(run) == _rows(clean, FIRST)
    assert run.progress is not None and run.progress.current is not None
    if case.cityscapes:
        assert run.progress.current.task == SEGMENTATION and run.progress.current.done == [0]
    else:
        assert run.progress.current.task == case.datasets[1] and run.progress.current.done == [0, 1]


@pytest.mark.parametrize("case", [c for c in ERRORS if not c.after_first], ids=lambda c: c.name)
def test_a_failure_before_any_image_leaves_no_files(case, played):
    missing = _kind_missing(case)
    if missing:
        pytest.skip(missing)
    run = played[case.name].first
    assert run.results is None and run.progress is None


@pytest.mark.parametrize("case", [c for c in ERRORS if c.resume], ids=lambda c: c.name)
def test_resume_after_the_fix_gives_the_clean_numbers(case, played):
    resumed = played[case.name].resumed
    clean = played[CLEAN_CITYSCAPES.name if case.cityscapes else CLEAN.name].first
    assert clean.code == 0 and resumed is not None
    assert resumed.code == 0 and "Traceback" not in resumed.stderr, resumed.stderr
    assert resumed.progress is None  # a finished run removes its progress file
    assert _rows(resumed) == _rows(clean) and len(_rows(clean)) > 0
    assert _numbers(resumed.segmentation) == _numbers(clean.segmentation)


def _numbers(segmentation: dict | None) -> dict | None:
    """The segmentation entry without its "dataset" (each case has its own copy of the Cityscapes folder)."""
    return None if segmentation is None else {k: v for k, v in segmentation.items() if k != "dataset"}


@pytest.mark.parametrize("case", ACCEPTED, ids=lambda c: c.name)
def test_accepted_inputs_give_the_clean_numbers(case, played):
    run, clean = played[case.name].first, played[CLEAN.name].first
    assert run.code == 0 and run.stderr == "", run.stderr
    assert clean.code == 0 and len(_rows(clean)) == 10
    assert _rows(run) == _rows(clean)


# ------------------------------------------------------------------------------------------------- in process
@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Tree:
    return corpus.build_pristine(tmp_path_factory.mktemp("pristine") / "tree")


def _pil_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "RGB"
        return np.asarray(image)


@pytest.mark.parametrize("damage", [d for d in corpus.ACCEPTED_DAMAGES if d is not corpus.hidden_files],
                         ids=lambda d: d.__name__)
def test_each_accepted_file_reads_as_its_clean_original(damage, pristine, tmp_path):
    """Re-encoded (grey, palette, RGBA, 16-bit, WebP bytes under .png; palette or 16-bit mask), a file reads back
    as the clean 8-bit original, which Pillow reads independently."""
    tree = corpus.fresh_copy(pristine, tmp_path / "tree")
    path = damage(tree).path
    original = pristine.root / path.relative_to(tree.root)
    assert path.read_bytes() != original.read_bytes()
    if path.parent.name == "labels_masks":
        with Image.open(original) as image:
            expected = np.asarray(image)
        assert np.array_equal(read_label(path), expected) and read_label(path).dtype == np.uint8
    else:
        got = read_image(path)
        assert got.dtype == np.uint8 and got.shape == (*corpus.SIZE, 3)
        assert np.array_equal(got, _pil_rgb(original))


def test_hidden_files_are_not_images(pristine, tmp_path):
    tree = corpus.fresh_copy(pristine, tmp_path / "tree")
    corpus.hidden_files(tree)
    bundle, clean = AnomalyBundle(tree.data / FIRST), AnomalyBundle(pristine.data / FIRST)
    assert [p.name for p in bundle.image_paths] == [p.name for p in clean.image_paths]
    assert [p.name for p in bundle.label_paths] == [p.name for p in clean.label_paths]


def test_16bit_grey_keeps_the_high_byte(tmp_path):
    """65535 -> 255 and 257 * v -> v: the reading is v >> 8 (Pillow's own conversion would clip at 255)."""
    values = np.array([[0, 255, 256, 257 * 100, 65280, 65535]], np.uint16)
    path = tmp_path / "grey16.png"
    path.write_bytes(corpus.png16(values))
    expected = (values >> 8).astype(np.uint8)
    assert np.array_equal(read_image(path), np.repeat(expected[..., None], 3, axis=2))


class _Broken:
    """A logits predictor (random logits) that puts ``value`` at one pixel of one class for the image ``bad``."""

    spec = OutputSpec("logits")

    def __init__(self, bad: np.ndarray, value: float) -> None:
        self.info: dict = {}
        self.bad, self.value = torch.from_numpy(bad.copy()).permute(2, 0, 1), value
        self.generator = torch.Generator().manual_seed(0)

    def __call__(self, images: torch.Tensor) -> PixelOutputs:
        logits = torch.randn(1, 4, *images.shape[-2:], generator=self.generator)
        if torch.equal(images[0], self.bad):
            logits[0, 1, 3, 5] = self.value
        return PixelOutputs(logits=logits)


def _engine_run(tree: Tree, value: float, method: str, tmp_path: Path):
    datasets = discover_bundles(tree.data, [FIRST, LATER])
    bad = datasets[1].image_paths[corpus.LAST]
    output, progress = tmp_path / "r.json", tmp_path / "r.json.progress.pt"
    engine = EvaluationEngine(_Broken(read_image(bad), value), EvalProtocol(), [method], workers=0,
                              progress_bars=False, output=output, progress_file=progress)
    return engine, datasets, bad, output, progress


@pytest.mark.parametrize("value, method", [(float("nan"), "msp"), (float("nan"), "maxlogit"),
                                           (float("inf"), "msp"), (float("inf"), "energy")])
def test_non_finite_model_output_is_an_error_naming_the_image(value, method, pristine, tmp_path):
    engine, datasets, bad, output, progress = _engine_run(pristine, value, method, tmp_path)
    with pytest.raises(UserError) as caught:
        engine.run(datasets)
    assert caught.value.where == str(bad)
    assert caught.value.problem == f"the model's outputs give non-finite {method} scores (NaN or inf)"
    assert {row["dataset"] for row in json.loads(output.read_text())["results"]} == {FIRST}
    saved = Progress.load(progress)
    assert saved.current.task == LATER and saved.current.done == [0, 1]


def test_minus_inf_for_one_class_is_accepted_by_the_engine(pristine, tmp_path):
    """The engine checks the scores: a -inf logit (a class ruled out) gives softmax 0 and finite scores. (A user's
    model, through LogitsPredictor, is stricter: any non-finite logit is an error, see python_model_gives_nan.)"""
    engine, datasets, _, _, progress = _engine_run(pristine, float("-inf"), "msp", tmp_path)
    document = engine.run(datasets)
    assert [row.dataset for row in document.results] == [FIRST, LATER] and not progress.exists()
