"""The store's tables (SQLAlchemy 2 declarative models); every change goes with an Alembic migration."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Prediction(Base):
    """One scored piece of feedback. ``id`` is ``<request id>:<item index>``, so a retried request adds nothing."""

    __tablename__ = "predictions"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(128))
    item_id: Mapped[str | None] = mapped_column(String(128))  # the caller's id of the item, if it sent one
    source: Mapped[str] = mapped_column(String(16))  # "api", "file" (the predict command) or "import" (label issues)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    scored_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    written_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))  # the customer's timestamp
    region: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[str | None] = mapped_column(String(32))
    language: Mapped[str | None] = mapped_column(String(16))
    stars: Mapped[int | None] = mapped_column(Integer)  # the review's 1-5 stars, when it came with them
    text: Mapped[str | None] = mapped_column(Text)  # masked (personal data replaced); None when text storage is off
    label: Mapped[str] = mapped_column(String(16))
    given_label: Mapped[str | None] = mapped_column(String(16))  # an imported row's own label (see label_issues)
    confidence: Mapped[float] = mapped_column(Float)  # the top probability
    margin: Mapped[float] = mapped_column(Float)  # top minus second probability: small means unsure
    probabilities: Mapped[dict] = mapped_column(JSON)
    model_version: Mapped[str] = mapped_column(String(128))
    aspects: Mapped[dict | None] = mapped_column(JSON)  # per-aspect sentiment, once the model gives it

    __table_args__ = (
        Index("ix_predictions_received_at", "received_at"),
        Index("ix_predictions_region_received_at", "region", "received_at"),
        Index("ix_predictions_request_id", "request_id"),
    )


class ReviewItem(Base):
    """A stored prediction queued for a person to label, and the label they gave."""

    __tablename__ = "review_items"

    prediction_id: Mapped[str] = mapped_column(ForeignKey("predictions.id", ondelete="CASCADE"), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32))  # see peru_sentiment.store.review.REASONS
    priority: Mapped[float] = mapped_column(Float)  # reviewed in ascending order (the margin for low_margin)
    queued_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    reviewed_label: Mapped[str | None] = mapped_column(String(16))
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    reviewer: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_review_items_pending", "reviewed_at", "priority"),)
