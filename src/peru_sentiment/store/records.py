"""Predictions as rows of the ``predictions`` table (one shape for the API and the predict command)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

import numpy as np

# Feedback timestamps without an offset are Peruvian local time (UTC-5 all year, no daylight saving).
PERU = dt.timezone(dt.timedelta(hours=-5), "PET")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def as_utc(value: object) -> dt.datetime | None:
    """A feedback timestamp (ISO text, datetime or pandas Timestamp) in UTC; None when absent or unreadable."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if not isinstance(value, dt.datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=PERU)
    return value.astimezone(dt.UTC)


def _optional_text(value: object, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _stars(value: object) -> int | None:
    """1-5 stars as an int; anything else (missing, NaN, out of range) is no rating."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() and 1 <= number <= 5 else None


def prediction_rows(
    *,
    request_id: str,
    source: str,
    model_version: str,
    labels: Sequence[str],
    probabilities: np.ndarray,
    texts: Sequence[str],
    item_ids: Sequence[object],
    regions: Sequence[object],
    channels: Sequence[object],
    languages: Sequence[object],
    written_at: Sequence[object],
    received_at: dt.datetime,
    scored_at: dt.datetime,
    store_text: bool,
    positions: Sequence[int | str] | None = None,
    stars: Sequence[object] | None = None,
) -> list[dict]:
    """One row per text; ``positions`` (default 0..n-1) number (or name) the items within the request or file."""
    positions = range(len(texts)) if positions is None else positions
    stars = [None] * len(texts) if stars is None else stars
    rows = []
    for index, row in enumerate(np.asarray(probabilities, dtype=np.float64)):
        top, second = np.sort(row)[::-1][:2]
        rows.append(
            {
                "id": f"{request_id}:{positions[index]}",
                "request_id": request_id,
                "item_id": _optional_text(item_ids[index], 128),
                "source": source,
                "received_at": received_at,
                "scored_at": scored_at,
                "written_at": as_utc(written_at[index]),
                "region": _optional_text(regions[index], 64),
                "channel": _optional_text(channels[index], 32),
                "language": _optional_text(languages[index], 16),
                "stars": _stars(stars[index]),
                "text": texts[index] if store_text else None,
                "label": labels[int(row.argmax())],
                "confidence": round(float(top), 6),
                "margin": round(float(top - second), 6),
                "probabilities": {label: round(float(p), 6) for label, p in zip(labels, row, strict=True)},
                "model_version": model_version,
                "aspects": None,
            }
        )
    return rows
