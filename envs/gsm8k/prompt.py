"""GSM8K prompt and answer extraction: the last number in the reply is the answer."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

INSTRUCTION = (
    "Solve the following math problem. Reason step by step, then give the final answer "
    "as a number on the last line, in the form \"The answer is N\"."
)

# a number with optional sign, thousands separators and decimals: 1,234.5  -3  .5
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?")


def observation(question: str) -> str:
    return f"{INSTRUCTION}\n\nQuestion: {question}"


def last_number(text: str) -> str | None:
    """The last number written in ``text``, without separators (``"$1,250.00."`` -> ``"1250.00"``)."""
    found = [m.group(0) for m in _NUMBER.finditer(text) if any(c.isdigit() for c in m.group(0))]
    return found[-1].replace(",", "") if found else None


def same_number(a: str | None, b: str) -> bool:
    """Exact numeric match (``18`` == ``18.00``); anything unparseable is wrong."""
    if a is None:
        return False
    try:
        return Decimal(a) == Decimal(b.replace(",", ""))
    except InvalidOperation:
        return False
