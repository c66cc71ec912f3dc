"""GSM8K: the paper's 8-shot chat prompt and answer extraction (AgentTuning ``eval_gsm8k_tgi.py``).

Two extraction rules, both applied to the reply cut at its first ``"Question:"`` (a model that
goes on writing new questions is scored on its answer, not on theirs):

- ``"paper"``: upstream's rule, the last run of digits ``\\d+`` read as a Python integer
  literal (``"$1,250"`` -> 250, ``"18.00"`` -> ``"00"`` -> 0, ``"-3"`` -> 3, ``"007"`` -> no answer,
  as ``eval("007")`` fails), equal to the gold number (``#### N``, commas removed) or wrong.
- ``"robust"``: the number in the last ``\\boxed{...}``, else the last number written, with its
  sign, thousands separators and decimals (``"-3"``, ``"1,250.50"``), compared exactly as numbers.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

EXTRACTIONS = ("paper", "robust")

Message = dict[str, str]


def chat(strings: dict[str, Any]) -> list[Message]:
    """The 18 turns the paper puts before the question: the instruction, the agent's "Ok.", and the
    8 worked examples as user / assistant pairs (``strings``: the data file's ``agenttuning_prompt.json``)."""
    turns = [{"role": "user", "content": strings["instruction"]},
             {"role": "assistant", "content": strings["agent_ack"]}]
    for shot in strings["shots"]:
        turns += [{"role": "user", "content": shot["question"]}, {"role": "assistant", "content": shot["answer"]}]
    return turns


def observation(question: str, strings: dict[str, Any]) -> str:
    """The final user turn as upstream formats it: ``"\\nQuestion: " + question``."""
    return strings["final_user_turn_format"].format(question=question)


def cut_at_question(reply: str) -> str:
    """The reply up to its first ``"Question:"`` (upstream's ``clean_answer``)."""
    return reply.split("Question:", 1)[0]


# ------------------------------------------------------------------ paper rule
def paper_answer(reply: str) -> str | None:
    """Upstream's reading of a (cut) reply: its last ``\\d+`` as a Python integer literal, in
    canonical decimal form (``"00"`` -> ``"0"``); ``None`` when there is none or ``eval`` would
    refuse it (leading zeros as in ``"007"``, non-ASCII digits)."""
    runs = re.findall(r"\d+", reply)
    if not runs:
        return None
    digits = runs[-1]
    if not digits.isascii():  # re's \d matches e.g. Arabic-Indic digits; Python literals do not
        return None
    if digits[0] == "0" and digits.strip("0"):  # eval("007") is a SyntaxError; eval("00") is 0
        return None
    return digits.lstrip("0") or "0"


# ----------------------------------------------------------------- robust rule
# a number with optional sign, thousands separators and decimals: 1,234.5  -3  .5 ; a minus right
# after a letter or digit is an operator ("20-8"), not a sign
_NUMBER = re.compile(r"(?:(?<![\w.])-)?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?")
_BOXED = re.compile(r"\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}")


def last_number(text: str) -> str | None:
    """The last number written in ``text``, without separators (``"$1,250.00."`` -> ``"1250.00"``)."""
    found = [m.group(0) for m in _NUMBER.finditer(text) if any(c.isdigit() for c in m.group(0))]
    return found[-1].replace(",", "") if found else None


def robust_answer(reply: str) -> str | None:
    """The number of the last ``\\boxed{...}`` that holds one, else the last number of the reply."""
    for boxed in reversed(_BOXED.findall(reply)):
        number = last_number(boxed.replace("\\!", "").replace("{,}", ","))
        if number is not None:
            return number
    return last_number(reply)


def same_number(a: str | None, b: str) -> bool:
    """Exact numeric match (``18`` == ``18.00``); anything unparseable is wrong."""
    if a is None:
        return False
    try:
        return Decimal(a) == Decimal(b.replace(",", ""))
    except InvalidOperation:
        return False


def extract(reply: str, extraction: str = "paper") -> str | None:
    """The answer read from ``reply`` by rule ``extraction`` (``"paper"`` or ``"robust"``), after the
    cut at the first ``"Question:"``; ``None`` when the reply holds no answer."""
    text = cut_at_question(reply)
    if extraction == "paper":
        return paper_answer(text)
    if extraction == "robust":
        return robust_answer(text)
    raise ValueError(f"extraction must be one of {EXTRACTIONS}, got {extraction!r}")


def is_correct(predicted: str | None, gold: str) -> bool:
    """Whether an extracted answer equals the gold one (``Problem.answer``), compared as numbers
    (upstream compares ``eval`` results: ``20 == 20``, never ``20 == -20``)."""
    return same_number(predicted, gold)
