import numpy as np
import pytest
from PIL import Image

from fixtures import BUNDLE_LAYOUT, make_bundle, make_cityscapes, save_image
from roadanomaly.data.bundle import AnomalyBundle, discover_bundles
from roadanomaly.data.cityscapes import CityscapesDataset
from roadanomaly.data.labels import ID_TO_TRAIN_ID
from roadanomaly.errors import UserError


def test_every_common_folder_loads_with_one_label_convention(tmp_path):
    make_bundle(tmp_path)
    bundles = discover_bundles(tmp_path)
    assert sorted(b.folder.name for b in bundles) == sorted(name for name, _, _ in BUNDLE_LAYOUT)
    names = {b.folder.name: b.name for b in bundles}
    assert names["RoadObsticle21"] == "RoadObstacle21"
    for bundle in bundles:
        assert len(bundle) == 3
        for i in range(len(bundle)):
            sample = bundle[i]
            raw = np.asarray(Image.open(sample.label_path))
            anomaly_value = 2 if bundle.folder.name == "RoadAnomaly" else 1
            np.testing.assert_array_equal(sample.label == 1, raw == anomaly_value)
            np.testing.assert_array_equal(sample.label == 255, raw == 255)
            assert set(np.unique(sample.label)) <= {0, 1, 255}
            assert sample.image.shape == (*sample.label.shape, 3) and sample.image.dtype == np.uint8


def test_dataset_selection_accepts_both_spellings(tmp_path):
    make_bundle(tmp_path)
    assert [b.name for b in discover_bundles(tmp_path, ["RoadObstacle21", "fs_static"])] == [
        "RoadObstacle21", "fs_static"]
    with pytest.raises(UserError, match="dataset 'Nope' not found"):
        discover_bundles(tmp_path, ["Nope"])


def test_pairing_is_by_stem_not_by_position(tmp_path):
    folder = tmp_path / "RoadAnomaly21"
    rng = np.random.default_rng(0)
    masks = {}
    for stem in ["b_img", "a_img", "c_img"]:
        save_image(folder / "images" / f"{stem}.png", rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    # an extra mask that sorts first would shift any pairing by sorted position
    save_image(folder / "labels_masks" / "_unrelated.png", np.full((8, 8), 1, np.uint8))
    for stem, value in [("a_img", 0), ("b_img", 1), ("c_img", 255)]:
        masks[stem] = np.full((8, 8), value, np.uint8)
        masks[stem][0, 0] = 0
        save_image(folder / "labels_masks" / f"{stem}_labels_semantic.png", masks[stem])
    bundle = AnomalyBundle(folder)
    for i, path in enumerate(bundle.image_paths):
        np.testing.assert_array_equal(bundle[i].label, masks[path.stem])


def _one_image_bundle(tmp_path, image_size=(8, 8), label=None, image_bytes=None):
    folder = tmp_path / "RoadAnomaly21"
    image_path = folder / "images" / "x.png"
    save_image(image_path, np.zeros((*image_size, 3), np.uint8))
    if image_bytes is not None:
        image_path.write_bytes(image_bytes)
    save_image(folder / "labels_masks" / "x.png", np.zeros((8, 8), np.uint8) if label is None else label)
    return folder


def test_bad_inputs_give_one_line_errors_naming_the_file(tmp_path):
    cases = [
        (dict(image_bytes=b"garbage"), "x.png: cannot read image"),
        (dict(image_size=(8, 9)), "label is 8x8 but its image is 8x9"),
        (dict(label=np.full((8, 8), 7, np.uint8)), "unknown label values [7] (expected [0, 1, 255])"),
    ]
    for i, (kwargs, expected) in enumerate(cases):
        folder = _one_image_bundle(tmp_path / str(i), **kwargs)
        with pytest.raises(UserError) as info:
            AnomalyBundle(folder)[0]
        assert expected in str(info.value) and "\n" not in str(info.value)


def test_missing_label_and_empty_folder(tmp_path):
    folder = tmp_path / "fs_static"
    save_image(folder / "images" / "img.jpg", np.zeros((8, 8, 3), np.uint8))
    (folder / "labels_masks").mkdir()
    with pytest.raises(UserError, match=r"img\.jpg: no label found"):
        AnomalyBundle(folder)
    empty = tmp_path / "empty" / "RoadAnomaly"
    (empty / "images").mkdir(parents=True)
    (empty / "labels_masks").mkdir()
    with pytest.raises(UserError, match="no images found"):
        AnomalyBundle(empty)


def test_cityscapes_layout_maps_label_ids_to_train_ids(tmp_path):
    make_cityscapes(tmp_path, "val")
    dataset = CityscapesDataset(tmp_path, "val")
    assert len(dataset) == 2
    for i in range(len(dataset)):
        sample = dataset[i]
        label_path = dataset.label_paths[i]
        assert label_path.name == sample.image_path.name.replace("_leftImg8bit.png", "_gtFine_labelIds.png")
        raw = np.asarray(Image.open(label_path))
        np.testing.assert_array_equal(sample.train_ids, ID_TO_TRAIN_ID[raw])
        assert (sample.train_ids[:2] == 255).all() and sample.train_ids[2:].max() <= 18
    with pytest.raises(UserError, match="folder not found"):
        CityscapesDataset(tmp_path, "train")


def test_known_train_ids():
    # road=7->0, sidewalk=8->1, car=26->13, bicycle=33->18, license plate/unknown -> 255
    assert [int(ID_TO_TRAIN_ID[i]) for i in (7, 8, 26, 33, 0, 255)] == [0, 1, 13, 18, 255, 255]
