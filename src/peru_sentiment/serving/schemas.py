"""Request and response bodies of the API (pydantic): the validation and the OpenAPI schemas come from here.

Limits that depend on the configuration (text length) are checked with the
validation context ``{"max_text_chars": n}``; unknown fields are rejected.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from peru_sentiment.schema import ASPECT_POLARITIES, LABELS, SERVICE_ASPECTS
from peru_sentiment.text.normalize import has_lone_surrogate, is_blank

_STRICT = ConfigDict(extra="forbid", strict=True)


def _check_unicode(value: str) -> str:
    if has_lone_surrogate(value):
        raise ValueError(
            "contains a lone UTF-16 surrogate (\\ud800-\\udfff), which is no character; send valid Unicode"
        )
    return value


def _check_text(value: str, info: ValidationInfo) -> str:
    if is_blank(value):
        raise ValueError("text is empty or has no visible characters")
    limit = (info.context or {}).get("max_text_chars")
    if limit is not None and len(value) > limit:
        raise ValueError(f"text is longer than {limit} characters; split it or shorten it")
    return value


# Every string of a request: valid Unicode (an id is echoed back, a surrogate could not be encoded).
UnicodeText = Annotated[str, AfterValidator(_check_unicode)]
FeedbackText = Annotated[UnicodeText, AfterValidator(_check_text)]


class FeedbackItem(BaseModel):
    """One piece of customer feedback."""

    model_config = _STRICT

    text: FeedbackText = Field(description="The feedback as the customer wrote it (Spanish or English).")
    id: UnicodeText | None = Field(None, max_length=128, description="The caller's id, echoed in the result.")
    region: UnicodeText | None = Field(None, max_length=64, description="ISO 3166-2:PE code or region name.")
    channel: UnicodeText | None = Field(
        None, max_length=32, description="survey, app_review, social_media or support_chat."
    )
    timestamp: UnicodeText | None = Field(None, max_length=64, description="When it was written, ISO 8601.")
    language: UnicodeText | None = Field(None, max_length=16, description="Declared language, if known.")
    stars: int | None = Field(None, ge=1, le=5, description="The review's star rating (1-5), if it has one.")

    @field_validator("timestamp")
    @classmethod
    def _timestamp(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                dt.datetime.fromisoformat(value)
            except ValueError:
                raise ValueError("timestamp is not ISO 8601 (e.g. 2026-05-01T12:30:00-05:00)") from None
        return value


def _check_aspects(value: bool | list[str]) -> bool | list[str]:
    if isinstance(value, list):
        unknown = [name for name in value if name not in SERVICE_ASPECTS]
        if unknown:
            raise ValueError(f"unknown aspects {unknown}; use some of {', '.join(SERVICE_ASPECTS)}")
    return value


AspectChoice = Annotated[
    bool | list[UnicodeText],
    AfterValidator(_check_aspects),
    Field(
        description=(
            "The aspects found in each text, with polarity, confidence and evidence words: "
            "true (all the model's aspects), "
            f"false (none), or a list of aspect names ({', '.join(SERVICE_ASPECTS)})."
        )
    ),
]


class PredictOne(FeedbackItem):
    """One piece of feedback in a request of its own."""

    aspects: AspectChoice = True


class PredictBatch(BaseModel):
    """Several pieces of feedback in one request."""

    model_config = _STRICT

    items: list[FeedbackItem] = Field(min_length=1, description="Up to the server's max_items texts.")
    aspects: AspectChoice = True


class ExplainRequest(BaseModel):
    model_config = _STRICT

    text: FeedbackText = Field(description="One piece of feedback.")
    include_attention: bool = Field(
        False,
        description="Also return attention per layer and head ([layer][head][query][key]); short texts only.",
    )


class AspectFinding(BaseModel):
    aspect: str = Field(description=f"One of {', '.join(SERVICE_ASPECTS)}.")
    polarity: str = Field(description=f"One of {', '.join(ASPECT_POLARITIES[1:])}.")
    confidence: float = Field(description="The aspect head's probability of this polarity.")
    evidence: list[str] | None = Field(
        None,
        description="The words of the text (personal data masked) the aspect's head weighs most, most weighed first "
        "(absent for models exported before evidence words).",
    )


class Prediction(BaseModel):
    id: str | None
    label: str = Field(description=f"One of {', '.join(LABELS)}.")
    probabilities: dict[str, float]
    language: str = Field(description="Detected language: es, en or other.")
    aspects: list[AspectFinding] | None = Field(
        None, description="The aspects the text is about (absent when not asked for or the model has no aspect heads)."
    )


class PredictResponse(BaseModel):
    model_version: str
    predictions: list[Prediction]


class ErrorBody(BaseModel):
    type: str
    message: str
    details: list[dict] = []


class ErrorResponse(BaseModel):
    error: ErrorBody
