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
