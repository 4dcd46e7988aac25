"""Tables by file extension: CSV, JSON Lines (``.jsonl``/``.ndjson``) or Parquet.

The one reader of feedback files for the ``predict`` command and the traffic
replay (``ingest`` keeps its own byte-level reading, see :func:`data.ingest.read_records`).
CSV cells are read as text, as written (only an empty cell is missing), so an id
such as ``007`` or a text such as ``NA`` stays what it was.
"""

from __future__ import annotations

import codecs
import csv
import warnings
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from peru_sentiment.errors import ConfigError, DataError

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
CSV_AS_TEXT = {"dtype": str, "keep_default_na": False, "na_values": [""]}  # every cell as written; empty is missing


def table_format(path: Path) -> str:
    """``csv``, ``jsonl`` or ``parquet`` from the file's extension; a clear error for anything else."""
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise ConfigError(f"{path}: unsupported file type; use one of {', '.join(FORMATS)}") from None


def _check_readable(path: Path, encoding: str) -> str:
    kind = table_format(path)
    if not path.is_file():
        raise ConfigError(f"input file {path} not found")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigError(f"unknown encoding {encoding!r}; use e.g. utf-8, latin-1 or cp1252") from None
    return kind


def read_table_chunks(path: Path, chunk_rows: int, encoding: str = "utf-8") -> Iterator[pd.DataFrame]:
    """The file's rows, ``chunk_rows`` at a time; a file that cannot be parsed raises :class:`DataError`."""
    kind = _check_readable(path, encoding)
    try:
        if kind == "parquet":
            for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
                yield batch.to_pandas()
        elif kind == "csv":
            # index_col=False: a first row with more fields than the header is an error, not a silent index column
            with warnings.catch_warnings():
                warnings.simplefilter("error", pd.errors.ParserWarning)
                yield from pd.read_csv(path, chunksize=chunk_rows, encoding=encoding, index_col=False, **CSV_AS_TEXT)
        else:
            yield from pd.read_json(path, lines=True, chunksize=chunk_rows, dtype=False, encoding=encoding)
    except (ValueError, pa.ArrowException, pd.errors.ParserError, pd.errors.ParserWarning, UnicodeDecodeError) as error:
        hint = " (is it in another encoding? see --encoding)" if isinstance(error, UnicodeDecodeError) else ""
        raise DataError(f"{path} could not be read as {kind}{hint}: {type(error).__name__}: {error}") from None


def read_table(path: Path, encoding: str = "utf-8") -> pd.DataFrame:
    """The whole file as one frame."""
    chunks = list(read_table_chunks(path, chunk_rows=65_536, encoding=encoding))
    return pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()


def count_rows(path: Path, encoding: str = "utf-8") -> int | None:
    """Rows in the file (for a progress bar): Parquet from its metadata, CSV and JSON Lines by a quick pass.

    ``None`` when the pass cannot tell (a CSV the reader rejects); reading it will then say why.
    """
    kind = _check_readable(path, encoding)
    if kind == "parquet":
        try:
            return pq.ParquetFile(path).metadata.num_rows
        except pa.ArrowException as error:
            raise DataError(f"{path} could not be read as parquet: {type(error).__name__}: {error}") from None
    with path.open(encoding=encoding, errors="replace", newline="") as handle:
        if kind == "jsonl":
            return sum(1 for line in handle if line.strip())
        try:  # CSV rows can span lines: count records, not lines
            return max(sum(1 for row in csv.reader(handle) if row) - 1, 0)
        except csv.Error:
            return None
