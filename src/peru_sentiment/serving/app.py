"""The Flask application factory: load the model, build the service, register routes and error handlers.

Routes live in :mod:`peru_sentiment.serving.routes`, error answers in
:mod:`peru_sentiment.serving.errors`.
"""

from __future__ import annotations

import atexit
import json
import threading

from flask import Flask

from peru_sentiment.export.bundle import ModelBundle, load_bundle
from peru_sentiment.regions import load_regions, region_names
from peru_sentiment.serving.errors import register_error_handlers
from peru_sentiment.serving.metrics import ServiceMetrics
from peru_sentiment.serving.openapi import openapi_document
from peru_sentiment.serving.review import review
from peru_sentiment.serving.routes import EXTENSION, ApiState, api
from peru_sentiment.serving.service import PredictionService
from peru_sentiment.serving.settings import ServeSettings, load_settings
from peru_sentiment.store.database import open_store
from peru_sentiment.store.writer import PredictionWriter


def create_app(settings: ServeSettings | None = None, bundle: ModelBundle | None = None) -> Flask:
    """The app, with its model loaded; warm-up runs in the background and /readyz reports when it is done."""
    settings = settings or load_settings()
    bundle = bundle or load_bundle(
        settings.model_dir,
        batch_size=settings.model_batch_size,
        runtime=settings.model_runtime,
        model_threads=settings.model_threads,
        static_shapes=settings.static_shapes,
        call_threads=settings.model_call_threads,
    )
    metrics = ServiceMetrics(region_names(load_regions(settings.regions_file)))
    metrics.set_model(bundle.version, bundle.checkpoint, bundle.training_distribution)
    store = _store_writer(settings)
    service = PredictionService(
        bundle,
        micro_batch_size=settings.micro_batch_size,
        max_wait_s=settings.max_wait_ms / 1000,
        timeout_s=settings.request_timeout_s,
        metrics=metrics,
        model_threads=settings.model_threads,
        store=store,
        store_text=settings.store_text,
    )
    if settings.warmup:
        threading.Thread(target=service.warm_up, name="warm-up", daemon=True).start()
    else:
        service.mark_ready()

    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes, JSON_SORT_KEYS=False, DEBUG=False, TESTING=False)
    app.json.ensure_ascii = False
    app.extensions[EXTENSION] = ApiState(
        settings=settings,
        bundle=bundle,
        service=service,
        metrics=metrics,
        model_description=_model_description(bundle, settings),
        api_document=openapi_document(settings),
        explain_slots=threading.BoundedSemaphore(settings.max_concurrent_explains),
    )
    app.register_blueprint(api)
    app.register_blueprint(review)
    register_error_handlers(app)
    served = app.wsgi_app

    def counted(environ, start_response):
        with metrics.track_in_flight():
            return served(environ, start_response)

    app.wsgi_app = counted
    return app


def _store_writer(settings: ServeSettings) -> PredictionWriter | None:
    """The store's writer (the database migrated to this version), or None without a store.

    Under gunicorn, the master migrates before forking (serve/gunicorn.conf.py) and
    ``worker_exit`` drains the writer; elsewhere (``flask run``, tests) an exit hook does.
    """
    if settings.store_url is None:
        return None
    writer = PredictionWriter(
        open_store(settings.store_url),
        queue_size=settings.store_queue_size,
        batch_rows=settings.store_batch_rows,
        submit_timeout_s=settings.request_timeout_s,
    )
    atexit.register(writer.close)
    return writer


def _model_description(bundle: ModelBundle, settings: ServeSettings) -> dict:
    """The body of ``GET /v1/model``: the model, its evaluation and the request limits."""
    evaluation = bundle.file_text("metrics.json")
    return {
        "version": bundle.version,
        "labels": list(bundle.labels),
        "aspects": list(bundle.aspects),
        "training_distribution": bundle.training_distribution,
        "preprocessing": bundle.preprocessing,
        "metrics": json.loads(evaluation) if evaluation else None,
        "limits": {
            "max_items": settings.max_items,
            "max_text_chars": settings.max_text_chars,
            "max_body_bytes": settings.max_body_bytes,
            "max_explain_chars": settings.max_explain_chars,
            "max_attention_chars": settings.max_attention_chars,
        },
    }
