"""One predictor for every per-pixel classifier: a callable ``images -> logits`` wrapped with the shared steps.

:class:`LogitsPredictor` takes uint8 RGB (B, 3, H, W) and, in this order: moves it to the device and scales it to
[0, 1]; subtracts ``mean`` and divides by ``std`` (per RGB channel, when given); resizes to a fixed ``input_size``
(for models exported with one) or zero-pads right and bottom to a multiple of ``pad_to``; calls the model under
``torch.inference_mode``; takes the logits out of what it returned (a tensor; the first element of a tuple or list;
the ``"out"`` entry of a dict); checks they are (B, C, h, w) and finite; resizes them bilinearly to the model's
input size when they differ (models that predict at a lower resolution), crops the padding off and resizes back to
(H, W) when the input was resized. ERFNet, ``python:``, TorchScript, torch.export and ONNX models all go through it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from roadanomaly.errors import UserError, first_line
from roadanomaly.outputs import LOGITS, OutputSpec, PixelOutputs


class NonFiniteOutputError(UserError):
    """The model returned NaN or inf logits: ``count`` values, in the images at ``batch_items`` of the batch.

    The message names the model file; an engine that knows the images' paths can name the image instead.
    """

    def __init__(self, where: str | Path | None, problem: str, batch_items: list[int], count: int) -> None:
        super().__init__(where, problem)
        self.batch_items = batch_items
        self.count = count


def rgb_triple(values: Sequence[float] | None, option: str) -> tuple[float, float, float] | None:
    """``values`` as an (R, G, B) triple of floats; a UserError naming ``option`` when there are not 3 numbers."""
    if values is None:
        return None
    values = list(values)
    if len(values) != 3:
        raise UserError(None, f"{option} takes 3 values (R, G, B on RGB scaled to [0, 1]), got {len(values)}")
    try:
        return tuple(float(v) for v in values)  # type: ignore[return-value]
    except (TypeError, ValueError):
        raise UserError(None, f"{option} takes 3 numbers, got {values}") from None


def check_device(device: str) -> str:
    """``device`` as a string; a UserError when it asks for CUDA and there is none."""
    device = str(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(None, f"device {device!r} requested but CUDA is not available")
    return device


def select_logits(output: Any) -> Any:
    """The logits in a model's return value: itself, a tuple/list's first element, or a dict's ``"out"``."""
    if isinstance(output, (tuple, list)) and output:
        return output[0]
    if isinstance(output, Mapping) and "out" in output:
        return output["out"]
    return output


def _describe(output: Any) -> str:
    if isinstance(output, Tensor):
        return f"a tensor of shape {tuple(output.shape)}"
    if isinstance(output, Mapping):
        return f"a dict without an 'out' entry (keys: {', '.join(map(str, list(output)[:5]))})"
    return f"a {type(output).__name__}"


class LogitsPredictor:
    """``predictor(images uint8 (B, 3, H, W)) -> PixelOutputs(logits=(B, C, H, W), void_channel=...)``.

    ``forward`` is any callable on a float32 (B, 3, h, w) tensor on ``device``. ``source`` (the model file) is
    named in errors. With ``user_model`` an exception inside ``forward`` becomes a one-line UserError.
    """

    output_kind = LOGITS

    def __init__(
        self,
        forward: Callable[[Tensor], Any],
        device: str = "cpu",
        *,
        void_channel: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        pad_to: int | None = None,
        input_size: tuple[int, int] | None = None,
        source: str | Path | None = None,
        user_model: bool = False,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.forward = forward
        self.device = check_device(device)
        self.void_channel = None if void_channel is None else int(void_channel)
        if self.void_channel is not None and self.void_channel < 0:
            raise UserError(None, f"--void-channel must be a channel index >= 0, got {self.void_channel}")
        self.mean = rgb_triple(mean, "--mean")
        self.std = rgb_triple(std, "--std")
        if self.std is not None and min(self.std) <= 0:
            raise UserError(None, f"--std values must be > 0, got {list(self.std)}")
        self.pad_to = 1 if pad_to is None else int(pad_to)
        if self.pad_to < 1:
            raise UserError(None, f"--pad-to must be >= 1, got {self.pad_to}")
        self.input_size = None if input_size is None else (int(input_size[0]), int(input_size[1]))
        self.source = None if source is None else str(source)
        self.user_model = user_model
        self.info: dict[str, Any] = dict(info or {})

    @property
    def spec(self) -> OutputSpec:
        """Declared outputs, known before any forward pass: class logits, with the void channel if one was given."""
        return OutputSpec(LOGITS, self.void_channel)

    def _normalise(self, x: Tensor) -> Tensor:
        if self.mean is not None:
            x = x.sub_(torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1))
        if self.std is not None:
            x = x.div_(torch.tensor(self.std, device=x.device).view(1, 3, 1, 1))
        return x

    def _run(self, x: Tensor) -> Any:
        if not self.user_model:
            return self.forward(x)
        try:
            return self.forward(x)
        except (torch.cuda.OutOfMemoryError, MemoryError, KeyboardInterrupt):
            raise
        except UserError:
            raise
        except Exception as error:  # noqa: BLE001 - the user's model may raise anything
            guess = self.pad_to == 1 and not self.input_size
            hint = " (if it needs sizes divisible by N, pass --pad-to N)" if guess else ""
            problem = f"model failed on input {tuple(x.shape)}: {type(error).__name__}: {first_line(error)}{hint}"
            raise UserError(self.source, problem) from None

    def _logits(self, output: Any, batch: int) -> Tensor:
        logits = select_logits(output)
        if not isinstance(logits, Tensor) or logits.dim() != 4 or logits.shape[0] != batch:
            raise UserError(
                self.source, f"model output is {_describe(logits)}, expected (B, C, h, w) logits with B = {batch}"
            )
        if not logits.is_floating_point():
            raise UserError(self.source, f"model output has dtype {logits.dtype}, expected floating-point logits")
        channels = int(logits.shape[1])
        if channels < 2:
            raise UserError(self.source, f"model output has {channels} channel, expected C >= 2 class logits")
        if self.void_channel is not None and self.void_channel >= channels:
            problem = f"void channel {self.void_channel} does not exist: the model gives {channels} channels"
            raise UserError(self.source, problem)
        self._check_finite(logits)
        return logits

    def _check_finite(self, logits: Tensor) -> None:
        # NaN and inf survive a sum, so one cheap reduction clears the usual case; the element-wise test (which
        # also clears a sum that merely overflowed) runs only when it fails
        if bool(torch.isfinite(logits.sum(dim=(1, 2, 3), dtype=torch.float32)).all()):
            return
        finite = torch.isfinite(logits)
        bad = [i for i, ok in enumerate(finite.flatten(1).all(dim=1).tolist()) if not ok]
        if bad:
            count = int((~finite).sum())
            raise NonFiniteOutputError(
                self.source, f"model output holds {count} NaN or inf value(s) (batch item(s) {bad})", bad, count
            )

    @torch.inference_mode()
    def __call__(self, images: Tensor) -> PixelOutputs:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        x = self._normalise(images.to(self.device, non_blocking=True).float().div_(255.0))
        h, w = int(x.shape[-2]), int(x.shape[-1])
        if self.input_size is not None and self.input_size != (h, w):
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False, antialias=True)
        pad_h, pad_w = (-x.shape[-2]) % self.pad_to, (-x.shape[-1]) % self.pad_to
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        logits = self._logits(self._run(x), batch=int(x.shape[0])).to(self.device)
        model_size = (int(x.shape[-2]), int(x.shape[-1]))
        if tuple(logits.shape[-2:]) != model_size:
            logits = F.interpolate(logits.float(), size=model_size, mode="bilinear", align_corners=False)
        logits = logits[..., : model_size[0] - pad_h, : model_size[1] - pad_w]
        outputs = PixelOutputs(logits=logits, void_channel=self.void_channel)
        return outputs.resized((h, w))
