"""The API's errors: every failure is a JSON body ``{"error": {"type", "message", "details"}}``.

:data:`ERROR_KINDS` is the one list of the ``type`` values the app can answer
with; the metrics count errors by these kinds (``sentiment_errors_total``).
Responses and logs never contain the feedback text or a stack trace: feedback
carries personal data.
"""

from __future__ import annotations

import logging
from concurrent.futures import TimeoutError as FutureTimeout

from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from peru_sentiment.serving.batcher import BatcherClosed
from peru_sentiment.store.writer import StoreBusy

log = logging.getLogger(__name__)

# Every `type` an error answer can carry (the metrics label values of sentiment_errors_total).
ERROR_KINDS: tuple[str, ...] = (
    "invalid_json",
    "invalid_encoding",
    "invalid_body",
    "unsupported_media_type",
    "validation_error",
    "too_many_items",
    "body_too_large",
    "unauthorized",
    "not_found",
    "method_not_allowed",
    "not_ready",
    "unavailable",
    "http_error",
    "internal",
)
# What HTTP errors raised by Flask/Werkzeug (not by our code) are called; any other code is `http_error`.
HTTP_ERROR_KINDS = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


class ApiError(Exception):
    """A client error with its HTTP status and a `kind` from :data:`ERROR_KINDS`."""

    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        details: list[dict] | None = None,
        headers: dict[str, str] | None = None,
    ):
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown error kind {kind!r}; add it to ERROR_KINDS")
        super().__init__(message)
        self.status, self.kind, self.message, self.details = status, kind, message, details or []
        self.headers = headers or {}


def error_response(
    status: int, kind: str, message: str, details: list[dict] | None = None, headers: dict[str, str] | None = None
) -> Response:
    """The JSON error answer; the metrics count it by ``kind`` after the request."""
    response = jsonify({"error": {"type": kind, "message": message, "details": details or []}})
    response.status_code = status
    response.headers.update(headers or {})
    g.error_kind = kind
    return response


def _api_error(error: ApiError) -> Response:
    return error_response(error.status, error.kind, error.message, error.details, error.headers)


def _http_error(error: HTTPException) -> Response:
    code = error.code or 400
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    message = f"the body is larger than {limit} bytes" if code == 413 else error.name
    # Keep the headers the error defines (Allow on 405), not its HTML content type.
    headers = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}
    return error_response(code, HTTP_ERROR_KINDS.get(code, "http_error"), message, headers=headers)


def _unavailable(error: Exception) -> Response:
    return error_response(
        503, "unavailable", "the model is busy or shutting down; retry shortly", headers={"Retry-After": "1"}
    )


def _internal(error: Exception) -> Response:
    # %r escapes control characters: a crafted path cannot forge log lines.
    log.error("internal error on %s %r: %s", request.method, request.path, type(error).__name__)
    return error_response(500, "internal", "internal error; it has been logged")


def register_error_handlers(app: Flask) -> None:
    """Answer every error of `app` with the JSON error body."""
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(FutureTimeout, _unavailable)
    app.register_error_handler(BatcherClosed, _unavailable)
    app.register_error_handler(StoreBusy, _unavailable)
    app.register_error_handler(Exception, _internal)
