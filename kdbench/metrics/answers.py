"""Final-answer extraction and exact match for math word problems (GSM8K, Cobbe et al. 2021).

Gold: GSM8K solutions end with ``#### <number>``; the gold answer is that number.
Prediction ("flexible extract", as lm-eval's gsm8k tasks): the number after the last ``####`` or
the last "the answer is" when the generation has one, else the last number anywhere in it.
Both are normalised before comparison (:func:`normalize_number`): ``$``, thousands commas and
trailing zeros of decimals go (``$1,234.50`` → ``1234.5``, ``18.0`` → ``18``), a Unicode minus
becomes ``-``. Exact match is string equality of the normalised numbers; a generation without
any number is wrong (and counts against ``extraction_rate``).
"""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

# a number: optional sign and $, digits with optional thousands commas, optional decimals
_NUMBER = re.compile(r"(?<![\w.])(-?)\s?\$?\s?(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?![\d])")
_MARKERS = (re.compile(r"####"), re.compile(r"the (?:final )?answer is", re.IGNORECASE))


def normalize_number(text: str) -> str | None:
    """Canonical string of a number: no ``$`` or commas, no trailing decimal zeros, ``-0`` → ``0``;
    None when ``text`` is not a number."""
    cleaned = text.strip().replace("\u2212", "-").replace("$", "").replace(",", "").replace(" ", "")
    cleaned = cleaned.rstrip(".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    out = format(value.normalize(), "f")
    if "." in out:
        out = out.rstrip("0").rstrip(".")
    return "0" if out in ("-0", "") else out


def numbers(text: str) -> list[str]:
    """Every number in ``text``, normalised, in order."""
    text = text.replace("\u2212", "-")
    return [n for sign, digits in _NUMBER.findall(text) if (n := normalize_number(sign + digits)) is not None]


def gold_answer(solution: str) -> str | None:
    """The number after the last ``####`` of a GSM8K solution (None when there is none)."""
    if "####" not in solution:
        return None
    found = numbers(solution.rsplit("####", 1)[1])
    return found[0] if found else None


def extract_answer(generation: str) -> str | None:
    """The predicted final answer of a generation: the first number after the last ``####`` or
    "the answer is" (whichever comes later), else the last number in the text; None if none."""
    best = None
    for marker in _MARKERS:
        for m in marker.finditer(generation):
            if best is None or m.end() > best:
                best = m.end()
    if best is not None:
        after = numbers(generation[best:])
        if after:
            return after[0]
    found = numbers(generation)
    return found[-1] if found else None
