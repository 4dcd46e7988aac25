"""How far the synthetic corpus is from each imported real set.

For every real source (imported rows of any role: ``train``, ``external``,
``unlabelled``) against the synthetic rows:

- a domain classifier's cross-validated ROC AUC: TF-IDF word and character
  n-grams with logistic regression, real vs the synthetic texts in the real
  set's languages (0.5 = the two cannot be told apart, 1.0 = every text gives
  its side away; the method Evidently uses for text drift);
- distances between the distributions of surface features (length,
  punctuation, emoji, uppercase, exclamation, lexicon-word density, emotion
  score): the Kolmogorov-Smirnov statistic (0..1) and the Wasserstein distance;
- the label mix of both sides and their total-variation distance;
- the word n-grams that most give each side away.

Statistics only: no real text is stored, only n-grams that the classifier
weights most, in the report written under ``reports/``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp, wasserstein_distance
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import FeatureUnion, Pipeline

from peru_sentiment.config import RealismParams
from peru_sentiment.schema import LABELS
from peru_sentiment.text.features import surface_features
from peru_sentiment.text.lexicon import EmotionLexicon
from peru_sentiment.text.normalize import fold_accents
from peru_sentiment.text.tokens import words

log = logging.getLogger(__name__)

SYNTHETIC_SOURCE = "synthetic"
FEATURES = (
    "word_count",
    "punctuation_per_word",
    "emoji_ratio",
    "exclamation_ratio",
    "uppercase_ratio",
    "lexicon_density",
    "emotion_score",
)


def _domain_pipeline(seed: int) -> Pipeline:
    features = FeatureUnion(
        [
            ("word", TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=50000, sublinear_tf=True)),
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb", ngram_range=(2, 4), min_df=2, max_features=50000, sublinear_tf=True
                ),
            ),
        ]
    )
    return Pipeline([("features", features), ("classifier", LogisticRegression(max_iter=2000, random_state=seed))])


def _balanced_sample(
    synthetic: Sequence[str], real: Sequence[str], max_rows: int, seed: int
) -> tuple[list, np.ndarray]:
    """At most ``max_rows`` texts per side, the same number on both sides; label 1 is real."""
    rng = np.random.default_rng(seed)
    size = min(len(synthetic), len(real), max_rows)
    picked_synthetic = [synthetic[i] for i in rng.choice(len(synthetic), size=size, replace=False)]
    picked_real = [real[i] for i in rng.choice(len(real), size=size, replace=False)]
    return picked_synthetic + picked_real, np.array([0] * size + [1] * size)


def domain_auc(
    synthetic: Sequence[str], real: Sequence[str], folds: int = 5, max_rows: int = 2000, seed: int = 0
) -> float:
    """Cross-validated ROC AUC of a classifier telling real from synthetic texts."""
    texts, sides = _balanced_sample(list(synthetic), list(real), max_rows, seed)
    if min(np.bincount(sides, minlength=2)) < folds:
        raise ValueError(f"need at least {folds} texts on each side to cross-validate, got {len(texts) // 2}")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = cross_val_score(
        _domain_pipeline(seed), np.array(texts, dtype=object), sides, cv=splitter, scoring="roc_auc"
    )
    return float(np.mean(scores))


def giveaway_ngrams(
    synthetic: Sequence[str], real: Sequence[str], count: int = 15, max_rows: int = 2000, seed: int = 0
) -> dict[str, list[dict]]:
    """The word n-grams the domain classifier weighs most towards each side."""
    texts, sides = _balanced_sample(list(synthetic), list(real), max_rows, seed)
    pipeline = _domain_pipeline(seed).fit(np.array(texts, dtype=object), sides)
    names = pipeline.named_steps["features"].get_feature_names_out()
    weights = pipeline.named_steps["classifier"].coef_[0]
    word = np.array([name.startswith("word__") for name in names])
    order = np.argsort(weights[word])
    word_names, word_weights = names[word], weights[word]

    def rows(indices: np.ndarray) -> list[dict]:
        return [
            {"ngram": str(word_names[i]).removeprefix("word__"), "weight": round(float(word_weights[i]), 3)}
            for i in indices
        ]

    return {"synthetic": rows(order[:count]), "real": rows(order[::-1][:count])}


def text_features(texts: Sequence[str], languages: Sequence[str], lexicon: EmotionLexicon) -> pd.DataFrame:
    """The compared features of each text (see ``FEATURES``)."""
    records = []
    for text, language in zip(texts, languages, strict=True):
        surface = surface_features(text)
        tokens = words(text)
        table = lexicon.tables.get(language, lexicon.tables["other"])
        in_lexicon = sum(token in table or fold_accents(token) in table for token in tokens)
        records.append(
            {
                "word_count": surface["word_count"],
                "punctuation_per_word": surface["punctuation_count"] / max(1, surface["word_count"]),
                "emoji_ratio": surface["emoji_ratio"],
                "exclamation_ratio": surface["exclamation_ratio"],
                "uppercase_ratio": surface["uppercase_ratio"],
                "lexicon_density": in_lexicon / max(1, len(tokens)),
                "emotion_score": lexicon.score(text, language),
            }
        )
    return pd.DataFrame(records, columns=list(FEATURES))


def feature_distances(synthetic: pd.DataFrame, real: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per feature: KS statistic, Wasserstein distance and both medians."""
    distances = {}
    for feature in FEATURES:
        a, b = synthetic[feature].to_numpy(dtype=float), real[feature].to_numpy(dtype=float)
        distances[feature] = {
            "ks": round(float(ks_2samp(a, b).statistic), 4),
            "wasserstein": round(float(wasserstein_distance(a, b)), 4),
            "synthetic_median": round(float(np.median(a)), 4),
            "real_median": round(float(np.median(b)), 4),
        }
    return distances


def label_mix(synthetic: pd.Series, real: pd.Series) -> dict:
    """Label shares of both sides and their total-variation distance (None where real has no labels)."""
    shares = {
        side: {label: round(float(labels.eq(label).mean()), 4) for label in LABELS}
        for side, labels in (("synthetic", synthetic.dropna()), ("real", real.dropna()))
        if len(labels)
    }
    if "real" not in shares:
        return {**shares, "real": None, "total_variation": None}
    distance = 0.5 * sum(abs(shares["synthetic"][label] - shares["real"][label]) for label in LABELS)
    return {**shares, "total_variation": round(distance, 4)}


def same_languages(synthetic: pd.DataFrame, real_languages: pd.Series, min_share: float = 0.1) -> list[str]:
    """The languages of at least ``min_share`` of a real set that the synthetic corpus also has.

    An English real set is compared with the English synthetic texts: otherwise
    the language alone would tell the sides apart and hide everything else.
    """
    shares = real_languages.value_counts(normalize=True)
    languages = sorted(str(language) for language, share in shares.items() if share >= min_share)
    present = [language for language in languages if (synthetic["language"] == language).sum() >= 10]
    return present or sorted(str(language) for language in synthetic["language"].unique())


def measure_realism(feedback: pd.DataFrame, params: RealismParams, lexicon: EmotionLexicon) -> dict:
    """Realism of the synthetic rows against every imported source in a preprocessed feedback table."""
    synthetic = feedback[feedback["source"] == SYNTHETIC_SOURCE]
    real = feedback[feedback["source"] != SYNTHETIC_SOURCE]
    if real.empty:
        return {"sources": {}, "note": "no real feedback imported (ingest.sources is empty): nothing to compare"}
    if synthetic.empty:
        return {"sources": {}, "note": "no synthetic feedback in the table: nothing to compare"}
    results = {}
    for source, rows in real.groupby("source", sort=True):
        if len(rows) < 2 * params.folds:
            log.warning("source %s has %d rows, too few to measure realism; skipped", source, len(rows))
            continue
        rng = np.random.default_rng(params.seed)
        rows = rows.iloc[rng.permutation(len(rows))[: params.max_rows]]
        languages = same_languages(synthetic, rows["language"])
        sample = synthetic[synthetic["language"].isin(languages)]
        sample = sample.iloc[rng.permutation(len(sample))[: params.max_rows]]
        log.info("realism of %d synthetic texts against %s (%d texts)", len(sample), source, len(rows))
        results[str(source)] = {
            "roles": sorted(str(role) for role in rows["role"].dropna().unique()),
            "rows": len(rows),
            "languages": languages,
            "domain_auc": round(
                domain_auc(sample["text"], rows["text"], params.folds, params.max_rows, params.seed), 4
            ),
            "features": feature_distances(
                text_features(sample["text"].tolist(), sample["language"].tolist(), lexicon),
                text_features(rows["text"].tolist(), rows["language"].tolist(), lexicon),
            ),
            "label_mix": label_mix(sample["label"], rows["label"]),
            "giveaway_ngrams": giveaway_ngrams(
                sample["text"], rows["text"], params.top_ngrams, params.max_rows, params.seed
            ),
        }
    return {"sources": results}


def realism_metrics(result: dict) -> dict:
    """The compact metrics (``reports/realism.json``) that ``dvc metrics diff`` compares across runs."""
    sources = result["sources"]
    if not sources:
        return {"sources": 0, "note": result.get("note", "")}
    metrics: dict = {
        "sources": len(sources),
        "mean_domain_auc": round(float(np.mean([s["domain_auc"] for s in sources.values()])), 4),
    }
    for name, source in sources.items():
        metrics[name] = {
            "domain_auc": source["domain_auc"],
            "label_total_variation": source["label_mix"]["total_variation"],
            **{f"ks_{feature}": values["ks"] for feature, values in source["features"].items()},
        }
    return metrics
