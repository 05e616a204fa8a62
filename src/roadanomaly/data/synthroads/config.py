"""Configuration dataclasses for the SynthRoads scene generator."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

Range = tuple[float, float]
IntRange = tuple[int, int]


@dataclass(frozen=True)
class CameraConfig:
    """Ranges from which each image draws its pinhole camera (fractions of the image size, metres)."""

    horizon: Range = (0.36, 0.48)
    """Horizon row as a fraction of the image height."""
    vanishing_x: Range = (0.36, 0.64)
    """Vanishing point column as a fraction of the image width."""
    focal: Range = (0.85, 1.05)
    """Focal length in pixels as a fraction of the image width."""
    mount_height: Range = (1.3, 1.7)
    curvature_prob: float = 0.45
    curvature_max: float = 0.0012
    """Largest |c| of the lateral road offset ``c * Z**2`` (metres)."""


@dataclass(frozen=True)
class LayoutConfig:
    """Street layout: road, sidewalks, sides of the street (metres)."""

    lanes: IntRange = (2, 4)
    lane_width: Range = (3.0, 3.6)
    sidewalk_width: Range = (1.6, 4.5)
    verge_prob: float = 0.3
    """Probability of a grass (terrain) strip between kerb and sidewalk."""
    verge_width: Range = (0.6, 2.5)
    setback: Range = (0.0, 5.0)
    """Band between sidewalk and buildings: terrain or paving."""
    urban_side_prob: float = 0.72
    """Probability that a side of the street is lined with buildings (else green)."""
    cross_facade_prob: float = 0.35
    """Probability of a building closing the street far ahead."""
    crosswalk_prob: float = 0.25
    max_depth: float = 260.0
    ego_vehicle_prob: float = 0.4


@dataclass(frozen=True)
class PopulationConfig:
    """How many of each kind of object a scene holds."""

    moving_vehicles: IntRange = (0, 6)
    parked_vehicles: IntRange = (0, 7)
    truck_prob: float = 0.14
    bus_prob: float = 0.09
    tram_prob: float = 0.04
    pedestrians: IntRange = (0, 9)
    crossing_pedestrian_prob: float = 0.25
    riders: IntRange = (0, 2)
    motorcycle_share: float = 0.4
    parked_bicycles: IntRange = (0, 3)
    pole_spacing: Range = (9.0, 22.0)
    sign_prob: float = 0.55
    traffic_light_prob: float = 0.25
    overhead_light_prob: float = 0.25
    tree_spacing: Range = (6.0, 14.0)
    street_tree_prob: float = 0.55
    """Probability that a side of the street has a row of trees on the sidewalk."""
    fence_prob: float = 0.35
    wall_prob: float = 0.25
    hedge_prob: float = 0.3
    max_object_depth: float = 90.0


@dataclass(frozen=True)
class LightingConfig:
    """Global photometric variation applied after drawing."""

    brightness: Range = (0.72, 1.2)
    contrast: Range = (0.8, 1.15)
    tint: float = 0.07
    """Largest relative per-channel gain deviation (white balance)."""
    vignette: Range = (0.0, 0.25)
    antialias_sigma: Range = (0.5, 0.8)
    sensor_noise: Range = (1.0, 3.5)
    shadow_prob: float = 0.5
    """Probability of building shadows falling across the road."""
    shadow_strength: Range = (0.5, 0.72)


@dataclass(frozen=True)
class SceneConfig:
    """Everything that defines the distribution of SynthRoads scenes."""

    height: int = 256
    width: int = 512
    camera: CameraConfig = field(default_factory=CameraConfig)
    layout: LayoutConfig = field(default_factory=LayoutConfig)
    population: PopulationConfig = field(default_factory=PopulationConfig)
    lighting: LightingConfig = field(default_factory=LightingConfig)

    @property
    def size(self) -> tuple[int, int]:
        return (self.height, self.width)

    def with_size(self, size: tuple[int, int] | None) -> SceneConfig:
        """A copy rendering at ``size=(H, W)`` (unchanged when ``size`` is None)."""
        if size is None:
            return self
        height, width = (int(v) for v in size)
        if height < 16 or width < 16:
            raise ValueError(f"SynthRoads images must be at least 16x16, got {size}")
        return replace(self, height=height, width=width)


def quiet_road_config(base: SceneConfig | None = None) -> SceneConfig:
    """Scenes with few vehicles on the road, as in obstacle benchmarks."""
    base = base or SceneConfig()
    population = replace(base.population, moving_vehicles=(0, 2), riders=(0, 1), crossing_pedestrian_prob=0.0)
    return replace(base, population=population)
