"""Import of real feedback from CSV, JSONL or Parquet files declared in params.

Sources with role ``unlabelled`` have no label (``label`` is empty); they only
adapt the model and never reach the supervised loss or the evaluation.

Every input row ends in exactly one of three places, and the stage checks it:
``rows in = accepted + quarantined + duplicates removed``.

- accepted rows share the columns of the synthetic data (``schema.FEEDBACK_COLUMNS``)
  plus provenance (source file, its sha256, row number) and the source's role;
- quarantined rows keep their raw values and the reason they were rejected
  (empty text, unknown label, invalid stars, unparseable date, undecodable
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
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from peru_sentiment.config import IngestParams, NearDuplicateParams, SourceParams, StarParams
from peru_sentiment.data.dedup import duplicate_key, first_occurrences
from peru_sentiment.errors import ConfigError, DataError
from peru_sentiment.schema import CHANNELS, LABELS, UNKNOWN_REGION

log = logging.getLogger(__name__)

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
ACCEPTED_COLUMNS = (
    "feedback_id", "text", "label", "language", "region", "channel", "timestamp", "stars",
    "source", "source_id", "role", "source_file", "source_sha256", "source_row",
)  # fmt: skip


@dataclass
class RawRecords:
    """What a file held: parsed records plus the ones that could not be parsed at all."""

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
    """Read a file into string-valued records without losing undecodable bytes.

    Bytes that do not decode are kept as surrogate escapes so that the row they
    sit in can be quarantined, instead of failing the whole file.
    """
    if not path.is_file():
        raise ConfigError(f"import source {path} not found; fix its path in params.yaml (ingest.sources)")
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(f"{path}: unsupported format; use one of {', '.join(sorted(FORMATS))}")
    if kind == "parquet":
        frame = pd.read_parquet(path)
        records = [{k: _as_text(v) for k, v in row.items()} for row in frame.to_dict("records")]
        return RawRecords(records, list(range(1, len(records) + 1)), columns=list(frame.columns))
    text = path.read_bytes().decode(encoding, errors="surrogateescape")
    return _read_csv(text) if kind == "csv" else _read_jsonl(text)


def _read_csv(text: str) -> RawRecords:
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
            result.malformed.append((number, raw, f"malformed record: {len(values)} fields, header has {len(header)}"))
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
        result.records.append({k: _as_text(v) for k, v in record.items()})
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


def _convert(record: dict, source: SourceParams, stars_params: StarParams, regions: dict[str, str]) -> dict:
    """Validate one record and map it onto the feedback columns; raise _Rejected with the reason."""
    mapping = source.columns
    for column, value in record.items():
        if _undecodable(value):
            raise _Rejected(f"undecodable bytes in column {column!r} (not {source.encoding})")
    text = record[mapping.text].strip()
    if not text:
        raise _Rejected("empty text")
    stars = label = None  # an unlabelled source maps neither
    if mapping.stars:
        raw = record[mapping.stars].strip()
        try:
            stars = int(float(raw))
        except ValueError:
            raise _Rejected(f"invalid stars {raw!r}") from None
        if not 1 <= stars <= 5 or stars != float(raw):
            raise _Rejected(f"invalid stars {raw!r} (expected 1 to 5)")
        label = label_from_stars(stars, stars_params)
    elif mapping.label:
        raw = record[mapping.label].strip()
        label = source.labels.get(raw) if source.labels else raw.lower()
        if label not in LABELS:
            raise _Rejected(f"unknown label {raw!r}")
    timestamp = pd.NaT
    if mapping.timestamp and record[mapping.timestamp].strip():
        raw = record[mapping.timestamp].strip()
        timestamp = pd.to_datetime(raw, errors="coerce", utc=True)
        if pd.isna(timestamp):
            raise _Rejected(f"unparseable date {raw!r}")
        timestamp = timestamp.tz_convert(None)
    region = UNKNOWN_REGION
    if mapping.region:
        region = regions.get(duplicate_key(record[mapping.region]), UNKNOWN_REGION)
    channel = "unknown"
    if mapping.channel and record[mapping.channel].strip() in CHANNELS:
        channel = record[mapping.channel].strip()
    language = record[mapping.language].strip().lower() if mapping.language else ""
    return {
        "text": text,
        "label": label,
        "language": language or None,
        "region": region,
        "channel": channel,
        "timestamp": timestamp,
        "stars": stars,
        "source_id": record[mapping.source_id].strip() if mapping.source_id else None,
    }


def region_lookup(region_names: dict[str, str]) -> dict[str, str]:
    """Map region codes and names (any case or accents) to region codes."""
    lookup = {}
    for code, name in region_names.items():
        lookup[duplicate_key(code)] = code
        lookup[duplicate_key(name)] = code
    return lookup


def import_source(
    source: SourceParams, stars_params: StarParams, regions: dict[str, str]
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
            if missing:
                raise _Rejected(f"missing column {missing[0]!r}")
            row = _convert(record, source, stars_params, regions)
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
        valid, rejected = import_source(source, params.stars, regions)
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
