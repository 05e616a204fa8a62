"""A fast inference copy of ERFNet: batch norms folded into the convolutions before them, channels-last memory.

In eval mode a batch norm is the per-channel affine map ``y = s * x + t`` with ``s = gamma / sqrt(var + eps)`` and
``t = beta - s * mean``; after a convolution it folds into it (``W' = s W``, ``b' = s b + t``, scaling the output
channels: dim 0 of a ``Conv2d`` weight, dim 1 of a ``ConvTranspose2d`` one). A downsampler's batch norm also covers
its max-pooled channels, which have no convolution: they keep the affine map. Dropout is gone (eval). The result
computes the same function as the eval-mode model up to float rounding, for inference only.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from roadanomaly.models.erfnet import DownsamplerBlock, ERFNet, NonBottleneck1d, UpsamplerBlock


def bn_affine(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """The eval-mode batch norm as (scale, shift) per channel."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - scale * bn.running_mean


def fold_bn(conv: nn.Conv2d | nn.ConvTranspose2d, scale: Tensor, shift: Tensor) -> nn.Module:
    """A copy of ``conv`` followed by the per-output-channel affine (scale, shift), as one convolution."""
    fused = copy.deepcopy(conv)
    out_dim = 1 if isinstance(conv, nn.ConvTranspose2d) else 0
    if isinstance(conv, nn.ConvTranspose2d) and conv.groups != 1:
        raise ValueError("folding into a grouped transposed convolution is not supported")
    shape = [1] * conv.weight.dim()
    shape[out_dim] = -1
    bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.reshape(shape))
        fused.bias = nn.Parameter(bias * scale + shift)
    return fused


class FusedDownsampler(nn.Module):
    def __init__(self, block: DownsamplerBlock) -> None:
        super().__init__()
        scale, shift = bn_affine(block.bn)
        n = block.conv.out_channels
        self.conv = fold_bn(block.conv, scale[:n], shift[:n])
        self.pool = block.pool
        self.register_buffer("pool_scale", scale[n:].detach().reshape(1, -1, 1, 1).clone())
        self.register_buffer("pool_shift", shift[n:].detach().reshape(1, -1, 1, 1).clone())

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.addcmul(self.pool_shift, self.pool(x), self.pool_scale)
        return F.relu(torch.cat([self.conv(x), pooled], dim=1), inplace=True)


class FusedNonBottleneck(nn.Module):
    def __init__(self, block: NonBottleneck1d) -> None:
        super().__init__()
        self.conv3x1_1 = copy.deepcopy(block.conv3x1_1)
        self.conv1x3_1 = fold_bn(block.conv1x3_1, *bn_affine(block.bn1))
        self.conv3x1_2 = copy.deepcopy(block.conv3x1_2)
        self.conv1x3_2 = fold_bn(block.conv1x3_2, *bn_affine(block.bn2))

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.conv3x1_1(x), inplace=True)
        y = F.relu(self.conv1x3_1(y), inplace=True)
        y = F.relu(self.conv3x1_2(y), inplace=True)
        y = self.conv1x3_2(y)
        return F.relu(y.add_(x), inplace=True)


class FusedUpsampler(nn.Module):
    def __init__(self, block: UpsamplerBlock) -> None:
        super().__init__()
        self.conv = fold_bn(block.conv, *bn_affine(block.bn))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.conv(x), inplace=True)


def _fuse_block(block: nn.Module) -> nn.Module:
    for kind, fused in ((DownsamplerBlock, FusedDownsampler), (NonBottleneck1d, FusedNonBottleneck),
                        (UpsamplerBlock, FusedUpsampler)):  # fmt: skip
        if isinstance(block, kind):
            return fused(block)
    raise TypeError(f"unexpected ERFNet block {type(block).__name__}")


class FusedERFNet(nn.Module):
    """ERFNet for inference with folded batch norms; ``channels_last`` also converts weights and inputs.

    Same call and attributes as :class:`ERFNet` for inference: ``model(x)`` -> full-resolution logits,
    ``num_classes``, ``void_channel``. Runs in-place activations: use it under ``torch.inference_mode`` or
    ``torch.no_grad``.
    """

    def __init__(self, model: ERFNet, channels_last: bool = True) -> None:
        super().__init__()
        self.num_classes = model.num_classes
        self.void_channel = model.void_channel
        self.channels_last = channels_last
        blocks = [model.encoder.initial_block, *model.encoder.layers, *model.decoder.layers]
        self.blocks = nn.ModuleList(_fuse_block(b) for b in blocks)
        self.output_conv = copy.deepcopy(model.decoder.output_conv)
        self.eval()
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor) -> Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for block in self.blocks:
            x = block(x)
        return self.output_conv(x).contiguous()


@torch.no_grad()
def fuse_erfnet(model: ERFNet, channels_last: bool = True) -> FusedERFNet:
    """A :class:`FusedERFNet` computing ``model``'s eval-mode function (``model`` itself is left unchanged)."""
    return FusedERFNet(model, channels_last)
