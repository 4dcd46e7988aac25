"""Import of real feedback from CSV, JSONL or Parquet files declared in params.

Sources with role ``unlabelled`` have no label (``label`` is empty); they only
adapt the model and never reach the supervised loss or the evaluation.

Every input row ends in exactly one of three places, and the stage checks it:
``rows in = accepted + quarantined + duplicates removed``.

- accepted rows share the columns of the synthetic data (``schema.FEEDBACK_COLUMNS``)
  plus provenance (source file, its sha256, row number) and the source's role;
- quarantined rows keep their raw values and the reason they were rejected
  (empty or invisible text, text too long, a list or object where a value belongs,
  unknown label, invalid stars, unparseable or out-of-range date, undecodable
  bytes, malformed record, missing column);
- duplicates (exact, or near by MinHash) of an earlier accepted row are
  written with the id of the row they duplicate.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from peru_sentiment.config import IngestParams, NearDuplicateParams, SourceParams, StarParams
from peru_sentiment.data.dedup import first_occurrences
from peru_sentiment.errors import ConfigError, DataError
from peru_sentiment.regions import region_code, region_lookup
from peru_sentiment.schema import CHANNELS, LABELS, UNKNOWN_REGION
from peru_sentiment.tables import read_table, table_format
from peru_sentiment.text.normalize import has_lone_surrogate, is_blank

log = logging.getLogger(__name__)
ACCEPTED_COLUMNS = (
    "feedback_id",
    "text",
    "label",
    "language",
    "region",
    "channel",
    "timestamp",
    "stars",
    "source",
    "source_id",
    "role",
    "source_file",
    "source_sha256",
    "source_row",
)


@dataclass
class RawRecords:
    """What a file held: parsed records plus the ones that could not be parsed at all.

    Record values are as the file gave them: text for CSV, JSON values for JSON Lines,
    Python values for Parquet; :func:`_field` turns one into text or rejects it.
    """

    records: list[dict]
    row_numbers: list[int]
    malformed: list[tuple[int, str, str]] = field(default_factory=list)  # (row number, raw line, reason)
    columns: list[str] = field(default_factory=list)


@dataclass
class ImportResult:
    accepted: pd.DataFrame
    quarantined: pd.DataFrame
    duplicates: pd.DataFrame
    summary: dict


def read_records(path: Path, encoding: str = "utf-8") -> RawRecords:
    """Read a file into records without losing undecodable bytes.

    CSV and JSON Lines are decoded here, byte by byte, rather than by the shared
    table reader (:mod:`peru_sentiment.tables`): bytes that do not decode are kept
    as surrogate escapes so that only the row they sit in is quarantined, and a
    malformed line is quarantined on its own, where a table reader fails the whole file.
    """
    if not path.is_file():
        raise ConfigError(f"import source {path} not found; fix its path in params.yaml (ingest.sources)")
    kind = table_format(path)
    if kind == "parquet":
        frame = read_table(path)
        records = frame.to_dict("records")
        return RawRecords(records, list(range(1, len(records) + 1)), columns=list(frame.columns))
    text = path.read_bytes().decode(encoding, errors="surrogateescape")
    return _read_csv(text) if kind == "csv" else _read_jsonl(text)


@contextmanager
def _csv_field_limit(limit: int):
    """Let the csv module read fields up to `limit` characters (its default stops at 131,072 with an error)."""
    previous = csv.field_size_limit(max(limit, csv.field_size_limit()))
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _read_csv(text: str) -> RawRecords:
    """The rows of a CSV text; a field of any length is read (too long a text is quarantined later)."""
    with _csv_field_limit(len(text)):
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = next(reader)
        except StopIteration:
            return RawRecords([], [])
        result = RawRecords([], [], columns=header)
        for number, values in enumerate(reader, start=1):
            if not values:
                continue
            if len(values) != len(header):
                raw = ",".join(values)
                reason = f"malformed record: {len(values)} fields, header has {len(header)}"
                result.malformed.append((number, raw, reason))
                continue
            result.records.append(dict(zip(header, values, strict=True)))
            result.row_numbers.append(number)
    return result


def _read_jsonl(text: str) -> RawRecords:
    result = RawRecords([], [])
    seen_columns: dict[str, None] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            result.malformed.append((number, line, f"malformed record: {error.msg}"))
            continue
        if not isinstance(record, dict):
            result.malformed.append((number, line, "malformed record: not a JSON object"))
            continue
        seen_columns.update(dict.fromkeys(record))
        result.records.append(record)
        result.row_numbers.append(number)
    result.columns = list(seen_columns)
    return result


def _as_text(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _undecodable(value: str) -> bool:
    return any("\udc80" <= char <= "\udcff" for char in value)


def label_from_stars(stars: int, params: StarParams) -> str:
    """Star rating to label: <= negative_max is negative, >= positive_min positive, else neutral."""
    if stars <= params.negative_max:
        return "negative"
    return "positive" if stars >= params.positive_min else "neutral"


class _Rejected(Exception):
    pass


def _field(record: dict, column: str) -> str:
    """The value of `column` as text; rejected when the record lacks it or holds a list or object there."""
    if column not in record:
        raise _Rejected(f"missing column {column!r}")
    value = record[column]
    if isinstance(value, list | dict | tuple | np.ndarray):
        raise _Rejected(f"not a value in column {column!r} (a {type(value).__name__})")
    return _as_text(value)


def _parse_date(raw: str, source: SourceParams, params: IngestParams) -> pd.Timestamp:
    """ISO 8601 first, then the source's format (or day first); within [earliest_date, latest_date]."""
    if source.date_format:
        timestamp = pd.to_datetime(raw, format=source.date_format, errors="coerce", utc=True)
    else:
        timestamp = pd.to_datetime(raw, format="ISO8601", errors="coerce", utc=True)
        if pd.isna(timestamp):
            timestamp = pd.to_datetime(raw, dayfirst=source.dayfirst, errors="coerce", utc=True)
    if pd.isna(timestamp):
        raise _Rejected(f"unparseable date {raw!r}")
    if not params.earliest_date <= timestamp.date() <= params.latest_date:
        raise _Rejected(f"date out of range {raw!r} (ingest.earliest_date to ingest.latest_date)")
    return timestamp.tz_convert(None)


def _convert(record: dict, source: SourceParams, params: IngestParams, regions: dict[str, str]) -> dict:
    """Validate one record and map it onto the feedback columns; raise _Rejected with the reason."""
    mapping = source.columns
    for column, value in record.items():
        if isinstance(value, str) and _undecodable(value):
            raise _Rejected(f"undecodable bytes in column {column!r} (not {source.encoding})")
    values = {name: _field(record, column) for name, column in mapping.model_dump().items() if column}
    text = values["text"].strip()
    if has_lone_surrogate(text):
        raise _Rejected("invalid text (lone UTF-16 surrogate)")
    if is_blank(text):
        raise _Rejected("empty text")
    if len(text) > params.max_text_chars:
        raise _Rejected(f"text too long ({len(text)} characters; ingest.max_text_chars is {params.max_text_chars})")
    stars = label = None  # an unlabelled source maps neither
    if mapping.stars:
        raw = values["stars"].strip()
        try:
            stars = int(float(raw))
        except (ValueError, OverflowError):  # OverflowError: inf
            raise _Rejected(f"invalid stars {raw!r}") from None
        if not 1 <= stars <= 5 or stars != float(raw):
            raise _Rejected(f"invalid stars {raw!r} (expected 1 to 5)")
        label = label_from_stars(stars, params.stars)
    elif mapping.label:
        raw = values["label"].strip()
        label = source.labels.get(raw) if source.labels else raw.lower()
        if label not in LABELS:
            raise _Rejected(f"unknown label {raw!r}")
    timestamp = pd.NaT
    if values.get("timestamp", "").strip():
        timestamp = _parse_date(values["timestamp"].strip(), source, params)
    region = region_code(values["region"], regions) if mapping.region else UNKNOWN_REGION
    channel = values.get("channel", "").strip()
    return {
        "text": text,
        "label": label,
        "language": values.get("language", "").strip().lower() or None,
        "region": region,
        "channel": channel if channel in CHANNELS else "unknown",
        "timestamp": timestamp,
        "stars": stars,
        "source_id": values.get("source_id", "").strip() or None,
    }


def import_source(
    source: SourceParams, params: IngestParams, regions: dict[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate one declared source: (candidate rows, quarantined rows)."""
    raw = read_records(source.path, source.encoding)
    digest = hashlib.sha256(source.path.read_bytes()).hexdigest()
    quarantined = [
        {"source": source.name, "source_file": str(source.path), "source_row": number, "reason": reason, "raw": line}
        for number, line, reason in raw.malformed
    ]
    declared = {name: column for name, column in source.columns.model_dump().items() if column}
    missing = [column for column in declared.values() if column not in raw.columns]
    accepted = []
    for number, record in zip(raw.row_numbers, raw.records, strict=True):
        try:
            row = _convert(record, source, params, regions)
        except _Rejected as reason:
            quarantined.append(
                {
                    "source": source.name,
                    "source_file": str(source.path),
                    "source_row": number,
                    "reason": str(reason),
                    "raw": json.dumps(record, ensure_ascii=False, default=str).encode("utf-8", "replace").decode(),
                }
            )
            continue
        row.update(
            feedback_id=f"{source.name}-{number:07d}",
            source=source.name,
            source_id=row["source_id"] or str(number),
            role=source.role,
            source_file=str(source.path),
            source_sha256=digest,
            source_row=number,
        )
        accepted.append(row)
    if missing:
        log.warning("%s lacks column(s) %s: all its rows are quarantined", source.path, ", ".join(missing))
    rows_in = len(raw.records) + len(raw.malformed)
    log.info("%s: %d rows, %d valid, %d quarantined", source.name, rows_in, len(accepted), len(quarantined))
    return pd.DataFrame(accepted, columns=ACCEPTED_COLUMNS), pd.DataFrame(
        quarantined, columns=["source", "source_file", "source_row", "reason", "raw"]
    )


def import_feedback(
    params: IngestParams, near_duplicates: NearDuplicateParams, region_names: dict[str, str]
) -> ImportResult:
    """Import every declared source, quarantine bad rows and drop duplicates across all of them."""
    regions = region_lookup(region_names)
    candidates, quarantined = [], []
    for source in params.sources:
        valid, rejected = import_source(source, params, regions)
        candidates.append(valid)
        quarantined.append(rejected)
    candidates_frame = _concat(candidates, ACCEPTED_COLUMNS)
    quarantine_frame = _concat(quarantined, ["source", "source_file", "source_row", "reason", "raw"])

    duplicate_of = first_occurrences(candidates_frame["text"].tolist(), near_duplicates)
    is_duplicate = duplicate_of >= 0
    duplicates = candidates_frame[is_duplicate].copy()
    duplicates["duplicate_of"] = candidates_frame["feedback_id"].to_numpy()[duplicate_of[is_duplicate]]
    kept_labels = candidates_frame["label"].to_numpy()[duplicate_of[is_duplicate]]
    accepted = candidates_frame[~is_duplicate].reset_index(drop=True)
    accepted["timestamp"] = pd.to_datetime(accepted["timestamp"])
    accepted["stars"] = accepted["stars"].astype("Int8")
    accepted["source_row"] = accepted["source_row"].astype("int64")

    rows_in = {
        source.name: int((candidates_frame["source"] == source.name).sum())
        + int((quarantine_frame["source"] == source.name).sum())
        for source in params.sources
    }
    summary = {
        "rows_in": sum(rows_in.values()),
        "accepted": len(accepted),
        "quarantined": len(quarantine_frame),
        "duplicates_removed": int(is_duplicate.sum()),
        "duplicates_with_other_label": int((duplicates["label"].to_numpy() != kept_labels).sum()),
        "quarantine_reasons": _reason_counts(quarantine_frame),
        "by_source": {
            source.name: {
                "rows_in": rows_in[source.name],
                "accepted": int((accepted["source"] == source.name).sum()),
                "quarantined": int((quarantine_frame["source"] == source.name).sum()),
                "duplicates_removed": int((duplicates["source"] == source.name).sum()),
                "role": source.role,
            }
            for source in params.sources
        },
    }
    check_accounting(summary)
    return ImportResult(accepted, quarantine_frame, duplicates.reset_index(drop=True), summary)


def check_accounting(summary: dict) -> None:
    """Fail loudly if rows were lost: rows in must equal accepted + quarantined + duplicates."""
    for name, counts in [("all sources", summary), *summary["by_source"].items()]:
        out = counts["accepted"] + counts["quarantined"] + counts["duplicates_removed"]
        if counts["rows_in"] != out:
            raise DataError(
                f"{name}: {counts['rows_in']} rows in but {counts['accepted']} accepted + "
                f"{counts['quarantined']} quarantined + {counts['duplicates_removed']} duplicates = {out}"
            )


def _reason_counts(quarantine: pd.DataFrame) -> dict[str, int]:
    kinds = quarantine["reason"].str.split(r" '| \(|:", regex=True).str[0]
    return {str(kind): int(count) for kind, count in kinds.value_counts().sort_index().items()}


def _concat(frames: list[pd.DataFrame], columns) -> pd.DataFrame:
    frames = [frame for frame in frames if len(frame)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(columns))
