"""SynthRoads generator: determinism, label/pixel alignment, anomaly masks, real on-disk formats."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from roadanomaly.data.labels import ID_TO_TRAIN_ID, IGNORE_INDEX, NUM_CLASSES, TRAIN_ID_NAMES, TRAIN_ID_TO_ID
from roadanomaly.data.synthroads import (
    FAMILIES,
    get_family,
    paste_outliers,
    render_anomaly_sample,
    render_scene,
    write_anomaly_bundle,
    write_cityscapes,
)
from roadanomaly.data.synthroads.writer import generate_synthroads

SMALL = (128, 256)
ROAD = TRAIN_ID_NAMES.index("road")


@pytest.fixture(scope="module")
def scenes() -> list:
    """60 default-size training scenes, shared by the statistics tests."""
    return [render_scene(0, "train", i) for i in range(60)]


def _clean_background(family: str, seed: int, index: int, size: tuple[int, int]):
    fam = get_family(family)
    return render_scene(seed, fam.name, index, fam.scene_config(), size=size)


# --- determinism -------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_other_seeds_differ() -> None:
    a, b = render_scene(7, "train", 3), render_scene(7, "train", 3)
    assert a.image.tobytes() == b.image.tobytes() and a.labels.tobytes() == b.labels.tobytes()
    for other in (render_scene(8, "train", 3), render_scene(7, "val", 3), render_scene(7, "train", 4)):
        assert other.image.tobytes() != a.image.tobytes()


def test_outputs_have_the_documented_types_and_sizes() -> None:
    for size in (SMALL, (256, 512), (96, 320)):
        s = render_scene(0, "train", 1, size=size)
        assert s.image.shape == (*size, 3) and s.image.dtype == np.uint8
        assert s.labels.shape == size and s.labels.dtype == np.uint8
        values = np.unique(s.labels)
        assert set(values.tolist()) <= set(range(NUM_CLASSES)) | {IGNORE_INDEX}


def test_written_images_do_not_depend_on_how_many_are_generated(tmp_path: Path) -> None:
    few = write_cityscapes(tmp_path / "few", {"train": 2}, size=SMALL, seed=3)
    many = write_cityscapes(tmp_path / "many", {"train": 5}, size=SMALL, seed=3, workers=2)
    few_files = sorted(p.relative_to(few) for p in few.rglob("*.png"))
    assert len(few_files) == 4
    for rel in few_files:
        assert (few / rel).read_bytes() == (many / rel).read_bytes()


def test_anomaly_samples_are_deterministic() -> None:
    for family in FAMILIES:
        a = render_anomaly_sample(family, 1, 2, size=SMALL)
        b = render_anomaly_sample(family, 1, 2, size=SMALL)
        c = render_anomaly_sample(family, 1, 3, size=SMALL)
        assert a.image.tobytes() == b.image.tobytes() and a.mask.tobytes() == b.mask.tobytes()
        assert a.image.tobytes() != c.image.tobytes()


# --- labels match pixels ---------------------------------------------------------------------


def _edges(image: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))


def _label_boundaries(labels: np.ndarray) -> np.ndarray:
    b = np.zeros(labels.shape, bool)
    b[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    b[1:, :] |= labels[1:, :] != labels[:-1, :]
    return b


def test_label_boundaries_sit_on_image_edges(scenes: list) -> None:
    """Image edges are strongest exactly on the label boundaries, not a few pixels beside them."""
    ratios = []
    for s in scenes[:20]:
        edges = _edges(s.image)
        aligned = edges[_label_boundaries(s.labels)].mean()
        for dx, dy in ((2, 0), (-2, 0), (0, 2), (0, -2)):
            shifted = np.roll(s.labels, (dy, dx), axis=(0, 1))
            ratios.append(aligned / edges[_label_boundaries(shifted)].mean())
    assert min(ratios) > 1.05 and np.median(ratios) > 1.25


def test_classes_have_distinct_appearance(scenes: list) -> None:
    """Cars differ in colour from the road around them; vegetation is more textured than road and sky."""
    car, veg, sky = TRAIN_ID_NAMES.index("car"), TRAIN_ID_NAMES.index("vegetation"), TRAIN_ID_NAMES.index("sky")
    colour_gaps, texture_wins = [], []
    for s in scenes:
        img = s.image.astype(np.float32)
        if (s.labels == car).sum() > 200:
            colour_gaps.append(np.abs(img[s.labels == car].mean(0) - img[s.labels == ROAD].mean(0)).max())
            colour_gaps[-1] = max(colour_gaps[-1], abs(img[s.labels == car].std() - img[s.labels == ROAD].std()))
        detail = np.abs(img.mean(-1) - cv2.blur(img.mean(-1), (3, 3)))
        if (s.labels == veg).sum() > 200 and (s.labels == sky).sum() > 200:
            flat = max(detail[s.labels == ROAD].mean(), detail[s.labels == sky].mean())
            texture_wins.append(detail[s.labels == veg].mean() > flat)
    assert len(colour_gaps) > 20 and np.median(colour_gaps) > 15.0
    assert np.mean(texture_wins) > 0.9


def test_many_classes_appear_and_common_ones_in_most_images(scenes: list) -> None:
    present = np.zeros(NUM_CLASSES, int)
    for s in scenes:
        present += np.bincount(s.labels.ravel(), minlength=256)[:NUM_CLASSES] > 0
    assert (present > 0).sum() >= 12
    common = ("road", "sidewalk", "building", "vegetation", "sky", "car", "person", "pole", "traffic sign", "terrain")
    for name in common:
        assert present[TRAIN_ID_NAMES.index(name)] > len(scenes) / 2, name


def test_distant_objects_are_drawn_smaller(scenes: list) -> None:
    """Perspective: person blobs whose feet are higher in the image (farther away) are shorter."""
    person = TRAIN_ID_NAMES.index("person")
    feet, heights = [], []
    for s in scenes:
        n, _, stats, _ = cv2.connectedComponentsWithStats((s.labels == person).astype(np.uint8))
        for x, y, w, h, area in stats[1:]:
            if area > 15 and y > 0 and y + h < s.labels.shape[0]:
                feet.append(y + h)
                heights.append(h)
    assert len(feet) > 30
    assert np.corrcoef(feet, heights)[0, 1] > 0.5


# --- anomalies ----------------------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_anomaly_mask_is_exactly_the_changed_pixels(family: str) -> None:
    for index in range(4):
        sample = render_anomaly_sample(family, 5, index, size=SMALL)
        clean = _clean_background(family, 5, index, SMALL)
        changed = (sample.image != clean.image).any(axis=-1)
        assert np.array_equal(sample.mask == 1, changed)
        assert changed.any()
        assert set(np.unique(sample.mask).tolist()) <= {0, 1, 255}
        assert np.array_equal(sample.labels[~changed], clean.labels[~changed])
        assert (sample.labels[changed] == IGNORE_INDEX).all()


def test_obstacles_lie_on_the_road_and_off_road_is_void() -> None:
    for index in range(6):
        sample = render_anomaly_sample("SynthObstacle", 2, index, size=SMALL)
        clean = _clean_background("SynthObstacle", 2, index, SMALL)
        on_road = clean.labels == ROAD
        assert (sample.mask[~on_road] == 255).all()
        assert (sample.mask[on_road] != 255).all()
        assert (sample.mask == 1).any()


def test_large_anomalies_have_no_void_and_are_sizeable() -> None:
    areas = []
    for index in range(6):
        sample = render_anomaly_sample("SynthAnomaly", 2, index, size=SMALL)
        assert set(np.unique(sample.mask).tolist()) == {0, 1}
        areas.append((sample.mask == 1).mean())
    obstacles = [(render_anomaly_sample("SynthObstacle", 2, i, size=SMALL).mask == 1).mean() for i in range(6)]
    assert np.median(areas) > np.median(obstacles)


def test_family_lookup() -> None:
    assert get_family("obstacle").name == "SynthObstacle"
    assert get_family("synthanomaly").name == "SynthAnomaly"
    assert get_family("OUTLIER").name == "SynthOutlier"
    with pytest.raises(KeyError):
        get_family("cow")


def test_paste_outliers_masks_are_consistent() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (80, 120, 3), dtype=np.uint8)
    labels = rng.integers(0, NUM_CLASSES, (80, 120)).astype(np.uint8)
    before = (image.copy(), labels.copy())
    out = paste_outliers(image, labels, np.random.default_rng(4))
    again = paste_outliers(image, labels, np.random.default_rng(4))
    assert np.array_equal(image, before[0]) and np.array_equal(labels, before[1])
    assert np.array_equal(out.image, again.image) and np.array_equal(out.mask, again.mask)
    changed = (out.image != image).any(axis=-1)
    assert out.mask.dtype == np.uint8 and set(np.unique(out.mask).tolist()) <= {0, 1}
    assert changed.any() and np.array_equal(out.mask == 1, changed)
    assert (out.labels[changed] == IGNORE_INDEX).all()
    assert np.array_equal(out.labels[~changed], labels[~changed])
    with pytest.raises(ValueError):
        paste_outliers(image, labels[:10], np.random.default_rng(0))


# --- training data never holds anomalies ------------------------------------------------------------


def test_training_writer_never_runs_anomaly_code(tmp_path: Path) -> None:
    package = Path(sys.modules["roadanomaly.data.synthroads"].__file__).parent
    forbidden = {str(package / f) for f in ("anomalies.py", "anomaly_shapes.py", "outliers.py")}
    called: set[str] = set()

    def watch(frame, event, arg):  # noqa: ANN001
        if event == "call" and frame.f_code.co_filename in forbidden:
            called.add(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")

    sys.setprofile(watch)
    try:
        root = write_cityscapes(tmp_path, {"train": 6}, size=SMALL, seed=0)
    finally:
        sys.setprofile(None)
    assert not called
    valid_ids = {0, *TRAIN_ID_TO_ID.tolist()}
    for path in (root / "gtFine" / "train").rglob("*.png"):
        assert set(np.unique(np.asarray(Image.open(path))).tolist()) <= valid_ids
    # the watcher does see anomaly code when it runs
    sys.setprofile(watch)
    try:
        render_anomaly_sample("SynthObstacle", 0, 0, size=SMALL)
    finally:
        sys.setprofile(None)
    assert called


# --- on-disk formats -----------------------------------------------------------------------------


def test_cityscapes_files_have_the_real_layout_and_round_trip(tmp_path: Path) -> None:
    root = write_cityscapes(tmp_path, {"train": 3, "val": 2}, size=SMALL, seed=11)
    pattern = re.compile(r"^([a-z]+)_(\d{6})_(\d{6})_leftImg8bit\.png$")
    for split, count in (("train", 3), ("val", 2)):
        images = sorted((root / "leftImg8bit" / split).glob("*/*"))
        assert len(images) == count
        for path in images:
            match = pattern.match(path.name)
            assert match and match.group(1) == path.parent.name
            stem = path.name[: -len("_leftImg8bit.png")]
            label_path = root / "gtFine" / split / path.parent.name / f"{stem}_gtFine_labelIds.png"
            with Image.open(path) as im, Image.open(label_path) as lb:
                assert (im.format, im.mode, lb.format, lb.mode) == ("PNG", "RGB", "PNG", "L")
                image, label_ids = np.asarray(im), np.asarray(lb)
            assert image.shape == (*SMALL, 3) and label_ids.shape == SMALL
            index = next(i for i in range(count) if f"{stem}_leftImg8bit.png".startswith(_stem_of(split, i)))
            expected = render_scene(11, split, index, size=SMALL)
            assert np.array_equal(image, expected.image)
            assert np.array_equal(ID_TO_TRAIN_ID[label_ids], expected.labels)


def _stem_of(split: str, index: int) -> str:
    from roadanomaly.data.synthroads import cityscapes_name

    return cityscapes_name(split, index)[1]


@pytest.mark.parametrize(("family", "ext"), [("SynthAnomaly", "png"), ("SynthObstacle", "webp")])
def test_bundle_files_have_the_real_layout(tmp_path: Path, family: str, ext: str) -> None:
    bundle = write_anomaly_bundle(tmp_path, family, family, 2, size=SMALL, seed=4)
    assert bundle == tmp_path / family
    images = sorted((bundle / "images").iterdir())
    masks = sorted((bundle / "labels_masks").iterdir())
    assert [p.suffix for p in images] == [f".{ext}"] * 2 and [p.suffix for p in masks] == [".png"] * 2
    assert [p.stem for p in images] == [p.stem for p in masks]
    for index, (image_path, mask_path) in enumerate(zip(images, masks)):
        with Image.open(image_path) as im, Image.open(mask_path) as mk:
            assert im.format == ext.upper() and mk.format == "PNG" and mk.mode == "L"
            image, mask = np.asarray(im.convert("RGB")), np.asarray(mk)
        expected = render_anomaly_sample(family, 4, index, size=SMALL)
        assert np.array_equal(image, expected.image)  # webp is written lossless
        assert np.array_equal(mask, expected.mask)
        assert set(np.unique(mask).tolist()) <= {0, 1, 255} and (mask == 1).any()


def test_generate_synthroads_writes_everything(tmp_path: Path) -> None:
    seen: list[str] = []
    paths = generate_synthroads(
        tmp_path, train=2, val=1, anomaly=1, obstacle=1, size=SMALL, progress=lambda s, d, t: seen.append(s)
    )
    assert paths.cityscapes == tmp_path / "cityscapes"
    assert len(list((paths.cityscapes / "leftImg8bit" / "train").glob("*/*_leftImg8bit.png"))) == 2
    assert len(list((paths.cityscapes / "gtFine" / "val").glob("*/*_gtFine_labelIds.png"))) == 1
    assert paths.anomaly == tmp_path / "bundle" / "SynthAnomaly"
    assert paths.obstacle == tmp_path / "bundle" / "SynthObstacle"
    assert len(list((paths.obstacle / "images").glob("*.webp"))) == 1
    assert len(list((paths.anomaly / "labels_masks").glob("*.png"))) == 1
    assert {"cityscapes/train", "cityscapes/val", "bundle/SynthAnomaly", "bundle/SynthObstacle"} <= set(seen)
    assert (tmp_path / "synthroads.json").is_file()
