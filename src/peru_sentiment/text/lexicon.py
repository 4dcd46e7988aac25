"""Lexicon-based emotion score for Spanish and English feedback.

English uses AFINN-en-165 (3,382 words rated -5..+5, shipped by the ``afinn``
package); no Spanish lexicon installs from PyPI, so ``configs/lexicons/es.tsv``
is one in the same format, with Peruvian slang and emojis. AFINN's emoticons
(":)", ":(") count in both languages, and so do the emojis of the Spanish file.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

from peru_sentiment.errors import ConfigError
from peru_sentiment.text.normalize import fold_accents
from peru_sentiment.text.tokens import NEGATIONS, words

# Normalisation constant of the score, as VADER uses: sum / sqrt(sum^2 + alpha) lies in (-1, 1).
ALPHA = 15.0


def read_afinn(lines: list[str], source: str) -> dict[str, float]:
    """Parse AFINN-format lines ``word<TAB>score``."""
    table = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.rstrip("\n").split("\t")
        try:
            table[parts[0].strip().lower()] = float(parts[1])
        except (IndexError, ValueError):
            raise ConfigError(f"{source}:{number}: expected 'word<TAB>score', got {line!r}") from None
    return table


def _afinn_file(name: str) -> list[str]:
    return resources.files("afinn").joinpath("data", name).read_text(encoding="utf-8").splitlines()


class EmotionLexicon:
    """Valence lookup by language; ``score`` returns a value in (-1, 1)."""

    def __init__(self, sources: dict[str, str]):
        symbols = read_afinn(_afinn_file("AFINN-emoticon-8.txt"), "AFINN-emoticon-8")
        self.tables: dict[str, dict[str, float]] = {}
        for language, source in sources.items():
            if source == "afinn":
                table = read_afinn(_afinn_file("AFINN-en-165.txt"), "AFINN-en-165")
            else:
                path = Path(source)
                if not path.is_file():
                    raise ConfigError(f"lexicon {path} not found (preprocess.lexicons.{language})")
                table = read_afinn(path.read_text(encoding="utf-8").splitlines(), str(path))
            for word, value in list(table.items()):
                table.setdefault(fold_accents(word), value)
                if not any(c.isalpha() for c in word):
                    symbols[word] = value
            self.tables[language] = table
        for table in self.tables.values():
            for symbol, value in symbols.items():
                table.setdefault(symbol, value)
        # Texts of unknown language are looked up in every lexicon, first one winning.
        self.tables["other"] = {k: v for table in reversed(self.tables.values()) for k, v in table.items()}

    def score(self, text: str, language: str) -> float:
        """Summed valence of the words, flipped after a negation, squashed to (-1, 1)."""
        table = self.tables.get(language, self.tables["other"])
        total = 0.0
        tokens = words(text)
        for index, token in enumerate(tokens):
            value = table.get(token, table.get(fold_accents(token)))
            if value is None:
                continue
            if any(previous in NEGATIONS for previous in tokens[max(0, index - 2) : index]):
                value = -value
            total += value
        return total / math.sqrt(total * total + ALPHA)
