"""Helpers for the demo and the CLI: an EoMT predictor with its anomaly heads, and train-then-evaluate.

``roadanomaly evaluate --model eomt --weights BASE --head HEAD`` (``load_eomt_predictor(BASE, head=HEAD)``) adds
the methods ``anomaly``, ``anomaly_norm`` (head) and ``rba_oe`` (baseline) to msp, entropy, rba,
noobject and eam, all from the same forward pass.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from roadanomaly.data.bundle import discover_bundles
from roadanomaly.evaluation import EvaluationEngine
from roadanomaly.inference.eomt import EoMTPredictor, load_eomt_predictor
from roadanomaly.models.anomaly_head import HEAD_FILE
from roadanomaly.protocol import EvalProtocol
from roadanomaly.results import AnomalyResult
from roadanomaly.training.anomaly_head_config import AnomalyHeadTrainConfig

POST_HOC_METHODS: tuple[str, ...] = ("msp", "entropy", "rba", "noobject", "eam")
HEAD_METHODS: tuple[str, ...] = ("rba_oe", "anomaly", "anomaly_norm")
SYNTHROADS_RECIPE = Path(__file__).resolve().parents[1] / "configs" / "anomaly_head_synthroads.yaml"


def eomt_with_heads(
    base: str | Path, heads: str | Path | None, device: str = "cpu", trust_pickle: bool = False, **options: Any
) -> EoMTPredictor:
    """An EoMT predictor for the checkpoint ``base`` with the heads of ``heads`` (a head file or merged folder)."""
    return load_eomt_predictor(base, device=device, trust_pickle=trust_pickle, head=heads, **options)


def evaluate_heads(
    predictor: EoMTPredictor, bundles: str | Path, size: str = "128x256", progress: bool = False
) -> list[AnomalyResult]:
    """Every post-hoc and head method on every bundle under ``bundles``, at evaluation ``size``."""
    methods = [m for m in (*POST_HOC_METHODS, *HEAD_METHODS) if m in _declared(predictor)]
    engine = EvaluationEngine(predictor, EvalProtocol(size=size), methods, progress_bars=progress)
    return engine.run(discover_bundles(bundles)).results


def _declared(predictor: EoMTPredictor) -> set[str]:
    from roadanomaly.scoring import available_methods

    return set(available_methods(predictor.spec))


def ensure_heads(
    base: str | Path, data: str | Path, workdir: str | Path, config: AnomalyHeadTrainConfig | None = None,
    retrain: bool = False, progress: bool = False,
) -> Path:  # fmt: skip
    """Train the heads on ``data`` (Cityscapes layout) for ``base`` into ``workdir`` unless the same run is there."""
    from roadanomaly.training.anomaly_head import train_anomaly_head

    config = config or AnomalyHeadTrainConfig.from_yaml(SYNTHROADS_RECIPE)
    config = AnomalyHeadTrainConfig.from_dict({**config.to_dict(), "base": str(base), "data": str(data),
                                               "output": str(workdir)})  # fmt: skip
    heads, stamp = Path(workdir) / HEAD_FILE, Path(workdir) / "trained_for.json"
    key = json.dumps(config.to_dict(), sort_keys=True)
    if not retrain and heads.is_file() and stamp.is_file() and stamp.read_text() == key:
        return heads
    result = train_anomaly_head(config, progress=progress)
    stamp.write_text(key)
    return result.heads


def run_head_demo(
    base: str | Path, synthroads: str | Path, workdir: str | Path, size: str = "128x256",
    config: AnomalyHeadTrainConfig | None = None, retrain: bool = False, progress: bool = False,
) -> list[AnomalyResult]:  # fmt: skip
    """Train (or reuse) the heads for ``base`` on ``synthroads/cityscapes`` with the outlier family, then evaluate
    EoMT's post-hoc scores, rba_oe and the head on every bundle of ``synthroads/bundle``."""
    heads = ensure_heads(base, Path(synthroads) / "cityscapes", workdir, config, retrain, progress)
    return evaluate_heads(eomt_with_heads(base, heads), Path(synthroads) / "bundle", size, progress)
