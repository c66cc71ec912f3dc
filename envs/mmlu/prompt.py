"""MMLU prompt (Hendrycks' 5-shot format, turned into chat turns) and answer parsing."""

from __future__ import annotations

import re

from agent_gym.envs.mmlu.data import LETTERS, Question, subject_title


def format_question(q: Question) -> str:
    lines = [q.question.strip()]
    lines += [f"{letter}. {choice}" for letter, choice in zip(LETTERS, q.choices)]
    lines.append("Answer:")
    return "\n".join(lines)


def header(subject: str) -> str:
    return (f"The following are multiple choice questions (with answers) about {subject_title(subject)}. "
            "Reply with the letter of the correct answer.")


def few_shot_messages(subject: str, shots: tuple[Question, ...]) -> list[dict[str, str]]:
    """Each dev example is a user turn (question) and an assistant turn (its letter);
    the subject header opens the first turn, as it opens Hendrycks' prompt."""
    msgs: list[dict[str, str]] = []
    for i, q in enumerate(shots):
        text = format_question(q)
        msgs.append({"role": "user", "content": f"{header(subject)}\n\n{text}" if i == 0 else text})
        msgs.append({"role": "assistant", "content": q.answer})
    return msgs


def observation(q: Question, with_header: bool) -> str:
    text = format_question(q)
    return f"{header(q.subject)}\n\n{text}" if with_header else text


_LEADING = re.compile(r"^\s*\(?([ABCD])(?:[).:,]|\s|$)")
_ANSWER_IS = re.compile(r"answer(?:\s+is)?\s*:?\s*\(?([ABCD])\b", re.I)


def parse_letter(reply: str) -> str | None:
    """The chosen letter: a reply that starts with it (``"B"``, ``"(B) ..."``), else the last
    ``answer is X`` / ``Answer: X`` in it. ``None`` when there is no clear choice."""
    m = _LEADING.match(reply)
    if m:
        return m.group(1)
    found = _ANSWER_IS.findall(reply)
    return found[-1].upper() if found else None
