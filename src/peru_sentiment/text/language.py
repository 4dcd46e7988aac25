"""Offline language detection (lingua: its models ship inside the wheel)."""

from __future__ import annotations

from collections.abc import Sequence

from lingua import IsoCode639_1, LanguageDetectorBuilder

from peru_sentiment.errors import ConfigError

KEPT = ("es", "en")  # everything else is reported as "other"


class LanguageDetector:
    """Labels texts as ``es``, ``en`` or ``other``.

    lingua compares the configured languages; a text whose best language is not
    Spanish or English, or whose confidence is below ``min_confidence`` (emoji,
    "ok", numbers), is ``other``.
    """

    def __init__(self, languages: Sequence[str], min_confidence: float):
        try:
            codes = [getattr(IsoCode639_1, code.upper()) for code in languages]
        except AttributeError as error:
            raise ConfigError(f"unknown ISO 639-1 language code in preprocess.detect_languages: {error}") from None
        self.min_confidence = min_confidence
        self._detector = LanguageDetectorBuilder.from_iso_codes_639_1(*codes).build()

    def detect(self, texts: Sequence[str]) -> list[str]:
        results = self._detector.compute_language_confidence_values_in_parallel(list(texts))
        languages = []
        for values in results:
            best = values[0] if values else None
            code = best.language.iso_code_639_1.name.lower() if best else "other"
            languages.append(code if best and best.value >= self.min_confidence and code in KEPT else "other")
        return languages
