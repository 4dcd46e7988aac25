"""The OpenAPI 3.1 document of the API, served at ``/openapi.json``.

Schemas come from the pydantic models that validate the requests, so the
document cannot drift from the validation; a test checks the paths against the
app's routes.
"""

from __future__ import annotations

from importlib.metadata import version

from pydantic.json_schema import models_json_schema

from peru_sentiment.serving.schemas import ErrorResponse, ExplainRequest, PredictBatch, PredictOne, PredictResponse
from peru_sentiment.serving.settings import ServeSettings

REF = "#/components/schemas/{model}"


def _json(schema: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": REF.format(model=schema)}}}}


def _errors(*codes: int) -> dict:
    return {str(code): _json("ErrorResponse", "Error (JSON body with type and message)") for code in codes}


def _status(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"type": "object"}}}}


def openapi_document(settings: ServeSettings) -> dict:
    models = [PredictOne, PredictBatch, ExplainRequest, PredictResponse, ErrorResponse]
    _, definitions = models_json_schema([(model, "validation") for model in models], ref_template=REF)
    security = [{"apiKey": []}] if settings.api_key else []
    client_errors = _errors(400, 401, 413, 415, 422, 503)
    one_or_many = {"oneOf": [{"$ref": REF.format(model="PredictOne")}, {"$ref": REF.format(model="PredictBatch")}]}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Peru customer-feedback sentiment API",
            "version": version("peru_sentiment"),
            "description": (
                "Sentiment (negative / neutral / positive) of customer feedback in Spanish or English. "
                f"At most {settings.max_items} items per request and {settings.max_text_chars} characters per text "
                "(longer texts are rejected); the model reads the first tokens up to its maximum length."
            ),
        },
        "paths": {
            "/v1/predict": {
                "post": {
                    "summary": "Sentiment of one text or a batch, and the aspects each text is about",
                    "description": (
                        "With aspect heads in the model, each prediction lists the aspects found with their "
                        "polarity, confidence and evidence words (the words its head weighs most) "
                        '("aspects": false turns it off, a list of names narrows it; a '
                        "name the model has no head for is a 422). "
                        "With the same X-Request-ID, a retried request is stored once (1-128 letters, digits, "
                        ".:_-); without it the server makes one and returns it in the X-Request-ID header."
                    ),
                    "security": security,
                    "parameters": [{"name": "X-Request-ID", "in": "header", "schema": {"type": "string"}}],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": one_or_many}}},
                    "responses": {"200": _json("PredictResponse", "Predictions in item order"), **client_errors},
                }
            },
            "/v1/explain": {
                "post": {
                    "summary": "Which words drove the prediction: attention and integrated gradients",
                    "description": (
                        f"Texts up to {settings.max_explain_chars} characters; include_attention for texts up to "
                        f"{settings.max_attention_chars} characters (weights rounded to 4 decimals)."
                    ),
                    "security": security,
                    "requestBody": {"required": True, **_json("ExplainRequest", "One text")},
                    "responses": {"200": _status("Label, probabilities and per-word scores"), **client_errors},
                }
            },
            "/v1/model": {
                "get": {
                    "summary": "The served model: version, labels, training label mix, preprocessing, metrics",
                    "security": security,
                    "responses": {"200": _status("Model metadata"), **_errors(401)},
                }
            },
            "/v1/review/items": {
                "get": {
                    "summary": "The next predictions to label (masked text, model label and confidence)",
                    "security": security,
                    "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 50}}],
                    "responses": {"200": _status("labels and items"), **_errors(401, 404, 422)},
                },
                "post": {
                    "summary": "Record a person's label for a queued prediction",
                    "security": security,
                    "requestBody": {"required": True, **_status('{"id": prediction id, "label": one of the labels}')},
                    "responses": {"200": _status("The recorded label"), **_errors(401, 404, 422)},
                },
            },
            "/review": {
                "get": {
                    "summary": "The review page (HTML); it asks for the API key and labels with keys 1/2/3",
                    "responses": {"200": {"description": "HTML page", "content": {"text/html": {}}}},
                }
            },
            "/healthz": {"get": {"summary": "The process is alive", "responses": {"200": _status("Alive")}}},
            "/readyz": {
                "get": {
                    "summary": "The model is loaded and warmed up",
                    "responses": {"200": _status("Ready"), **_errors(503)},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "Prometheus text format", "content": {"text/plain": {}}}},
                }
            },
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": _status("OpenAPI 3.1")}}},
        },
        "components": {
            "schemas": definitions["$defs"],
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
    }
