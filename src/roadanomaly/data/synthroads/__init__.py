"""SynthRoads: a procedural road-scene world with Cityscapes classes and out-of-distribution objects.

- :func:`render_scene` draws inlier scenes (RGB + train ids) deterministically from (seed, split, index).
- :func:`render_anomaly_sample` draws a sample of an anomaly family ("SynthAnomaly", "SynthObstacle",
  "SynthOutlier") with its anomaly mask (0 inlier, 1 anomaly, 255 void).
- :func:`paste_outliers` pastes outlier-exposure shapes onto any inlier image.
- :func:`write_cityscapes`, :func:`write_anomaly_bundle` and :func:`generate_synthroads` write the
  data in the real Cityscapes and validation-bundle formats.
"""

from .anomalies import FAMILIES, AnomalyFamily, AnomalySample, get_family, render_anomaly_sample
from .config import CameraConfig, LayoutConfig, LightingConfig, PopulationConfig, SceneConfig
from .outliers import OutlierConfig, OutlierSample, paste_outliers
from .scene import SceneSample, render_scene
from .seeding import image_generators
from .writer import (
    SynthRoadsPaths,
    cityscapes_name,
    generate_synthroads,
    train_ids_to_label_ids,
    write_anomaly_bundle,
    write_cityscapes,
)

__all__ = [
    "FAMILIES",
    "AnomalyFamily",
    "AnomalySample",
    "CameraConfig",
    "LayoutConfig",
    "LightingConfig",
    "OutlierConfig",
    "OutlierSample",
    "PopulationConfig",
    "SceneConfig",
    "SceneSample",
    "SynthRoadsPaths",
    "cityscapes_name",
    "generate_synthroads",
    "get_family",
    "image_generators",
    "paste_outliers",
    "render_anomaly_sample",
    "render_scene",
    "train_ids_to_label_ids",
    "write_anomaly_bundle",
    "write_cityscapes",
]
