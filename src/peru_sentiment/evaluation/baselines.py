"""Baselines the model must beat, trained and scored on the same splits.

- majority: always the most frequent training label;
- tfidf_logreg: TF-IDF of word uni- and bigrams of the classical cleaned text
  and a class-balanced logistic regression;
- lexicon: the ``emotion_score`` feature with two thresholds, chosen on the
  validation split to maximise macro-F1.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline

from peru_sentiment.schema import LABELS


def majority(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    model = DummyClassifier(strategy="most_frequent").fit(np.zeros((len(train), 1)), train["label"])
    return model.predict(np.zeros((len(test), 1)))


def tfidf_pipeline(seed: int = 0):
    """TF-IDF of word uni- and bigrams, then a class-balanced logistic regression."""
    return make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
        LogisticRegression(max_iter=2000, class_weight="balanced", random_state=seed),
    )


def tfidf_logreg(train: pd.DataFrame, test: pd.DataFrame, seed: int = 0) -> np.ndarray:
    model = tfidf_pipeline(seed)
    model.fit(train["text_classical"], train["label"])
    return model.predict(test["text_classical"])


class TfidfLearner:
    """The TF-IDF baseline as an adaptation ``Learner``: every fit starts over on the rows given."""

    class_balanced = True
    continues_training = False

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.model = None

    def fit(self, train: pd.DataFrame, validation: pd.DataFrame, epochs: int | None = None) -> dict:
        weights = train["sample_weight"].to_numpy() if "sample_weight" in train else None
        self.model = tfidf_pipeline(self.seed).fit(
            train["text_classical"], train["label"], logisticregression__sample_weight=weights
        )
        return {}

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        probabilities = self.model.predict_proba(frame["text_classical"])
        columns = [list(self.model.classes_).index(label) for label in LABELS]  # every label must be trained on
        return probabilities[:, columns]

    def get_state(self):
        return self.model

    def set_state(self, state) -> None:
        self.model = state


def lexicon_thresholds(validation: pd.DataFrame) -> tuple[float, float]:
    """(negative_below, positive_above) on emotion_score maximising validation macro-F1."""
    grid = np.round(np.linspace(-0.6, 0.6, 25), 3)
    best, best_f1 = (0.0, 0.0), -1.0
    for low, high in itertools.combinations_with_replacement(grid, 2):
        f1 = f1_score(
            validation["label"],
            _by_score(validation["emotion_score"], low, high),
            labels=list(LABELS),
            average="macro",
            zero_division=0,
        )
        if f1 > best_f1:
            best, best_f1 = (float(low), float(high)), f1
    return best


def lexicon(validation: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    low, high = lexicon_thresholds(validation)
    return _by_score(test["emotion_score"], low, high)


def _by_score(scores: pd.Series, low: float, high: float) -> np.ndarray:
    values = scores.to_numpy()
    return np.where(values < low, "negative", np.where(values > high, "positive", "neutral"))


def run_baselines(train: pd.DataFrame, validation: pd.DataFrame, test: pd.DataFrame) -> dict[str, np.ndarray]:
    """Predictions of every baseline on `test`."""
    return {
        "majority": majority(train, test),
        "tfidf_logreg": tfidf_logreg(train, test),
        "lexicon": lexicon(validation, test),
    }
