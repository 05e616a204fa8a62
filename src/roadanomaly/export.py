"""ONNX export of ERFNet and EoMT (``torch.onnx.export(..., dynamo=True)``) with dynamic batch, height and width.

Graphs (input and output names are part of the contract with :mod:`roadanomaly.inference.backends`):

- ERFNet: ``images`` (B, 3, H, W) float RGB in [0, 1], H and W multiples of 8 -> ``logits`` (B, C, H, W).
- EoMT: ``images`` (B, 3, H, W) float RGB in 0..255 (crops), H and W multiples of the patch -> ``mask_logits``
  (B, Q, H/4, W/4), ``class_logits`` (B, Q, C + 1) and ``queries`` (B, Q, D) of the final prediction. No masked
  attention and no intermediate prediction is in the graph: only annealed models (``attn_mask_probs`` all 0)
  export, since their inference needs the final prediction only.

The file carries what a backend needs to rebuild the model's description, in the ONNX metadata:
``roadanomaly.kind`` (``erfnet`` / ``eomt``), ``roadanomaly.num_classes`` and, for EoMT, ``roadanomaly.config``
(the :class:`~roadanomaly.models.eomt.EoMTConfig` as JSON).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from roadanomaly.errors import UserError
from roadanomaly.models.eomt import EoMT
from roadanomaly.models.erfnet import ERFNet

FORMATS: tuple[str, ...] = ("onnx",)
ERFNET_OUTPUTS: tuple[str, ...] = ("logits",)
EOMT_OUTPUTS: tuple[str, ...] = ("mask_logits", "class_logits", "queries")
INPUT_NAME = "images"
META_KIND, META_CLASSES, META_CONFIG = "roadanomaly.kind", "roadanomaly.num_classes", "roadanomaly.config"
EXTERNAL_DATA_BYTES = 1 << 30
"""Weights larger than this go to an external-data file beside the model (ONNX files stop at 2 GiB)."""


class EoMTFinalPrediction(nn.Module):
    """EoMT without masked attention: crops -> (mask logits, class logits, queries) of the final prediction."""

    def __init__(self, model: EoMT) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        m = self.model
        x = (x - m.pixel_mean) / m.pixel_std
        x, grid = m.encoder.embed(x)
        first = len(m.encoder.blocks) - m.num_blocks
        for i, block in enumerate(m.encoder.blocks):
            if i == first:
                x = torch.cat((m.q.weight[None].expand(x.shape[0], -1, -1), x), dim=1)
            x = block(x)
        return m._predict(m.encoder.norm(x), grid)


class ERFNetLogits(nn.Module):
    """ERFNet's full-resolution logits (the ``only_encode`` switch is not part of the graph)."""

    def __init__(self, model: ERFNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


@dataclass(frozen=True)
class ExportedGraph:
    """What to trace: the module, an example input, the multiple H and W must be, the output names, metadata."""

    module: nn.Module
    example: Tensor
    multiple: int
    outputs: tuple[str, ...]
    metadata: dict[str, str]


def _example(multiple: int, grid: tuple[int, int], avoid: tuple[int, int] | None = None) -> Tensor:
    """A batch of 2 inputs of ``grid`` * ``multiple`` pixels (batch 2 and grid != ``avoid``: no size is special)."""
    if avoid is not None and tuple(grid) == tuple(avoid):
        grid = (grid[1] + 1, grid[0])
    return torch.rand(2, 3, grid[0] * multiple, grid[1] * multiple, generator=torch.Generator().manual_seed(0))


def graph_for(model: nn.Module) -> ExportedGraph:
    """The export description of an ERFNet or an (annealed) EoMT in eval mode."""
    if isinstance(model, ERFNet):
        meta = {META_KIND: "erfnet", META_CLASSES: str(model.num_classes)}
        return ExportedGraph(ERFNetLogits(model).eval(), _example(8, (4, 6)), 8, ERFNET_OUTPUTS, meta)
    if isinstance(model, EoMT):
        if bool((model.attn_mask_probs > 0).any()):
            probs = [round(p, 4) for p in model.attn_mask_probs.tolist()]
            raise UserError(None, f"this EoMT still uses masked attention (attn_mask_probs {probs}); only annealed "
                                  "models (all 0) export")  # fmt: skip
        c = model.config
        meta = {META_KIND: "eomt", META_CLASSES: str(c.num_classes), META_CONFIG: json.dumps(c.to_dict())}
        example = _example(c.patch, (3, 5), avoid=c.grid) * 255
        return ExportedGraph(EoMTFinalPrediction(model).eval(), example, c.patch, EOMT_OUTPUTS, meta)
    raise TypeError(f"cannot export a {type(model).__name__} (ERFNet or EoMT)")


def export_onnx(model: nn.Module, path: str | Path, opset: int | None = None, quiet: bool = True) -> Path:
    """Write ``model`` (ERFNet or EoMT, eval mode) to ``path`` as ONNX with dynamic batch / height / width."""
    path = Path(path)
    graph = graph_for(model.eval())
    dim = torch.export.Dim
    size = {
        0: dim("batch", min=1, max=1024),
        2: graph.multiple * dim("height_blocks", min=2, max=1024),
        3: graph.multiple * dim("width_blocks", min=2, max=1024),
    }
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    path.parent.mkdir(parents=True, exist_ok=True)
    hush = contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext()
    with warnings.catch_warnings(), hush, _quiet_logger("torch.onnx", quiet):
        if quiet:
            warnings.simplefilter("ignore")
        program = torch.onnx.export(
            graph.module,
            (graph.example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=list(graph.outputs),
            dynamic_shapes={"x": size},
            opset_version=opset,
            external_data=weight_bytes > EXTERNAL_DATA_BYTES,
            verbose=False,
        )
    assert program is not None
    for key, value in graph.metadata.items():
        program.model.metadata_props[key] = value
    program.save(str(path), external_data=weight_bytes > EXTERNAL_DATA_BYTES)
    return path


@contextlib.contextmanager
def _quiet_logger(name: str, quiet: bool):
    """Only errors from logger ``name`` for the duration (the exporter logs every skipped torchvision op)."""
    logger = logging.getLogger(name)
    saved = logger.level
    if quiet:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(saved)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The roadanomaly metadata of an exported file ({} for a foreign ONNX file)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # noqa: BLE001 - onnx raises several types for a bad file
        raise UserError(path, f"not a readable ONNX model ({type(error).__name__})") from None
    return {p.key: p.value for p in proto.metadata_props if p.key.startswith("roadanomaly.")}


@dataclass
class ExportCheck:
    """Largest absolute difference per output between onnxruntime and eager PyTorch, and the outputs' scale."""

    max_abs_diff: dict[str, float]
    scale: dict[str, float]
    shape: tuple[int, ...]

    @property
    def worst(self) -> float:
        return max(self.max_abs_diff.values())

    def within(self, tolerance: float) -> bool:
        """Every output within ``tolerance`` in absolute terms."""
        return self.worst <= tolerance


def check_export(model: nn.Module, path: str | Path, x: Tensor, device: str = "cpu") -> ExportCheck:
    """Run the eager model and the ONNX file on ``x`` and compare every output."""
    from roadanomaly.inference.onnx_session import OnnxSession

    graph = graph_for(model.eval())
    with torch.inference_mode():
        expected = graph.module(x)
    expected = (expected,) if isinstance(expected, Tensor) else tuple(expected)
    got = OnnxSession(path, device)(x)
    diffs, scales = {}, {}
    for name, e, g in zip(graph.outputs, expected, got):
        if tuple(e.shape) != tuple(g.shape):
            raise AssertionError(f"{name}: onnxruntime shape {tuple(g.shape)} != eager {tuple(e.shape)}")
        diffs[name] = float((e.float().cpu() - g.float()).abs().max())
        scales[name] = float(e.abs().max())
    return ExportCheck(diffs, scales, tuple(x.shape))
