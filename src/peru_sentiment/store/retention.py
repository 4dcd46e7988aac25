"""Retention: predictions older than a number of days are deleted (``peru-sentiment store cleanup``)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, delete

from peru_sentiment.store.models import Prediction
from peru_sentiment.store.records import utc_now


def delete_older_than(engine: Engine, days: int, now: dt.datetime | None = None) -> int:
    """Delete the predictions received more than `days` days before `now`; returns how many."""
    cutoff = (now or utc_now()) - dt.timedelta(days=days)
    with engine.begin() as connection:
        return connection.execute(delete(Prediction).where(Prediction.received_at < cutoff)).rowcount
