"""roadanomaly: per-pixel anomaly segmentation for road scenes."""

__version__ = "0.1.0"
