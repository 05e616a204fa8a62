"""Train ids of the Cityscapes classes SynthRoads draws, looked up by name in the label table."""

from __future__ import annotations

from ..labels import IGNORE_INDEX, TRAIN_ID_NAMES


def train_id(name: str) -> int:
    """Train id of a Cityscapes class name."""
    return TRAIN_ID_NAMES.index(name)


ROAD = train_id("road")
SIDEWALK = train_id("sidewalk")
BUILDING = train_id("building")
WALL = train_id("wall")
FENCE = train_id("fence")
POLE = train_id("pole")
TRAFFIC_LIGHT = train_id("traffic light")
TRAFFIC_SIGN = train_id("traffic sign")
VEGETATION = train_id("vegetation")
TERRAIN = train_id("terrain")
SKY = train_id("sky")
PERSON = train_id("person")
RIDER = train_id("rider")
CAR = train_id("car")
TRUCK = train_id("truck")
BUS = train_id("bus")
TRAIN = train_id("train")
MOTORCYCLE = train_id("motorcycle")
BICYCLE = train_id("bicycle")
VOID = IGNORE_INDEX
