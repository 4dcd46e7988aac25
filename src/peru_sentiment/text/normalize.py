"""Text repair and normalisation for the model input.

The BERT input keeps case, accents, punctuation and emojis: they carry
sentiment ("BUENÍSIMO!!!", "😡"). Only broken encoding, odd Unicode forms,
control characters and runs of whitespace are fixed here.
"""

from __future__ import annotations

import re
import unicodedata

import ftfy

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"\s+")
# Letters and symbols that render as blank space: Hangul fillers, the blank Braille pattern.
_BLANK_GLYPHS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def normalize_text(text: str) -> str:
    """Repair mojibake (ftfy), apply NFC, drop control characters and collapse whitespace."""
    repaired = ftfy.fix_text(text, normalization="NFC")
    return _SPACES.sub(" ", _CONTROL.sub(" ", unicodedata.normalize("NFC", repaired))).strip()


def is_blank(text: str) -> bool:
    """True when nothing in `text` is visible.

    Only spaces, control, format (zero-width) or surrogate characters, combining marks
    without a base letter (accents, variation selectors) and blank glyphs (U+3164, U+2800).
    """
    return all(unicodedata.category(char)[0] in "CZM" or char in _BLANK_GLYPHS for char in text)


def has_lone_surrogate(text: str) -> bool:
    """True when `text` holds a UTF-16 surrogate on its own (JSON allows ``"\\udc00"``; it is no character)."""
    return any("\ud800" <= char <= "\udfff" for char in text)


def fold_accents(text: str) -> str:
    """Drop diacritics ("qué rápido" -> "que rapido", "ñ" -> "n"); case and everything else kept."""
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if unicodedata.category(c) != "Mn"))


def comparison_key(text: str) -> str:
    """`text` with case, accents, compatibility forms and runs of spaces ignored: equal keys, same words."""
    return _SPACES.sub(" ", fold_accents(unicodedata.normalize("NFKC", text.casefold()))).strip()
