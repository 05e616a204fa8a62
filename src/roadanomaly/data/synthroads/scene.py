"""Inlier scenes: plan a street from a seed, then render it painter-style (far to near).

A :class:`ScenePlan` holds every random decision as compiled drawing ops, so rendering is a pure
function of the plan: rendering it again with extra items (anomalies) changes only the pixels
those items cover.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from .camera import Camera
from .canvas import Op, Shadow, Shape, apply_shadows, draw_ops
from .classes import SKY, VOID
from .config import SceneConfig
from .frontage import (
    Building,
    building_ops,
    building_shadows,
    cross_facade_ops,
    distant_buildings,
    plan_buildings,
    side_barrier_ops,
    skyline_ops,
)
from .furniture import bush_ops, pole_ops, tree_ops
from .ground import ground_ops
from .palette import PALETTE, RGB, pick, scaled
from .people import bicycle_ops, motorcycle_ops, person_ops
from .seeding import image_generators
from .street import SIDEWALK_HEIGHT, Side, Street
from .textures import Photometry, finish
from .vehicles import bus_ops, car_ops, truck_ops

ALONG = np.array([0.0, 1.0])
"""Heading of bikes riding along the road."""


@dataclass(frozen=True)
class Item:
    """Ops drawn together at one depth (distance from the camera) in the painter's order."""

    depth: float
    ops: list[Op]


@dataclass
class ScenePlan:
    """All drawing decisions of one scene."""

    config: SceneConfig
    camera: Camera
    street: Street
    photometry: Photometry
    sky: tuple[RGB, RGB]
    background: list[Op] = field(default_factory=list)
    ground: list[Op] = field(default_factory=list)
    shadows: list[Shadow] = field(default_factory=list)
    frontage: list[Op] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    foreground: list[Op] = field(default_factory=list)


@dataclass(frozen=True)
class SceneSample:
    """A rendered scene: RGB image (H, W, 3) uint8 and train-id labels (H, W) uint8 (255 = void)."""

    image: np.ndarray
    labels: np.ndarray


def distance(x: float, z: float) -> float:
    """Painter's-order key of a thing standing at (x, z)."""
    return float(np.hypot(x, z))


class _LaneOccupancy:
    """Occupied depth intervals per lane, to keep vehicles from overlapping."""

    def __init__(self, lanes: int) -> None:
        self.busy: list[list[tuple[float, float]]] = [[] for _ in range(lanes)]

    def take(self, lane: int, z0: float, z1: float, margin: float = 1.5) -> bool:
        if any(z0 < b + margin and a < z1 + margin for a, b in self.busy[lane]):
            return False
        self.busy[lane].append((z0, z1))
        return True


class _Planner:
    """Fills a :class:`ScenePlan` step by step from one random generator."""

    def __init__(self, rng: np.random.Generator, config: SceneConfig) -> None:
        self.rng = rng
        self.config = config
        self.cam = Camera.sample(rng, config.camera, config.height, config.width)
        self.street = Street.sample(rng, config.layout)
        self.pop = config.population
        self.z_near = self.cam.nearest_visible_depth
        self.plan = ScenePlan(
            config=config,
            camera=self.cam,
            street=self.street,
            photometry=Photometry.sample(rng, config.lighting, config.height, config.width),
            sky=(pick(rng, PALETTE.sky_zenith, 8.0), pick(rng, PALETTE.sky_horizon, 6.0)),
        )

    def add(self, x: float, z: float, shape: Shape) -> None:
        if shape.ops:
            self.plan.items.append(Item(distance(x, z), shape.ops))

    def sidewalk_offset(self, side: Side) -> float:
        lo, hi = side.sidewalk_start + 0.3, side.sidewalk_end - 0.3
        return float(self.rng.uniform(lo, max(lo + 0.05, hi)))

    def depth(self, far: float | None = None) -> float:
        """A depth between the bottom of the image and ``far``, denser nearby."""
        far = far or self.pop.max_object_depth
        lo = self.z_near * 0.9
        return float(lo * (far / lo) ** self.rng.random()) if far > lo else lo

    def background_and_ground(self) -> None:
        self.plan.background = skyline_ops(self.rng, self.cam)
        self.plan.ground = ground_ops(self.rng, self.cam, self.street, self.config.layout.max_depth)

    def frontage(self) -> None:
        rng, street = self.rng, self.street
        z_end = street.cross_facade_depth or float(rng.uniform(80, 220))
        buildings: list[Building] = []
        sun_side = int(rng.choice([-1, 1])) if rng.random() < self.config.lighting.shadow_prob else 0
        for side in street.sides:
            buildings += plan_buildings(rng, side, z_end) if side.urban else distant_buildings(rng, side, z_end)
        shadow_casters = [b for b in buildings if b.row == 1 and b.sign == sun_side]
        ops: list[Op] = []
        if street.cross_facade_depth is not None:
            ops += cross_facade_ops(rng, self.cam, street.cross_facade_depth)
        for b in sorted(buildings, key=lambda b: (b.row, -b.z0)):
            ops += building_ops(rng, self.cam, b)
        if shadow_casters:
            strength = float(rng.uniform(*self.config.lighting.shadow_strength))
            self.plan.shadows += building_shadows(rng, self.cam, shadow_casters, strength)
        for side in street.sides:
            ops += side_barrier_ops(rng, self.cam, side, self.pop, z_end)
        self.plan.frontage = ops

    def greenery(self) -> None:
        rng, pop = self.rng, self.pop
        for side in self.street.sides:
            if rng.random() < pop.street_tree_prob:
                offset = side.verge / 2 if side.verge > 0.6 else side.sidewalk_start + 0.5
                z = float(rng.uniform(1.0, 2.5)) * self.z_near
                while z < pop.max_object_depth:
                    x = side.x(offset)
                    self.add(x, z, tree_ops(rng, self.cam, x, z, SIDEWALK_HEIGHT))
                    z += float(rng.uniform(*pop.tree_spacing))
            if not side.urban or side.setback > 2.0:
                for _ in range(int(rng.integers(2, 9))):
                    x, z = side.x(side.sidewalk_end + float(rng.uniform(1.0, 25.0))), self.depth(120.0)
                    self.add(x, z, tree_ops(rng, self.cam, x, z, SIDEWALK_HEIGHT, float(rng.uniform(0.8, 1.6))))
                for _ in range(int(rng.integers(0, 5))):
                    x, z = side.x(side.sidewalk_end + float(rng.uniform(0.3, 6.0))), self.depth()
                    self.add(x, z, bush_ops(rng, self.cam, x, z, SIDEWALK_HEIGHT))

    def poles(self) -> None:
        rng, pop = self.rng, self.pop
        for side in self.street.sides:
            z = float(rng.uniform(0.8, 3.0)) * self.z_near
            while z < pop.max_object_depth:
                x = side.x(side.sidewalk_start + 0.35)
                shape = pole_ops(
                    rng,
                    self.cam,
                    x,
                    z,
                    SIDEWALK_HEIGHT,
                    -side.sign,
                    pop.sign_prob,
                    pop.traffic_light_prob,
                    pop.overhead_light_prob,
                )
                self.add(x, z, shape)
                z += float(rng.uniform(*pop.pole_spacing))

    def vehicles(self) -> None:
        rng, pop, street, cam = self.rng, self.pop, self.street, self.cam
        lanes = _LaneOccupancy(street.lanes)
        for side, lane in ((street.left, 0), (street.right, street.lanes - 1)):
            if street.lanes < 3 and side.sign < 0 and street.oncoming_lanes:
                continue
            for _ in range(int(rng.integers(pop.parked_vehicles[0], pop.parked_vehicles[1] + 1)) // 2):
                z = self.depth()
                if lanes.take(lane, z, z + 5.0):
                    x = side.x(-1.05)
                    shape, shadow = car_ops(rng, cam, x, z, facing=bool(rng.random() < 0.5))
                    self.add(x, z, shape)
                    self.plan.shadows.append(shadow)
        for _ in range(int(rng.integers(pop.moving_vehicles[0], pop.moving_vehicles[1] + 1))):
            lane = int(rng.integers(street.lanes))
            facing = lane < street.oncoming_lanes
            x = street.lane_center(lane) + float(rng.normal(0.0, 0.2))
            u = rng.random()
            if u < pop.tram_prob:
                kind, length = "tram", 30.0
            elif u < pop.tram_prob + pop.bus_prob:
                kind, length = "bus", 13.0
            elif u < pop.tram_prob + pop.bus_prob + pop.truck_prob:
                kind, length = "truck", 11.5
            else:
                kind, length = "car", 5.5
            z = max(self.depth(), self.z_near + (7.0 if abs(x) < street.lane_width * 0.7 else 1.0))
            if not lanes.take(lane, z, z + length):
                continue
            if kind == "car":
                shape, shadow = car_ops(rng, cam, x, z, facing)
            elif kind == "truck":
                shape, shadow = truck_ops(rng, cam, x, z, facing)
            else:
                shape, shadow = bus_ops(rng, cam, x, z, facing, tram=kind == "tram")
            self.add(x, z, shape)
            self.plan.shadows.append(shadow)
        for _ in range(int(rng.integers(pop.riders[0], pop.riders[1] + 1))):
            lane = int(rng.choice([0, street.lanes - 1]))
            x = street.lane_center(lane) + (-1 if lane == 0 else 1) * float(rng.uniform(0.3, 1.0))
            z = max(self.depth(60.0), self.z_near + 3.0)
            if not lanes.take(lane, z, z + 2.0, margin=0.5):
                continue
            heading = ALONG if rng.random() < 0.7 else np.array([float(rng.choice([-1.0, 1.0])), 0.0])
            if rng.random() < pop.motorcycle_share:
                self.add(x, z, motorcycle_ops(rng, cam, x, z, heading, ridden=True))
            else:
                self.add(x, z, bicycle_ops(rng, cam, x, z, heading, ridden=True))

    def pedestrians(self) -> None:
        rng, pop, street = self.rng, self.pop, self.street
        for _ in range(int(rng.integers(pop.pedestrians[0], pop.pedestrians[1] + 1))):
            side = street.sides[int(rng.integers(2))]
            x, z = side.x(self.sidewalk_offset(side)), self.depth(60.0)
            self.add(x, z, person_ops(rng, self.cam, x, z, SIDEWALK_HEIGHT))
        if rng.random() < pop.crossing_pedestrian_prob:
            z = street.crosswalk_depth or self.depth(40.0)
            for _ in range(int(rng.integers(1, 4))):
                x = float(rng.uniform(street.road_left + 0.5, street.road_right - 0.5))
                zz = z + float(rng.uniform(0.3, 2.5))
                self.add(x, zz, person_ops(rng, self.cam, x, zz, 0.0))
        for _ in range(int(rng.integers(pop.parked_bicycles[0], pop.parked_bicycles[1] + 1))):
            side = street.sides[int(rng.integers(2))]
            x, z = side.x(self.sidewalk_offset(side)), self.depth(40.0)
            heading = ALONG if rng.random() < 0.6 else np.array([float(side.sign), 0.3])
            heading = heading / np.hypot(*heading)
            if rng.random() < 0.25:
                self.add(x, z, motorcycle_ops(rng, self.cam, x, z, heading, ridden=False))
            else:
                self.add(x, z, bicycle_ops(rng, self.cam, x, z, heading, ridden=False, base_y=SIDEWALK_HEIGHT))

    def ego_vehicle(self) -> None:
        rng, cam = self.rng, self.cam
        if rng.random() >= self.config.layout.ego_vehicle_prob:
            return
        shape = Shape()
        h, w = cam.height, cam.width
        edge, peak = float(rng.uniform(0.0, 0.04)) * h, float(rng.uniform(0.05, 0.11)) * h
        xs = np.linspace(-1.0, w + 1.0, 24)
        t = (xs - w / 2) / (w / 2)
        ys = h - (edge + (peak - edge) * (1.0 - t * t))
        paint = pick(rng, PALETTE.ego, 8.0)
        outline = np.stack([xs, ys], axis=-1)
        shape.poly(np.concatenate([outline, [[w + 1.0, h + 1.0], [-1.0, h + 1.0]]]), paint, VOID)
        shape.lines(outline + [0.0, 2.0], scaled(paint, 1.6) if sum(paint) < 300 else scaled(paint, 0.8), VOID, 1)
        self.plan.foreground = shape.ops


def plan_scene(rng: np.random.Generator, config: SceneConfig | None = None) -> ScenePlan:
    """Draw every decision of one scene from ``rng``."""
    planner = _Planner(rng, config or SceneConfig())
    planner.background_and_ground()
    planner.frontage()
    planner.greenery()
    planner.poles()
    planner.vehicles()
    planner.pedestrians()
    planner.ego_vehicle()
    return planner.plan


def sky_gradient(plan: ScenePlan) -> np.ndarray:
    """(H, 1, 3) uint8 column from the zenith colour to the horizon colour."""
    h = plan.config.height
    t = np.clip(np.arange(h, dtype=np.float32) / max(plan.camera.horizon, 1.0), 0.0, 1.0) ** 0.8
    top, bottom = np.asarray(plan.sky[0], np.float32), np.asarray(plan.sky[1], np.float32)
    return (top[None, :] * (1 - t[:, None]) + bottom[None, :] * t[:, None]).astype(np.uint8)[:, None, :]


def render_plan(plan: ScenePlan, extra: Sequence[Item] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Render a plan (plus optional extra items in depth order) to (image, labels)."""
    h, w = plan.config.height, plan.config.width
    base = cv2.resize(sky_gradient(plan), (w, h), interpolation=cv2.INTER_NEAREST)
    labels = np.full((h, w), SKY, np.uint8)
    draw_ops(plan.background, base, labels)
    draw_ops(plan.ground, base, labels)
    base = apply_shadows(base, plan.shadows)
    draw_ops(plan.frontage, base, labels)
    for item in sorted([*plan.items, *extra], key=lambda it: -it.depth):
        draw_ops(item.ops, base, labels)
    draw_ops(plan.foreground, base, labels)
    return finish(base, labels, plan.photometry), labels


def scene_plan(seed: int, split: str, index: int, config: SceneConfig | None = None) -> ScenePlan:
    """The plan of image ``index`` of ``split``; the same whatever else is generated."""
    return plan_scene(image_generators(seed, split, index)[0], config)


def render_scene(
    seed: int, split: str, index: int, config: SceneConfig | None = None, size: tuple[int, int] | None = None
) -> SceneSample:
    """Render inlier image ``index`` of ``split`` (train ids, 255 = void); deterministic per arguments."""
    config = (config or SceneConfig()).with_size(size)
    image, labels = render_plan(scene_plan(seed, split, index, config))
    return SceneSample(image, labels)
