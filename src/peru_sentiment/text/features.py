"""Engineered features of a feedback text, for analysis and the classical baselines."""

from __future__ import annotations

import string

import emoji
import numpy as np
import pandas as pd
from sklearn.decomposition import NMF
from sklearn.feature_extraction.text import TfidfVectorizer

from peru_sentiment.config import TopicParams
from peru_sentiment.text.lexicon import EmotionLexicon

_PUNCTUATION = frozenset(string.punctuation + "¡¿…«»“”‘’")


def surface_features(text: str) -> dict[str, float]:
    """Counts and ratios of a text.

    ``emoji_ratio``, ``exclamation_ratio``: emojis and "!" per non-space character;
    ``uppercase_ratio``: upper-case letters per letter.
    """
    characters = [c for c in text if not c.isspace()]
    letters = [c for c in characters if c.isalpha()]
    emojis = emoji.emoji_count(text)
    visible = max(1, len(characters))
    return {
        "text_length": len(text),
        "word_count": len(text.split()),
        "punctuation_count": sum(c in _PUNCTUATION for c in text),
        "emoji_ratio": emojis / visible,
        "exclamation_ratio": text.count("!") / visible,
        "uppercase_ratio": sum(c.isupper() for c in letters) / max(1, len(letters)),
    }


def add_features(frame: pd.DataFrame, lexicon: EmotionLexicon) -> pd.DataFrame:
    """Add surface features and ``emotion_score`` computed on ``text`` in ``language``."""
    surface = pd.DataFrame([surface_features(text) for text in frame["text"]], index=frame.index)
    emotion = [lexicon.score(text, language) for text, language in zip(frame["text"], frame["language"], strict=True)]
    return frame.assign(**surface, emotion_score=np.round(emotion, 6))


class TopicModel:
    """NMF topics over TF-IDF of the classical cleaned text; ``topic_id`` -1 means no topic words."""

    def __init__(self, params: TopicParams):
        self.params = params
        self.vectorizer = TfidfVectorizer(max_features=params.max_features, min_df=2, sublinear_tf=True)
        self.nmf = NMF(n_components=params.n_topics, init="nndsvda", random_state=params.seed, max_iter=400)

    def fit(self, texts: pd.Series) -> TopicModel:
        self.nmf.fit(self.vectorizer.fit_transform(texts))
        return self

    def assign(self, texts: pd.Series) -> np.ndarray:
        weights = self.nmf.transform(self.vectorizer.transform(texts))
        return np.where(weights.max(axis=1) > 0, weights.argmax(axis=1), -1)

    def top_words(self, count: int = 10) -> dict[int, list[str]]:
        vocabulary = self.vectorizer.get_feature_names_out()
        return {
            topic: [str(vocabulary[i]) for i in np.argsort(component)[::-1][:count]]
            for topic, component in enumerate(self.nmf.components_)
        }
