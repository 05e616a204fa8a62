"""ERFNet (Romera et al., 2017): a real-time encoder-decoder built from factorised 1D convolutions.

Attribute names follow the published implementation, so its checkpoints load key for key. The input is RGB scaled
to [0, 1] without mean/std normalisation, as the public Cityscapes checkpoint was trained.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DownsamplerBlock(nn.Module):
    """Halve the resolution: a strided 3x3 conv and a 2x2 max-pool, concatenated along channels."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels - in_channels, 3, stride=2, padding=1, bias=True)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-3)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(torch.cat([self.conv(x), self.pool(x)], dim=1)))


class NonBottleneck1d(nn.Module):
    """Residual block of two factorised (3x1 then 1x3) conv pairs; the second pair is dilated."""

    def __init__(self, channels: int, dropout: float, dilation: int) -> None:
        super().__init__()
        d = dilation
        self.conv3x1_1 = nn.Conv2d(channels, channels, (3, 1), padding=(1, 0), bias=True)
        self.conv1x3_1 = nn.Conv2d(channels, channels, (1, 3), padding=(0, 1), bias=True)
        self.bn1 = nn.BatchNorm2d(channels, eps=1e-3)
        self.conv3x1_2 = nn.Conv2d(channels, channels, (3, 1), padding=(d, 0), dilation=(d, 1), bias=True)
        self.conv1x3_2 = nn.Conv2d(channels, channels, (1, 3), padding=(0, d), dilation=(1, d), bias=True)
        self.bn2 = nn.BatchNorm2d(channels, eps=1e-3)
        self.dropout = nn.Dropout2d(dropout)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.conv3x1_1(x))
        y = F.relu(self.bn1(self.conv1x3_1(y)))
        y = F.relu(self.conv3x1_2(y))
        y = self.bn2(self.conv1x3_2(y))
        if self.dropout.p != 0:
            y = self.dropout(y)
        return F.relu(y + x)


class Encoder(nn.Module):
    """Down to 1/8 resolution; ``output_conv`` gives 1/8-scale logits for the encoder-only training stage."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.initial_block = DownsamplerBlock(3, 16)
        layers: list[nn.Module] = [DownsamplerBlock(16, 64)]
        layers += [NonBottleneck1d(64, 0.03, 1) for _ in range(5)]
        layers.append(DownsamplerBlock(64, 128))
        for _ in range(2):
            layers += [NonBottleneck1d(128, 0.3, d) for d in (2, 4, 8, 16)]
        self.layers = nn.ModuleList(layers)
        self.output_conv = nn.Conv2d(128, num_classes, 1, bias=True)

    def forward(self, x: Tensor, predict: bool = False) -> Tensor:
        x = self.initial_block(x)
        for layer in self.layers:
            x = layer(x)
        return self.output_conv(x) if predict else x


class UpsamplerBlock(nn.Module):
    """Double the resolution with a 3x3 transposed conv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1)
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-3)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


class Decoder(nn.Module):
    """Two upsampler stages and a final 2x2 transposed conv back to full resolution."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [
                UpsamplerBlock(128, 64),
                NonBottleneck1d(64, 0.0, 1),
                NonBottleneck1d(64, 0.0, 1),
                UpsamplerBlock(64, 16),
                NonBottleneck1d(16, 0.0, 1),
                NonBottleneck1d(16, 0.0, 1),
            ]
        )
        self.output_conv = nn.ConvTranspose2d(16, num_classes, 2, stride=2, padding=0, output_padding=0)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        # On CPU the NCHW transposed convolution unfolds through a buffer as large as its output (+170 MB at
        # 1024x2048) and is 3x slower than the channels-last one, which gives the same numbers; the logits are
        # returned in the usual contiguous layout.
        return self.output_conv(x.contiguous(memory_format=torch.channels_last)).contiguous()


class ERFNet(nn.Module):
    """ERFNet. ``num_classes`` 20 (19 Cityscapes train ids + void, as the public checkpoint) or 19.

    Input: (B, 3, H, W) RGB in [0, 1] with H, W divisible by 8. Output: (B, num_classes, H, W) logits, or the
    encoder's 1/8-scale logits with ``only_encode=True``.
    """

    def __init__(self, num_classes: int = 20) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.encoder = Encoder(num_classes)
        self.decoder = Decoder(num_classes)

    @property
    def void_channel(self) -> int | None:
        """The void channel of the 20-class layout (train ids 0..18, then void), else None."""
        return 19 if self.num_classes == 20 else None

    def forward(self, x: Tensor, only_encode: bool = False) -> Tensor:
        if only_encode:
            return self.encoder(x, predict=True)
        return self.decoder(self.encoder(x))
