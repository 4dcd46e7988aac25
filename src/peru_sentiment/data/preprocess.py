"""The ``preprocess`` stage: one table of clean, masked, annotated feedback.

Synthetic and imported rows are combined; each text is repaired and
normalised, personal data is masked (the raw text is not kept), the language
is detected, and the engineered features and the classical cleaned text are
added. The BERT input (``text``) keeps case, accents, punctuation and emojis.
"""

from __future__ import annotations

import logging
from collections import Counter

import pandas as pd
from tqdm import tqdm

from peru_sentiment.config import PreprocessParams
from peru_sentiment.text import classical, prepare
from peru_sentiment.text.classical import ClassicalCleaner
from peru_sentiment.text.features import add_features
from peru_sentiment.text.language import LanguageDetector
from peru_sentiment.text.lexicon import EmotionLexicon
from peru_sentiment.text.prepare import prepare_text

log = logging.getLogger(__name__)

STEPS = (
    *prepare.STEPS,
    "language detected with lingua (es / en / other)",
    "surface features, lexicon emotion_score (AFINN-en-165, configs/lexicons/es.tsv)",
    "text_classical for the baselines: " + "; ".join(classical.STEPS),
)


def combine_sources(synthetic: pd.DataFrame, imported: pd.DataFrame) -> pd.DataFrame:
    """Stack synthetic and imported rows; the declared language becomes ``declared_language``."""
    synthetic = synthetic.assign(role="train")
    frames = [frame for frame in (synthetic, imported) if len(frame)]
    combined = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].copy()
    return combined.rename(columns={"language": "declared_language"})


def preprocess_feedback(
    frame: pd.DataFrame, params: PreprocessParams, progress: bool = True
) -> tuple[pd.DataFrame, dict]:
    """Normalise, mask, detect language and add features; return the table and a summary."""
    masked_counts: Counter = Counter()
    texts, masked_per_row = [], []
    for raw in tqdm(frame["text"], desc="normalise and mask", unit="text", disable=None if progress else True):
        text, counts = prepare_text(raw)
        texts.append(text)
        masked_per_row.append(sum(counts.values()))
        masked_counts.update(counts)
    frame = frame.assign(text=texts, personal_data_masked=masked_per_row)

    log.info("detecting languages of %d texts", len(frame))
    detector = LanguageDetector(params.detect_languages, params.min_language_confidence)
    frame["language"] = detector.detect(frame["text"].tolist())

    log.info("computing features")
    frame = add_features(frame, EmotionLexicon(params.lexicons))
    cleaner = ClassicalCleaner(params.stopwords)
    frame["text_classical"] = [
        cleaner.clean(text, language)
        for text, language in tqdm(
            zip(frame["text"], frame["language"], strict=True),
            total=len(frame),
            desc="classical cleaning",
            unit="text",
            disable=None if progress else True,
        )
    ]

    declared = frame["declared_language"].fillna("")
    known = declared.isin(["es", "en"])
    summary = {
        "rows_in": len(frame),
        "rows_out": len(frame),
        "personal_data_masked": {kind: int(masked_counts.get(kind, 0)) for kind in ("email", "phone", "dni", "card")},
        "rows_with_personal_data": int((frame["personal_data_masked"] > 0).sum()),
        "languages": {k: int(v) for k, v in frame["language"].value_counts().sort_index().items()},
        # How often detection agrees with a declared language (synthetic ground truth, or the file's column).
        "language_agreement": round(float((frame.loc[known, "language"] == declared[known]).mean()), 4)
        if known.any()
        else None,
        "steps": list(STEPS),
    }
    return frame, summary
