"""``roadanomaly train anomaly-head`` end to end on a tiny EoMT and a tiny SynthRoads tree, then evaluation."""

from __future__ import annotations

import json

import argparse

import pytest
import torch

from roadanomaly.cli import main
from roadanomaly.cli import train_anomaly_head as cli
from roadanomaly.data.synthroads import generate_synthroads
from roadanomaly.models.anomaly_head import load_anomaly_heads
from roadanomaly.models.eomt import EoMT, EoMTConfig
from roadanomaly.models.eomt_checkpoints import load_eomt, save_eomt
from roadanomaly.training.anomaly_head_demo import eomt_with_heads, evaluate_heads


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("head_cli")
    generate_synthroads(root / "synth", train=3, val=0, anomaly=2, obstacle=2, size=(64, 128), seed=1)
    torch.manual_seed(0)
    config = EoMTConfig(width=32, depth=2, heads=2, img_size=(32, 32), num_classes=19, num_q=5, num_blocks=1)
    base = save_eomt(EoMT(config).eval(), root / "base")
    return root, base


def test_train_anomaly_head_cli_then_evaluate(world, capsys) -> None:
    root, base = world
    out = root / "run"
    args = parse(["anomaly-head", "--base", str(base), "--data", str(root / "synth" / "cityscapes"),
                  "--output", str(out), "--epochs", "1", "--batch-size", "4", "--hidden", "8", "--quiet"])
    assert args.run(args) == 0
    printed = capsys.readouterr().out
    assert "trained on 6 pasted samples (cached path)" in printed
    heads = load_anomaly_heads(out / "anomaly_head.safetensors", load_eomt(base))
    assert set(heads) == {"anomaly", "rba_oe"}
    predictor = eomt_with_heads(base, out / "anomaly_head.safetensors")
    results = evaluate_heads(predictor, root / "synth" / "bundle", size="32x64")
    methods = {(r.dataset, r.method) for r in results}
    for dataset in ("SynthAnomaly", "SynthObstacle"):
        for method in ("msp", "rba", "noobject", "eam", "anomaly", "anomaly_norm", "rba_oe"):
            assert (dataset, method) in methods
    # the evaluate command with --head gives the same rows
    document = root / "eval.json"
    assert main(["evaluate", "--model", "eomt", "--weights", str(base), "--head", str(out / "anomaly_head.safetensors"),
                 "--data", str(root / "synth" / "bundle"), "--size", "32x64", "--output", str(document), "--quiet",
                 "--workers", "0"]) == 0
    rows = {(r["dataset"], r["method"]): r for r in json.loads(document.read_text())["results"]}
    assert rows == {(r.dataset, r.method): r.to_dict() for r in results}
    assert json.loads(document.read_text())["model"]["head"] == str(out / "anomaly_head.safetensors")


def test_no_baseline_and_errors(world, tmp_path, capsys) -> None:
    root, base = world
    args = parse(["anomaly-head", "--base", str(base), "--data", str(root / "synth" / "cityscapes"),
                  "--output", str(tmp_path), "--epochs", "1", "--no-baseline", "--no-cache", "--head-blocks", "1",
                  "--head-masks", "--quiet"])  # fmt: skip
    assert args.run(args) == 0
    heads = load_anomaly_heads(tmp_path / "anomaly_head.safetensors", load_eomt(base))
    assert set(heads) == {"anomaly"} and len(heads["anomaly"].blocks) == 1 and heads["anomaly"].reads_block == 1
    assert heads["anomaly"].own_masks
    capsys.readouterr()
    assert main(["train", "anomaly-head", "--base", str(base), "--data", str(root / "synth" / "cityscapes"),
                 "--output", str(tmp_path / "x"), "--head-blocks", "2", "--quiet"]) == 2
    assert capsys.readouterr().err == (
        "roadanomaly: error: the head can copy 0..1 of this EoMT's query blocks, not 2\n"
    )
    assert main(["train", "anomaly-head", "--base", str(base), "--data", str(root / "synth" / "cityscapes"),
                 "--output", str(tmp_path / "x"), "--head-masks", "--quiet"]) == 2
    assert capsys.readouterr().err == (
        "roadanomaly: error: head_masks needs head_blocks > 0 (the head's masks come from its own blocks)\n"
    )
    assert main(["train", "anomaly-head", "--data", str(root)]) == 2
    assert capsys.readouterr().err == (
        "roadanomaly: error: no base model: give --base EOMT or 'base:' in the --config file\n"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 1\nwings: 2\n")
    assert main(["train", "anomaly-head", "--config", str(bad)]) == 2
    assert capsys.readouterr().err == f"roadanomaly: error: {bad}: unknown config fields: wings\n"
