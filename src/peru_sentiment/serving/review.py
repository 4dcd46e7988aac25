"""The review page (``/review``) and its API (``/v1/review/...``, behind the API key like all of /v1).

The page holds no data itself: it asks for the API key once (kept in the tab's
session storage) and fetches the queue through the API, so a page without the
key shows nothing. Keys 1/2/3 (or n/u/p) label the shown item negative,
neutral or positive.
"""

from __future__ import annotations

from importlib.resources import files

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import Engine

from peru_sentiment.schema import LABELS
from peru_sentiment.serving.errors import ApiError
from peru_sentiment.serving.settings import EXTENSION
from peru_sentiment.store.review import ReviewError, pending_reviews, record_review

review = Blueprint("review", __name__)
MAX_ITEMS = 50


def _engine() -> Engine:
    store = current_app.extensions[EXTENSION].service.store
    if store is None:
        raise ApiError(404, "not_found", "this server has no store (store_url is empty), so no review queue")
    return store.engine


@review.get("/review")
def review_page() -> Response:
    page = files("peru_sentiment.serving").joinpath("templates/review.html").read_text(encoding="utf-8")
    return Response(page, content_type="text/html; charset=utf-8")


@review.get("/v1/review/items")
def review_items() -> Response:
    limit = request.args.get("limit", "20")
    if not limit.isdigit() or not 1 <= int(limit) <= MAX_ITEMS:
        raise ApiError(422, "validation_error", f"limit must be a whole number from 1 to {MAX_ITEMS}")
    return jsonify({"labels": list(LABELS), "items": pending_reviews(_engine(), int(limit))})


@review.post("/v1/review/items")
def review_item() -> Response:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("id"), str) or not isinstance(body.get("label"), str):
        raise ApiError(422, "validation_error", 'send {"id": "<prediction id>", "label": "negative|neutral|positive"}')
    prediction_id = body["id"]
    reviewer = body.get("reviewer") if isinstance(body.get("reviewer"), str) else None
    try:
        record_review(_engine(), prediction_id, body["label"], reviewer)
    except ReviewError as error:
        status = 422 if body["label"] not in LABELS else 404
        raise ApiError(status, "validation_error" if status == 422 else "not_found", str(error)) from None
    return jsonify({"id": prediction_id, "label": body["label"]})
