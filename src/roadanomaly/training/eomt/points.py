"""Point sampling for mask losses (Mask2Former / PointRend style).

Coordinates are (x, y) in [0, 1] over the whole map, (0, 0) the top-left corner of the top-left pixel; values are
read bilinearly with ``align_corners=False``, so a point at a pixel's centre reads that pixel exactly and maps of
different resolutions (1/4-scale logits, full-scale targets) are compared at the same image positions. Within half
a pixel of the border the edge pixels are extended (detectron2's ``point_sample`` pads with zeros there instead,
which pulls edge targets below 1 and edge logits towards 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def point_sample(maps: Tensor, coords: Tensor) -> Tensor:
    """Bilinear values of ``maps`` (N, H, W) or (N, C, H, W) at ``coords`` (N, P, 2) -> (N, P) or (N, C, P)."""
    squeeze = maps.dim() == 3
    if squeeze:
        maps = maps[:, None]
    grid = (2.0 * coords - 1.0)[:, :, None, :].to(maps.dtype)
    values = F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=False)[..., 0]
    return values[:, 0] if squeeze else values


def random_points(
    n: int, num_points: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None
) -> Tensor:
    """(n, num_points, 2) coordinates drawn uniformly from [0, 1)^2."""
    return torch.rand(n, num_points, 2, device=device, generator=generator)


@torch.no_grad()
def uncertain_points(
    logits: Tensor,
    num_points: int,
    oversample: float = 3.0,
    importance: float = 0.75,
    generator: torch.Generator | None = None,
) -> Tensor:
    """(N, num_points, 2) points per map of ``logits`` (N, H, W), biased to where the prediction is uncertain.

    ``oversample * num_points`` uniform candidates are read; the ``importance * num_points`` with the highest
    uncertainty -|logit| are kept and the rest of the points are fresh uniform ones.
    """
    if oversample < 1:
        raise ValueError(f"oversample must be >= 1, got {oversample}")
    if not 0 <= importance <= 1:
        raise ValueError(f"importance must be in [0, 1], got {importance}")
    n = logits.shape[0]
    candidates = random_points(n, int(num_points * oversample), logits.device, generator)
    uncertainty = -point_sample(logits.float(), candidates).abs()
    keep = int(importance * num_points)
    top = uncertainty.topk(keep, dim=1).indices
    chosen = candidates.gather(1, top[..., None].expand(-1, -1, 2))
    fresh = random_points(n, num_points - keep, logits.device, generator)
    return torch.cat([chosen, fresh], dim=1)
