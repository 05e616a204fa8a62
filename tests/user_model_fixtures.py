"""Builders for user-model tests: a tiny ONNX graph written by hand (onnx.helper), independent of any exporter."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_conv1x1_onnx(path: Path, weight: np.ndarray, external_data: bool = False) -> Path:
    """An ONNX model ``out = conv1x1(images, weight)`` (no bias) with dynamic batch, height and width.

    ``weight`` is (C_out, C_in). With ``external_data`` the weight lives in ``<name>.data`` beside the model.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    c_out, c_in = weight.shape
    w = numpy_helper.from_array(weight.reshape(c_out, c_in, 1, 1).astype(np.float32), name="w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "w"], ["out"], kernel_shape=[1, 1])],
        "conv1x1",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["B", c_in, "H", "W"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["B", c_out, "H", "W"])],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    if external_data:
        onnx.save_model(
            model, str(path), save_as_external_data=True, location=path.name + ".data", size_threshold=0
        )
    else:
        onnx.save_model(model, str(path))
    return path


ENET_SOURCE = '''
"""A small ENet-like network (Paszke et al. 2016): initial block, bottlenecks (down, dilated, asymmetric), upsampling
with skip connections."""
import torch
from torch import nn
import torch.nn.functional as F


class Initial(nn.Module):
    def __init__(self, out_channels):
        super().__init__()
        self.conv = nn.Conv2d(3, out_channels - 3, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.PReLU(out_channels)

    def forward(self, x):
        return self.act(self.bn(torch.cat([self.conv(x), F.max_pool2d(x, 2)], dim=1)))


class Bottleneck(nn.Module):
    """1x1 projection, 3x3 (dilated or asymmetric) conv, 1x1 expansion, residual; optionally downsampling."""

    def __init__(self, channels, out_channels=None, dilation=1, asymmetric=False, down=False):
        super().__init__()
        out_channels = out_channels or channels
        mid = max(channels // 4, 2)
        self.down = down
        self.extra = out_channels - channels
        self.project = nn.Sequential(
            nn.Conv2d(channels, mid, 2 if down else 1, stride=2 if down else 1, bias=False),
            nn.BatchNorm2d(mid), nn.PReLU(mid),
        )
        if asymmetric:
            conv = nn.Sequential(
                nn.Conv2d(mid, mid, (5, 1), padding=(2, 0)), nn.Conv2d(mid, mid, (1, 5), padding=(0, 2))
            )
        else:
            conv = nn.Conv2d(mid, mid, 3, padding=dilation, dilation=dilation)
        self.conv = nn.Sequential(conv, nn.BatchNorm2d(mid), nn.PReLU(mid))
        self.expand = nn.Sequential(nn.Conv2d(mid, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
        self.drop = nn.Dropout2d(0.1)
        self.act = nn.PReLU(out_channels)

    def forward(self, x):
        main = F.max_pool2d(x, 2) if self.down else x
        if self.extra:
            main = F.pad(main, (0, 0, 0, 0, 0, self.extra))
        y = self.drop(self.expand(self.conv(self.project(x))))
        return self.act(main + y)


class Upsampling(nn.Module):
    def __init__(self, channels, out_channels):
        super().__init__()
        self.main = nn.Sequential(nn.Conv2d(channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
        mid = max(channels // 4, 2)
        self.side = nn.Sequential(
            nn.Conv2d(channels, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
            nn.ConvTranspose2d(mid, mid, 2, stride=2), nn.BatchNorm2d(mid), nn.ReLU(),
            nn.Conv2d(mid, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels),
        )

    def forward(self, x):
        main = F.interpolate(self.main(x), scale_factor=2.0, mode="nearest")
        return F.relu(main + self.side(x))


class ENet(nn.Module):
    """Input (B, 3, H, W) with H, W divisible by 8; logits (B, num_classes, H, W), or at H/2 x W/2 with half_res."""

    def __init__(self, num_classes=5, width=16, half_res=False):
        super().__init__()
        self.initial = Initial(width)
        self.down1 = Bottleneck(width, 2 * width, down=True)
        self.stage1 = Bottleneck(2 * width, asymmetric=True)
        self.down2 = Bottleneck(2 * width, 4 * width, down=True)
        self.stage2 = Bottleneck(4 * width, dilation=2)
        self.up1 = Upsampling(4 * width, 2 * width)
        self.up2 = Upsampling(2 * width, width)
        self.half_res = half_res
        if half_res:
            self.classifier = nn.Conv2d(width, num_classes, 1)
        else:
            self.classifier = nn.ConvTranspose2d(width, num_classes, 2, stride=2)

    def forward(self, x):
        half = self.initial(x)
        quarter = self.stage1(self.down1(half))
        x = self.stage2(self.down2(quarter))
        x = self.up2(self.up1(x) + quarter) + half  # skips: sizes must be divisible by 8
        return self.classifier(x)
'''


def write_enet_file(folder: Path, name: str = "enet.py") -> Path:
    """Write the ENet-like model's source to ``folder/name``, as a user would bring it."""
    path = folder / name
    path.write_text(ENET_SOURCE)
    return path


def load_enet_class(path: Path):
    """The ``ENet`` class from a written file, imported independently of roadanomaly's loader."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"enet_fixture_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ENet


def randomise_batchnorm(model, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial running statistics and affine parameters (so eval mode matters)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


def export_all(model, folder: Path, example) -> dict[str, Path]:
    """Save ``model`` as TorchScript (trace), torch.export (dynamic batch and sizes divisible by 8) and ONNX
    (dynamo exporter, weights in an external data file beside it). Returns {kind: path}."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(model, example), str(folder / "net.pt"))
        dims = {0: torch.export.Dim("batch", max=64), 2: 8 * torch.export.Dim("h8"), 3: 8 * torch.export.Dim("w8")}
        program = torch.export.export(model, (example,), dynamic_shapes=(dims,))
        torch.export.save(program, str(folder / "net.pt2"))
        onnx_program = torch.onnx.export(
            program, (example,), dynamo=True, input_names=["images"], output_names=["out"], verbose=False
        )
        onnx_program.save(str(folder / "net.onnx"), external_data=True)
    return {"torchscript": folder / "net.pt", "exported": folder / "net.pt2", "onnx": folder / "net.onnx"}
