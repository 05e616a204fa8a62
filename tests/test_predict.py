import numpy as np
import pytest
import torch
from PIL import Image
from scipy.special import softmax

from fixtures import make_erfnet_checkpoint, save_image
from roadanomaly.cli import main
from roadanomaly.inference import load_predictor
from roadanomaly.scoring import ALL_METHOD_NAMES, ScoringConfig, compute_scores

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def erfnet(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "erfnet.pth"
    model = make_erfnet_checkpoint(path)
    return path, model


def _image(path, size=(24, 40), seed=0):
    array = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    save_image(path, array)
    return array


def test_npy_equals_compute_scores_of_the_same_predictor(tmp_path, erfnet, capsys):
    weights, model = erfnet
    image = _image(tmp_path / "in" / "street.png")
    out = tmp_path / "out"
    methods = ["msp", "maxlogit", "energy", "void"]
    assert main(["predict", str(tmp_path / "in" / "street.png"), "--model", "erfnet", "--weights", str(weights),
                 "--method", ",".join(methods), "--out", str(out), "--npy", "--temperature", "1.5", "--quiet"]) == 0
    assert capsys.readouterr().out == f"4 score map(s) of 1 image(s) written to {out}\n"
    predictor = load_predictor("erfnet", weights)
    outputs = predictor(torch.from_numpy(image).permute(2, 0, 1)[None])
    expected = compute_scores(outputs, methods, ScoringConfig(temperature=1.5))
    for method in methods:
        saved = np.load(out / f"street_{method}.npy")
        assert saved.dtype == np.float16 and saved.shape == image.shape[:2]
        np.testing.assert_allclose(saved.astype(np.float32), expected[method][0].numpy(), rtol=2**-11, atol=1e-7)
        for kind in ("heatmap", "overlay"):
            with Image.open(out / f"street_{method}_{kind}.png") as png:
                assert png.format == "PNG" and png.size == (40, 24) and png.mode == "RGB"
    # and independently of the package: MSP from the raw network with scipy's softmax over the 19 known classes
    with torch.no_grad():
        logits = model(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0)[0].double().numpy()
    msp = 1.0 - softmax(logits[:19] / 1.5, axis=0).max(axis=0)
    np.testing.assert_allclose(np.load(out / "street_msp.npy").astype(np.float64), msp, rtol=2**-10, atol=1e-6)


def test_heatmap_is_the_min_max_scaled_score_through_inferno(tmp_path, erfnet):
    from matplotlib import colormaps

    weights, _ = erfnet
    _image(tmp_path / "a.png", seed=1)
    assert main(["predict", str(tmp_path / "a.png"), "--weights", str(weights), "--out", str(tmp_path / "o"),
                 "--npy", "--quiet"]) == 0
    score = np.load(tmp_path / "o" / "a_msp.npy").astype(np.float32)
    heat = np.asarray(Image.open(tmp_path / "o" / "a_msp_heatmap.png"))
    lut = (colormaps["inferno"](np.linspace(0, 1, 256))[:, :3] * 255).round()
    # the brightest colour sits where the score is highest, the darkest where it is lowest
    assert (heat[np.unravel_index(score.argmax(), score.shape)] == lut[255]).all()
    assert (heat[np.unravel_index(score.argmin(), score.shape)] == lut[0]).all()


def test_a_folder_of_images_at_a_fixed_size(tmp_path, erfnet, capsys):
    weights, _ = erfnet
    folder = tmp_path / "in"
    _image(folder / "x.png", seed=1)
    _image(folder / "x.jpg", seed=2)
    _image(folder / "y.webp", size=(30, 20), seed=3)
    (folder / "notes.txt").write_text("not an image")
    assert main(["predict", str(folder), "--weights", str(weights), "--method", "entropy", "--out",
                 str(tmp_path / "out"), "--size", "16x24", "--npy", "--quiet"]) == 0
    assert capsys.readouterr().out == f"3 score map(s) of 3 image(s) written to {tmp_path / 'out'}\n"
    names = sorted(p.name for p in (tmp_path / "out").glob("*.npy"))
    assert names == ["x_jpg_entropy.npy", "x_png_entropy.npy", "y_entropy.npy"]
    for name in names:
        assert np.load(tmp_path / "out" / name).shape == (16, 24)
        with Image.open(tmp_path / "out" / name.replace(".npy", "_overlay.png")) as png:
            assert png.size == (24, 16)


def test_predict_user_mistakes(tmp_path, erfnet, capsys):
    weights, _ = erfnet
    _image(tmp_path / "ok.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG but not really")
    base = ["--weights", str(weights), "--out", str(tmp_path / "out"), "--quiet"]
    cases = [
        (["predict", str(tmp_path / "ok.png"), "--method", "msp,fancy", *base],
         f"unknown method 'fancy' (known: {', '.join(ALL_METHOD_NAMES)})"),
        (["predict", str(tmp_path / "ok.png"), "--method", "rba", *base],
         "method 'rba' is not defined for this model (available: msp, maxlogit, entropy, energy, void)"),
        (["predict", str(broken), *base], f"{broken}: cannot read image (cannot identify image file '{broken}')"),
        (["predict", str(tmp_path / "nowhere.png"), *base], f"{tmp_path / 'nowhere.png'}: no such image or folder"),
        (["predict", str(tmp_path / "out_empty"), *base], None),
        (["predict", str(tmp_path / "ok.png"), "--crop-size", "64", *base],
         "--crop-size does not apply to --model erfnet"),
    ]
    (tmp_path / "out_empty").mkdir()
    for argv, problem in cases:
        if problem is None:
            problem = (f"{tmp_path / 'out_empty'}: no images found "
                       "(looked for .png, .jpg, .jpeg, .webp, .bmp, .tif, .tiff)")
        assert main(argv) == 2, argv
        assert capsys.readouterr().err == f"roadanomaly: error: {problem}\n"


def test_any_registered_kind_eomt(tmp_path, capsys):
    from eomt_fixtures import Tiny, official_state_dict

    torch.save(official_state_dict(Tiny(classes=19)), tmp_path / "eomt.bin")
    image = _image(tmp_path / "road.png", size=(32, 48), seed=5)
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "road.png"), "--model", "eomt", "--weights", str(tmp_path / "eomt.bin"),
                 "--method", "rba,noobject", "--out", str(out), "--npy", "--quiet"]) == 0
    predictor = load_predictor("eomt", tmp_path / "eomt.bin")
    outputs = predictor(torch.from_numpy(image).permute(2, 0, 1)[None])
    expected = compute_scores(outputs, ["rba", "noobject"])
    for method in ("rba", "noobject"):
        saved = np.load(out / f"road_{method}.npy")
        np.testing.assert_allclose(saved.astype(np.float32), expected[method][0].numpy(), rtol=2**-11, atol=1e-7)
    # RbA by its formula on the class scores, in numpy
    rba = -np.tanh(outputs.class_scores[0].double().numpy()).sum(axis=0)
    np.testing.assert_allclose(np.load(out / "road_rba.npy").astype(np.float64), rba, rtol=2**-10, atol=1e-5)
    capsys.readouterr()
    # a method the kind does not produce is refused up front, before anything is written
    assert main(["predict", str(tmp_path / "road.png"), "--model", "eomt", "--weights", str(tmp_path / "eomt.bin"),
                 "--method", "msp,void", "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("roadanomaly: error: method 'void' is not defined for this model")
    assert not list(out.glob("*void*")) and not (out / "road_msp.npy").exists()
