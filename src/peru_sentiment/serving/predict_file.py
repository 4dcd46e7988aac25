"""Prediction over files (the ``predict`` command): CSV, JSON Lines or Parquet in, the same rows plus predictions out.

Files are read and written in chunks, so memory stays flat however large the
input. A row whose text is missing or empty is kept with an ``error`` and no
label; nothing is dropped. A model with aspect heads adds, per aspect, the
detected polarity, its probability and the evidence words (the words its head
weighs most, space-separated), all empty when the text is not about it.
The output is written to a temporary file beside the target and renamed when
every row is done: a failed run leaves an existing output untouched and no
partial file. With a store, the predicted rows are
stored too (masked text, region, channel, language, scores).
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from peru_sentiment.errors import ConfigError, DataError
from peru_sentiment.export.bundle import ModelBundle
from peru_sentiment.schema import ASPECT_POLARITIES
from peru_sentiment.store.records import prediction_rows, utc_now
from peru_sentiment.store.writer import PredictionWriter
from peru_sentiment.tables import count_rows, read_table_chunks, table_format
from peru_sentiment.text.language import LanguageDetector
from peru_sentiment.text.normalize import has_lone_surrogate, is_blank
from peru_sentiment.text.prepare import prepare_text

log = logging.getLogger(__name__)

# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def predict_frame(bundle: ModelBundle, frame: pd.DataFrame, text_column: str) -> pd.DataFrame:
    """`frame` plus ``label``, ``probability_<label>`` columns, the aspect columns of a model with aspect heads
    (:func:`aspect_columns`) and ``error`` (empty when fine)."""
    return _predict(bundle, frame, text_column)[0]


def _predict(bundle: ModelBundle, frame: pd.DataFrame, text_column: str) -> tuple[pd.DataFrame, list[str]]:
    """:func:`predict_frame`'s result and the prepared (masked) texts."""
    prepared, errors = prepare_frame(frame, text_column)
    texts = [prepared[i] for i in np.flatnonzero(errors == "")]
    result = with_predictions(frame, bundle.labels, errors, *model_outputs(bundle, texts), aspects=bundle.aspects)
    return result, prepared


def model_outputs(
    bundle: ModelBundle, texts: list[str]
) -> tuple[np.ndarray, np.ndarray | None, list[dict[str, list[str]]] | None]:
    """What :func:`with_predictions` adds, for prepared texts: the class probabilities, and with aspect heads
    the aspect probabilities and, per text, the evidence words of the aspects found (None without)."""
    rows = bundle.predict_rows(texts)
    probabilities, aspect_probabilities = bundle.split_rows(rows)
    attention = bundle.split_attention(rows)
    evidence = None
    if attention is not None:  # the words of the aspects found only (most probable polarity not "absent")
        found = aspect_probabilities.argmax(axis=-1) > 0
        evidence = [
            bundle.evidence(text, weights, {name for name, hit in zip(bundle.aspects, hits, strict=True) if hit})
            for text, weights, hits in zip(texts, attention, found, strict=True)
        ]
    return probabilities, aspect_probabilities, evidence


def aspect_columns(aspect: str) -> tuple[str, str, str]:
    """The predict output's columns of one aspect: its detected polarity, that polarity's probability,
    and the evidence words (empty for bundles exported before them)."""
    return f"aspect_{aspect}_polarity", f"aspect_{aspect}_confidence", f"aspect_{aspect}_evidence"


def check_text_column(frame: pd.DataFrame, text_column: str) -> None:
    if text_column not in frame.columns:
        raise ConfigError(f"no column {text_column!r} in the input (columns: {', '.join(map(str, frame.columns))})")


def prepare_frame(frame: pd.DataFrame, text_column: str) -> tuple[list[str], np.ndarray]:
    """Each row's prepared text (``prepare_text``) and error (empty when the row can be predicted)."""
    check_text_column(frame, text_column)
    raw = frame[text_column]
    prepared = [prepare_text(value)[0] if isinstance(value, str) else "" for value in raw]
    errors = np.array([_problem(value, text) for value, text in zip(raw, prepared, strict=True)], dtype=object)
    return prepared, errors


def with_predictions(
    frame: pd.DataFrame,
    labels: tuple[str, ...],
    errors: np.ndarray,
    valid_probabilities: np.ndarray,
    valid_aspect_probabilities: np.ndarray | None = None,
    valid_evidence: list[dict[str, list[str]]] | None = None,
    aspects: tuple[str, ...] = (),
) -> pd.DataFrame:
    """`frame` plus the prediction columns; `valid_probabilities` (and `valid_aspect_probabilities` and
    any `valid_evidence`, the words per aspect, with `aspects`) have one row per row without error, in order."""
    valid = np.flatnonzero(errors == "")
    probabilities = np.full((len(frame), len(labels)), np.nan, dtype=np.float32)
    probabilities[valid] = valid_probabilities
    predicted = np.full(len(frame), None, dtype=object)
    predicted[valid] = np.asarray(labels, dtype=object)[probabilities[valid].argmax(axis=1)]
    result = frame.copy()
    result["label"] = predicted
    for index, label in enumerate(labels):
        result[f"probability_{label}"] = probabilities[:, index]
    for index, aspect in enumerate(aspects):
        found = valid_aspect_probabilities[:, index]
        polarity_ids = found.argmax(axis=1)
        detected = valid[polarity_ids > 0]
        polarity = np.full(len(frame), None, dtype=object)
        polarity[detected] = np.asarray(ASPECT_POLARITIES, dtype=object)[polarity_ids[polarity_ids > 0]]
        confidence = np.full(len(frame), np.nan, dtype=np.float32)
        confidence[detected] = found.max(axis=1)[polarity_ids > 0]
        evidence = np.full(len(frame), None, dtype=object)
        if valid_evidence is not None:
            evidence[detected] = [" ".join(valid_evidence[i][aspect]) for i in np.flatnonzero(polarity_ids > 0)]
        polarity_column, confidence_column, evidence_column = aspect_columns(aspect)
        result[polarity_column], result[confidence_column], result[evidence_column] = polarity, confidence, evidence
    result["error"] = errors
    return result


def _store_rows(
    bundle: ModelBundle,
    detector: LanguageDetector,
    result: pd.DataFrame,
    prepared: list[str],
    request_id: str,
    first_row: int,
    store_text: bool,
) -> list[dict]:
    """The predicted rows of one chunk as store rows, numbered by their position in the file."""
    valid = np.flatnonzero(result["error"].to_numpy() == "")
    if not len(valid):
        return []
    texts = [prepared[i] for i in valid]
    chosen = result.iloc[valid]

    def column(name: str) -> list:
        return chosen[name].tolist() if name in chosen.columns else [None] * len(valid)

    now = utc_now()
    return prediction_rows(
        request_id=request_id,
        source="file",
        model_version=bundle.version,
        labels=bundle.labels,
        probabilities=chosen[[f"probability_{label}" for label in bundle.labels]].to_numpy(),
        texts=texts,
        item_ids=[str(value) if value is not None else None for value in column("feedback_id")],
        regions=column("region"),
        channels=column("channel"),
        languages=detector.detect(texts),
        written_at=column("timestamp"),
        stars=column("stars"),
        received_at=now,
        scored_at=now,
        store_text=store_text,
        positions=[first_row + int(i) for i in valid],
    )


def neutralize_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells a spreadsheet would run as formulas, prefixed with ``'`` so they show as text; numbers stay."""

    def neutral(value: object) -> object:
        if isinstance(value, str) and value.startswith(FORMULA_PREFIXES) and not _is_number(value):
            return "'" + value
        return value

    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column]):
            frame[column] = frame[column].map(neutral)
    return frame


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _problem(value: object, prepared: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "missing text"
    if not isinstance(value, str):
        return "text is not a string"
    if has_lone_surrogate(value):
        return "invalid text (lone UTF-16 surrogate)"
    return "empty text" if is_blank(value) or is_blank(prepared) else ""


class _ChunkWriter:
    """Appends chunks to a temporary CSV, JSON Lines or Parquet file; :meth:`commit` renames it to the target."""

    def __init__(self, path: Path, parquet_schema: pa.Schema | None, escape_formulas: bool):
        self.path, self.kind, self.escape_formulas = path, table_format(path), escape_formulas
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        os.close(handle)
        self.temporary = Path(name)
        self._parquet_schema = parquet_schema
        self._parquet: pq.ParquetWriter | None = None
        self._first = True

    def write(self, frame: pd.DataFrame) -> None:
        if self.kind == "parquet":
            if self._parquet_schema is None:
                self._parquet_schema = _first_chunk_schema(frame)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.temporary, self._parquet_schema)
            try:
                table = pa.Table.from_pandas(frame, schema=self._parquet_schema, preserve_index=False)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as error:
                raise DataError(
                    f"a column changes type between chunks ({error}); write CSV or JSON Lines, "
                    "or give a Parquet input, whose types are fixed"
                ) from None
            self._parquet.write_table(table)
        elif self.kind == "csv":
            frame = neutralize_formulas(frame) if self.escape_formulas else frame
            frame.to_csv(self.temporary, mode="w" if self._first else "a", header=self._first, index=False)
        else:
            with self.temporary.open("w" if self._first else "a", encoding="utf-8") as handle:
                frame.to_json(handle, orient="records", lines=True, force_ascii=False)
        self._first = False

    def commit(self) -> None:
        """Finish the file (an empty input gives an empty output) and put it in place of the target."""
        if self._parquet is not None:
            self._parquet.close()
        elif self.kind == "parquet" and self._parquet_schema is not None:
            pq.write_table(self._parquet_schema.empty_table(), self.temporary)
        os.replace(self.temporary, self.path)

    def discard(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        self.temporary.unlink(missing_ok=True)


def output_schema(input_schema: pa.Schema, labels: tuple[str, ...], aspects: tuple[str, ...] = ()) -> pa.Schema:
    """The input's columns plus the prediction columns, with fixed types whatever the first rows hold."""
    added = [pa.field("label", pa.string())]
    added += [pa.field(f"probability_{label}", pa.float32()) for label in labels]
    for aspect in aspects:
        polarity_column, confidence_column, evidence_column = aspect_columns(aspect)
        added += [
            pa.field(polarity_column, pa.string()),
            pa.field(confidence_column, pa.float32()),
            pa.field(evidence_column, pa.string()),
        ]
    added.append(pa.field("error", pa.string()))
    names = {field.name for field in added}
    return pa.schema([field for field in input_schema if field.name not in names] + added)


def _first_chunk_schema(frame: pd.DataFrame) -> pa.Schema:
    """Types of a CSV or JSON Lines input, as its first chunk shows them; a column with no value yet is text."""
    schema = pa.Schema.from_pandas(frame, preserve_index=False)
    return pa.schema([pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in schema])


def predict_file(
    bundle: ModelBundle,
    source: Path,
    output: Path,
    text_column: str,
    chunk_rows: int = 2048,
    progress: bool = True,
    encoding: str = "utf-8",
    escape_formulas: bool = True,
    store: PredictionWriter | None = None,
    store_text: bool = True,
    request_id: str | None = None,
) -> dict:
    """Predict every row of `source` into `output`; returns counts (rows, predicted, errors by reason, labels).

    ``encoding`` is the input's (CSV, JSON Lines); the output is UTF-8. With ``escape_formulas``
    a CSV output neutralises cells a spreadsheet would run (:func:`neutralize_formulas`).
    With a `store`, every predicted row is also stored under ids ``<request_id>:<row number>``
    (a new id per run unless given: a rerun with the same id adds nothing twice).
    """
    total = check_paths(source, output, encoding)
    chunks = read_table_chunks(source, chunk_rows, encoding)
    if store is None:
        results = (predict_frame(bundle, chunk, text_column) for chunk in chunks)
    else:
        results = _predicted_and_stored(bundle, chunks, text_column, store, store_text, request_id or uuid.uuid4().hex)
    return write_predictions(
        results, source, output, bundle.labels, escape_formulas, total if progress else False, bundle.aspects
    )


def _predicted_and_stored(
    bundle: ModelBundle,
    chunks: Iterable[pd.DataFrame],
    text_column: str,
    store: PredictionWriter,
    store_text: bool,
    request_id: str,
) -> Iterator[pd.DataFrame]:
    """:func:`predict_frame` chunk by chunk, each chunk's predicted rows also sent to the store.

    The store is flushed after the last chunk, before the output file is committed.
    """
    detector = LanguageDetector(
        bundle.preprocessing["detect_languages"], bundle.preprocessing["min_language_confidence"]
    )
    first_row = 0
    for chunk in chunks:
        result, prepared = _predict(bundle, chunk, text_column)
        store.submit(_store_rows(bundle, detector, result, prepared, request_id, first_row, store_text))
        first_row += len(result)
        yield result
    store.flush()


def check_paths(source: Path, output: Path, encoding: str) -> int | None:
    """Clear errors for an unusable input or output path; the input's row count (None if unknown)."""
    if source.resolve() == output.resolve():
        raise ConfigError("--output must differ from --input")
    table_format(output)
    return count_rows(source, encoding)


def write_predictions(
    results: Iterable[pd.DataFrame],
    source: Path,
    output: Path,
    labels: tuple[str, ...],
    escape_formulas: bool,
    progress_total: int | bool | None,
    aspects: tuple[str, ...] = (),
) -> dict:
    """Write predicted chunks, in order, to `output` (replaced only at the end); the run's counts.

    `progress_total`: the row count for the progress bar, None when unknown, False for no bar.
    `aspects`: the aspect heads whose columns the chunks carry.
    """
    parquet_schema = None
    if table_format(output) == "parquet" and table_format(source) == "parquet":
        parquet_schema = output_schema(pq.ParquetFile(source).schema_arrow, labels, aspects)
    summary = {"rows": 0, "predicted": 0, "errors": {}, "labels": {label: 0 for label in labels}}
    writer = _ChunkWriter(output, parquet_schema, escape_formulas)
    try:
        total = None if progress_total is False else progress_total
        with tqdm(total=total, unit="row", desc="predict", disable=True if progress_total is False else None) as bar:
            for result in results:
                writer.write(result)
                summary["rows"] += len(result)
                for reason, count in result.loc[result["error"] != "", "error"].value_counts().items():
                    summary["errors"][reason] = summary["errors"].get(reason, 0) + int(count)
                for label, count in result["label"].dropna().value_counts().items():
                    summary["labels"][label] += int(count)
                bar.update(len(result))
        writer.commit()
    except BaseException:
        writer.discard()
        raise
    summary["predicted"] = sum(summary["labels"].values())
    if summary["errors"]:
        log.warning(
            "%d row(s) could not be predicted (%s); they are in the output with `error` set",
            summary["rows"] - summary["predicted"],
            summary["errors"],
        )
    return summary
