"""The one-command demo: generate SynthRoads, train ERFNet on it (or reuse cached weights), evaluate every score."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from roadanomaly.data.bundle import discover_bundles
from roadanomaly.data.cityscapes import CityscapesDataset
from roadanomaly.evaluation import EvaluationEngine
from roadanomaly.inference import load_predictor
from roadanomaly.progress import stage_callback
from roadanomaly.protocol import EvalProtocol
from roadanomaly.report import format_table
from roadanomaly.training.config import ERFNetTrainConfig


SYNTHROADS_RECIPE = Path(__file__).parent / "configs" / "erfnet_synthroads.yaml"


@dataclass
class DemoConfig:
    """What the demo generates and how long it trains; the defaults fit in minutes on 2 CPU cores."""

    seed: int = 0
    size: tuple[int, int] = (256, 512)
    train_images: int = 400
    val_images: int = 40
    anomaly_images: int = 40
    obstacle_images: int = 40
    train: ERFNetTrainConfig = field(default_factory=lambda: ERFNetTrainConfig.from_yaml(SYNTHROADS_RECIPE))
    eval_size: str = "128x256"
    """Evaluation resolution: the training scale, as the course scripts evaluate at their training size."""

    def data_key(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("train", "eval_size")}


def default_workdir() -> Path:
    """``$ROADANOMALY_HOME/demo``, else ``~/.cache/roadanomaly/demo``."""
    home = os.environ.get("ROADANOMALY_HOME")
    return Path(home) / "demo" if home else Path.home() / ".cache" / "roadanomaly" / "demo"


def _same(path: Path, document: dict[str, Any]) -> bool:
    try:
        return json.loads(path.read_text()) == json.loads(json.dumps(document))
    except (OSError, ValueError):
        return False


def ensure_synthroads(workdir: Path, config: DemoConfig, regenerate: bool, progress: bool) -> Path:
    """Generate the SynthRoads tree under ``workdir/synthroads`` unless an identical one is already there."""
    from roadanomaly.data.synthroads import generate_synthroads

    root = workdir / "synthroads"
    if not regenerate and _manifest_matches(root, config):
        print(f"[1/3] SynthRoads already generated in {root}")
        return root
    total = config.train_images + config.val_images + config.anomaly_images + config.obstacle_images
    print(f"[1/3] generating SynthRoads in {root} ({total} images at {config.size[0]}x{config.size[1]})")
    with tqdm(total=total, unit="img", disable=not progress, dynamic_ncols=True) as bar:
        generate_synthroads(
            root,
            train=config.train_images,
            val=config.val_images,
            anomaly=config.anomaly_images,
            obstacle=config.obstacle_images,
            size=config.size,
            seed=config.seed,
            progress=stage_callback(bar),
        )
    return root


def _manifest_matches(root: Path, config: DemoConfig) -> bool:
    """Whether ``root/synthroads.json`` (written by the generator when it finishes) describes this config's data."""
    try:
        manifest = json.loads((root / "synthroads.json").read_text())
    except (OSError, ValueError):
        return False
    counts = {"train": config.train_images, "val": config.val_images, "SynthAnomaly": config.anomaly_images,
              "SynthObstacle": config.obstacle_images}
    wanted = {"seed": config.seed, "size": list(config.size), "counts": counts}
    return all(manifest.get(key) == value for key, value in wanted.items())


def ensure_erfnet(workdir: Path, data: Path, config: DemoConfig, retrain: bool, progress: bool) -> Path:
    """Train ERFNet on the SynthRoads Cityscapes tree unless weights from the same data and settings exist."""
    from roadanomaly.training.train_erfnet import train_erfnet

    train_config = ERFNetTrainConfig.from_dict({**config.train.to_dict(), "data": str(data / "cityscapes"),
                                                "output": str(workdir / "erfnet")})
    weights = workdir / "erfnet" / "erfnet.pth"
    stamp = workdir / "erfnet" / "trained.json"
    key = {"data": config.data_key(), "train": train_config.to_dict()}
    if not retrain and weights.is_file() and _same(stamp, key):
        print(f"[2/3] using cached ERFNet weights {weights}")
        return weights
    print(
        f"[2/3] training ERFNet on SynthRoads ({config.train_images} images, "
        f"{train_config.encoder_epochs} encoder-only + {train_config.epochs} whole-network epochs)"
    )
    result = train_erfnet(train_config, progress=progress)
    stamp.write_text(json.dumps(key))
    return result.weights


def run_demo(
    workdir: Path | None = None,
    config: DemoConfig | None = None,
    regenerate: bool = False,
    retrain: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate, train, evaluate; print the table and return the results document (also written to JSON)."""
    start = time.perf_counter()
    workdir = Path(workdir or default_workdir())
    config = config or DemoConfig()
    workdir.mkdir(parents=True, exist_ok=True)
    data = ensure_synthroads(workdir, config, regenerate, progress)
    weights = ensure_erfnet(workdir, data, config, retrain or regenerate, progress)
    predictor = load_predictor("erfnet", weights)
    protocol = EvalProtocol(size=config.eval_size)

    print("[3/3] evaluating on the SynthRoads validation split (mIoU) and benchmark bundles (anomaly scores)")
    output = workdir / "results.json"
    engine = EvaluationEngine(predictor, protocol, progress_bars=progress, output=output)
    result = engine.run(discover_bundles(data / "bundle"), CityscapesDataset(data / "cityscapes", "val"))
    result.segmentation = {**(result.segmentation or {}), "dataset": "SynthRoads val"}
    result.extras["wall_time_s"] = round(time.perf_counter() - start, 1)
    result.save(output)
    document = result.to_dict()
    segmentation = document["segmentation"]
    results = result.results
    print()
    print(format_table(results))
    print(f"\nSynthRoads val mIoU: {100 * segmentation['miou']:.2f} %   wall time: {document['wall_time_s']:.0f} s")
    print(f"results written to {output}")
    return document
