"""The API's routes (a blueprint): prediction, explanation, health and metadata.

The routes find what they serve in ``current_app.extensions[EXTENSION]``, an
:class:`ApiState` that :func:`peru_sentiment.serving.app.create_app` builds.
"""

from __future__ import annotations

import hmac
import json
import re
import threading
import time
import uuid
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import IO

import numpy as np
from flask import Blueprint, Response, current_app, g, jsonify, request
from gunicorn.http.errors import ParseException
from pydantic import BaseModel, ValidationError

from peru_sentiment.export.bundle import ModelBundle
from peru_sentiment.serving.errors import ApiError, error_response
from peru_sentiment.serving.metrics import ServiceMetrics
from peru_sentiment.serving.schemas import ExplainRequest, PredictBatch, PredictOne
from peru_sentiment.serving.service import AspectNotServed, EmptyAfterCleaning, PredictionService
from peru_sentiment.serving.settings import EXTENSION, ServeSettings

# A client's id for a request: a retry with the same id is not stored twice (see peru_sentiment.store).
REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
ATTENTION_DECIMALS = 4  # attention weights in the JSON: enough to draw them, a third of the bytes of full floats
_READ_SIZE = 64 * 1024

api = Blueprint("api", __name__)


@dataclass
class ApiState:
    """Everything the routes serve, built once when the app starts."""

    settings: ServeSettings
    bundle: ModelBundle
    service: PredictionService
    metrics: ServiceMetrics
    model_description: dict
    api_document: dict
    explain_slots: threading.BoundedSemaphore

    def close(self) -> None:
        self.service.close()


def _state() -> ApiState:
    return current_app.extensions[EXTENSION]


def _read_at_most(stream: IO[bytes], size: int) -> bytes:
    parts, total = [], 0
    while total < size:
        part = stream.read(min(_READ_SIZE, size - total))
        if not part:
            break
        parts.append(part)
        total += len(part)
    return b"".join(parts)


def _read_body(limit: int) -> bytes:
    """The request body; 413 when it is over `limit` bytes, also when it comes chunked without a length."""
    try:
        if request.content_length is not None or "wsgi.input_terminated" not in request.environ:
            return request.get_data(cache=False)  # Werkzeug compares Content-Length with the limit
        # A chunked body: Werkzeug would stop silently at the limit, so read one byte more to see if it goes over.
        body = _read_at_most(request.environ["wsgi.input"], limit + 1)
    except (OSError, ValueError, ParseException):  # gunicorn raises ParseException on a malformed chunk size
        raise ApiError(400, "invalid_body", "the body could not be read (malformed chunked encoding?)") from None
    if len(body) > limit:
        raise ApiError(413, "body_too_large", f"the body is larger than {limit} bytes")
    return body


def _validation_details(error: ValidationError) -> list[dict]:
    """Where and why validation failed, without echoing the input."""
    return [
        {"loc": [str(part) for part in item["loc"]], "msg": item["msg"], "type": item["type"]}
        for item in error.errors(include_input=False, include_url=False, include_context=False)
    ]


def _parse_body(model: type[BaseModel] | None, max_text_chars: int) -> BaseModel:
    """The JSON body validated by `model` (None: one item or a batch, by the presence of ``items``)."""
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "send a JSON body with Content-Type: application/json")
    raw = _read_body(current_app.config["MAX_CONTENT_LENGTH"])
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_encoding", "the body is not UTF-8 text") from None
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(422, "validation_error", "the body must be a JSON object")
    if model is None:
        model = PredictBatch if "items" in data else PredictOne
    try:
        return model.model_validate(data, context={"max_text_chars": max_text_chars})
    except ValidationError as error:
        message = "the request does not match the API schema (see details and /openapi.json)"
        raise ApiError(422, "validation_error", message, _validation_details(error)) from None


@api.before_app_request
def _guard() -> None:
    g.started = time.perf_counter()
    if not request.path.startswith("/v1/"):
        return
    state = _state()
    api_key = state.settings.api_key
    if api_key is not None:
        supplied = request.headers.get("X-API-Key") or request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(supplied.encode(), api_key.get_secret_value().encode()):
            raise ApiError(
                401,
                "unauthorized",
                "missing or wrong API key (header X-API-Key or Authorization: Bearer)",
                headers={"WWW-Authenticate": 'Bearer realm="peru-sentiment"'},
            )
    if request.method == "POST" and not state.service.ready:
        raise ApiError(503, "not_ready", "the model is still warming up; retry shortly")


@api.after_app_request
def _observe(response: Response) -> Response:
    metrics = _state().metrics
    rule = request.url_rule
    endpoint = rule.endpoint.removeprefix(f"{api.name}.") if rule else None
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    metrics.observe_request(endpoint, request.method, response.status_code, elapsed)
    if "error_kind" in g:
        metrics.record_error(g.error_kind)
    return response


@api.post("/v1/predict")
def predict() -> Response:
    state = _state()
    body = _parse_body(None, state.settings.max_text_chars)
    items = body.items if isinstance(body, PredictBatch) else [body]
    if len(items) > state.settings.max_items:
        raise ApiError(422, "too_many_items", f"at most {state.settings.max_items} items per request; split the batch")
    request_id = _request_id()
    try:
        results = state.service.predict(items, request_id, aspects=body.aspects)
    except (EmptyAfterCleaning, AspectNotServed) as error:
        raise ApiError(422, "validation_error", str(error)) from None
    response = jsonify({"model_version": state.bundle.version, "predictions": results})
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


def _request_id() -> str:
    """The client's X-Request-ID (checked: it becomes a database key), or a new one."""
    supplied = request.headers.get(REQUEST_ID_HEADER)
    if supplied is None:
        return uuid.uuid4().hex
    if not REQUEST_ID_PATTERN.fullmatch(supplied):
        raise ApiError(
            422, "validation_error", f"{REQUEST_ID_HEADER} must be 1-128 letters, digits or . _ : - (e.g. a UUID)"
        )
    return supplied


@api.post("/v1/explain")
def explain() -> Response:
    state = _state()
    settings = state.settings
    body = _parse_body(ExplainRequest, settings.max_explain_chars)
    if body.include_attention and len(body.text) > settings.max_attention_chars:
        raise ApiError(
            422,
            "validation_error",
            f"include_attention is available for texts up to {settings.max_attention_chars} characters",
        )
    try:
        [text] = state.service.prepare([body])
    except EmptyAfterCleaning as error:
        raise ApiError(422, "validation_error", str(error)) from None
    if not state.explain_slots.acquire(timeout=settings.request_timeout_s):
        raise FutureTimeout
    try:  # an explanation costs ~(steps + 1) predictions: a few at a time, so predictions keep flowing
        explanation = state.bundle.explain(text)
    finally:
        state.explain_slots.release()
    if body.include_attention:
        attention = np.asarray(explanation["attention"], dtype=np.float64)
        explanation["attention"] = attention.round(ATTENTION_DECIMALS).tolist()
    else:
        del explanation["attention"]
    return jsonify({"model_version": state.bundle.version, **explanation})


@api.get("/v1/model")
def model_info() -> Response:
    return jsonify(_state().model_description)


@api.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@api.get("/readyz")
def readyz() -> Response:
    state = _state()
    if not state.service.ready:
        return error_response(503, "not_ready", "the model is still warming up")
    if state.service.stopping:
        return error_response(503, "not_ready", "the server is shutting down")
    return jsonify({"status": "ready", "model_version": state.bundle.version})


@api.get("/metrics")
def prometheus_metrics() -> Response:
    body, content_type = _state().metrics.render_metrics()
    return Response(body, content_type=content_type)


@api.get("/openapi.json")
def openapi() -> Response:
    return jsonify(_state().api_document)
