"""The model's view of a raw text: the one function training, evaluation, export and serving all call."""

from __future__ import annotations

from collections import Counter

from peru_sentiment.config import PreprocessParams
from peru_sentiment.text.normalize import normalize_text
from peru_sentiment.text.pii import mask_personal_data

STEPS = (
    "unicode repair (ftfy) and NFC normalisation, control characters dropped, whitespace collapsed",
    "personal data masked: [EMAIL], [CARD] (Luhn-checked), [PHONE], [DNI]",
)


def prepare_text(text: str) -> tuple[str, Counter]:
    """The text normalised with its personal data masked, and the count of each kind masked."""
    return mask_personal_data(normalize_text(text))


def inference_settings(params: PreprocessParams) -> dict:
    """What a serving process must do to a raw text, as recorded in the export bundle."""
    return {
        "steps": list(STEPS),
        "function": f"{__name__}.{prepare_text.__name__}",
        "detect_languages": list(params.detect_languages),
        "min_language_confidence": params.min_language_confidence,
    }
