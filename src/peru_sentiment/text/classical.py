"""The cleaned text variant for the classical baselines (TF-IDF models, topics).

Lower-cased, accents removed, stopwords removed, Snowball-stemmed by language.
Only the baselines use it; the BERT input keeps the text as written.
"""

from __future__ import annotations

from collections.abc import Sequence

import stopwordsiso
from nltk.stem.snowball import SnowballStemmer

from peru_sentiment.errors import ConfigError
from peru_sentiment.text.normalize import fold_accents
from peru_sentiment.text.pii import PLACEHOLDERS
from peru_sentiment.text.tokens import NEGATIONS, words

STEPS = (
    "drop personal-data placeholders",
    "lowercase and tokenize (nltk TweetTokenizer, letter runs shortened)",
    "strip accents",
    "drop punctuation and numbers (emojis kept)",
    "remove stopwords (stopwordsiso), negations kept",
    "Snowball stemming by language",
)
_STEMMERS = {"es": "spanish", "en": "english", "pt": "portuguese", "it": "italian", "fr": "french"}


class ClassicalCleaner:
    """Stopword removal and stemming; texts of language "other" are stemmed as Spanish."""

    def __init__(self, stopword_languages: Sequence[str]):
        missing = [code for code in stopword_languages if not stopwordsiso.has_lang(code)]
        if missing:
            raise ConfigError(f"no stopword list for {missing} (preprocess.stopwords)")
        stopwords = stopwordsiso.stopwords(list(stopword_languages))
        self.stopwords = (frozenset(fold_accents(word) for word in stopwords) | frozenset(stopwords)) - NEGATIONS
        self.stemmers = {code: SnowballStemmer(name) for code, name in _STEMMERS.items()}

    def clean(self, text: str, language: str) -> str:
        stemmer = self.stemmers.get(language, self.stemmers["es"])
        for placeholder in PLACEHOLDERS.values():
            text = text.replace(placeholder, " ")
        kept = []
        for token in words(text):
            if not any(c.isalnum() for c in token):
                if any(not c.isascii() for c in token):  # emojis carry sentiment; punctuation does not
                    kept.append(token)
                continue
            plain = fold_accents(token)
            if plain in self.stopwords or plain.isdigit():
                continue
            kept.append(stemmer.stem(plain))
        return " ".join(kept)
