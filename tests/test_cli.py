"""The command line and the DVC pipeline, end to end on a small corpus."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ROOT
from typer.testing import CliRunner

from peru_sentiment.cli import app

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
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "error:" in result.stderr and "missing.yaml not found" in result.stderr
    assert "Traceback" not in result.stderr

    bad = yaml.safe_load((ROOT / "params.yaml").read_text())
    bad["generate"]["label_distribution"] = {"negative": 0.5, "positive": 0.6}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(bad))
    result = subprocess.run([str(executable), "generate"], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert result.returncode == 2 and "label_distribution" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture
def small_repo(tmp_path):
    """A copy of the pipeline definition with a small corpus, as its own git + DVC repository."""
    for name in ("dvc.yaml", "configs", "src", "data/external"):
        source = ROOT / name
        target = tmp_path / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(source, target)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["generate"]["rows"] = 400
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    return tmp_path


def _run(command, cwd):
    bin_dir = Path(sys.executable).parent
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(cwd), "DVC_NO_ANALYTICS": "1"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout


def test_dvc_pipeline_runs_and_reruns_only_what_changed(small_repo):
    _run(["git", "init", "-q"], small_repo)
    _run(["dvc", "init", "-q"], small_repo)
    _run(["dvc", "repro"], small_repo)

    for stage in STAGES:
        record = json.loads((small_repo / f"reports/stages/{stage}.json").read_text())
        assert record["stage"] == stage and record["duration_s"] >= 0
    sizes = {
        name: len(pd.read_parquet(small_repo / f"data/processed/{name}.parquet"))
        for name in ("train", "validation", "test")
    }
    assert sum(sizes.values()) == 400 and min(sizes.values()) > 20
    train = pd.read_parquet(small_repo / "data/processed/train.parquet")
    assert {"text", "label", "language", "emotion_score", "topic_id", "text_classical", "region"} <= set(train.columns)

    assert "up to date" in _run(["dvc", "status"], small_repo)
    params = yaml.safe_load((small_repo / "params.yaml").read_text())
    params["split"]["seed"] += 1
    (small_repo / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    changed = yaml.safe_load(_run(["dvc", "status", "--json"], small_repo) or "{}")
    assert set(changed) == {"split"}
    output = _run(["dvc", "repro"], small_repo)
    assert "Running stage 'split'" in output and "Running stage 'generate'" not in output
    assert "up to date" in _run(["dvc", "status"], small_repo)
