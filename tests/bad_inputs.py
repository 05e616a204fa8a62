"""A corpus of bad inputs for ``roadanomaly evaluate``: each case is a small function that damages a fresh copy of a
fixture tree (written with :mod:`fixtures`) and says which file the error must name and with which problem.

The tree: benchmark folders from :func:`fixtures.make_bundle` (3 images of 32x48 each; ``RoadAnomaly21`` is
evaluated first, ``FS_LostFound_full`` later), a Cityscapes tree and an ERFNet checkpoint. Image 0 of both
evaluated datasets is grey (R = G = B) and image 1 has at most 64 colours, so that re-encoding them as grey or
palette images keeps their content: an accepted conversion must then give exactly the numbers of the clean tree.

A damage to the last image of the later dataset fails after the first dataset and two images of the second are
counted: the first dataset's rows must be in the results file and the progress file must let ``--resume`` finish
with the clean numbers once :attr:`Damage.repair` has put the file back.
"""

from __future__ import annotations

import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fixtures import make_bundle, make_cityscapes, make_erfnet_checkpoint, save_image

FIRST, LATER = "RoadAnomaly21", "FS_LostFound_full"
SIZE = (32, 48)
IMAGES = 3
LAST = IMAGES - 1


@dataclass(frozen=True)
class Tree:
    """One case's copy of the fixture tree."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "bundle"

    @property
    def cityscapes(self) -> Path:
        return self.root / "cityscapes"

    @property
    def weights(self) -> Path:
        return self.root / "erfnet.pth"

    def image(self, dataset: str, index: int) -> Path:
        return _nth(self.data / dataset / "images", index)

    def label(self, dataset: str, index: int) -> Path:
        return self.data / dataset / "labels_masks" / f"{self.image(dataset, index).stem}.png"

    def city_image(self, index: int) -> Path:
        return sorted((self.cityscapes / "leftImg8bit" / "val").glob("*/*.png"))[index]

    def city_label(self, index: int) -> Path:
        image = self.city_image(index)
        stem = image.name.removesuffix("_leftImg8bit.png")
        return self.cityscapes / "gtFine" / "val" / image.parent.name / f"{stem}_gtFine_labelIds.png"


def _nth(folder: Path, index: int) -> Path:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))[index]


def build_pristine(root: Path) -> Tree:
    """The clean tree every case starts from (copied per case by :func:`fresh_copy`)."""
    tree = Tree(root)
    make_bundle(tree.data, size=SIZE, images=IMAGES, seed=0)
    for dataset in (FIRST, LATER):
        grey_path, few_colours_path = tree.image(dataset, 0), tree.image(dataset, 1)
        grey = np.asarray(Image.open(grey_path))[..., :1]
        save_image(grey_path, np.repeat(grey, 3, axis=2))
        few = np.asarray(Image.open(few_colours_path)) // 64 * 64 + 32  # 4 levels per channel: 64 colours
        save_image(few_colours_path, few.astype(np.uint8))
    make_cityscapes(tree.cityscapes, "val", size=SIZE, images=2, seed=1)
    make_erfnet_checkpoint(tree.weights, num_classes=20)
    return tree


def fresh_copy(pristine: Tree, root: Path) -> Tree:
    shutil.copytree(pristine.root, root)
    return Tree(root)


@dataclass(frozen=True)
class Damage:
    """What a case did: the file its error must name (None: the error names no file) and how to undo it."""

    path: Path | None
    repair: Callable[[], None] | None = None


def _replace(path: Path, data: bytes) -> Damage:
    """Overwrite ``path`` with ``data``; the repair restores the original bytes."""
    original = path.read_bytes()
    path.write_bytes(data)
    return Damage(path, lambda: path.write_bytes(original))


def png16(array: np.ndarray) -> bytes:
    """A 16-bit PNG (grey for (H, W), grey+alpha / RGB / RGBA for (H, W, 2 / 3 / 4)), written without Pillow."""
    h, w = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = b"".join(b"\x00" + np.ascontiguousarray(array[y]).astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    from io import BytesIO

    buffer = BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


# ------------------------------------------------------------------------------------------------- images
def image_zero_bytes(tree: Tree) -> Damage:
    return _replace(tree.image(LATER, LAST), b"")


def image_truncated_png(tree: Tree) -> Damage:
    path = tree.image(LATER, LAST)
    return _replace(path, path.read_bytes()[: path.stat().st_size // 2])


def image_not_an_image(tree: Tree) -> Damage:
    return _replace(tree.image(LATER, LAST), b"<html><body>404 Not Found</body></html>\n")


def image_truncated_jpeg(tree: Tree) -> Damage:
    """The last image of the later dataset replaced by the first half of a JPEG (a new file name: no repair)."""
    path = tree.image(LATER, LAST)
    data = _encoded(Image.fromarray(_rgb(path)), "JPEG", quality=95)
    path.unlink()
    jpeg = path.with_suffix(".jpg")
    jpeg.write_bytes(data[: len(data) // 2])
    return Damage(jpeg)


def image_float_tiff(tree: Tree) -> Damage:
    """A 32-bit floating-point TIFF: no 8-bit reading is the obvious one."""
    path = tree.image(LATER, LAST)
    grey = _rgb(path)[..., 0].astype(np.float32) / 255
    path.unlink()
    tiff = path.with_suffix(".tif")
    Image.fromarray(grey, mode="F").save(tiff)
    return Damage(tiff)


# accepted images: each re-encodes one clean image so that its sensible reading is the clean image exactly
def image_greyscale(tree: Tree) -> Damage:
    path = tree.image(FIRST, 0)
    Image.fromarray(_rgb(path)[..., 0], mode="L").save(path)
    return Damage(path)


def image_palette(tree: Tree) -> Damage:
    path = tree.image(FIRST, 1)
    rgb = _rgb(path)
    colours, index = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
    palette = Image.fromarray(index.reshape(rgb.shape[:2]).astype(np.uint8), mode="P")
    palette.putpalette(colours.astype(np.uint8).ravel().tolist())
    palette.save(path)
    return Damage(path)


def image_rgba(tree: Tree) -> Damage:
    """Random alpha: the reading drops it (no compositing on a background)."""
    path = tree.image(FIRST, LAST)
    rgb = _rgb(path)
    alpha = np.random.default_rng(3).integers(0, 256, rgb.shape[:2], dtype=np.uint8)
    Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA").save(path)
    return Damage(path)


def image_16bit_rgb(tree: Tree) -> Damage:
    """Each 8-bit value v stored as v * 257 (the same intensity in 16 bits): scaled back to 8 bits it is v."""
    path = tree.image(LATER, LAST)
    path.write_bytes(png16(_rgb(path).astype(np.uint16) * 257))
    return Damage(path)


def image_16bit_grey(tree: Tree) -> Damage:
    path = tree.image(LATER, 0)
    path.write_bytes(png16(_rgb(path)[..., 0].astype(np.uint16) * 257))
    return Damage(path)


def image_webp_named_png(tree: Tree) -> Damage:
    """Lossless WebP bytes under a .png name: the content decides the format, not the extension."""
    path = tree.image(LATER, 1)
    path.write_bytes(_encoded(Image.fromarray(_rgb(path)), "WEBP", lossless=True))
    return Damage(path)


def hidden_files(tree: Tree) -> Damage:
    """macOS litter: ``._<name>.png`` resource forks and ``.DS_Store`` beside the images and labels are ignored."""
    for folder in ("images", "labels_masks"):
        target = tree.data / FIRST / folder
        (target / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
        (target / f"._{tree.image(FIRST, 0).stem}.png").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
    return Damage(None)


# ------------------------------------------------------------------------------------------------- labels
def label_unknown_value(tree: Tree) -> Damage:
    path = tree.label(LATER, LAST)
    mask = np.asarray(Image.open(path)).copy()
    mask[0, 0] = 9
    original = path.read_bytes()
    save_image(path, mask)
    return Damage(path, lambda: path.write_bytes(original))


def label_anomaly_value_of_another_convention(tree: Tree) -> Damage:
    """RoadAnomaly masks use 0 / 2 / 255: a 1 (the other benchmarks' anomaly value) is out of its convention."""
    path = tree.label("RoadAnomaly", LAST)
    mask = np.asarray(Image.open(path)).copy()
    mask[mask == 2] = 1
    save_image(path, mask)
    return Damage(path)


def label_other_size(tree: Tree) -> Damage:
    path = tree.label(LATER, LAST)
    save_image(path, np.zeros((SIZE[0] // 2, SIZE[1] // 2), np.uint8))
    return Damage(path)


def label_colour(tree: Tree) -> Damage:
    path = tree.label(LATER, LAST)
    save_image(path, np.zeros((*SIZE, 3), np.uint8) + np.array([0, 1, 255], np.uint8))
    return Damage(path)


def label_16bit_out_of_range(tree: Tree) -> Damage:
    path = tree.label(LATER, LAST)
    mask = np.asarray(Image.open(path)).astype(np.uint16)
    mask[0, 0] = 1000
    path.write_bytes(png16(mask))
    return Damage(path)


def label_zero_bytes(tree: Tree) -> Damage:
    return _replace(tree.label(LATER, LAST), b"")


# accepted labels
def label_palette(tree: Tree) -> Damage:
    """A palette PNG whose indices are the labels (with any colours): read by its indices."""
    path = tree.label(FIRST, 0)
    mask = Image.fromarray(np.asarray(Image.open(path)), mode="P")
    mask.putpalette(np.random.default_rng(4).integers(0, 256, 768).astype(np.uint8).tolist())
    mask.save(path)
    return Damage(path)


def label_16bit(tree: Tree) -> Damage:
    path = tree.label(LATER, 0)
    path.write_bytes(png16(np.asarray(Image.open(path)).astype(np.uint16)))
    return Damage(path)


# ------------------------------------------------------------------------------------------------- pairing
def missing_label(tree: Tree) -> Damage:
    image = tree.image(LATER, 1)
    tree.label(LATER, 1).unlink()
    return Damage(image)


def label_as_jpeg(tree: Tree) -> Damage:
    image, label = tree.image(LATER, 1), tree.label(LATER, 1)
    Image.open(label).save(label.with_suffix(".jpg"))
    label.unlink()
    return Damage(image)


def duplicate_stems(tree: Tree) -> Damage:
    """``<stem>.png`` and ``<stem>.jpg`` in images/: which one the label belongs to is unknown."""
    png = tree.image(LATER, 1)
    Image.open(png).convert("RGB").save(png.with_suffix(".jpg"))
    return Damage(png)  # sorted, the .jpg comes first: the error is reported at the .png


def two_labels(tree: Tree) -> Damage:
    label = tree.label(LATER, 1)
    shutil.copy(label, label.with_name(f"{label.stem}_labels_semantic.png"))
    return Damage(tree.image(LATER, 1))


def empty_images_folder(tree: Tree) -> Damage:
    folder = tree.data / LATER / "images"
    for path in folder.iterdir():
        path.unlink()
    (folder / "README.txt").write_text("images go here\n")
    return Damage(folder)


def missing_labels_folder(tree: Tree) -> Damage:
    shutil.rmtree(tree.data / LATER / "labels_masks")
    return Damage(tree.data / LATER / "labels_masks")


def folder_without_images(tree: Tree) -> Damage:
    """``--datasets Extra`` where ``<root>/Extra`` exists but holds no images/ folder."""
    (tree.data / "Extra").mkdir()
    return Damage(tree.data)


def nothing(tree: Tree) -> Damage:
    """For cases whose mistake is in the options, not in the files."""
    return Damage(None)


def data_root(tree: Tree) -> Damage:
    return Damage(tree.data)


def one_dataset_folder(tree: Tree) -> Damage:
    """``--data`` given one benchmark folder instead of the folder that holds them (the case's options say so)."""
    return Damage(tree.data / FIRST)


def empty_data_root(tree: Tree) -> Damage:
    shutil.rmtree(tree.data)
    tree.data.mkdir()
    return Damage(tree.data)


def missing_data_root(tree: Tree) -> Damage:
    shutil.rmtree(tree.data)
    return Damage(tree.data)


def one_benchmark_in_two_folders(tree: Tree) -> Damage:
    """``RoadObstacle21`` beside ``RoadObsticle21`` (its published misspelling): the same benchmark twice."""
    shutil.copytree(tree.data / "RoadObsticle21", tree.data / "RoadObstacle21")
    return Damage(tree.data)


# ------------------------------------------------------------------------------------------------- cityscapes
def city_image_zero_bytes(tree: Tree) -> Damage:
    return _replace(tree.city_image(1), b"")


def city_unknown_label_id(tree: Tree) -> Damage:
    path = tree.city_label(1)
    ids = np.asarray(Image.open(path)).copy()
    ids[0, :3] = 40
    save_image(path, ids)
    return Damage(path)


def city_missing_label(tree: Tree) -> Damage:
    tree.city_label(1).unlink()
    return Damage(tree.city_image(1))


# ------------------------------------------------------------------------------------------------- checkpoints
def checkpoint_truncated(tree: Tree) -> Damage:
    return _replace(tree.weights, tree.weights.read_bytes()[: tree.weights.stat().st_size // 2])


def checkpoint_zero_bytes(tree: Tree) -> Damage:
    return _replace(tree.weights, b"")


def checkpoint_not_a_checkpoint(tree: Tree) -> Damage:
    return _replace(tree.weights, b"version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n")


def checkpoint_missing(tree: Tree) -> Damage:
    tree.weights.unlink()
    return Damage(tree.weights)


def checkpoint_of_eomt(tree: Tree) -> Damage:
    """An EoMT checkpoint given as ERFNet weights."""
    from eomt_fixtures import Tiny, official_state_dict

    torch.save(official_state_dict(Tiny(classes=19)), tree.weights)
    return Damage(tree.weights)


def checkpoint_of_erfnet(tree: Tree) -> Damage:
    """The ERFNet checkpoint given to ``--model eomt`` (the case's options say so)."""
    return Damage(tree.weights)


def checkpoint_wrong_shape(tree: Tree) -> Damage:
    state = torch.load(tree.weights, weights_only=True)
    state["module.encoder.initial_block.conv.weight"] = torch.zeros(13, 3, 5, 3)
    torch.save(state, tree.weights)
    return Damage(tree.weights)


def checkpoint_missing_key(tree: Tree) -> Damage:
    state = torch.load(tree.weights, weights_only=True)
    del state["module.decoder.layers.1.bn2.bias"]
    torch.save(state, tree.weights)
    return Damage(tree.weights)


class NotATensor:
    """An object a weights-only load refuses."""


def checkpoint_pickled_object(tree: Tree) -> Damage:
    state = torch.load(tree.weights, weights_only=True)
    torch.save({"state_dict": state, "hyper_parameters": NotATensor()}, tree.weights)
    return Damage(tree.weights)


def safetensors_truncated(tree: Tree) -> Damage:
    from safetensors.torch import save_file

    state = torch.load(tree.weights, weights_only=True)
    path = tree.root / "erfnet.safetensors"
    save_file({k.removeprefix("module."): v.contiguous() for k, v in state.items()}, str(path))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return Damage(path)


# ------------------------------------------------------------------------------------------------- models
def python_model_fails_to_import(tree: Tree) -> Damage:
    path = tree.root / "my_net.py"
    path.write_text("import torch\nimport roadanomaly_no_such_module  # a dependency the user forgot\n\n\n"
                    "class Net(torch.nn.Module):\n    pass\n")
    return Damage(path)


MARK = (1, 2, 3)
"""The top-left pixel that makes :data:`NAN_NET` answer NaN."""
NAN_NET = f"""import torch


class Net(torch.nn.Module):
    \"\"\"A 1x1 convolution with 4 classes, whose logits at one pixel are NaN for an image marked {MARK}.\"\"\"

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Conv2d(3, 4, 1)

    def forward(self, x):
        out = self.head(x)
        if bool(((x[:, :, 0, 0] * 255).round() == torch.tensor({MARK}, dtype=x.dtype)).all()):
            out[:, :, 5, 5] = float("nan")
        return out
"""


def python_model_gives_nan(tree: Tree) -> Damage:
    """A user's model whose output has NaN for the last image of the later dataset (its top-left pixel is marked)."""
    path = tree.image(LATER, LAST)
    image = _rgb(path).copy()
    image[0, 0] = MARK
    save_image(path, image)
    (tree.root / "nan_net.py").write_text(NAN_NET)
    torch.manual_seed(0)
    torch.save({f"head.{k}": v for k, v in torch.nn.Conv2d(3, 4, 1).state_dict().items()}, tree.root / "nan_net.pth")
    return Damage(path)


def _nan_net(tree: Tree, damage: Damage) -> list[str]:
    return ["--model", f"python:{tree.root / 'nan_net.py'}:Net", "--weights", str(tree.root / "nan_net.pth")]


def onnx_not_onnx(tree: Tree) -> Damage:
    path = tree.root / "net.onnx"
    path.write_bytes(tree.weights.read_bytes()[:4096])  # a PyTorch zip, renamed
    return Damage(path)


# ------------------------------------------------------------------------------------------------- the corpus
def _weights(tree: Tree, damage: Damage) -> list[str]:
    return ["--weights", str(tree.weights)]


def _damaged_weights(tree: Tree, damage: Damage) -> list[str]:
    return ["--weights", str(damage.path)]


@dataclass(frozen=True)
class Case:
    """One bad input and the exact behaviour ``roadanomaly evaluate`` must show for it."""

    name: str
    damage: Callable[[Tree], Damage]
    problem: str | Callable[[Tree], str] | None
    """The problem after ``<file>: `` on the one error line; None: the input is accepted (exit 0, clean numbers)."""
    datasets: tuple[str, ...] | None = (FIRST, LATER)
    """``--datasets`` (None: not given, every folder under --data)."""
    options: Callable[[Tree, Damage], list[str]] = _weights
    """The model options (and any other) for this case."""
    workers: int = 0
    prefix: bool = False
    """``problem`` is the start of the message: a library's own words follow in parentheses."""
    cityscapes: bool = False
    after_first: bool = False
    """Fails after the first dataset is finished: its rows must be kept."""
    resume: bool = False
    """After :attr:`Damage.repair`, ``--resume`` must finish with the clean run's numbers."""
    kind: str | None = None
    """The model kind the case needs (a kind another part of the project registers)."""
    same_model: bool = True
    """Runs the clean runs' ERFNet (so that its rows can be compared with theirs)."""

    def expected_problem(self, tree: Tree) -> str | None:
        return self.problem(tree) if callable(self.problem) else self.problem

    def arguments(self, tree: Tree, damage: Damage, output: Path) -> list[str]:
        args = ["evaluate", "--data", str(tree.data), "--output", str(output), "--quiet"]
        args += ["--workers", str(self.workers)]
        if self.datasets is not None:
            args += ["--datasets", ",".join(self.datasets)]
        if self.cityscapes:
            args += ["--cityscapes", str(tree.cityscapes)]
        return args + self.options(tree, damage)  # last: an option given twice takes the later value


def _looked_for(dataset: str, index: int, hint: str = "") -> Callable[[Tree], str]:
    def problem(tree: Tree) -> str:
        stem = tree.image(dataset, index).stem
        folder = tree.data / dataset / "labels_masks"
        return f"no label found in {folder} (looked for {stem}.png, {stem}_labels_semantic.png{hint.format(stem=stem)})"

    return problem


TRUNCATED = "cannot read image: the file is truncated (its data ends early)"
EXTENSIONS = ".png, .jpg, .jpeg, .webp, .bmp, .tif, .tiff"
FOLDER_NOT_FOUND = "folder not found (expected <Name>/images and <Name>/labels_masks)"
NO_DATASETS = "no datasets found (expected <root>/<Name>/images + labels_masks, "
AVAILABLE = "FS_LostFound_full, RoadAnomaly, RoadAnomaly21, RoadObstacle21, fs_static"
ACCEPTED_DAMAGES = (image_greyscale, image_palette, image_rgba, image_16bit_rgb, image_16bit_grey,
                    image_webp_named_png, hidden_files, label_palette, label_16bit)
"""Inputs read with their sensible reading; each touches its own file, so all apply to one tree together."""


def accepted_conversions(tree: Tree) -> Damage:
    for damage in ACCEPTED_DAMAGES:
        damage(tree)
    return Damage(None)


LATE = {"after_first": True}
CASES: tuple[Case, ...] = (
    # images
    Case("image_zero_bytes", image_zero_bytes, "cannot read image: empty file (0 bytes)", workers=1, **LATE),
    Case("image_truncated_png", image_truncated_png, TRUNCATED, workers=1,
         resume=True, **LATE),
    Case("image_truncated_jpeg", image_truncated_jpeg, TRUNCATED, **LATE),
    Case("image_not_an_image", image_not_an_image, "cannot read image: its contents are in no known image format",
         workers=1, **LATE),
    Case("image_float_tiff", image_float_tiff, "cannot read image: floating-point samples (expected 8- or 16-bit)",
         **LATE),
    Case("accepted_conversions", accepted_conversions, None, workers=1),
    # labels
    Case("label_unknown_value", label_unknown_value, "unknown label values [9] (expected [0, 1, 255])",
         resume=True, **LATE),
    Case("label_value_of_another_convention", label_anomaly_value_of_another_convention,
         "unknown label values [1] (expected [0, 2, 255])", datasets=(FIRST, "RoadAnomaly"), workers=1, **LATE),
    Case("label_other_size", label_other_size, "label is 16x24 but its image is 32x48", **LATE),
    Case("label_colour", label_colour, "label must be a single-channel image, found mode RGB", **LATE),
    Case("label_16bit_out_of_range", label_16bit_out_of_range, "label values outside 0..255 (found 1000)", **LATE),
    Case("label_zero_bytes", label_zero_bytes, "cannot read label: empty file (0 bytes)", workers=1, **LATE),
    # pairing and folders (found before any image is read)
    Case("missing_label", missing_label, _looked_for(LATER, 1)),
    Case("label_as_jpeg", label_as_jpeg, _looked_for(LATER, 1, "; found {stem}.jpg, but labels must be .png files")),
    Case("duplicate_stems", duplicate_stems, lambda t: f"has the same stem as {t.image(LATER, 1).stem}.jpg: images are "
         "paired with their labels by stem, so keep only one of the two"),
    Case("two_labels", two_labels, lambda t: f"two labels match it: {t.image(LATER, 1).stem}.png and "
         f"{t.image(LATER, 1).stem}_labels_semantic.png (keep one)"),
    Case("empty_images_folder", empty_images_folder, f"no images found (looked for {EXTENSIONS} files)"),
    Case("missing_labels_folder", missing_labels_folder, FOLDER_NOT_FOUND),
    Case("folder_without_images", folder_without_images, "dataset 'Extra' not found (available: " + AVAILABLE + ")",
         datasets=(FIRST, "Extra")),
    Case("unknown_dataset", data_root, "dataset 'RoadAnomaly22' not found (available: " + AVAILABLE + ")",
         datasets=(FIRST, "RoadAnomaly22")),
    Case("dataset_named_twice", nothing, None, datasets=(FIRST, FIRST.lower(), LATER)),
    Case("one_benchmark_in_two_folders", one_benchmark_in_two_folders, "2 datasets are named 'RoadObstacle21' "
         "(folders RoadObstacle21, RoadObsticle21): choose one by its folder name with --datasets", datasets=None),
    Case("empty_data_root", empty_data_root, NO_DATASETS, prefix=True),
    Case("data_root_is_one_dataset", one_dataset_folder, NO_DATASETS, prefix=True,
         options=lambda t, d: ["--weights", str(t.weights), "--data", str(t.data / FIRST)]),
    Case("missing_data_root", missing_data_root, "data folder not found"),
    # Cityscapes (after the anomaly dataset)
    Case("cityscapes_image_zero_bytes", city_image_zero_bytes, "cannot read image: empty file (0 bytes)",
         datasets=(FIRST,), cityscapes=True, workers=1, resume=True, **LATE),
    Case("cityscapes_unknown_label_id", city_unknown_label_id,
         "unknown Cityscapes label ids [40] (expected 0..33 as in *_gtFine_labelIds.png)", datasets=(FIRST,),
         cityscapes=True, **LATE),
    Case("cityscapes_missing_label", city_missing_label, lambda t: f"no label found (looked for {t.city_label(1)})",
         datasets=(FIRST,), cityscapes=True),
    # checkpoints
    Case("checkpoint_truncated", checkpoint_truncated,
         "not a readable PyTorch checkpoint (truncated: the zip archive ends early)"),
    Case("checkpoint_zero_bytes", checkpoint_zero_bytes, "empty file (0 bytes)"),
    Case("checkpoint_not_a_checkpoint", checkpoint_not_a_checkpoint,
         "a Git LFS pointer, not the weights (fetch them with git lfs pull)"),
    Case("checkpoint_missing", checkpoint_missing, "no such file"),
    Case("checkpoint_of_eomt_for_erfnet", checkpoint_of_eomt,
         "not an ERFNet checkpoint: no key ending in 'decoder.output_conv.weight'"),
    Case("checkpoint_of_erfnet_for_eomt", checkpoint_of_erfnet,
         "not an EoMT or DINOv2 checkpoint: unrecognised keys decoder.layers.0.bn.bias, ", prefix=True,
         options=lambda t, d: ["--model", "eomt", "--weights", str(t.weights)]),
    Case("checkpoint_wrong_shape", checkpoint_wrong_shape, "checkpoint does not fit the model: 1 wrong shapes: "
         "encoder.initial_block.conv.weight (13, 3, 5, 3) vs expected (13, 3, 3, 3)"),
    Case("checkpoint_missing_key", checkpoint_missing_key,
         "checkpoint does not fit the model: 1 missing keys: decoder.layers.1.bn2.bias"),
    Case("checkpoint_pickled_object", checkpoint_pickled_object,
         "holds more than plain tensors (an object of type bad_inputs.NotATensor); if it comes from a source you "
         "trust, allow full unpickling (trust_pickle=True, --trust-pickle)"),
    Case("safetensors_truncated", safetensors_truncated, "not a readable safetensors file (", prefix=True,
         options=_damaged_weights),
    # models a user brings
    Case("python_model_fails_to_import", python_model_fails_to_import,
         "cannot import: ModuleNotFoundError: No module named 'roadanomaly_no_such_module'", kind="python",
         options=lambda t, d: ["--model", f"python:{d.path}:Net", "--weights", str(t.weights)]),
    Case("python_model_gives_nan", python_model_gives_nan, lambda t: f"the model ({t.root / 'nan_net.py'}) gives 4 "
         "NaN or inf logits", kind="python", options=_nan_net, workers=1, same_model=False, **LATE),
    Case("onnx_not_onnx", onnx_not_onnx, "not a readable ONNX model (", prefix=True, kind="onnx",
         options=lambda t, d: ["--model", "onnx", "--weights", str(d.path)]),
)
CLEAN = Case("clean", nothing, None)
CLEAN_CITYSCAPES = Case("clean_cityscapes", nothing, None, datasets=(FIRST,), cityscapes=True)
