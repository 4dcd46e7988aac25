"""Batch prediction over files: CSV, JSON Lines or Parquet in, the same rows plus predictions out.

Files are read and written in chunks, so memory stays flat however large the
input. A row whose text is missing or empty is kept with an ``error`` and no
label; nothing is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from peru_sentiment.data.ingest import FORMATS
from peru_sentiment.errors import ConfigError, DataError
from peru_sentiment.export.bundle import ModelBundle
from peru_sentiment.text.normalize import is_blank
from peru_sentiment.text.prepare import prepare_text

log = logging.getLogger(__name__)


def file_format(path: Path) -> str:
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise ConfigError(f"{path}: unsupported file type; use one of {', '.join(FORMATS)}") from None


def read_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The file's rows, `chunk_rows` at a time; every column read as it is (CSV columns as text)."""
    kind = file_format(path)
    if not path.is_file():
        raise ConfigError(f"input file {path} not found")
    try:
        if kind == "parquet":
            for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
                yield batch.to_pandas()
        elif kind == "csv":
            yield from pd.read_csv(path, chunksize=chunk_rows, dtype=str, keep_default_na=False)
        else:
            yield from pd.read_json(path, lines=True, chunksize=chunk_rows, dtype=False)
    except (ValueError, pa.ArrowException, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{path} could not be read as {kind}: {type(error).__name__}: {error}") from None


def total_rows(path: Path) -> int | None:
    """Row count for the progress bar, when the format knows it without a pass over the data."""
    return pq.ParquetFile(path).metadata.num_rows if file_format(path) == "parquet" else None


def predict_frame(bundle: ModelBundle, frame: pd.DataFrame, text_column: str) -> pd.DataFrame:
    """`frame` plus ``label``, ``probability_<label>`` columns and ``error`` (empty when fine)."""
    if text_column not in frame.columns:
        raise ConfigError(f"no column {text_column!r} in the input (columns: {', '.join(map(str, frame.columns))})")
    raw = frame[text_column]
    prepared = [prepare_text(value)[0] if isinstance(value, str) else "" for value in raw]
    errors = np.array([_problem(value, text) for value, text in zip(raw, prepared, strict=True)], dtype=object)
    valid = np.flatnonzero(errors == "")
    probabilities = np.full((len(frame), len(bundle.labels)), np.nan, dtype=np.float32)
    probabilities[valid] = bundle.predict_proba([prepared[i] for i in valid])
    labels = np.full(len(frame), None, dtype=object)
    labels[valid] = np.asarray(bundle.labels, dtype=object)[probabilities[valid].argmax(axis=1)]
    result = frame.copy()
    result["label"] = labels
    for index, label in enumerate(bundle.labels):
        result[f"probability_{label}"] = probabilities[:, index]
    result["error"] = errors
    return result


def _problem(value: object, prepared: str) -> str:
    if not is_blank(prepared):
        return ""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "missing text"
    return "empty text" if isinstance(value, str) else "text is not a string"


class _ChunkWriter:
    """Appends chunks to a CSV, JSON Lines or Parquet file (the Parquet schema is fixed by the first chunk)."""

    def __init__(self, path: Path):
        self.path, self.kind = path, file_format(path)
        self._parquet: pq.ParquetWriter | None = None
        self._first = True
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, frame: pd.DataFrame) -> None:
        if self.kind == "parquet":
            if self._parquet is None:
                table = pa.Table.from_pandas(frame, preserve_index=False)
                self._parquet = pq.ParquetWriter(self.path, table.schema)
            else:
                table = pa.Table.from_pandas(frame, schema=self._parquet.schema, preserve_index=False)
            self._parquet.write_table(table)
        elif self.kind == "csv":
            frame.to_csv(self.path, mode="w" if self._first else "a", header=self._first, index=False)
        else:
            with self.path.open("w" if self._first else "a", encoding="utf-8") as handle:
                frame.to_json(handle, orient="records", lines=True, force_ascii=False)
        self._first = False

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        elif self._first:  # an empty input still gives an (empty) output file
            self.path.write_text("")


def predict_file(
    bundle: ModelBundle, source: Path, output: Path, text_column: str, chunk_rows: int = 2048, progress: bool = True
) -> dict:
    """Predict every row of `source` into `output`; returns counts (rows, predicted, errors by reason, labels)."""
    if source.resolve() == output.resolve():
        raise ConfigError("--output must differ from --input")
    file_format(output)
    summary = {"rows": 0, "predicted": 0, "errors": {}, "labels": {label: 0 for label in bundle.labels}}
    writer = _ChunkWriter(output)
    try:
        with tqdm(total=total_rows(source), unit="row", desc="predict", disable=None if progress else True) as bar:
            for chunk in read_chunks(source, chunk_rows):
                result = predict_frame(bundle, chunk, text_column)
                writer.write(result)
                summary["rows"] += len(result)
                for reason, count in result.loc[result["error"] != "", "error"].value_counts().items():
                    summary["errors"][reason] = summary["errors"].get(reason, 0) + int(count)
                for label, count in result["label"].dropna().value_counts().items():
                    summary["labels"][label] += int(count)
                bar.update(len(result))
    finally:
        writer.close()
    summary["predicted"] = sum(summary["labels"].values())
    if summary["errors"]:
        log.warning(
            "%d row(s) could not be predicted (%s); they are in the output with `error` set",
            summary["rows"] - summary["predicted"],
            summary["errors"],
        )
    return summary
