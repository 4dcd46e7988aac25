"""Word-level tokenization shared by the lexicon score and the classical cleaning."""

from __future__ import annotations

import re

from nltk.tokenize import TweetTokenizer

_TOKENIZER = TweetTokenizer(preserve_case=False, reduce_len=True, strip_handles=True)
_REPEATS = re.compile(r"(\w)\1{2,}")
# Words that flip the sentiment of what follows; never dropped as stopwords.
NEGATIONS = frozenset(
    {"no", "nunca", "ni", "sin", "jamás", "jamas", "tampoco", "not", "never", "without", "dont", "didnt", "isnt"}
    | {"wasnt", "don't", "didn't", "isn't", "wasn't"}
)


def words(text: str) -> list[str]:
    """Lower-cased tokens with letter runs shortened ("buenísimooo" -> "buenísimo"); emojis are tokens."""
    tokens = _TOKENIZER.tokenize(text)
    return [_REPEATS.sub(r"\1", token) for token in tokens]
