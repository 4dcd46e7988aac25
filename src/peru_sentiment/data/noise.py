"""Realistic corruption of clean synthetic text: typos, lost accents, stretched letters, caps, lower case.

Every function takes the random generator explicitly, so the corpus stays
deterministic for a given seed.
"""

from __future__ import annotations

import re
import string

import numpy as np

_KEYBOARD_NEIGHBOURS = {
    "a": "qswz",
    "b": "vghn",
    "c": "xdfv",
    "d": "serfcx",
    "e": "wsdr",
    "f": "drtgvc",
    "g": "ftyhbv",
    "h": "gyujnb",
    "i": "ujko",
    "j": "huikmn",
    "k": "jiolm",
    "l": "kop",
    "m": "njk",
    "n": "bhjm",
    "o": "iklp",
    "p": "ol",
    "q": "wa",
    "r": "edft",
    "s": "awedxz",
    "t": "rfgy",
    "u": "yhji",
    "v": "cfgb",
    "w": "qase",
    "x": "zsdc",
    "y": "tghu",
    "z": "asx",
}
_WORD = re.compile(r"[^\W\d_]{4,}")
# Placeholders and personal data must survive the noise intact.
_PROTECTED = re.compile(r"\S+@\S+|[#@][\w.]+|https?://\S+|\d[\d .-]*\d")


def add_typos(text: str, rng: np.random.Generator, count: int = 1) -> str:
    """Apply `count` keyboard typos (neighbour key, dropped, doubled or swapped letter)."""
    chars = list(text)
    protected = _protected_positions(text)
    candidates = [i for i, c in enumerate(chars) if c.lower() in _KEYBOARD_NEIGHBOURS and i not in protected]
    for index in rng.choice(candidates, size=min(count, len(candidates)), replace=False) if candidates else []:
        kind = rng.integers(4)
        char = chars[index]
        if kind == 0:
            neighbours = _KEYBOARD_NEIGHBOURS[char.lower()]
            chars[index] = neighbours[rng.integers(len(neighbours))]
        elif kind == 1:
            chars[index] = ""
        elif kind == 2:
            chars[index] = char * 2
        elif index + 1 < len(chars) and chars[index + 1] not in string.whitespace:
            chars[index], chars[index + 1] = chars[index + 1], char
    return "".join(chars)


def stretch_letters(text: str, rng: np.random.Generator) -> str:
    """Repeat the last vowel of one or two words ("buenísimo" -> "buenísimooo")."""
    protected = _protected_positions(text)
    words = [m for m in _WORD.finditer(text) if m.group()[-1].lower() in "aeiouáéíóúy" and m.start() not in protected]
    if not words:
        return text
    picks = sorted(rng.choice(len(words), size=min(len(words), 1 + int(rng.integers(2))), replace=False))
    pieces, last = [], 0
    for pick in picks:
        match = words[pick]
        pieces.append(text[last : match.end()])
        pieces.append(match.group()[-1] * int(rng.integers(2, 6)))
        last = match.end()
    pieces.append(text[last:])
    return "".join(pieces)


def shout(text: str) -> str:
    """ALL CAPS, leaving e-mail addresses as they were."""
    protected = _protected_positions(text)
    return "".join(c if i in protected else c.upper() for i, c in enumerate(text))


def lowercase(text: str) -> str:
    """All lower case, as typed fast on a phone, leaving e-mails, mentions and links as they were."""
    protected = _protected_positions(text)
    return "".join(c if i in protected else c.lower() for i, c in enumerate(text))


def _protected_positions(text: str) -> set[int]:
    return {i for match in _PROTECTED.finditer(text) for i in range(match.start(), match.end())}
