"""Anomaly families: test objects inserted into SynthRoads scenes, and the outlier-exposure family.

Every sample of family ``F`` with (seed, index) is drawn on the inlier scene
``render_scene(seed, F.name, index, F.scene_config(config))``; inserted families put their objects into
the painter's order of that scene (so nearer things occlude them), pasted families lay shapes on top.
The anomaly mask is 1 exactly where the image differs from that clean scene.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .anomaly_shapes import LARGE_KINDS, SMALL_KINDS
from .camera import Camera
from .canvas import ANOMALY_LABEL, Shape, ensure_changed, silhouette
from .classes import ROAD, VOID
from .config import SceneConfig, quiet_road_config
from .outliers import paste_outliers
from .scene import Item, ScenePlan, distance, render_plan, scene_plan
from .seeding import image_generators
from .street import SIDEWALK_HEIGHT

ShapeMaker = Callable[[np.random.Generator, Camera, float, float, float], Shape]


@dataclass(frozen=True)
class AnomalySample:
    """Image (H, W, 3) uint8, train ids (H, W) uint8 with anomaly pixels void (255), anomaly mask (H, W) uint8.

    Mask values: 0 in-distribution, 1 anomaly, 255 void (not evaluated).
    """

    image: np.ndarray
    labels: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class Placement:
    """Where objects of an inserted family go: depth range (metres) and lateral slack beyond the kerbs."""

    depth: tuple[float, float]
    beyond_kerb: float
    count: tuple[int, int]
    on_road_only: bool
    """Every object pixel must lie on road pixels of the clean scene (obstacle benchmarks)."""
    min_pixels: int


@dataclass(frozen=True)
class AnomalyFamily:
    """A named kind of anomaly data set."""

    name: str
    description: str
    image_ext: str
    void_off_road: bool
    """Anomaly mask is 255 on every non-anomaly pixel that is not road."""
    quiet_road: bool
    """Use scenes with little traffic on the road."""
    kinds: tuple[ShapeMaker, ...] = ()
    placement: Placement | None = None
    """None for pasted (outlier) families."""

    def scene_config(self, config: SceneConfig | None = None) -> SceneConfig:
        """Inlier scene distribution the family's samples are drawn on."""
        config = config or SceneConfig()
        return quiet_road_config(config) if self.quiet_road else config


FAMILIES: dict[str, AnomalyFamily] = {
    f.name: f
    for f in (
        AnomalyFamily(
            name="SynthAnomaly",
            description="large animal-like creatures and debris piles on or beside the road",
            image_ext="png",
            void_off_road=False,
            quiet_road=False,
            kinds=LARGE_KINDS,
            placement=Placement(depth=(1.1, 32.0), beyond_kerb=1.5, count=(1, 2), on_road_only=False, min_pixels=250),
        ),
        AnomalyFamily(
            name="SynthObstacle",
            description="small objects lying on the road: boxes, tyres, rocks, odd blobs, cones; off-road is void",
            image_ext="webp",
            void_off_road=True,
            quiet_road=True,
            kinds=SMALL_KINDS,
            placement=Placement(depth=(1.05, 35.0), beyond_kerb=-0.3, count=(1, 3), on_road_only=True, min_pixels=12),
        ),
        AnomalyFamily(
            name="SynthOutlier",
            description="outlier-exposure shapes (polygons, stars, checkerboards, stripes, noise patches)",
            image_ext="png",
            void_off_road=False,
            quiet_road=False,
        ),
    )
}

TEST_FAMILIES = ("SynthAnomaly", "SynthObstacle")
OUTLIER_FAMILY = "SynthOutlier"


def get_family(name: str) -> AnomalyFamily:
    """Look a family up by name (case-insensitive; 'anomaly', 'obstacle', 'outlier' also work)."""
    for key, family in FAMILIES.items():
        if name.lower() in (key.lower(), key.lower().removeprefix("synth")):
            return family
    raise KeyError(f"unknown anomaly family {name!r}; known: {sorted(FAMILIES)}")


def _place_one(rng: np.random.Generator, plan: ScenePlan, family: AnomalyFamily, clean: np.ndarray) -> Item | None:
    """One object at a random ground point; None if the placement breaks the family's rules."""
    p, cam, street = family.placement, plan.camera, plan.street
    assert p is not None
    z_lo = cam.nearest_visible_depth * p.depth[0]
    z = float(z_lo * (p.depth[1] / z_lo) ** rng.random()) if p.depth[1] > z_lo else z_lo
    x = float(rng.uniform(street.road_left - p.beyond_kerb, street.road_right + p.beyond_kerb))
    base_y = 0.0 if street.road_left <= x <= street.road_right else SIDEWALK_HEIGHT
    kind = family.kinds[int(rng.integers(len(family.kinds)))]
    shape = kind(rng, cam, x, z, base_y)
    sil = silhouette(shape.ops, cam.height, cam.width)
    area = int(sil.sum())
    if area < p.min_pixels:
        return None
    if p.on_road_only and not (clean[sil] == ROAD).all():
        return None
    return Item(distance(x, z), shape.ops)


def _insert(
    rng: np.random.Generator, plan: ScenePlan, family: AnomalyFamily, clean_labels: np.ndarray, attempts: int = 40
) -> list[Item]:
    p = family.placement
    assert p is not None
    wanted = int(rng.integers(p.count[0], p.count[1] + 1))
    items: list[Item] = []
    for _ in range(attempts):
        if len(items) == wanted:
            break
        item = _place_one(rng, plan, family, clean_labels)
        if item is not None:
            items.append(item)
    return items


def render_anomaly_sample(
    family: str | AnomalyFamily,
    seed: int,
    index: int,
    size: tuple[int, int] | None = None,
    config: SceneConfig | None = None,
    max_tries: int = 6,
) -> AnomalySample:
    """Sample ``index`` of an anomaly family; deterministic per arguments.

    Mask 1 marks exactly the pixels that differ from the clean scene; for ``void_off_road`` families every
    other non-road pixel is 255.
    """
    fam = family if isinstance(family, AnomalyFamily) else get_family(family)
    scene_cfg = fam.scene_config(config).with_size(size)
    plan = scene_plan(seed, fam.name, index, scene_cfg)
    rng = image_generators(seed, fam.name, index)[1]
    clean_image, clean_labels = render_plan(plan)
    if fam.placement is None:
        pasted = paste_outliers(clean_image, clean_labels, rng)
        return AnomalySample(pasted.image, pasted.labels, pasted.mask)
    for _ in range(max_tries):
        items = _insert(rng, plan, fam, clean_labels)
        image, labels = render_plan(plan, extra=items)
        hit = labels == ANOMALY_LABEL
        if int(hit.sum()) >= fam.placement.min_pixels:
            break
    else:
        warnings.warn(
            f"{fam.name} sample {index} (seed {seed}): anomaly smaller than {fam.placement.min_pixels} px", stacklevel=2
        )
    image = np.where(hit[..., None], image, clean_image)
    ensure_changed(image, clean_image, hit)
    out_labels = clean_labels.copy()
    out_labels[hit] = VOID
    mask = hit.astype(np.uint8)
    if fam.void_off_road:
        mask[(clean_labels != ROAD) & ~hit] = VOID
    return AnomalySample(image, out_labels, mask)


def family_names(kind: str = "all") -> Sequence[str]:
    """Names of the test families ('test'), the outlier family ('outlier') or all."""
    if kind == "test":
        return TEST_FAMILIES
    if kind == "outlier":
        return (OUTLIER_FAMILY,)
    return tuple(FAMILIES)
