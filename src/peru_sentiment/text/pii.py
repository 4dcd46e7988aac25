"""Masking of personal data in feedback before it is stored downstream.

Feedback carries e-mail addresses, phone numbers, Peruvian DNI numbers and
card numbers. Each is replaced by a placeholder the model can still read
("[EMAIL]", "[PHONE]", "[DNI]", "[CARD]"). Order matters: cards before phones
before DNIs, so a long number is never half-masked as a shorter one.
"""

from __future__ import annotations

import re
from collections import Counter

PLACEHOLDERS = {"email": "[EMAIL]", "card": "[CARD]", "phone": "[PHONE]", "dni": "[DNI]"}

_PATTERNS = {
    "email": re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
    # 13 to 19 digits, optionally grouped by spaces or dashes; masked only if the Luhn check passes.
    "card": re.compile(r"(?<![\d+])\d(?:[ -]?\d){12,18}(?!\d)"),
    # Peruvian mobiles (9 digits starting with 9), Lima landlines, and other numbers written with +country code.
    "phone": re.compile(
        r"(?<![\d+])(?:(?:\+|00)51[ -]?)?9\d{2}[ -]?\d{3}[ -]?\d{3}(?!\d)"
        r"|(?<!\d)(?:\(01\)[ -]?|01[ -])\d{3}[ -]?\d{4}(?!\d)"
        r"|\+\d{1,3}(?:[ -]?\d){7,12}(?!\d)"
    ),
    # DNI: exactly eight digits standing alone.
    "dni": re.compile(r"(?<![\d#])\d{8}(?!\d)"),
}


def _luhn_valid(number: str) -> bool:
    digits = [int(d) for d in number if d.isdigit()]
    checksum = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2:
            digit *= 2
            digit -= 9 if digit > 9 else 0
        checksum += digit
    return checksum % 10 == 0


def mask_personal_data(text: str) -> tuple[str, Counter]:
    """Replace personal data with placeholders; return the text and counts by kind."""
    counts: Counter = Counter()

    def replace(kind: str):
        def substitute(match: re.Match) -> str:
            if kind == "card" and not _luhn_valid(match.group()):
                return match.group()
            counts[kind] += 1
            return PLACEHOLDERS[kind]

        return substitute

    for kind, pattern in _PATTERNS.items():
        text = pattern.sub(replace(kind), text)
    return text, counts
