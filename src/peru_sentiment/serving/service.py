"""The prediction service behind the API: raw feedback in, labels, probabilities and aspects out.

The path is the pipeline's own: ``prepare_text`` (normalise, mask personal
data), language detection with the bundle's settings, then the exported model
through the micro-batcher. Nothing here logs the text; with a store, the masked
text and the scores go to its writer (off the request path).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

import numpy as np

from peru_sentiment.export.bundle import ModelBundle
from peru_sentiment.schema import ASPECT_POLARITIES
from peru_sentiment.serving.batcher import MicroBatcher
from peru_sentiment.serving.metrics import PredictionRecord, ServiceMetrics
from peru_sentiment.serving.schemas import ExplainRequest, FeedbackItem
from peru_sentiment.store.records import prediction_rows, utc_now
from peru_sentiment.store.writer import PredictionWriter
from peru_sentiment.text.language import LanguageDetector
from peru_sentiment.text.normalize import is_blank
from peru_sentiment.text.prepare import prepare_text

log = logging.getLogger(__name__)


class EmptyAfterCleaning(ValueError):
    """A text that is nothing but control characters or invisible marks."""


class AspectNotServed(ValueError):
    """A request names an aspect the served model has no head for."""


class PredictionService:
    def __init__(
        self,
        bundle: ModelBundle,
        *,
        micro_batch_size: int,
        max_wait_s: float,
        timeout_s: float,
        metrics: ServiceMetrics,
        model_threads: int = 1,
        store: PredictionWriter | None = None,
        store_text: bool = True,
    ):
        self.bundle, self.metrics, self.timeout_s = bundle, metrics, timeout_s
        self.store, self.store_text = store, store_text
        self.detector = LanguageDetector(
            bundle.preprocessing["detect_languages"], bundle.preprocessing["min_language_confidence"]
        )
        self.batcher = MicroBatcher(
            bundle.predict_rows, micro_batch_size, max_wait_s, metrics.observe_batch, threads=model_threads
        )
        self._ready = threading.Event()
        self._stopping = threading.Event()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def stopping(self) -> bool:
        """Graceful shutdown has begun: /readyz says 503, requests that still arrive are answered."""
        return self._stopping.is_set()

    def begin_shutdown(self) -> None:
        self._stopping.set()

    def warm_up(self) -> None:
        """Run every padded length the model will see once, so the first requests are not slow."""
        start = time.perf_counter()
        self.bundle.endpoints  # noqa: B018  (the SavedModel /v1/explain runs: loaded now when the fast model predicts)
        self.detector.detect(["hola, buenas tardes"])  # lingua loads its language models on first use (~1 s)
        for length in self.bundle.preprocessing["bucket_lengths"]:
            text = " ".join(["bien"] * max(length - 4, 1))
            for batch in (1, self.bundle.batch_size):
                self.bundle.predict_proba([text] * batch)
        self._ready.set()
        log.info("model %s warmed up in %.1f s", self.bundle.version, time.perf_counter() - start)

    def mark_ready(self) -> None:
        self._ready.set()

    def prepare(self, items: list[FeedbackItem | ExplainRequest]) -> list[str]:
        texts = [prepare_text(item.text)[0] for item in items]
        empty = [index for index, text in enumerate(texts) if is_blank(text)]
        if empty:
            raise EmptyAfterCleaning(f"item(s) {empty} contain no visible text")
        return texts

    def requested_aspects(self, choice: bool | list[str]) -> set[str]:
        """The aspects a request asks to see (``aspects``: true for all the model's, false for none, or names)."""
        if choice is True:
            return set(self.bundle.aspects)
        if choice is False:
            return set()
        missing = [name for name in choice if name not in self.bundle.aspects]
        if missing:
            served = ", ".join(self.bundle.aspects) or "none (the model has no aspect heads)"
            raise AspectNotServed(f"the served model has no aspect heads for {missing}; it has: {served}")
        return set(choice)

    def predict(
        self, items: list[FeedbackItem], request_id: str | None = None, aspects: bool | list[str] = True
    ) -> list[dict]:
        """One result per item, in order; the metrics count each by label, region, channel and language.

        The metrics also count every aspect the model finds, whatever ``aspects`` asks to see:
        monitoring does not depend on what clients choose to read.

        With aspect heads each result lists the aspects found (``aspects``: true for all, false for
        none, or the names to look for), each with its evidence words when the bundle has them. With a
        store, the items are queued for it under ``request_id`` before this returns
        (:class:`~peru_sentiment.store.writer.StoreBusy` when its queue stays full).
        """
        received_at = utc_now()
        wanted = self.requested_aspects(aspects)
        texts = self.prepare(items)
        languages = self.detector.detect(texts)
        rows = np.asarray(self.batcher.submit(texts, timeout=self.timeout_s))
        probabilities, aspect_probabilities = self.bundle.split_rows(rows)
        labels = self.bundle.labels
        results = [
            {
                "id": item.id,
                "label": labels[int(row.argmax())],
                "probabilities": {label: round(float(p), 6) for label, p in zip(labels, row, strict=True)},
                "language": language,
            }
            for item, row, language in zip(items, probabilities, languages, strict=True)
        ]
        found = [self.findings(row) for row in aspect_probabilities] if aspect_probabilities is not None else None
        if found is not None and aspects is not False:
            attention = self.bundle.split_attention(rows)
            for index, (result, findings) in enumerate(zip(results, found, strict=True)):
                shown = [finding for finding in findings if finding["aspect"] in wanted]
                if shown and attention is not None:
                    words = self.bundle.evidence(texts[index], attention[index], {f["aspect"] for f in shown})
                    shown = [{**finding, "evidence": words[finding["aspect"]]} for finding in shown]
                result["aspects"] = shown
        opinions = [tuple((f["aspect"], f["polarity"]) for f in findings) for findings in found or [[]] * len(items)]
        self.metrics.observe_predictions(
            PredictionRecord(result["label"], float(row.max()), item.region, item.channel, language, len(text), pairs)
            for result, row, item, language, text, pairs in zip(
                results, probabilities, items, languages, texts, opinions, strict=True
            )
        )
        if self.store is not None:
            self.store.submit(
                prediction_rows(
                    request_id=request_id or uuid.uuid4().hex,
                    source="api",
                    model_version=self.bundle.version,
                    labels=labels,
                    probabilities=probabilities,
                    texts=texts,
                    item_ids=[item.id for item in items],
                    regions=[item.region for item in items],
                    channels=[item.channel for item in items],
                    languages=languages,
                    written_at=[item.timestamp for item in items],
                    stars=[item.stars for item in items],
                    received_at=received_at,
                    scored_at=utc_now(),
                    store_text=self.store_text,
                )
            )
        return results

    def findings(self, aspect_probabilities: np.ndarray) -> list[dict]:
        """The detected aspects (most probable polarity not absent) of one text, with polarity and confidence."""
        found = []
        for head, polarity in enumerate(aspect_probabilities.argmax(axis=-1)):
            if polarity:
                found.append(
                    {
                        "aspect": self.bundle.aspects[head],
                        "polarity": ASPECT_POLARITIES[polarity],
                        "confidence": round(float(aspect_probabilities[head, polarity]), 6),
                    }
                )
        return found

    def close(self) -> None:
        """Finish the queued batches, then write every queued prediction to the store."""
        self.batcher.close()
        if self.store is not None:
            self.store.close()
