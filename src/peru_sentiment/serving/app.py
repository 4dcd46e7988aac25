"""The Flask application (factory ``create_app``): prediction, explanation, health and metadata.

Every client error is a 4xx with a JSON body ``{"error": {"type", "message", "details"}}``.
Responses and logs never contain the feedback text or a stack trace: feedback
carries personal data.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout

from flask import Flask, Response, g, jsonify, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException

from peru_sentiment.data.synthetic import load_regions
from peru_sentiment.export.bundle import ModelBundle, load_bundle
from peru_sentiment.serving.batcher import BatcherClosed
from peru_sentiment.serving.metrics import ServiceMetrics
from peru_sentiment.serving.openapi import openapi_document
from peru_sentiment.serving.schemas import ExplainRequest, FeedbackItem, PredictBatch
from peru_sentiment.serving.service import EmptyAfterCleaning, PredictionService
from peru_sentiment.serving.settings import ServeSettings, load_settings

log = logging.getLogger(__name__)
EXTENSION = "peru_sentiment"


class ApiError(Exception):
    def __init__(self, status: int, kind: str, message: str, details: list[dict] | None = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.details = status, kind, message, details or []


def _error_response(status: int, kind: str, message: str, details: list[dict] | None = None) -> Response:
    response = jsonify({"error": {"type": kind, "message": message, "details": details or []}})
    response.status_code = status
    g.error_kind = kind
    return response


def _validation_details(error: ValidationError) -> list[dict]:
    """Where and why validation failed, without echoing the input."""
    return [
        {"loc": [str(part) for part in item["loc"]], "msg": item["msg"], "type": item["type"]}
        for item in error.errors(include_input=False, include_url=False, include_context=False)
    ]


def _parse_body(model: type[BaseModel] | None, settings: ServeSettings) -> BaseModel:
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "send a JSON body with Content-Type: application/json")
    raw = request.get_data(cache=False)
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_encoding", "the body is not UTF-8 text") from None
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(422, "validation_error", "the body must be a JSON object")
    if model is None:
        model = PredictBatch if "items" in data else FeedbackItem
    try:
        return model.model_validate(data, context={"max_text_chars": settings.max_text_chars})
    except ValidationError as error:
        raise ApiError(
            422, "validation_error", "the request does not match the API schema (see details and /openapi.json)",
            _validation_details(error),
        ) from None  # fmt: skip


def create_app(settings: ServeSettings | None = None, bundle: ModelBundle | None = None) -> Flask:
    """The app, with its model loaded; warm-up runs in the background and /readyz reports when it is done."""
    settings = settings or load_settings()
    bundle = bundle or load_bundle(settings.model_dir, batch_size=settings.model_batch_size)
    metrics = ServiceMetrics({region.code: region.name for region in load_regions(settings.regions_file)})
    metrics.set_model(bundle.version, bundle.checkpoint, bundle.training_distribution)
    service = PredictionService(
        bundle,
        micro_batch_size=settings.micro_batch_size,
        max_wait_s=settings.max_wait_ms / 1000,
        timeout_s=settings.request_timeout_s,
        metrics=metrics,
        model_threads=settings.model_threads,
    )
    if settings.warmup:
        threading.Thread(target=service.warm_up, name="warm-up", daemon=True).start()
    else:
        service.mark_ready()

    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes, JSON_SORT_KEYS=False, DEBUG=False, TESTING=False)
    app.json.ensure_ascii = False
    app.extensions[EXTENSION] = service
    api_key = settings.api_key.get_secret_value().encode() if settings.api_key else None
    explain_slots = threading.BoundedSemaphore(settings.max_concurrent_explains)
    evaluation = bundle.file_text("metrics.json")
    model_description = {
        "version": bundle.version,
        "labels": list(bundle.labels),
        "training_distribution": bundle.training_distribution,
        "preprocessing": bundle.preprocessing,
        "metrics": json.loads(evaluation) if evaluation else None,
        "limits": {"max_items": settings.max_items, "max_text_chars": settings.max_text_chars,
                   "max_body_bytes": settings.max_body_bytes},
    }  # fmt: skip
    api_document = openapi_document(settings)
    served = app.wsgi_app

    def counted(environ, start_response):
        with metrics.track_in_flight():
            return served(environ, start_response)

    app.wsgi_app = counted

    @app.before_request
    def _guard():
        g.started = time.perf_counter()
        if not request.path.startswith("/v1/"):
            return None
        if api_key is not None:
            supplied = request.headers.get("X-API-Key") or request.headers.get("Authorization", "").removeprefix(
                "Bearer "
            )
            if not hmac.compare_digest(supplied.encode(), api_key):
                raise ApiError(401, "unauthorized", "missing or wrong API key (header X-API-Key)")
        if request.method == "POST" and not service.ready:
            raise ApiError(503, "not_ready", "the model is still warming up; retry shortly")
        return None

    @app.post("/v1/predict")
    def predict():
        body = _parse_body(None, settings)
        items = body.items if isinstance(body, PredictBatch) else [body]
        if len(items) > settings.max_items:
            raise ApiError(422, "too_many_items", f"at most {settings.max_items} items per request; split the batch")
        try:
            results = service.predict(items)
        except EmptyAfterCleaning as error:
            raise ApiError(422, "validation_error", str(error)) from None
        return jsonify({"model_version": bundle.version, "predictions": results})

    @app.post("/v1/explain")
    def explain():
        body = _parse_body(ExplainRequest, settings)
        try:
            [text] = service.prepare([body])
        except EmptyAfterCleaning as error:
            raise ApiError(422, "validation_error", str(error)) from None
        if not explain_slots.acquire(timeout=settings.request_timeout_s):
            raise FutureTimeout
        try:  # an explanation costs ~(steps + 1) predictions: a few at a time, so predictions keep flowing
            explanation = bundle.explain(text)
        finally:
            explain_slots.release()
        if not body.include_attention:
            del explanation["attention"]
        return jsonify({"model_version": bundle.version, **explanation})

    @app.get("/v1/model")
    def model_info():
        return jsonify(model_description)

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz():
        if not service.ready:
            return _error_response(503, "not_ready", "the model is still warming up")
        if service.stopping:
            return _error_response(503, "not_ready", "the server is shutting down")
        return jsonify({"status": "ready", "model_version": bundle.version})

    @app.get("/metrics")
    def prometheus_metrics():
        body, content_type = metrics.render_metrics()
        return Response(body, content_type=content_type)

    @app.after_request
    def _observe(response: Response) -> Response:
        rule = request.url_rule
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        metrics.observe_request(rule.endpoint if rule else None, request.method, response.status_code, elapsed)
        if "error_kind" in g:
            metrics.record_error(g.error_kind)
        return response

    @app.get("/openapi.json")
    def openapi():
        return jsonify(api_document)

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        return _error_response(error.status, error.kind, error.message, error.details)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        kind = {413: "body_too_large", 404: "not_found", 405: "method_not_allowed"}.get(error.code, "http_error")
        message = f"the body is larger than {settings.max_body_bytes} bytes" if error.code == 413 else error.name
        return _error_response(error.code or 400, kind, message)

    @app.errorhandler(FutureTimeout)
    @app.errorhandler(BatcherClosed)
    def _unavailable(error: Exception):
        response = _error_response(503, "unavailable", "the model is busy or shutting down; retry shortly")
        response.headers["Retry-After"] = "1"
        return response

    @app.errorhandler(Exception)
    def _internal(error: Exception):
        log.error("internal error on %s %s: %s", request.method, request.path, type(error).__name__)
        return _error_response(500, "internal", "internal error; it has been logged")

    return app
