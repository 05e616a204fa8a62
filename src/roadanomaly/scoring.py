"""Per-pixel anomaly scores, all computed from one forward pass (a :class:`PixelOutputs`).

Higher score = more anomalous, for every method. Per-pixel classifiers (class logits z over C known classes):

- ``msp``:      1 - max_c softmax(z / T)_c
- ``maxlogit``: -max_c z_c
- ``entropy``:  H(softmax(z / T)) / log C
- ``energy``:   -T * logsumexp(z / T)
- ``void``:     softmax(z / T)[void], over all channels, when the model has a void channel

Mask classifiers (class scores P_c = sum_q softmax(class_q)[c] * sigmoid(mask_q), no-object dropped). Only
methods that rank pixels differently are offered (-max_c P_c would rank exactly like ``msp``):

- ``msp``:          1 - max_c P_c
- ``entropy``:      H(P / sum_c P_c) / log C
- ``rba``:          -sum_c tanh(P_c)                                  (Rejected by All, Nayal et al. 2023)
- ``noobject``:     sum_q sigmoid(mask_q) * softmax(class_q)[no-object]
- ``eam``:          1 - sum_q sigmoid(mask_q) * max_k softmax(class_q)_k, k over the known classes  (EAM)
- ``anomaly``:      sum_q sigmoid(mask_q) * P_q(anomaly)              (EoMT-EXT anomaly head)
- ``anomaly_norm``: the same divided by sum_q sigmoid(mask_q) (of the masks ``anomaly`` was drawn with)
- ``rba_oe``:       -sum_c tanh(P'_c), P' from a class head fine-tuned with RbA's outlier loss

The query maps these read (``no_object``, ``max_class``, ``mask_mass``, ``anomaly``, ``rba_oe``) are made by the
EoMT predictor; a method is available when the maps it needs are declared (see :class:`OutputSpec`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Callable

import torch
from torch import Tensor

from roadanomaly.outputs import LOGITS, MASK, OutputSpec, PixelOutputs


@dataclass(frozen=True)
class ScoringConfig:
    """How logits become scores. ``include_void`` keeps a void channel among the classes for msp/entropy/...."""

    temperature: float = 1.0
    include_void: bool = False


STATS_CHUNK_PIXELS = 1 << 15
"""Pixels per block of the softmax statistics: 2.5x faster than whole 512x1024 maps of 19 classes (2 cores)."""


@dataclass(frozen=True)
class SoftmaxStats:
    """Softmax statistics of logits z over C classes at temperature T, per pixel (B, H, W):
    ``top`` m = max_c z_c, ``total`` S = sum_c exp((z_c - m) / T), ``weighted`` sum_c exp((z_c - m) / T) (z_c - m) / T.

    Every logit method reads them: max_c p_c = 1 / S, log-sum-exp(z / T) = m / T + log S, and the entropy
    H(p) = log S - weighted / S; each needs no other pass over the C channels.
    """

    top: Tensor
    total: Tensor
    weighted: Tensor
    classes: int

    @staticmethod
    def of(logits: Tensor, temperature: float, chunk_pixels: int = STATS_CHUNK_PIXELS) -> SoftmaxStats:
        """The statistics of (B, C, H, W) float ``logits``: one max, one exp and two sums over the channels, done
        over blocks of rows of about ``chunk_pixels`` pixels, whose temporaries stay in the CPU's caches.

        The two (C, rows, W) temporaries are allocated once and reused by every block: fresh ones per block cost
        a page fault per 4 KiB each time the allocator hands their memory back (2.5x slower at 512x1024).
        """
        b, c, h, w = logits.shape
        top, total, weighted = (logits.new_empty(b, h, w) for _ in range(3))
        rows = max(1, min(h, chunk_pixels // max(w, 1)))
        shifted_buffer, weights_buffer = (logits.new_empty(c, rows, w) for _ in range(2))
        for i in range(b):
            for start in range(0, h, rows):
                stop = min(h, start + rows)
                block = logits[i, :, start:stop]
                shifted, weights = shifted_buffer[:, : stop - start], weights_buffer[:, : stop - start]
                block_top = torch.amax(block, dim=0, out=top[i, start:stop])
                torch.sub(block, block_top, out=shifted)
                if temperature != 1.0:
                    shifted.div_(temperature)
                torch.exp(shifted, out=weights)
                torch.sum(weights, dim=0, out=total[i, start:stop])
                torch.sum(weights.mul_(shifted), dim=0, out=weighted[i, start:stop])
        return SoftmaxStats(top, total, weighted, c)


class _Scorer:
    """Computes the requested scores for one batch, sharing intermediate tensors between methods."""

    def __init__(self, outputs: PixelOutputs, config: ScoringConfig) -> None:
        self.outputs = outputs
        self.config = config
        self._cache: dict[str, Tensor] = {}
        self._stats: SoftmaxStats | None = None

    def _cached(self, key: str, make: Callable[[], Tensor]) -> Tensor:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    # per-pixel classifier -------------------------------------------------------------------------------
    def known_logits(self) -> Tensor:
        """The logits of the known classes (a view when the void channel is the first or last one)."""
        logits = self.outputs.logits.float()
        void = self.outputs.void_channel
        if void is None or self.config.include_void:
            return logits
        if void == logits.shape[1] - 1:
            return logits[:, :void]
        if void == 0:
            return logits[:, 1:]
        keep = [c for c in range(logits.shape[1]) if c != void]
        return self._cached("known_logits", lambda: logits[:, keep])

    def softmax_stats(self) -> SoftmaxStats:
        """The known classes' softmax statistics at the configured temperature (one pass, shared by the methods)."""
        if self._stats is None:
            self._stats = SoftmaxStats.of(self.known_logits(), self.config.temperature)
        return self._stats

    def log_total(self) -> Tensor:
        """log S of the softmax statistics (entropy, energy and void all read it: one log for the three)."""
        return self._cached("log_total", lambda: torch.log(self.softmax_stats().total))

    def logit_msp(self) -> Tensor:
        total = self.softmax_stats().total
        return torch.sub(total, 1.0).div_(total)  # 1 - 1 / S

    def logit_maxlogit(self) -> Tensor:
        return -self.softmax_stats().top

    def logit_entropy(self) -> Tensor:
        stats = self.softmax_stats()
        entropy = torch.div(stats.weighted, stats.total).neg_().add_(self.log_total())
        return entropy.div_(math.log(stats.classes))

    def logit_energy(self) -> Tensor:
        stats = self.softmax_stats()
        return torch.add(stats.top, self.log_total(), alpha=self.config.temperature).neg_()

    def logit_void(self) -> Tensor:
        """softmax(z / T) of the void channel over all channels, from the known classes' statistics."""
        stats = self.softmax_stats()
        void = self.outputs.logits[:, self.outputs.void_channel].float()
        relative = (void - stats.top).div_(self.config.temperature)
        if self.config.include_void:  # the void channel is among the known classes: relative <= 0
            return relative.exp_().div_(stats.total)
        return torch.sigmoid(relative.sub_(self.log_total()))

    # mask classifier ------------------------------------------------------------------------------------
    def mask_msp(self) -> Tensor:
        return 1.0 - self.outputs.class_scores.float().max(dim=1).values

    def mask_entropy(self) -> Tensor:
        scores = self.outputs.class_scores.float()
        p = scores / scores.sum(dim=1, keepdim=True).clamp_min(1e-12)
        return torch.special.entr(p).sum(dim=1) / math.log(p.shape[1])

    def mask_rba(self) -> Tensor:
        return -torch.tanh(self.outputs.class_scores.float()).sum(dim=1)

    def query_map(self, name: str) -> Tensor:
        return self.outputs.query_maps[name].float()

    def eam(self) -> Tensor:
        return 1.0 - self.query_map("max_class")

    def anomaly_norm(self) -> Tensor:
        """``anomaly`` over the mass of the masks it was drawn with (the head's own, where it has them)."""
        mass = "anomaly_mass" if "anomaly_mass" in self.outputs.query_maps else "mask_mass"
        return self.query_map("anomaly") / self.query_map(mass).clamp_min(1e-6)

    def rba_oe(self) -> Tensor:
        return -torch.tanh(self.query_map("rba_oe")).sum(dim=1)


@dataclass(frozen=True)
class Method:
    """A scoring method: its name, the outputs it applies to and how it is computed (higher = more anomalous)."""

    name: str
    applies: Callable[[OutputSpec], bool]
    compute: Callable[[_Scorer], Tensor]


def _logits(spec: OutputSpec) -> bool:
    return spec.kind == LOGITS


def _mask(spec: OutputSpec) -> bool:
    return spec.kind == MASK


def _maps(*names: str) -> Callable[[OutputSpec], bool]:
    return lambda spec: spec.kind == MASK and all(n in spec.query_maps for n in names)


METHODS: tuple[Method, ...] = (
    Method("msp", _logits, _Scorer.logit_msp),
    Method("maxlogit", _logits, _Scorer.logit_maxlogit),
    Method("entropy", _logits, _Scorer.logit_entropy),
    Method("energy", _logits, _Scorer.logit_energy),
    Method("void", lambda spec: spec.kind == LOGITS and spec.void_channel is not None, _Scorer.logit_void),
    Method("msp", _mask, _Scorer.mask_msp),
    Method("entropy", _mask, _Scorer.mask_entropy),
    Method("rba", _mask, _Scorer.mask_rba),
    Method("noobject", _maps("no_object"), lambda s: s.query_map("no_object")),
    Method("eam", _maps("max_class"), _Scorer.eam),
    Method("anomaly", _maps("anomaly"), lambda s: s.query_map("anomaly")),
    Method("anomaly_norm", _maps("anomaly", "mask_mass"), _Scorer.anomaly_norm),
    Method("rba_oe", _maps("rba_oe"), _Scorer.rba_oe),
)

ALL_METHOD_NAMES: tuple[str, ...] = tuple(dict.fromkeys(m.name for m in METHODS))
TEMPERATURE_METHODS: frozenset[str] = frozenset({"msp", "entropy", "energy", "void"})
"""Methods of a per-pixel classifier whose ranking depends on the softmax temperature (maxlogit's does not)."""


def uses_temperature(method: str) -> bool:
    """Whether a per-pixel classifier's ``method`` changes with the temperature."""
    return method in TEMPERATURE_METHODS


def _spec_of(outputs: PixelOutputs | OutputSpec) -> OutputSpec:
    return outputs if isinstance(outputs, OutputSpec) else outputs.spec


def available_methods(outputs: PixelOutputs | OutputSpec) -> list[str]:
    """Names of the methods that can be computed from ``outputs`` (or outputs declared by a spec), in order."""
    spec = _spec_of(outputs)
    return list(dict.fromkeys(m.name for m in METHODS if m.applies(spec)))


def check_methods(methods: Sequence[str] | None, spec: OutputSpec) -> list[str]:
    """The requested methods (all available ones when None), after checking each is defined for ``spec``."""
    available = available_methods(spec)
    unknown = [m for m in methods or () if m not in available]
    if unknown:
        raise ValueError(f"method {unknown[0]!r} is not defined for this model (available: {', '.join(available)})")
    return list(dict.fromkeys(methods or available))


def compute_scores(
    outputs: PixelOutputs, methods: list[str] | tuple[str, ...], config: ScoringConfig = ScoringConfig()
) -> dict[str, Tensor]:
    """Return ``{method: (B, H, W) float32 score}`` for each requested method, from one set of outputs."""
    scorer = _Scorer(outputs, config)
    spec = outputs.spec
    scores: dict[str, Tensor] = {}
    for name in methods:
        method = next((m for m in METHODS if m.name == name and m.applies(spec)), None)
        if method is None:
            known = ", ".join(available_methods(outputs))
            raise ValueError(f"method {name!r} is not defined for this model's outputs (available: {known})")
        scores[name] = method.compute(scorer)
    return scores
