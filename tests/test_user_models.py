"""Bring-your-own-model kinds (python:, torchscript, exported, onnx) against independent numpy computations."""

import importlib.util
import json

import cv2
import numpy as np
import pytest
import torch

from roadanomaly.errors import UserError
from roadanomaly.inference import load_predictor
from roadanomaly.inference.pixel_model import NonFiniteOutputError
from roadanomaly.inference.user_models import fit_prefix, parse_target
from roadanomaly.outputs import OutputSpec
from roadanomaly.scoring import compute_scores
from user_model_fixtures import (
    export_all,
    load_enet_class,
    randomise_batchnorm,
    write_conv1x1_onnx,
    write_enet_file,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
needs_onnx = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnxscript") is None,
    reason="the 'onnx' extra is not installed",
)

KWARGS = {"num_classes": 5, "width": 8}
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
METHODS = ["msp", "maxlogit", "entropy", "energy", "void"]


# --- independent reference -------------------------------------------------------------------------------------


def reference_logits(model, images: torch.Tensor, mean=MEAN, std=STD, pad_to=8) -> np.ndarray:
    """Normalise and zero-pad in numpy, run the torch model itself, resize (OpenCV) and crop: (B, C, H, W)."""
    x = images.numpy().astype(np.float64) / 255.0
    x = (x - np.array(mean).reshape(1, 3, 1, 1)) / np.array(std).reshape(1, 3, 1, 1)
    b, _, h, w = x.shape
    ph, pw = -(-h // pad_to) * pad_to, -(-w // pad_to) * pad_to
    padded = np.zeros((b, 3, ph, pw), np.float32)
    padded[:, :, :h, :w] = x
    with torch.no_grad():
        logits = model(torch.from_numpy(padded)).numpy()
    if logits.shape[-2:] != (ph, pw):  # bilinear, half-pixel centres (= align_corners=False)
        hwc = [z.transpose(1, 2, 0) for z in logits]
        logits = np.stack([cv2.resize(z, (pw, ph), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1) for z in hwc])
    return logits[:, :, :h, :w].astype(np.float64)


def reference_scores(logits: np.ndarray, void: int) -> dict[str, np.ndarray]:
    """msp / maxlogit / entropy / energy over the known classes and the void probability, by numpy softmax."""
    known = np.delete(logits, void, axis=1)
    shifted = known - known.max(axis=1, keepdims=True)
    p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    full = np.exp(logits - logits.max(axis=1, keepdims=True))
    return {
        "msp": 1.0 - p.max(axis=1),
        "maxlogit": -known.max(axis=1),
        "entropy": -(p * np.log(p)).sum(axis=1) / np.log(known.shape[1]),
        "energy": -(known.max(axis=1) + np.log(np.exp(shifted).sum(axis=1))),
        "void": full[:, void] / full.sum(axis=1),
    }


# --- fixtures --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def enet(tmp_path_factory):
    """The ENet-like model written as a user's file, its weights, and its exports (made once per module)."""
    folder = tmp_path_factory.mktemp("enet")
    source = write_enet_file(folder)
    torch.manual_seed(0)
    model = load_enet_class(source)(**KWARGS).eval()
    randomise_batchnorm(model)
    torch.save(model.state_dict(), folder / "weights.pth")
    files = {"python": folder / "weights.pth"}
    if importlib.util.find_spec("onnxscript") is not None:
        files |= export_all(model, folder, torch.rand(2, 3, 32, 48))
    return {"source": source, "model": model, "files": files, "folder": folder}


def python_spec(enet) -> str:
    return f"python:{enet['source']}:ENet"


def images(shape=(2, 3, 37, 51), seed=0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8))


# --- equal scores through every kind ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind", ["python", pytest.param("torchscript", marks=needs_onnx), pytest.param("exported", marks=needs_onnx),
             pytest.param("onnx", marks=needs_onnx)],
)  # fmt: skip
def test_every_kind_gives_the_models_own_scores(enet, kind):
    spec = python_spec(enet) if kind == "python" else kind
    extra = {"model_kwargs": json.dumps(KWARGS)} if kind == "python" else {}
    options = {"mean": list(MEAN), "std": list(STD), "pad_to": 8, "void_channel": 4, **extra}
    predictor = load_predictor(spec, enet["files"][kind], **options)
    assert (predictor.output_kind, predictor.void_channel) == ("logits", 4)
    assert predictor.spec == OutputSpec("logits", 4)
    assert predictor.info["name"] == kind and predictor.info["weights"] == str(enet["files"][kind])
    batch = images()
    outputs = predictor(batch)
    assert outputs.logits.shape == (2, 5, 37, 51) and outputs.void_channel == 4
    expected_logits = reference_logits(enet["model"], batch)
    np.testing.assert_allclose(outputs.logits.numpy(), expected_logits, atol=1e-5, rtol=0)
    scores = compute_scores(outputs, METHODS)
    for name, expected in reference_scores(expected_logits, void=4).items():
        np.testing.assert_allclose(scores[name].numpy(), expected, atol=1e-5, rtol=0, err_msg=name)


@needs_onnx
def test_exports_run_any_batch_and_size_divisible_by_8(enet):
    batch = images((3, 3, 24, 72), seed=1)
    reference = load_predictor(python_spec(enet), enet["files"]["python"], model_kwargs=KWARGS)(batch).logits
    for kind in ("torchscript", "exported", "onnx"):
        logits = load_predictor(kind, enet["files"][kind])(batch).logits
        np.testing.assert_allclose(logits.numpy(), reference.numpy(), atol=1e-5, rtol=0, err_msg=kind)
    assert (enet["folder"] / "net.onnx.data").is_file()  # the ONNX weights live beside the model


@pytest.mark.parametrize("kind", ["python", pytest.param("exported", marks=needs_onnx)])
def test_a_size_the_model_cannot_take_suggests_pad_to(enet, kind):
    spec, extra = (python_spec(enet), {"model_kwargs": KWARGS}) if kind == "python" else (kind, {})
    predictor = load_predictor(spec, enet["files"][kind], **extra)
    with pytest.raises(UserError) as error:
        predictor(images((1, 3, 36, 52)))
    message = one_line(error)
    assert message.startswith(f"{predictor.source}: model failed on input (1, 3, 36, 52): ")
    assert message.endswith(" (if it needs sizes divisible by N, pass --pad-to N)")


def test_low_resolution_logits_are_resized_bilinearly_then_cropped(enet, tmp_path):
    torch.manual_seed(1)
    model = load_enet_class(enet["source"])(**KWARGS, half_res=True).eval()
    randomise_batchnorm(model, seed=1)
    torch.save(model.state_dict(), tmp_path / "half.pth")
    predictor = load_predictor(
        python_spec(enet), tmp_path / "half.pth", model_kwargs={**KWARGS, "half_res": True},
        mean=MEAN, std=STD, pad_to=8,
    )  # fmt: skip
    batch = images((1, 3, 29, 43), seed=2)
    logits = predictor(batch).logits
    assert logits.shape == (1, 5, 29, 43)
    np.testing.assert_allclose(logits.numpy(), reference_logits(model, batch), atol=1e-5, rtol=0)


@pytest.mark.parametrize("layout", ["lightning", "ddp"])
def test_lightning_and_ddp_checkpoints_load_to_the_same_model(enet, tmp_path, layout):
    state = enet["model"].state_dict()
    if layout == "lightning":
        wrapped = {"model." + k: v for k, v in state.items()} | {"criterion.weight": torch.ones(5)}
        torch.save({"state_dict": wrapped, "epoch": 3, "global_step": 10}, tmp_path / "w.ckpt")
    else:
        torch.save({"module." + k: v for k, v in state.items()}, tmp_path / "w.ckpt")
    batch = images((1, 3, 16, 24))
    loaded = load_predictor(python_spec(enet), tmp_path / "w.ckpt", model_kwargs=KWARGS)(batch).logits
    direct = load_predictor(python_spec(enet), enet["files"]["python"], model_kwargs=KWARGS)(batch).logits
    assert torch.equal(loaded, direct)


def test_fit_prefix_picks_the_wrapper_prefix_that_names_the_model_keys():
    t = torch.zeros(1)
    expected = ["a.weight", "b.weight"]
    assert fit_prefix(expected, {"a.weight": t, "b.weight": t}).keys() == {"a.weight", "b.weight"}
    assert fit_prefix(expected, {"net.a.weight": t, "net.b.weight": t, "loss.w": t}).keys() == {"a.weight", "b.weight"}
    # no prefix beats no prefix: the state is left for the strict check to report
    assert fit_prefix(expected, {"x.a.weight": t, "b.weight": t}).keys() == {"x.a.weight", "b.weight"}


def test_tuple_and_dict_outputs_give_their_logits(tmp_path):
    source = tmp_path / "heads.py"
    source.write_text(
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self, wrap='tuple'):\n"
        "        super().__init__()\n"
        "        self.conv = torch.nn.Conv2d(3, 4, 1)\n"
        "        self.wrap = wrap\n"
        "    def forward(self, x):\n"
        "        y = self.conv(x)\n"
        "        return (y, y * 0) if self.wrap == 'tuple' else {'aux': y * 0, 'out': y}\n"
    )
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 1)
    torch.save({"conv." + k: v for k, v in conv.state_dict().items()}, tmp_path / "w.pth")
    batch = images((2, 3, 5, 6))
    x = batch.double().numpy() / 255.0
    w = conv.weight.detach().double().numpy()[:, :, 0, 0]
    expected = np.einsum("oc,bchw->bohw", w, x) + conv.bias.detach().double().numpy().reshape(1, 4, 1, 1)
    for wrap in ("tuple", "dict"):
        predictor = load_predictor(f"python:{source}:Net", tmp_path / "w.pth", model_kwargs={"wrap": wrap})
        np.testing.assert_allclose(predictor(batch).logits.numpy(), expected, atol=1e-6, rtol=0)


@needs_onnx
def test_onnx_with_a_fixed_size_and_batch_resizes_and_loops(tmp_path):
    import onnx

    weight = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, -1.0]], np.float32)
    path = write_conv1x1_onnx(tmp_path / "fixed.onnx", weight)
    model = onnx.load(str(path))
    for value in (model.graph.input[0], model.graph.output[0]):
        for dim, size in zip(value.type.tensor_type.shape.dim, (1, 3, 8, 8)):
            dim.ClearField("dim_param")
            dim.dim_value = size
    onnx.save(model, str(path))
    predictor = load_predictor("onnx", path)
    assert predictor.input_size == (8, 8)
    colours = np.array([[10, 200, 30], [255, 0, 128]], np.uint8)
    batch = torch.from_numpy(np.broadcast_to(colours[:, :, None, None], (2, 3, 13, 21)).copy())
    logits = predictor(batch).logits  # two images through a batch-1 model, 13 x 21 through an 8 x 8 one
    assert logits.shape == (2, 3, 13, 21)
    expected = colours.astype(np.float64) / 255.0 @ weight.T
    np.testing.assert_allclose(logits.numpy(), np.broadcast_to(expected[:, :, None, None], (2, 3, 13, 21)), atol=1e-6)


# --- through the CLI --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["python", pytest.param("onnx", marks=needs_onnx)])
def test_cli_flags_reach_the_model_and_metrics_match_sklearn(enet, tmp_path, kind):
    from PIL import Image
    from sklearn.metrics import average_precision_score, roc_auc_score

    from fixtures import make_bundle
    from roadanomaly.cli import main

    bundle = make_bundle(tmp_path / "bundle", size=(30, 45), images=2)  # not divisible by 8: --pad-to 8 needed
    model_args = ["--model", python_spec(enet), "--model-kwargs", json.dumps(KWARGS)] if kind == "python" else [
        "--model", "onnx"]
    out = tmp_path / "results.json"
    code = main(["evaluate", *model_args, "--weights", str(enet["files"][kind]), "--void-channel", "4",
                 "--mean", ",".join(map(str, MEAN)), "--std", ",".join(map(str, STD)), "--pad-to", "8",
                 "--data", str(bundle), "--datasets", "RoadAnomaly21", "--methods", "msp,void",
                 "--metric-mode", "exact", "--output", str(out), "--quiet", "--workers", "0"])  # fmt: skip
    assert code == 0
    document = json.loads(out.read_text())
    assert document["model"]["name"] == kind and document["model"]["void_channel"] == 4
    folder = bundle / "RoadAnomaly21"
    scores, labels = {"msp": [], "void": []}, []
    for image_path in sorted((folder / "images").iterdir()):
        image = torch.from_numpy(np.asarray(Image.open(image_path).convert("RGB")).copy()).permute(2, 0, 1)[None]
        mask = np.asarray(Image.open(folder / "labels_masks" / f"{image_path.stem}.png"))[None]
        reference = reference_scores(reference_logits(enet["model"], image), void=4)
        for name in scores:
            scores[name].append(reference[name][mask != 255])
        labels.append(mask[mask != 255] == 1)
    y = np.concatenate(labels)
    for row in document["results"]:
        s = np.concatenate(scores[row["method"]])
        assert row["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-4), row["method"]
        assert row["auprc"] == pytest.approx(average_precision_score(y, s), abs=1e-4), row["method"]
        assert row["pixels"] == len(y)
    assert {r["method"] for r in document["results"]} == {"msp", "void"}


def test_cli_reports_a_broken_model_file_in_one_line(tmp_path, capsys):
    from fixtures import make_bundle
    from roadanomaly.cli import main

    bundle = make_bundle(tmp_path / "bundle", images=1)
    bad = write(tmp_path / "bad.py", "import torch\nclass Net(torch.nn.Module)\n    pass\n")
    torch.save({}, tmp_path / "w.pth")
    code = main(["evaluate", "--model", f"python:{bad}:Net", "--weights", str(tmp_path / "w.pth"),
                 "--data", str(bundle), "--quiet", "--workers", "0"])  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err == f"roadanomaly: error: {bad}: cannot import: SyntaxError: expected ':' (line 2)\n"


# --- a user's mistakes: one line naming the file and the problem -----------------------------------------------


def one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text and isinstance(error.value, UserError)
    return text


def write(path, text):
    path.write_text(text)
    return path


def test_a_python_file_that_fails_to_import(tmp_path):
    bad = write(tmp_path / "bad.py", "import torch\nclass Net(torch.nn.Module)\n    pass\n")
    with pytest.raises(UserError) as error:
        load_predictor(f"python:{bad}:Net", tmp_path / "w.pth")
    assert one_line(error) == f"{bad}: cannot import: SyntaxError: expected ':' (line 2)"
    missing = write(tmp_path / "missing_dep.py", "import not_a_module_roadanomaly\n")
    with pytest.raises(UserError) as error:
        load_predictor(f"python:{missing}:Net", tmp_path / "w.pth")
    assert one_line(error) == (
        f"{missing}: cannot import: ModuleNotFoundError: No module named 'not_a_module_roadanomaly'"
    )
    raising = write(tmp_path / "raising.py", "raise RuntimeError('no GPU here')\n")
    with pytest.raises(UserError) as error:
        load_predictor(f"python:{raising}:Net", tmp_path / "w.pth")
    assert one_line(error) == f"{raising}: cannot import: RuntimeError: no GPU here"
    with pytest.raises(UserError) as error:
        load_predictor(f"python:{tmp_path / 'nope.py'}:Net", tmp_path / "w.pth")
    assert one_line(error) == f"{tmp_path / 'nope.py'}: no such file"


def test_a_python_file_next_to_its_helpers_imports_them(tmp_path):
    write(tmp_path / "blocks_roadanomaly_test.py", "import torch\nclass Block(torch.nn.Conv2d):\n    pass\n")
    main = write(
        tmp_path / "net.py",
        "from blocks_roadanomaly_test import Block\ndef make(classes):\n    return Block(3, classes, 1)\n",
    )
    torch.save(torch.nn.Conv2d(3, 2, 1).state_dict(), tmp_path / "w.pth")
    predictor = load_predictor(f"python:{main}:make", tmp_path / "w.pth", model_kwargs='{"classes": 2}')
    assert predictor(images((1, 3, 4, 4))).logits.shape == (1, 2, 4, 4)
    assert str(tmp_path) not in __import__("sys").path


def test_missing_name_and_a_failing_constructor(enet):
    with pytest.raises(UserError) as error:
        load_predictor(f"python:{enet['source']}:ENet2", enet["files"]["python"])
    assert one_line(error) == (
        f"{enet['source']}: defines no 'ENet2' (defined here: Bottleneck, ENet, Initial, Upsampling)"
    )
    with pytest.raises(UserError) as error:
        load_predictor(python_spec(enet), enet["files"]["python"], model_kwargs={"classes": 5})
    assert one_line(error) == (
        f"{enet['source']}: ENet(**{{\"classes\": 5}}) failed: TypeError: "
        "ENet.__init__() got an unexpected keyword argument 'classes'"
    )
    with pytest.raises(UserError) as error:
        load_predictor(f"python:{enet['source']}:torch", enet["files"]["python"])
    assert one_line(error) == f"{enet['source']}: 'torch' is a module, not a class or function"


@pytest.mark.parametrize(
    "value, problem",
    [
        ('{"num_classes": 5,}', "--model-kwargs is not valid JSON (Expecting property name enclosed in double quotes: "
                                "line 1 column 19 (char 18))"),
        ("[5, 8]", "--model-kwargs must be a JSON object such as '{\"num_classes\": 20}', not a list"),
        ("5", "--model-kwargs must be a JSON object such as '{\"num_classes\": 20}', not a int"),
    ],
)  # fmt: skip
def test_model_kwargs_must_be_a_json_object(enet, value, problem):
    with pytest.raises(UserError) as error:
        load_predictor(python_spec(enet), enet["files"]["python"], model_kwargs=value)
    assert one_line(error) == problem


def test_weights_that_do_not_fit_are_listed(enet, tmp_path):
    state = dict(enet["model"].state_dict())
    del state["classifier.bias"]
    state["extra.weight"] = torch.zeros(1)
    state["initial.conv.weight"] = torch.zeros(4, 3, 3, 3)
    torch.save(state, tmp_path / "w.pth")
    with pytest.raises(UserError) as error:
        load_predictor(python_spec(enet), tmp_path / "w.pth", model_kwargs=KWARGS)
    assert one_line(error) == (
        f"{tmp_path / 'w.pth'}: checkpoint does not fit the model: 1 missing keys: classifier.bias; "
        "1 unexpected keys: extra.weight; 1 wrong shapes: initial.conv.weight (4, 3, 3, 3) vs expected (5, 3, 3, 3)"
    )


@needs_onnx
def test_files_of_the_wrong_format(enet):
    files = enet["files"]
    cases = [
        ("onnx", files["python"], "not a readable ONNX model (it is a torch.save checkpoint: use --model "
                                  "python:FILE.py:NAME, or erfnet/eomt)"),
        ("torchscript", files["exported"],
         "not a TorchScript file (it is a torch.export program: use --model exported)"),
        ("exported", files["torchscript"],
         "not a torch.export program (it is a TorchScript file: use --model torchscript)"),
        ("onnx", files["exported"], "not a readable ONNX model (it is a torch.export program: use --model exported)"),
    ]  # fmt: skip
    for kind, path, problem in cases:
        with pytest.raises(UserError) as error:
            load_predictor(kind, path)
        assert one_line(error) == f"{path}: {problem}"
    text = files["python"].with_name("notes.txt")
    text.write_text("not a model")
    for kind, problem in (("torchscript", "not a TorchScript file ("), ("exported", "not a torch.export program (")):
        with pytest.raises(UserError) as error:
            load_predictor(kind, text)
        assert one_line(error).startswith(f"{text}: {problem}")


OUTPUTS = {
    "no_channels": ("x[:, 0]", "model output is a tensor of shape (2, 6, 8), expected (B, C, h, w) logits with B = 2"),
    "dict": ("{'logits': x}",
             "model output is a dict without an 'out' entry (keys: logits), expected (B, C, h, w) logits with B = 2"),
    "string": ("'logits'", "model output is a str, expected (B, C, h, w) logits with B = 2"),
    "one_channel": ("x[:, :1]", "model output has 1 channel, expected C >= 2 class logits"),
    "integer": ("x.long()", "model output has dtype torch.int64, expected floating-point logits"),
    "raises": ("x.view(7)",
               "model failed on input (2, 3, 6, 8): RuntimeError: shape '[7]' is invalid for input of size 288 "
               "(if it needs sizes divisible by N, pass --pad-to N)"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(OUTPUTS))
def test_outputs_that_are_not_logits(tmp_path, case):
    expression, problem = OUTPUTS[case]
    source = write(
        tmp_path / f"{case}.py",
        f"import torch\nclass Net(torch.nn.Module):\n    def forward(self, x):\n        return {expression}\n",
    )
    predictor = _predictor_without_weights(source)
    with pytest.raises(UserError) as error:
        predictor(images((2, 3, 6, 8)))
    assert one_line(error) == f"{source}: {problem}"


def _predictor_without_weights(source):
    """A LogitsPredictor over the user's parameter-free Net (as the python kind builds it)."""
    from roadanomaly.inference.pixel_model import LogitsPredictor
    from roadanomaly.inference.user_models import build_user_model

    return LogitsPredictor(build_user_model(source, "Net", {}), source=source, user_model=True)


def test_non_finite_logits_name_the_batch_items(tmp_path):
    source = write(
        tmp_path / "nan.py",
        "import torch\nclass Net(torch.nn.Module):\n    def forward(self, x):\n"
        "        y = torch.cat([x, x], 1)\n        y[1, 0, 0, 0] = float('nan')\n        y[2, 1, 0, 1] = float('inf')\n"
        "        return y\n",
    )
    with pytest.raises(NonFiniteOutputError) as error:
        _predictor_without_weights(source)(images((3, 3, 4, 4)))
    assert one_line(error) == f"{source}: model output holds 2 NaN or inf value(s) (batch item(s) [1, 2])"
    assert error.value.batch_items == [1, 2] and error.value.count == 2 and error.value.where == str(source)


def test_huge_finite_logits_whose_sum_overflows_are_accepted():
    from roadanomaly.inference.pixel_model import LogitsPredictor

    predictor = LogitsPredictor(lambda x: torch.full((x.shape[0], 2, *x.shape[2:]), 3e38))
    assert torch.isinf(torch.full((1, 2, 4, 4), 3e38).sum())
    assert torch.equal(predictor(images((1, 3, 4, 4))).logits, torch.full((1, 2, 4, 4), 3e38))


def test_shared_options_are_checked(enet):
    spec, weights = python_spec(enet), enet["files"]["python"]
    cases = [
        ({"mean": [0.5, 0.5]}, "--mean takes 3 values (R, G, B on RGB scaled to [0, 1]), got 2"),
        ({"std": [0.5, 0.5, 0.5, 0.5]}, "--std takes 3 values (R, G, B on RGB scaled to [0, 1]), got 4"),
        ({"std": [0.5, 0.0, 0.5]}, "--std values must be > 0, got [0.5, 0.0, 0.5]"),
        ({"pad_to": -8}, "--pad-to must be >= 1, got -8"),
        ({"pad_to": 0}, "--pad-to must be >= 1, got 0"),
        ({"void_channel": -1}, "--void-channel must be a channel index >= 0, got -1"),
    ]
    for options, problem in cases:
        with pytest.raises(UserError) as error:
            load_predictor(spec, weights, model_kwargs=KWARGS, **options)
        assert one_line(error) == problem, options
    predictor = load_predictor(spec, weights, model_kwargs=KWARGS, void_channel=5, pad_to=8)
    with pytest.raises(UserError) as error:
        predictor(images((1, 3, 8, 8)))
    assert one_line(error) == f"{enet['source']}: void channel 5 does not exist: the model gives 5 channels"


def test_parse_target_splits_at_the_last_colon():
    assert parse_target("C:/models/net.py:ENet") == (__import__("pathlib").Path("C:/models/net.py"), "ENet")
    for bad in ("net.py", "net.py:", ":ENet", "net.py:not-a-name"):
        with pytest.raises(UserError, match="expected python:FILE.py:NAME"):
            parse_target(bad)


# --- OnnxSession -----------------------------------------------------------------------------------------------


@needs_onnx
@pytest.mark.parametrize("external", [False, True])
def test_onnx_session_runs_a_conv_with_any_size_and_external_data(tmp_path, external):
    from roadanomaly.inference.onnx_session import OnnxSession

    rng = np.random.default_rng(0)
    weight = rng.normal(size=(4, 3)).astype(np.float32)
    path = write_conv1x1_onnx(tmp_path / "net.onnx", weight, external_data=external)
    assert (tmp_path / "net.onnx.data").is_file() == external
    session = OnnxSession(path, "cpu")
    assert session.input_names == ["images"] and session.output_names == ["out"]
    assert session.input_shapes == [["B", 3, "H", "W"]] and session.providers == ["CPUExecutionProvider"]
    for shape in [(1, 3, 5, 7), (2, 3, 9, 4)]:
        x = rng.random(shape, dtype=np.float32)
        expected = np.einsum("oc,bchw->bohw", weight, x)
        (out,) = session(torch.from_numpy(x).double())  # converted to the model's float32
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(session(x)[0].numpy(), expected, rtol=1e-5, atol=1e-6)


@needs_onnx
def test_onnx_session_rejects_a_file_that_is_not_onnx(tmp_path):
    from roadanomaly.inference.onnx_session import OnnxSession

    path = tmp_path / "net.onnx"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(UserError) as error:
        OnnxSession(path)
    assert one_line(error).startswith(f"{path}: not a readable ONNX model (")
    with pytest.raises(UserError) as error:
        OnnxSession(tmp_path / "missing.onnx")
    assert one_line(error) == f"{tmp_path / 'missing.onnx'}: no such file"
    external = write_conv1x1_onnx(tmp_path / "ext.onnx", np.eye(3, dtype=np.float32), external_data=True)
    (tmp_path / "ext.onnx.data").unlink()
    with pytest.raises(UserError) as error:
        OnnxSession(external)
    assert one_line(error).startswith(f"{external}: not a readable ONNX model (")


def test_onnx_providers_prefer_cuda_only_when_asked_and_available():
    from roadanomaly.inference.onnx_session import onnx_providers

    both = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_providers("cuda:1", both) == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert onnx_providers("cuda", both)[0] == ("CUDAExecutionProvider", {"device_id": 0})
    assert onnx_providers("cuda", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert onnx_providers("cpu", both) == ["CPUExecutionProvider"]
