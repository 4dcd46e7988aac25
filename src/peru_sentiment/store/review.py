"""The review loop's store side: queue predictions for people to label, record their labels, export them.

Low-margin predictions (smallest gap between the top two probabilities) and
predictions that contradict the review's stars are queued with a budget per
day, shared evenly between the regions of that day (round robin), so one busy
region does not take every slot. Suspected label errors of imported rows
join the same queue (:mod:`peru_sentiment.store.label_issues`).
A review is recorded only for a queued prediction and one of the three labels;
the export is a CSV that the ``ingest`` stage reads as a source (role
``train`` or ``external``) with the snippet :func:`ingest_source` gives.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine, and_, or_, select, true

from peru_sentiment.errors import DataError
from peru_sentiment.schema import LABELS
from peru_sentiment.store.models import Prediction, ReviewItem
from peru_sentiment.store.records import utc_now

EXPORT_COLUMNS = ("source_id", "text", "label", "region", "channel", "language", "timestamp")


class ReviewError(DataError):
    """A review that cannot be recorded (unknown prediction, label outside the three)."""


def queue_low_margin(engine: Engine, day: dt.date, budget: int) -> int:
    """Queue at most `budget` of the day's (UTC) unqueued predictions with text, least sure first per region."""
    return _queue(engine, day, budget, "low_margin", Prediction.margin, true())


def queue_star_disagreements(engine: Engine, day: dt.date, budget: int, negative_max: int, positive_min: int) -> int:
    """Queue the day's predictions whose label contradicts the review's stars (positive with at most
    `negative_max` stars, negative with at least `positive_min`), the most confident first."""
    contradicts = or_(
        and_(Prediction.stars <= negative_max, Prediction.label == "positive"),
        and_(Prediction.stars >= positive_min, Prediction.label == "negative"),
    )
    return _queue(engine, day, budget, "disagrees_with_stars", 1 - Prediction.confidence, contradicts)


def _queue(engine: Engine, day: dt.date, budget: int, reason: str, priority, condition) -> int:
    """Queue up to `budget` unqueued predictions with text of `day` meeting `condition`, by ascending `priority`,
    one region at a time (round robin, each region's first) so that a busy region does not take every slot."""
    start = dt.datetime.combine(day, dt.time(), dt.UTC)
    with engine.begin() as connection:
        candidates = connection.execute(
            select(Prediction.id, Prediction.region, priority.label("priority"))
            .outerjoin(ReviewItem, ReviewItem.prediction_id == Prediction.id)
            .where(
                Prediction.received_at >= start,
                Prediction.received_at < start + dt.timedelta(days=1),
                Prediction.text.is_not(None),
                ReviewItem.prediction_id.is_(None),
                condition,
            )
            .order_by(priority, Prediction.id)
        ).all()
        by_region: dict[str, list] = defaultdict(list)
        for row in candidates:
            by_region[row.region or ""].append(row)
        chosen = []
        while len(chosen) < budget and any(by_region.values()):
            for region in sorted(
                (name for name in by_region if by_region[name]), key=lambda n: by_region[n][0].priority
            ):
                if len(chosen) < budget:
                    chosen.append(by_region[region].pop(0))
        if chosen:
            now = utc_now()
            connection.execute(
                ReviewItem.__table__.insert(),
                [{"prediction_id": r.id, "reason": reason, "priority": r.priority, "queued_at": now} for r in chosen],
            )
    return len(chosen)


def pending_reviews(engine: Engine, limit: int = 20) -> list[dict]:
    """The next items to label: id, masked text, the model's label and confidence, region, channel, reason and,
    for an imported row, the label it came with."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                Prediction.id,
                Prediction.text,
                Prediction.label,
                Prediction.confidence,
                Prediction.region,
                Prediction.channel,
                ReviewItem.reason,
                Prediction.given_label,
            )
            .join(ReviewItem, ReviewItem.prediction_id == Prediction.id)
            .where(ReviewItem.reviewed_at.is_(None))
            .order_by(ReviewItem.priority, Prediction.id)
            .limit(limit)
        ).all()
    return [row._asdict() for row in rows]


def record_review(engine: Engine, prediction_id: str, label: str, reviewer: str | None = None) -> None:
    """Store a person's label for a queued prediction (a second review replaces the first)."""
    if label not in LABELS:
        raise ReviewError(f"label {label!r} is not one of {', '.join(LABELS)}")
    with engine.begin() as connection:
        updated = connection.execute(
            ReviewItem.__table__.update()
            .where(ReviewItem.prediction_id == prediction_id)
            .values(reviewed_label=label, reviewed_at=utc_now(), reviewer=(reviewer or None) and reviewer[:64])
        ).rowcount
    if updated != 1:
        raise ReviewError(f"no prediction {prediction_id!r} in the review queue; reload the page for current items")


def reviewed_labels(engine: Engine) -> pd.DataFrame:
    """Every reviewed prediction with its person-given label, in :data:`EXPORT_COLUMNS`."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                Prediction.id.label("source_id"),
                Prediction.text,
                ReviewItem.reviewed_label.label("label"),
                Prediction.region,
                Prediction.channel,
                Prediction.language,
                Prediction.written_at,
                Prediction.received_at,
            )
            .join(ReviewItem, and_(ReviewItem.prediction_id == Prediction.id, ReviewItem.reviewed_at.is_not(None)))
            .order_by(Prediction.id)
        ).all()
    frame = pd.DataFrame(rows, columns=[*EXPORT_COLUMNS[:-1], "written_at", "received_at"])
    moment = frame["written_at"].where(frame["written_at"].notna(), frame["received_at"])
    frame["timestamp"] = pd.to_datetime(moment, utc=True).dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    return frame[list(EXPORT_COLUMNS)]


def export_reviews(engine: Engine, path: Path) -> int:
    """Write the reviewed labels as a CSV that ``ingest`` reads; returns the number of rows."""
    frame = reviewed_labels(engine)
    if frame.empty:
        raise ReviewError("no reviewed predictions to export yet; label some on /review first")
    if frame["text"].isna().any():
        raise ReviewError("some reviewed predictions have no stored text (store_text was off); they cannot train")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    frame.to_csv(partial, index=False)
    partial.replace(path)
    return len(frame)


def ingest_source(name: str, path: Path, role: str) -> dict:
    """The ``ingest.sources`` entry (params.yaml) that imports an export of :func:`export_reviews`."""
    return {
        "name": name,
        "path": str(path),
        "role": role,
        "columns": {column: column for column in EXPORT_COLUMNS},
    }
