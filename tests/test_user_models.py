import numpy as np
import pytest
import torch

from roadanomaly.errors import UserError

pytest.importorskip("onnxruntime")

from roadanomaly.inference.onnx_session import OnnxSession, onnx_providers  # noqa: E402
from user_model_fixtures import write_conv1x1_onnx  # noqa: E402


@pytest.mark.parametrize("external", [False, True])
def test_onnx_session_runs_a_conv_with_any_size_and_external_data(tmp_path, external):
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(4, 3)).astype(np.float32)
    path = write_conv1x1_onnx(tmp_path / "net.onnx", weight, external_data=external)
    assert (tmp_path / "net.onnx.data").is_file() == external
    session = OnnxSession(path, "cpu")
    assert session.input_names == ["images"] and session.output_names == ["out"]
    assert session.input_shapes == [["B", 3, "H", "W"]] and session.providers == ["CPUExecutionProvider"]
    for shape in [(1, 3, 5, 7), (2, 3, 9, 4)]:
        x = rng.random(shape, dtype=np.float32)
        expected = np.einsum("oc,bchw->bohw", weight, x)
        (out,) = session(torch.from_numpy(x).double())  # converted to the model's float32
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(session(x)[0].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_onnx_session_rejects_a_file_that_is_not_onnx(tmp_path):
    path = tmp_path / "net.onnx"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(UserError) as error:
        OnnxSession(path)
    assert str(error.value).startswith(f"{path}: not a readable ONNX model (")
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="no such file"):
        OnnxSession(tmp_path / "missing.onnx")


def test_onnx_session_missing_external_data_is_a_user_error(tmp_path):
    path = write_conv1x1_onnx(tmp_path / "net.onnx", np.eye(3, dtype=np.float32), external_data=True)
    (tmp_path / "net.onnx.data").unlink()
    with pytest.raises(UserError, match=r"not a readable ONNX model"):
        OnnxSession(path)


def test_onnx_providers_prefer_cuda_only_when_asked_and_available():
    both = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_providers("cuda:1", both) == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert onnx_providers("cuda", both)[0] == ("CUDAExecutionProvider", {"device_id": 0})
    assert onnx_providers("cuda", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert onnx_providers("cpu", both) == ["CPUExecutionProvider"]
