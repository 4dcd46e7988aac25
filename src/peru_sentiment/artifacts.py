"""Tables passed between stages: read with a clear error when the stage that writes one has not run."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from peru_sentiment.errors import PipelineError

log = logging.getLogger(__name__)


def read_table(path: Path) -> pd.DataFrame:
    """A Parquet table an earlier stage wrote."""
    if not path.is_file():
        raise PipelineError(f"{path} not found; run the stage that writes it first (`dvc repro`)")
    return pd.read_parquet(path)


def write_table(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    log.info("wrote %d rows to %s", len(frame), path)
