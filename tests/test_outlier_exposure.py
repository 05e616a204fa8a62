"""Outlier exposure: pasting is pixel-exact, labels follow objects, sources read what they claim to."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from roadanomaly.data.outlier_exposure import (
    CocoSource,
    FolderSource,
    OutlierPaster,
    PasteConfig,
    SynthOutlierSource,
    make_source,
    segment_targets,
)
from roadanomaly.data.synthroads.outlier_cutouts import (
    SILHOUETTES,
    Cutout,
    synth_cutout,
)
from roadanomaly.errors import UserError

ROAD, SKY, VOID = 0, 10, 255
GREY = (100, 100, 100)
RED = (250, 10, 20)


class SquareSource:
    """A solid red square (its resized copies stay solid red with alpha 1 everywhere)."""

    def draw(self, rng: np.random.Generator) -> Cutout:
        return Cutout(np.full((20, 20, 3), RED, np.uint8), np.ones((20, 20), np.float32))


def scene(h: int = 60, w: int = 80, horizon: int = 20) -> tuple[np.ndarray, np.ndarray]:
    image = np.full((h, w, 3), GREY, np.uint8)
    labels = np.full((h, w), SKY, np.uint8)
    labels[horizon:] = ROAD
    labels[:3, :3] = VOID
    return image, labels


@pytest.mark.parametrize("seed", range(6))
def test_synth_pasting_changes_exactly_the_labelled_pixels(seed: int) -> None:
    image, labels = scene()
    image = np.random.default_rng(99).integers(0, 256, image.shape).astype(np.uint8)
    paster = OutlierPaster([SynthOutlierSource(48)], PasteConfig(count=(1, 4), min_pixels=1))
    out = paster.paste(image, labels, np.random.default_rng(seed))
    changed = (out.image != image).any(axis=-1)
    union = out.instances.any(axis=0)
    np.testing.assert_array_equal(changed, union)
    np.testing.assert_array_equal(out.labels, np.where(union, VOID, labels))
    assert not (out.instances.sum(axis=0) > 1).any()  # instances do not overlap
    mask = out.anomaly_mask
    np.testing.assert_array_equal(mask == 1, union)
    np.testing.assert_array_equal(mask == VOID, (labels == VOID) & ~union)


@pytest.mark.parametrize("min_height", [6, 14])
def test_square_lands_where_the_target_says_with_perspective_height(min_height: int) -> None:
    h, horizon, frac = 60, 20, 0.5
    image, labels = scene(h=h, horizon=horizon)
    config = PasteConfig(count=(1, 1), height=(frac, frac), on_drivable=1.0, min_pixels=1, min_height=min_height)
    for seed in range(10):
        out = OutlierPaster([SquareSource()], config).paste(image, labels, np.random.default_rng(seed))
        (mask,) = out.instances
        ys, xs = np.nonzero(mask)
        assert (out.image[mask] == RED).all() and (out.image[~mask] == GREY).all()
        bottom = ys.max()
        expected = max(min_height, round(frac * h * (bottom + 1 - horizon) / (h - horizon)))
        assert ys.max() - ys.min() + 1 == expected or ys.min() == 0  # unless cut by the top border
        assert labels[bottom, int(np.median(xs))] == ROAD  # the foot stands on the road


def test_no_anomaly_without_a_pasted_object() -> None:
    image, labels = scene()
    out = OutlierPaster([SquareSource()], PasteConfig(probability=0.0)).paste(image, labels, np.random.default_rng(0))
    assert out.instances.shape == (0, *labels.shape)
    np.testing.assert_array_equal(out.image, image)
    np.testing.assert_array_equal(out.labels, labels)
    assert not (out.anomaly_mask == 1).any()


def test_feathering_blends_only_into_void_pixels() -> None:
    image, labels = scene()
    config = PasteConfig(count=(2, 3), feather=2.0, min_pixels=1)
    out = OutlierPaster([SynthOutlierSource(48)], config).paste(image, labels, np.random.default_rng(3))
    changed = (out.image != image).any(axis=-1)
    union = out.instances.any(axis=0)
    assert union.any()
    assert (changed[union]).all()  # every anomaly pixel was pasted
    assert (out.labels[changed] == VOID).all()  # every changed pixel is anomaly or void
    assert (out.labels[~changed & (labels != VOID)] == labels[~changed & (labels != VOID)]).all()


def test_colour_matching_moves_objects_towards_the_background() -> None:
    image, labels = scene()
    plain = PasteConfig(count=(1, 1), min_pixels=1)
    matched = PasteConfig(count=(1, 1), min_pixels=1, colour_match=1.0)
    a = OutlierPaster([SquareSource()], plain).paste(image, labels, np.random.default_rng(1))
    b = OutlierPaster([SquareSource()], matched).paste(image, labels, np.random.default_rng(1))
    np.testing.assert_array_equal(a.instances, b.instances)
    dist = lambda s: np.abs(s.image[s.instances[0]].astype(float) - GREY).mean()
    assert dist(b) < 0.1 * dist(a)


def test_segment_targets_partition_the_labelled_pixels() -> None:
    labels = np.array([[0, 0, 1], [255, 2, 1]], np.uint8)
    inst = np.zeros((1, 2, 3), bool)
    inst[0, 1, 0] = True  # on a void pixel, as pasted pixels are
    t = segment_targets(labels, inst)
    assert t.classes.tolist() == [0, 1, 2, -1] and t.anomaly.tolist() == [False, False, False, True]
    np.testing.assert_array_equal(t.masks[0], labels == 0)
    np.testing.assert_array_equal(t.masks[3], inst[0])
    assert (t.masks.sum(axis=0) == (labels != 255) | inst[0]).all()


def test_synth_cutouts_are_deterministic_and_diverse() -> None:
    a, b = synth_cutout(np.random.default_rng(5), 64), synth_cutout(np.random.default_rng(5), 64)
    np.testing.assert_array_equal(a.rgb, b.rgb)
    rng = np.random.default_rng(0)
    cuts = [synth_cutout(rng, 48) for _ in range(40)]
    assert all(c.alpha.any() and set(np.unique(c.alpha)) <= {0.0, 1.0} for c in cuts)
    assert all(c.alpha[0].any() and c.alpha[:, 0].any() for c in cuts)  # cropped to the object
    means = np.array([c.rgb[c.alpha > 0].mean(axis=0) for c in cuts])
    assert means.std(axis=0).min() > 20  # colours vary
    assert len(SILHOUETTES) >= 10


def test_folder_of_rgba_cutouts(tmp_path) -> None:
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[2:8, 3:9] = (20, 40, 60, 255)  # BGR + alpha as cv2 writes
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    cv2.imwrite(str(tmp_path / "no_alpha.png"), rgba[..., :3])
    source = make_source(str(tmp_path))
    assert isinstance(source, FolderSource) and len(source) == 1
    cut = source.draw(np.random.default_rng(0))
    assert cut.alpha.shape == (6, 6) and (cut.alpha == 1).all()
    assert (cut.rgb == (60, 40, 20)).all()


def test_folder_of_image_mask_pairs_gives_one_object_per_instance(tmp_path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "images" / "x.png"), image[..., ::-1])
    ids = np.zeros((16, 16), np.uint8)
    ids[1:4, 1:5], ids[8:15, 9:12] = 3, 7
    cv2.imwrite(str(tmp_path / "masks" / "x.png"), ids)
    source = FolderSource(tmp_path)
    assert [v for _, _, v in source.items] == [3, 7]
    shapes = {source.draw(np.random.default_rng(s)).alpha.shape for s in range(20)}
    assert shapes == {(3, 4), (7, 3)}
    cut = next(c for c in (source.draw(np.random.default_rng(s)) for s in range(20)) if c.alpha.shape == (7, 3))
    np.testing.assert_array_equal(cut.rgb, image[8:15, 9:12])


def test_folder_errors(tmp_path) -> None:
    with pytest.raises(UserError, match="no RGBA cut-outs"):
        FolderSource(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "y.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(UserError, match="has no instance mask y.png"):
        FolderSource(tmp_path)
    with pytest.raises(UserError, match="not a folder"):
        make_source(str(tmp_path / "missing"))


def test_coco_source_skips_crowds_and_cityscapes_classes(tmp_path) -> None:
    (tmp_path / "annotations").mkdir()
    (tmp_path / "val2017").mkdir()
    image = np.random.default_rng(1).integers(0, 256, (40, 50, 3)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "val2017" / "1.png"), image[..., ::-1])
    poly = [10, 5, 30, 5, 30, 25, 10, 25]  # a 20 x 20 square (x, y pairs)
    data = {
        "images": [{"id": 1, "file_name": "1.png"}],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "giraffe"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [poly], "area": 400, "bbox": [10, 5, 20, 20]},
            {"id": 2, "image_id": 1, "category_id": 2, "segmentation": {"counts": []}, "iscrowd": 1, "area": 400,
             "bbox": [0, 0, 5, 5]},
            {"id": 3, "image_id": 1, "category_id": 2, "segmentation": [poly], "area": 400, "bbox": [10, 5, 20, 20]},
        ],
    }
    (tmp_path / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    source = CocoSource(tmp_path, "val2017", min_area=100)
    assert len(source.items) == 1
    cut = source.draw(np.random.default_rng(0))
    assert cut.alpha.shape == (21, 21)  # cv2 fills the closed polygon including its far edges
    np.testing.assert_array_equal(cut.rgb, image[5:26, 10:31])
    with pytest.raises(UserError, match="COCO instance annotations not found"):
        CocoSource(tmp_path, "train2017")


def test_paste_config_errors() -> None:
    with pytest.raises(UserError, match=r"pasting probability must be in \[0, 1\], got 1.5"):
        PasteConfig(probability=1.5)
    with pytest.raises(UserError, match="no outlier source given"):
        OutlierPaster([])
    with pytest.raises(UserError, match="bad outlier source 'synth:big'"):
        make_source("synth:big")
