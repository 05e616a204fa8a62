"""The street layout: lanes, kerbs, sidewalks and what lines each side of the road (metres)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import LayoutConfig

SIDEWALK_HEIGHT = 0.12
"""Height of the raised sidewalk above the road surface."""


@dataclass(frozen=True)
class Side:
    """One side of the street, measured outward from the kerb."""

    sign: int
    """-1 for the left side, +1 for the right side."""
    kerb: float
    """Distance of the kerb from the camera (positive)."""
    verge: float
    sidewalk: float
    setback: float
    setback_paved: bool
    urban: bool

    def x(self, offset: float) -> float:
        """Lateral coordinate ``offset`` metres outward from the kerb."""
        return self.sign * (self.kerb + offset)

    @property
    def sidewalk_start(self) -> float:
        return self.verge

    @property
    def sidewalk_end(self) -> float:
        return self.verge + self.sidewalk

    @property
    def frontage(self) -> float:
        """Outward offset of the building line from the kerb."""
        return self.verge + self.sidewalk + self.setback


@dataclass(frozen=True)
class Street:
    """Road with ``lanes`` lanes between a left and a right side."""

    lanes: int
    lane_width: float
    left: Side
    right: Side
    oncoming_lanes: int
    """Lanes on the left that carry oncoming traffic."""
    cross_facade_depth: float | None
    crosswalk_depth: float | None

    @property
    def sides(self) -> tuple[Side, Side]:
        return (self.left, self.right)

    @property
    def road_left(self) -> float:
        return -self.left.kerb

    @property
    def road_right(self) -> float:
        return self.right.kerb

    def lane_center(self, lane: int) -> float:
        """Lateral centre of lane ``lane`` counted from the left kerb."""
        return self.road_left + (lane + 0.5) * self.lane_width

    def lane_boundaries(self) -> np.ndarray:
        """Lateral positions of the lines between lanes."""
        return self.road_left + self.lane_width * np.arange(1, self.lanes)

    @classmethod
    def sample(cls, rng: np.random.Generator, config: LayoutConfig) -> Street:
        lanes = int(rng.integers(config.lanes[0], config.lanes[1] + 1))
        lane_width = float(rng.uniform(*config.lane_width))
        width = lanes * lane_width
        ego_lane = int(rng.integers(lanes // 2, lanes)) if lanes > 1 else 0
        ego_x = (ego_lane + float(rng.uniform(0.3, 0.7))) * lane_width
        sides = []
        for sign, kerb in ((-1, ego_x), (1, width - ego_x)):
            verge = float(rng.uniform(*config.verge_width)) if rng.random() < config.verge_prob else 0.0
            sides.append(
                Side(
                    sign=sign,
                    kerb=kerb,
                    verge=verge,
                    sidewalk=float(rng.uniform(*config.sidewalk_width)),
                    setback=float(rng.uniform(*config.setback)),
                    setback_paved=bool(rng.random() < 0.4),
                    urban=bool(rng.random() < config.urban_side_prob),
                )
            )
        oncoming = lanes // 2 if lanes > 1 and rng.random() < 0.8 else 0
        cross = float(rng.uniform(55.0, 160.0)) if rng.random() < config.cross_facade_prob else None
        crosswalk = float(rng.uniform(8.0, 35.0)) if rng.random() < config.crosswalk_prob else None
        return cls(lanes, lane_width, sides[0], sides[1], oncoming, cross, crosswalk)
