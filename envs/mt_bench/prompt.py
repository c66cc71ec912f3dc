"""MT-Bench's protocol as pure functions: the answer decoding per category, the judge's prompt and
how a rating is read from the judge's reply (FastChat v0.2.31 ``fastchat/llm_judge/common.py``).

Single-answer grading judges each turn on its own: turn 1 with ``single-v1`` (the question and
the answer), turn 2 with ``single-v1-multi-turn`` (the whole two-turn conversation, the judge
asked about the second answer); math, reasoning and coding questions use the ``single-math-v1``
prompts, which show GPT-4's reference answers. The templates themselves are data
(``judge_prompts.jsonl``), filled here as FastChat fills them (``str.format``).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from typing import Any

from agent_gym.envs.mt_bench.data import Question

Message = dict[str, str]

#: The answering model's temperature per category (FastChat ``temperature_config``; AgentTuning's
#: ``eval_mt_bench_tgi.py`` samples when it is above 1e-4 and decodes greedily otherwise).
TEMPERATURE: dict[str, float] = {
    "writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0, "reasoning": 0.0,
    "stem": 0.1, "humanities": 0.1, "arena-hard-200": 0.0,
}
#: New tokens per answer (``eval_mt_bench_tgi.py``).
ANSWER_MAX_NEW_TOKENS = 4096
#: The judge's decoding: FastChat called GPT-4 with temperature 0 and ``max_tokens`` 2048.
JUDGE_MAX_NEW_TOKENS = 2048
#: Ratings on MT-Bench's scale; anything else read from a judgment counts as no rating.
RATING_MIN, RATING_MAX = 1, 10
#: FastChat's rating when none can be read (it leaves such judgments out of every mean).
NO_RATING = -1

# FastChat's patterns, in its order: "[[8]]" first, then "[8]"; integers or decimals
_DOUBLE = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_SINGLE = re.compile(r"\[(\d+\.?\d*)\]")


def temperature(category: str) -> float:
    """The answer temperature for ``category`` (0.0, greedy, for a category FastChat's table lacks)."""
    return float(TEMPERATURE.get(category, 0.0))


def judge_prompt_name(question: Question, turn: int) -> str:
    """The name in ``judge_prompts.jsonl`` of the prompt that judges ``turn`` (1 or 2) of ``question``."""
    if turn not in (1, 2):
        raise ValueError(f"MT-Bench has turns 1 and 2, not {turn}")
    base = "single-math-v1" if question.needs_reference else "single-v1"
    return base + ("-multi-turn" if turn == 2 else "")


def judge_messages(prompts: dict[str, dict[str, Any]], question: Question, answers: Sequence[str],
                   turn: int) -> tuple[str, list[Message]]:
    """The judge's conversation for ``turn``: the prompt's name and ``[system, user]`` messages.

    ``prompts``: :func:`agent_gym.envs.mt_bench.data.judge_prompts`; ``answers``: the model's
    answers so far (stripped, as AgentTuning stored them). The user message is the template
    filled with the question(s), the answer(s) and, for reference-based prompts, the reference
    answer(s); the system message is the prompt's own (FastChat sets it on the judge's conversation).
    """
    name = judge_prompt_name(question, turn)
    prompt = prompts[name]
    fields: dict[str, str] = {}
    if question.needs_reference:
        if question.reference is None:
            raise ValueError(f"question {question.id} ({question.category}) has no reference answer")
        fields["ref_answer_1"] = question.reference[0]
        if turn == 2:
            fields["ref_answer_2"] = question.reference[1]
    if turn == 2:
        user = prompt["prompt_template"].format(question_1=question.turns[0], question_2=question.turns[1],
                                                answer_1=answers[0], answer_2=answers[1], **fields)
    else:
        user = prompt["prompt_template"].format(question=question.turns[0], answer=answers[0], **fields)
    return name, [{"role": "system", "content": prompt["system_prompt"]}, {"role": "user", "content": user}]


def parse_rating(judgment: str) -> float:
    """The rating in a judgment as FastChat reads it: the first ``[[n]]``, else the first ``[n]``
    (``n`` an integer or decimal, read as a Python literal); :data:`NO_RATING` (-1) when there is none.

    >>> parse_rating("The answer is right. Rating: [[9]]"), parse_rating("[7.5]"), parse_rating("8/10")
    (9, 7.5, -1)
    """
    found = _DOUBLE.search(judgment) or _SINGLE.search(judgment)
    if not found:
        return NO_RATING
    try:
        return ast.literal_eval(found.group(1))
    except (ValueError, SyntaxError):  # "007": not a Python literal; FastChat's literal_eval would raise
        return NO_RATING


def is_rating(value: float) -> bool:
    """Whether a parsed value is a rating on MT-Bench's 1-10 scale (FastChat averages whatever it
    parsed; a value outside the scale, ``[[0]]`` or ``[2023]``, counts as no rating here)."""
    return RATING_MIN <= value <= RATING_MAX


def score(ratings: Sequence[float]) -> float:
    """An episode's score on 0..1: the mean of its ratings on the scale, over 10 (0.0 when none is)."""
    valid = [r for r in ratings if is_rating(r)]
    return sum(valid) / len(valid) / 10 if valid else 0.0
