"""The command line and the DVC pipeline, end to end on a small corpus."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml
from typer.testing import CliRunner

from helpers import ROOT, run_command
from peru_sentiment.cli.main import app

STAGES = ("generate", "ingest", "preprocess", "split")


def test_help_lists_the_stage_commands():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for stage in STAGES:
        assert stage in result.output


def test_user_errors_are_one_line_without_traceback(tmp_path):
    executable = Path(sys.executable).with_name("peru-sentiment")
    result = subprocess.run(
        [str(executable), "generate", "--params", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert "error:" in result.stderr and "missing.yaml not found" in result.stderr
    assert "Traceback" not in result.stderr

    bad = yaml.safe_load((ROOT / "params.yaml").read_text())
    bad["generate"]["label_distribution"] = {"negative": 0.5, "positive": 0.6}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(bad))
    result = subprocess.run([str(executable), "generate"], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert result.returncode == 2 and "label_distribution" in result.stderr and "Traceback" not in result.stderr


def test_smoke_pipeline_end_to_end_and_reruns_only_what_changed(smoke_project):
    for stage in (
        "generate",
        "ingest",
        "preprocess",
        "split",
        "pretrained",
        "tune",
        "train",
        "evaluate",
        "realism",
        "report",
        "export",
    ):
        record = json.loads((smoke_project / f"reports/stages/{stage}.json").read_text())
        assert record["stage"] == stage and record["duration_s"] >= 0
    sizes = {
        name: len(pd.read_parquet(smoke_project / f"data/processed/{name}.parquet"))
        for name in ("train", "validation", "test")
    }
    assert sum(sizes.values()) == 600 and min(sizes.values()) > 40
    train = pd.read_parquet(smoke_project / "data/processed/train.parquet")
    assert {"text", "label", "language", "emotion_score", "topic_id", "text_classical", "region"} <= set(train.columns)
    metrics = json.loads((smoke_project / "reports/metrics.json").read_text())["test"]
    assert 0 <= metrics["macro_f1"] <= 1 and metrics["majority_macro_f1"] < 0.3
    best = json.loads((smoke_project / "experiments/best_hparams.json").read_text())
    assert set(best) >= {"learning_rate", "batch_size", "pooling"}
    assert (smoke_project / "experiments/sweep/summary.md").read_text().count("COMPLETED") == 2
    assert (smoke_project / "models/trained/model.keras").is_file()
    assert (smoke_project / "dvclive/train/metrics.json").is_file()
    export = json.loads((smoke_project / "reports/stages/export.json").read_text())
    assert export["max_difference"] <= 1e-4 and export["verified_texts"] > 40
    assert (smoke_project / "models/export/LATEST").read_text().strip() == export["version"]
    realism = json.loads((smoke_project / "reports/realism.json").read_text())
    assert realism["sources"] == 0 and "no real feedback imported" in realism["note"]

    assert "up to date" in run_command(["dvc", "status"], smoke_project)
    params = yaml.safe_load((smoke_project / "params.yaml").read_text())
    params["evaluate"]["calibration_bins"] = 10
    (smoke_project / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    assert set(yaml.safe_load(run_command(["dvc", "status", "--json"], smoke_project))) == {"evaluate"}
    output = run_command(["dvc", "repro"], smoke_project)
    assert "Running stage 'evaluate'" in output and "Running stage 'train'" not in output
    assert "Running stage 'report'" in output, "the report follows the evaluation"
    assert "up to date" in run_command(["dvc", "status"], smoke_project)


def test_profiles_switch_and_restore_params(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    original = (tmp_path / "params.yaml").read_text()
    output = run_command(["peru-sentiment", "profile", "smoke"], tmp_path)
    assert "pretrained.kind" in output
    smoke = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert smoke["pretrained"]["kind"] == "tiny" and smoke["generate"]["rows"] == 600
    assert "# Parameters of the DVC pipeline" in (tmp_path / "params.yaml").read_text(), "comments are kept"
    run_command(["peru-sentiment", "profile", "cpu"], tmp_path)
    assert (tmp_path / "params.yaml").read_text() == original


def test_profile_of_a_missing_params_file_is_one_line_error(tmp_path):
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    missing = tmp_path / "missing.yaml"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from peru_sentiment.cli.main import run; run()",
            "profile",
            "smoke",
            "--params",
            str(missing),
        ],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert (
        result.stderr.strip() == f"error: no parameters file {missing}; run from the project root or pass --params PATH"
    )
    assert not missing.exists()
