"""From tokenizer pieces back to the words the user wrote, for display.

Works for SentencePiece (``▁`` pieces, e5) and WordPiece (``##`` pieces) alike,
through the tokenizer's character offsets: a word is a whitespace-separated
span of the text, and every piece belongs to the word its pre-tokenizer word
(``Encoding.word_ids``) overlaps, so "fría!!" stays one word although WordPiece
splits off the punctuation. Special tokens and the text prefix (e5's
"query: ") belong to no word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from tokenizers import Encoding

_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class WordAlignment:
    words: list[str]  # the text's words as written, those the tokenizer kept (truncation drops the tail)
    piece_word: np.ndarray  # per piece, the index of its word in `words`; -1 for special tokens and the prefix
    truncated: bool  # some words of the text did not fit in the model's input

    def merge(self, scores: np.ndarray) -> np.ndarray:
        """Per-word sums of per-piece scores (pieces outside any word are left out)."""
        inside = self.piece_word >= 0
        return np.bincount(self.piece_word[inside], weights=np.asarray(scores)[inside], minlength=len(self.words))

    def top(self, scores: np.ndarray, count: int) -> list[str]:
        """The `count` words with the largest merged scores, largest first (per-piece `scores` may run past
        the pieces, as a padded batch's do: the tail is ignored)."""
        merged = self.merge(np.asarray(scores)[: len(self.piece_word)])
        return [self.words[index] for index in np.argsort(-merged, kind="stable")[:count]]


def align_words(encoding: Encoding, text: str, prefix: str = "") -> WordAlignment:
    """Align the pieces of ``encoding`` (of ``prefix + text``) with the words of ``text``."""
    spans = [(match.start(), match.end()) for match in _WORD.finditer(text)]
    groups: dict[int, tuple[int, int]] = {}  # pre-tokenizer word -> character span in the text
    for word_id, (start, end), special in zip(
        encoding.word_ids, encoding.offsets, encoding.special_tokens_mask, strict=True
    ):
        if word_id is not None and not special:
            low, high = groups.get(word_id, (start, end))
            groups[word_id] = (min(low, start), max(high, end))
    word_of_group = {}
    for word_id, (start, end) in groups.items():
        start, end = start - len(prefix), end - len(prefix)
        word_of_group[word_id] = next(
            (index for index, (low, high) in enumerate(spans) if max(start, low) < min(end, high)), -1
        )
    pieces = np.array(
        [
            -1 if word_id is None or special else word_of_group[word_id]
            for word_id, special in zip(encoding.word_ids, encoding.special_tokens_mask, strict=True)
        ],
        dtype=np.int64,
    )
    used = sorted(set(pieces[pieces >= 0].tolist()))
    renumber = {old: new for new, old in enumerate(used)}
    pieces = np.array([renumber.get(index, -1) for index in pieces.tolist()], dtype=np.int64)
    words = [text[low:high] for low, high in (spans[index] for index in used)]
    return WordAlignment(words=words, piece_word=pieces, truncated=len(used) < len(spans))
