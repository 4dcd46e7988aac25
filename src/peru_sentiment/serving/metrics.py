"""Prometheus metrics of the sentiment service, with label values that stay bounded.

The web app creates one :class:`ServiceMetrics` per process and calls it:

- ``observe_request(endpoint, method, status, seconds)`` after every request, inside ``track_in_flight()``;
- ``observe_batch(size)`` for every micro-batch run through the model;
- ``observe_predictions(records)`` with one :class:`PredictionRecord` per prediction (with the
  aspects the model found, when it has aspect heads);
- ``record_error(kind)`` for every error answer (kinds in ``errors.ERROR_KINDS``, anything else is ``other``);
- ``set_model(version, checkpoint, label_distribution)`` when a model bundle is loaded;
- ``render_metrics()`` for ``GET /metrics``.

Under gunicorn set ``PROMETHEUS_MULTIPROC_DIR`` (an empty directory) before the workers
import this module: every worker then writes its values to files there, ``render_metrics``
aggregates them with ``MultiProcessCollector``, and the gunicorn config calls
:func:`reset_multiprocess_dir` in ``on_starting`` and uses :func:`child_exit` as its
``child_exit`` hook.

Aspect opinions are counted by aspect, polarity and region in their own series, which exists
only once a model with aspect heads has predicted.

Region, channel and language come from the request, so they are reduced to fixed sets
(:func:`normalize_region`, :func:`normalize_channel`, :func:`normalize_language`): raw input
never becomes a label value, and the number of series stays bounded.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from peru_sentiment.monitoring import promql as names
from peru_sentiment.regions import region_code, region_lookup
from peru_sentiment.schema import ASPECT_POLARITIES, CHANNELS, LABELS, LANGUAGES, SERVICE_ASPECTS
from peru_sentiment.serving.errors import ERROR_KINDS

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNKNOWN = "unknown"
OTHER = "other"
# The label values of sentiment_errors_total: the API's error kinds, and `other` for anything unexpected.
ERROR_TYPES: tuple[str, ...] = (*ERROR_KINDS, OTHER)
# The polarities of a detected aspect: the aspect heads' classes but "absent".
ASPECT_OPINIONS: tuple[str, ...] = ASPECT_POLARITIES[1:]
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Bucket boundaries are part of each metric's definition: dashboards and rules query them.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
CONFIDENCE_BUCKETS = (0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99, 1.0)
TEXT_LENGTH_BUCKETS = (5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120)


@dataclass(frozen=True)
class PredictionRecord:
    """What the metrics need to know about one prediction; region, channel and language as received.

    ``aspects`` holds an (aspect, polarity) pair per aspect the model found in the text,
    whatever the request asked to see.
    """

    label: str
    confidence: float
    region: str | None
    channel: str | None
    language: str | None
    text_length: int
    aspects: tuple[tuple[str, str], ...] = ()


def normalize_region(value: str | None, regions: Mapping[str, str]) -> str:
    """The ISO 3166-2:PE code of a region given by code or name, any case, accents or not; else ``unknown``.

    ``regions`` is ``regions.region_lookup`` of the region names in ``configs/regions.yaml``.
    """
    return region_code(value, regions)


def normalize_channel(value: str | None) -> str:
    """One of ``schema.CHANNELS`` (``App Review`` and ``app-review`` count) or ``unknown``."""
    key = (value or "").strip().lower().replace("-", "_").replace(" ", "_")
    return key if key in CHANNELS else UNKNOWN


def normalize_language(value: str | None) -> str:
    """``es`` or ``en``; anything else, or no language, is ``other``."""
    key = (value or "").strip().lower()
    return key if key in LANGUAGES else OTHER


def normalize_error(kind: str) -> str:
    """One of :data:`ERROR_TYPES`; an unexpected kind is ``other``."""
    return kind if kind in ERROR_TYPES else OTHER


class ServiceMetrics:
    """The service's metrics in their own registry (values go to shared files in multiprocess mode)."""

    def __init__(self, region_names: Mapping[str, str], registry: CollectorRegistry | None = None) -> None:
        """``region_names`` maps region codes to names; the metrics register in ``registry`` (a new one by default)."""
        self.regions = region_lookup(dict(region_names))
        self._model: tuple[str, str] | None = None
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            names.REQUESTS,
            "HTTP requests by endpoint, method and status code.",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.request_duration = Histogram(
            names.DURATION,
            "Time to answer a request, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            names.IN_FLIGHT,
            "Requests being answered now.",
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self.batch_size = Histogram(
            names.BATCH_SIZE,
            "Texts in each micro-batch run through the model.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            names.PREDICTIONS,
            "Predictions by label, region, channel and language.",
            ["label", "region", "channel", "language"],
            registry=self.registry,
        )
        self.aspect_predictions = Counter(
            names.ASPECT_PREDICTIONS,
            "Aspects found in predicted texts, by aspect, polarity and region (models with aspect heads only).",
            ["aspect", "polarity", "region"],
            registry=self.registry,
        )
        self.confidence = Histogram(
            names.CONFIDENCE,
            "Probability of the predicted label, by label.",
            ["label"],
            buckets=CONFIDENCE_BUCKETS,
            registry=self.registry,
        )
        self.text_length = Histogram(
            names.TEXT_LENGTH,
            "Characters per text received for prediction.",
            buckets=TEXT_LENGTH_BUCKETS,
            registry=self.registry,
        )
        self.model_info = Gauge(
            names.MODEL_INFO,
            "The loaded model bundle (always 1).",
            ["version", "checkpoint"],
            multiprocess_mode="livemax",
            registry=self.registry,
        )
        self.training_label_share = Gauge(
            names.TRAINING_SHARE,
            "Share of each label in the model's training data.",
            ["label"],
            multiprocess_mode="livemostrecent",
            registry=self.registry,
        )
        self.errors = Counter(names.ERRORS, "Error answers by type.", ["type"], registry=self.registry)
        for kind in ERROR_TYPES:  # every type is a series from the start, so rates are 0 rather than missing
            self.errors.labels(kind)

    def observe_request(self, endpoint: str | None, method: str, status: int, seconds: float) -> None:
        """Count one answered request; ``endpoint`` is the route's name (``None`` when no route matched)."""
        endpoint = endpoint or "unmatched"
        method = method.upper() if method.upper() in HTTP_METHODS else "OTHER"
        self.requests.labels(endpoint, method, str(int(status))).inc()
        self.request_duration.labels(endpoint).observe(seconds)

    def track_in_flight(self) -> AbstractContextManager[Any]:
        """Context manager that counts a request as in flight while it runs."""
        return self.in_flight.track_inprogress()

    def observe_batch(self, size: int) -> None:
        """Record the size of one micro-batch run through the model."""
        self.batch_size.observe(size)

    def observe_predictions(self, records: Iterable[PredictionRecord]) -> None:
        """Count predictions and their aspects with bounded labels; record their confidence and text length."""
        for record in records:
            if record.label not in LABELS:
                raise ValueError(f"unknown label {record.label!r}; the model predicts {', '.join(LABELS)}")
            for aspect, polarity in record.aspects:
                if aspect not in SERVICE_ASPECTS or polarity not in ASPECT_OPINIONS:
                    raise ValueError(f"unknown aspect opinion {aspect!r}: {polarity!r}")
            region, channel = normalize_region(record.region, self.regions), normalize_channel(record.channel)
            self.predictions.labels(record.label, region, channel, normalize_language(record.language)).inc()
            for aspect, polarity in record.aspects:
                self.aspect_predictions.labels(aspect, polarity, region).inc()
            self.confidence.labels(record.label).observe(record.confidence)
            self.text_length.observe(record.text_length)

    def record_error(self, kind: str) -> None:
        """Count one error answer of a type in :data:`ERROR_TYPES` (else ``other``)."""
        self.errors.labels(normalize_error(kind)).inc()

    def set_model(self, version: str, checkpoint: str, label_distribution: Mapping[str, float]) -> None:
        """Publish the loaded model and the label distribution of its training data."""
        unknown = set(label_distribution) - set(LABELS)
        if unknown:
            raise ValueError(f"label distribution has unknown labels {sorted(unknown)}")
        if self._model is not None:  # 0 first: in multiprocess mode the file keeps the value after remove()
            self.model_info.labels(*self._model).set(0)
            self.model_info.remove(*self._model)
        self._model = (version, checkpoint)
        self.model_info.labels(version, checkpoint).set(1)
        for label in LABELS:
            self.training_label_share.labels(label).set(float(label_distribution.get(label, 0.0)))

    def render_metrics(self) -> tuple[bytes, str]:
        """The text exposition and its content type; aggregated over processes in multiprocess mode."""
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def reset_multiprocess_dir() -> Path | None:
    """Empty ``PROMETHEUS_MULTIPROC_DIR`` (gunicorn ``on_starting``), so counters restart with the server."""
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        return None
    path = Path(directory)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def child_exit(server: object, worker: Any) -> None:
    """Gunicorn ``child_exit`` hook: drop a dead worker's live gauges (in flight, model info)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(worker.pid)
