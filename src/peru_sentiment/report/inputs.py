"""What the report reads: the outputs of the earlier stages, with a clear error when one is missing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from peru_sentiment import paths as layout
from peru_sentiment.errors import ConfigError
from peru_sentiment.paths import split_file

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Paths:
    """Where the pipeline writes what the report reads (the defaults are the DVC layout)."""

    data_dir: Path = layout.PROCESSED
    events: Path = layout.SYNTHETIC_EVENTS
    sweep_dir: Path = layout.SWEEP
    best_hparams: Path = layout.BEST_HPARAMS
    live_dir: Path = layout.TRAIN_LIVE
    model_dir: Path = layout.TRAINED
    metrics: Path = layout.METRICS
    evaluation_dir: Path = layout.EVALUATION
    realism_dir: Path = layout.REALISM

    @classmethod
    def under(cls, root: Path) -> Paths:
        """The default layout inside the project directory `root` (notebooks, tests)."""
        return cls(**{name: layout.under(root, value) for name, value in cls().__dict__.items()})


def _require(path: Path, stage: str) -> Path:
    if not path.exists():
        raise ConfigError(f"{path} not found; run `dvc repro {stage}` first")
    return path


def read_json(path: Path, stage: str):
    return json.loads(_require(path, stage).read_text(encoding="utf-8"))


def splits(paths: Paths) -> dict[str, pd.DataFrame]:
    """The train, validation and test splits."""
    return {name: pd.read_parquet(_require(split_file(name, paths.data_dir), "split")) for name in SPLITS}


def sweep_summary(paths: Paths) -> pd.DataFrame:
    """One row per trial: status, validation macro-F1, hyperparameters, duration."""
    return pd.read_csv(_require(paths.sweep_dir / "summary.csv", "tune"))


def training_history(paths: Paths) -> pd.DataFrame:
    """Long table (split, metric, step, value) of dvclive's per-epoch training metrics."""
    folder = _require(paths.live_dir / "plots" / "metrics", "train")
    rows = [
        pd.read_csv(path, sep="\t")
        .rename(columns={path.stem: "value"})
        .assign(split=path.parent.name, metric=path.stem)
        for path in sorted(folder.glob("*/*.tsv"))
    ]
    if not rows:
        raise ConfigError(f"{folder} holds no metrics; run `dvc repro train` first")
    return pd.concat(rows, ignore_index=True)[["split", "metric", "step", "value"]]


def test_predictions(paths: Paths) -> pd.DataFrame:
    return pd.read_parquet(_require(paths.evaluation_dir / "test_predictions.parquet", "evaluate"))


def evaluation_details(paths: Paths) -> dict:
    return read_json(paths.evaluation_dir / "details.json", "evaluate")


def realism_details(paths: Paths) -> dict:
    return read_json(paths.realism_dir / "details.json", "realism")
