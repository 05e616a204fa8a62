"""SynthRoads: a procedural road-scene world with Cityscapes classes and out-of-distribution objects."""

from .config import SceneConfig
from .scene import SceneSample, render_scene

__all__ = ["SceneConfig", "SceneSample", "render_scene"]
