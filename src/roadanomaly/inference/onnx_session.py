"""A small onnxruntime wrapper: load an ``.onnx`` file once, call it on NCHW arrays, get torch tensors back.

Providers: CUDA when ``device`` is a CUDA device and onnxruntime offers the CUDA provider, else CPU (the chosen
list is in ``providers``). An external-data file saved beside the model (``net.onnx.data``) is found by
onnxruntime itself, relative to the model's folder. onnxruntime is an optional dependency
(``pip install 'roadanomaly[onnx]'``); a missing install is a :class:`UserError` naming the extra.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from roadanomaly.errors import UserError, first_line

_NUMPY_TYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
}


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise UserError(None, "ONNX models need onnxruntime: pip install 'roadanomaly[onnx]'") from None
    return onnxruntime


def onnx_providers(device: str, available: list[str]) -> list[Any]:
    """Execution providers for ``device`` given onnxruntime's ``available`` ones: CUDA first when it applies."""
    device = str(device)
    if device.startswith("cuda") and "CUDAExecutionProvider" in available:
        index = int(device.partition(":")[2] or 0)
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxSession:
    """``OnnxSession(path, device)(x) -> [outputs as torch tensors]`` for an ONNX model file.

    ``x`` is a float NCHW numpy array or torch tensor (any device; it is converted to the model's input type).
    Models with several inputs take one array per input, in ``input_names`` order. Outputs are CPU tensors that
    share memory with onnxruntime's result arrays.
    """

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(self.path, "no such file")
        ort = _import_onnxruntime()
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        providers = onnx_providers(device, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own exception types for a bad file
            raise UserError(self.path, f"not a readable ONNX model ({first_line(error)})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        self.input_names: list[str] = [i.name for i in inputs]
        self.output_names: list[str] = [o.name for o in outputs]
        self.input_shapes: list[list[int | str | None]] = [list(i.shape) for i in inputs]
        """Declared input shapes: ints for fixed dimensions, names (or None) for dynamic ones."""
        self._input_types = [_NUMPY_TYPES.get(i.type) for i in inputs]
        self.providers: list[str] = list(self.session.get_providers())
        self.device = str(device)

    def __call__(self, *arrays: np.ndarray | Tensor) -> list[Tensor]:
        if len(arrays) != len(self.input_names):
            raise ValueError(f"{self.path} takes {len(self.input_names)} input(s), got {len(arrays)}")
        feed = {}
        for name, array, dtype in zip(self.input_names, arrays, self._input_types):
            if isinstance(array, Tensor):
                array = array.detach().cpu().numpy()
            feed[name] = np.ascontiguousarray(array, dtype=dtype or np.float32)
        return [torch.from_numpy(np.asarray(out)) for out in self.session.run(self.output_names, feed)]

    def __repr__(self) -> str:
        return f"OnnxSession({str(self.path)!r}, providers={self.providers})"
