"""Data: Cityscapes-layout segmentation data, anomaly benchmark bundles and the SynthRoads world."""
