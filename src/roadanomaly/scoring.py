"""Per-pixel anomaly scores, all computed from one forward pass (a :class:`PixelOutputs`).

Higher score = more anomalous, for every method. Per-pixel classifiers (class logits z over C known classes):

- ``msp``:      1 - max_c softmax(z / T)_c
- ``maxlogit``: -max_c z_c
- ``entropy``:  H(softmax(z / T)) / log C
- ``energy``:   -T * logsumexp(z / T)
- ``void``:     softmax(z / T)[void], over all channels, when the model has a void channel

Mask classifiers (class scores P_c = sum_q softmax(class_q)[c] * sigmoid(mask_q), no-object dropped):

- ``msp``:      1 - max_c P_c
- ``maxlogit``: -max_c P_c
- ``entropy``:  H(P / sum_c P_c) / log C
- ``rba``:      -sum_c tanh(P_c)                      (Rejected by All, Nayal et al. 2023)
- ``noobject``: sum_q sigmoid(mask_q) * softmax(class_q)[no-object]
- ``anomaly``:  sum_q sigmoid(mask_q) * P_q(anomaly)  (EoMT-EXT anomaly head)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from roadanomaly.outputs import PixelOutputs


@dataclass(frozen=True)
class ScoringConfig:
    """How logits become scores. ``include_void`` keeps a void channel among the classes for msp/entropy/...."""

    temperature: float = 1.0
    include_void: bool = False


class _Scorer:
    """Computes the requested scores for one batch, sharing intermediate tensors between methods."""

    def __init__(self, outputs: PixelOutputs, config: ScoringConfig) -> None:
        self.outputs = outputs
        self.config = config
        self._cache: dict[str, Tensor] = {}

    def _cached(self, key: str, make: Callable[[], Tensor]) -> Tensor:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    # per-pixel classifier -------------------------------------------------------------------------------
    def known_logits(self) -> Tensor:
        logits = self.outputs.logits.float()
        void = self.outputs.void_channel
        if void is None or self.config.include_void:
            return logits
        keep = [c for c in range(logits.shape[1]) if c != void]
        return self._cached("known_logits", lambda: logits[:, keep])

    def log_probs(self) -> Tensor:
        return self._cached(
            "log_probs", lambda: torch.log_softmax(self.known_logits() / self.config.temperature, dim=1)
        )

    def logit_msp(self) -> Tensor:
        return 1.0 - self.log_probs().max(dim=1).values.exp()

    def logit_maxlogit(self) -> Tensor:
        return -self.known_logits().max(dim=1).values

    def logit_entropy(self) -> Tensor:
        log_p = self.log_probs()
        return -(log_p.exp() * log_p).sum(dim=1) / math.log(log_p.shape[1])

    def logit_energy(self) -> Tensor:
        t = self.config.temperature
        return -t * torch.logsumexp(self.known_logits() / t, dim=1)

    def logit_void(self) -> Tensor:
        logits = self.outputs.logits.float()
        return torch.softmax(logits / self.config.temperature, dim=1)[:, self.outputs.void_channel]

    # mask classifier ------------------------------------------------------------------------------------
    def mask_msp(self) -> Tensor:
        return 1.0 - self.outputs.class_scores.float().max(dim=1).values

    def mask_maxlogit(self) -> Tensor:
        return -self.outputs.class_scores.float().max(dim=1).values

    def mask_entropy(self) -> Tensor:
        scores = self.outputs.class_scores.float()
        p = scores / scores.sum(dim=1, keepdim=True).clamp_min(1e-12)
        return torch.special.entr(p).sum(dim=1) / math.log(p.shape[1])

    def mask_rba(self) -> Tensor:
        return -torch.tanh(self.outputs.class_scores.float()).sum(dim=1)

    def query_map(self, name: str) -> Tensor:
        return self.outputs.query_maps[name].float()


@dataclass(frozen=True)
class Method:
    name: str
    applies: Callable[[PixelOutputs], bool]
    compute: Callable[[_Scorer], Tensor]


def _has_logits(o: PixelOutputs) -> bool:
    return o.logits is not None


def _has_class_scores(o: PixelOutputs) -> bool:
    return o.class_scores is not None


METHODS: tuple[Method, ...] = (
    Method("msp", _has_logits, _Scorer.logit_msp),
    Method("maxlogit", _has_logits, _Scorer.logit_maxlogit),
    Method("entropy", _has_logits, _Scorer.logit_entropy),
    Method("energy", _has_logits, _Scorer.logit_energy),
    Method("void", lambda o: o.logits is not None and o.void_channel is not None, _Scorer.logit_void),
    Method("msp", _has_class_scores, _Scorer.mask_msp),
    Method("maxlogit", _has_class_scores, _Scorer.mask_maxlogit),
    Method("entropy", _has_class_scores, _Scorer.mask_entropy),
    Method("rba", _has_class_scores, _Scorer.mask_rba),
    Method("noobject", lambda o: "no_object" in o.query_maps, lambda s: s.query_map("no_object")),
    Method("anomaly", lambda o: "anomaly" in o.query_maps, lambda s: s.query_map("anomaly")),
)

ALL_METHOD_NAMES: tuple[str, ...] = tuple(dict.fromkeys(m.name for m in METHODS))


def available_methods(outputs: PixelOutputs) -> list[str]:
    """Names of the methods that can be computed from ``outputs``, in canonical order."""
    return list(dict.fromkeys(m.name for m in METHODS if m.applies(outputs)))


def compute_scores(
    outputs: PixelOutputs, methods: list[str] | tuple[str, ...], config: ScoringConfig = ScoringConfig()
) -> dict[str, Tensor]:
    """Return ``{method: (B, H, W) float32 score}`` for each requested method, from one set of outputs."""
    scorer = _Scorer(outputs, config)
    scores: dict[str, Tensor] = {}
    for name in methods:
        method = next((m for m in METHODS if m.name == name and m.applies(outputs)), None)
        if method is None:
            known = ", ".join(available_methods(outputs))
            raise ValueError(f"method {name!r} is not defined for this model's outputs (available: {known})")
        scores[name] = method.compute(scorer)
    return scores
