import json
import shutil

import numpy as np
import pytest
from PIL import Image

from fixtures import make_bundle, save_image
from roadanomaly.data.layouts import discover_datasets
from roadanomaly.data.lostandfound import LostAndFound
from roadanomaly.data.road_anomaly import RoadAnomalyOriginal
from roadanomaly.data.smiyc import SmiycTrack
from roadanomaly.errors import UserError

SIZE = (12, 16)


def rgb(rng):
    return rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)


def make_lostandfound(root, splits=("test", "train"), seed=0):
    """``leftImg8bit/<split>/<scene>/<frame>_leftImg8bit.png`` + ``gtCoarse/<split>/<scene>/<frame>_gtCoarse_labelIds.png``."""
    rng = np.random.default_rng(seed)
    for split in splits:
        for scene in ("04_Maurener_Weg_8", "13_Elly_Beinhorn_Str"):
            stem = f"{scene}_000000_000{len(scene):03d}"
            save_image(root / "leftImg8bit" / split / scene / f"{stem}_leftImg8bit.png", rgb(rng))
            ids = rng.choice([0, 1, 1, 2, 57, 200, 201, 255], size=SIZE).astype(np.uint8)
            save_image(root / "gtCoarse" / split / scene / f"{stem}_gtCoarse_labelIds.png", ids)
    return root


def make_smiyc(root, seed=0):
    """``dataset_AnomalyTrack`` (jpg) and ``dataset_ObstacleTrack`` (webp): masks for the validation frames only."""
    rng = np.random.default_rng(seed)
    for folder, ext in (("dataset_AnomalyTrack", ".jpg"), ("dataset_ObstacleTrack", ".webp")):
        for stem in ("validation0000", "validation0001", "test0000"):
            save_image(root / folder / "images" / f"{stem}{ext}", rgb(rng))
            if stem.startswith("validation"):
                mask = rng.choice([0, 1, 255], size=SIZE).astype(np.uint8)
                save_image(root / folder / "labels_masks" / f"{stem}_labels_semantic.png", mask)
    return root


def make_road_anomaly(root, names=("animals01_Guardian_sheep.jpg", "cones03.jpg"), seed=0):
    """``frame_list.json`` + ``frames/<name>`` + ``frames/<stem>.labels/labels_semantic.png`` (0 / 2)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "frame_list.json").write_text(json.dumps(list(names)))
    for name in names:
        save_image(root / "frames" / name, rgb(rng))
        stem = name.rsplit(".", 1)[0]
        save_image(root / "frames" / f"{stem}.labels" / "labels_semantic.png",
                   rng.choice([0, 2], size=SIZE).astype(np.uint8))
    return root


def raw_label(path):
    return np.asarray(Image.open(path))


def test_lostandfound_maps_road_obstacles_and_the_rest(tmp_path):
    make_lostandfound(tmp_path)
    dataset = LostAndFound(tmp_path, "test")
    assert (dataset.name, len(dataset)) == ("LostAndFound-test", 2)
    for i in range(len(dataset)):
        sample = dataset[i]
        assert sample.label_path.name == sample.image_path.name.replace("_leftImg8bit.png", "_gtCoarse_labelIds.png")
        assert sample.label_path.parent.name == sample.image_path.parent.name
        raw = raw_label(sample.label_path)
        expected = np.select([raw == 1, (raw >= 2) & (raw <= 200)], [0, 1], 255)
        np.testing.assert_array_equal(sample.label, expected)
        assert sample.image.shape == (*SIZE, 3)


def test_smiyc_tracks_keep_the_labelled_frames(tmp_path):
    make_smiyc(tmp_path)
    # macOS archives carry "._<name>" resource forks beside every file: never frames, nor unlabelled ones
    (tmp_path / "dataset_AnomalyTrack" / "images" / "._validation0000.jpg").write_bytes(b"\x00\x05\x16\x07")
    for folder, name, ext in (("dataset_AnomalyTrack", "AnomalyTrack", ".jpg"),
                              ("dataset_ObstacleTrack", "ObstacleTrack", ".webp")):
        track = SmiycTrack(tmp_path / folder)
        assert track.name == name and len(track) == 2
        assert [p.name for p in track.unlabelled] == [f"test0000{ext}"]
        for i in range(len(track)):
            sample = track[i]
            assert sample.label_path.name == f"{sample.image_path.stem}_labels_semantic.png"
            np.testing.assert_array_equal(sample.label, raw_label(sample.label_path))


def test_road_anomaly_follows_the_frame_list(tmp_path):
    names = ("zebra02.jpg", "animals01_Guardian_sheep.jpg")  # listed order, not sorted order
    dataset = RoadAnomalyOriginal(make_road_anomaly(tmp_path / "RoadAnomaly_jpg", names))
    assert dataset.name == "RoadAnomaly"
    assert [p.name for p in dataset.image_paths] == list(names)
    for i in range(len(dataset)):
        sample = dataset[i]
        raw = raw_label(sample.label_path)
        np.testing.assert_array_equal(sample.label, (raw == 2).astype(np.uint8))


def test_discovery_finds_every_layout_and_filters_by_name(tmp_path):
    make_bundle(tmp_path, size=SIZE, images=1)
    make_smiyc(tmp_path)
    make_lostandfound(tmp_path / "dataset_LostAndFound")
    make_road_anomaly(tmp_path / "RoadAnomaly_jpg")
    # the RoadAnomaly bundle and the original release share a name: choose one by folder
    with pytest.raises(UserError) as info:
        discover_datasets(tmp_path)
    assert str(info.value) == (f"{tmp_path}: 2 datasets are named 'RoadAnomaly' (folders RoadAnomaly, "
                               "RoadAnomaly_jpg): choose one by its folder name with --datasets")
    assert [type(d).__name__ for d in discover_datasets(tmp_path, ["roadanomaly_jpg"])] == ["RoadAnomalyOriginal"]
    assert [type(d).__name__ for d in discover_datasets(tmp_path, ["RoadAnomaly"])] == ["AnomalyBundle"]
    shutil.rmtree(tmp_path / "RoadAnomaly")
    datasets = discover_datasets(tmp_path)
    names = [d.name for d in datasets]
    assert sorted(names) == sorted([
        "AnomalyTrack", "ObstacleTrack", "LostAndFound-test", "LostAndFound-train", "RoadAnomaly",
        "RoadAnomaly21", "RoadObstacle21", "FS_LostFound_full", "fs_static",
    ])
    by_type = {type(d).__name__ for d in datasets}
    assert by_type == {"AnomalyBundle", "SmiycTrack", "LostAndFound", "RoadAnomalyOriginal"}
    for dataset in datasets:
        sample = dataset[0]
        assert set(np.unique(sample.label)) <= {0, 1, 255} and sample.image.shape[:2] == sample.label.shape

    chosen = discover_datasets(tmp_path, ["obstacletrack", "lostandfound-TEST", "roadobsticle21"])
    assert [d.name for d in chosen] == ["ObstacleTrack", "LostAndFound-test", "RoadObstacle21"]
    assert [d.name for d in discover_datasets(tmp_path, ["LostAndFound"])] == ["LostAndFound-test",
                                                                               "LostAndFound-train"]
    with pytest.raises(UserError) as info:
        discover_datasets(tmp_path, ["Fishyscapes"])
    message = str(info.value)
    assert message.startswith(f"{tmp_path}: dataset 'Fishyscapes' not found (available: ")
    for name in ("AnomalyTrack", "LostAndFound-train", "RoadAnomaly21"):
        assert name in message


def test_empty_or_missing_data_folder(tmp_path):
    with pytest.raises(UserError, match="data folder not found"):
        discover_datasets(tmp_path / "nope")
    with pytest.raises(UserError, match="no datasets found"):
        discover_datasets(tmp_path)


def test_bad_inputs_name_the_file(tmp_path):
    # a listed Road Anomaly frame that is missing, and a broken frame list
    folder = make_road_anomaly(tmp_path / "ra")
    (folder / "frame_list.json").write_text(json.dumps(["ghost.jpg"]))
    with pytest.raises(UserError, match=r"frame_list\.json: frame 'ghost\.jpg' is listed but .*ghost\.jpg does not exist"):
        RoadAnomalyOriginal(folder)
    (folder / "frame_list.json").write_text("{not json")
    with pytest.raises(UserError, match=r"frame_list\.json: cannot read the frame list"):
        RoadAnomalyOriginal(folder)
    (folder / "frame_list.json").write_text(json.dumps({"frames": []}))
    with pytest.raises(UserError, match="must be a JSON list of image file names"):
        RoadAnomalyOriginal(folder)

    # a LostAndFound image without its label
    laf = make_lostandfound(tmp_path / "laf", splits=("test",))
    label = next((laf / "gtCoarse" / "test").glob("*/*.png"))
    label.unlink()
    with pytest.raises(UserError, match=r"_leftImg8bit\.png: no label found \(looked for .*_gtCoarse_labelIds\.png\)"):
        LostAndFound(laf, "test")

    # SMIYC: an unknown mask value, a mask of the wrong size, no mask at all
    smiyc = make_smiyc(tmp_path / "smiyc")
    track_dir = smiyc / "dataset_AnomalyTrack"
    mask = track_dir / "labels_masks" / "validation0000_labels_semantic.png"
    save_image(mask, np.full(SIZE, 7, np.uint8))
    with pytest.raises(UserError) as info:
        SmiycTrack(track_dir)[0]
    assert str(info.value) == f"{mask}: unknown label values [7] (expected [0, 1, 255])"
    save_image(mask, np.zeros((5, 5), np.uint8))
    with pytest.raises(UserError, match=r"validation0000_labels_semantic\.png: label is 5x5 but its image is 12x16"):
        SmiycTrack(track_dir)[0]
    for path in (track_dir / "labels_masks").iterdir():
        path.unlink()
    with pytest.raises(UserError, match=r"labels_masks: no masks found for the images"):
        SmiycTrack(track_dir)
    # and a broken dataset only fails when it is asked for
    assert [d.name for d in discover_datasets(smiyc, ["ObstacleTrack"])] == ["ObstacleTrack"]
