"""MMLU: the paper's 5-shot chat (AgentTuning ``eval_general/eval_mmlu_hf.py``) and the strict
reader of a generated answer.

Upstream renders, per question, a FastChat ``llama-2`` conversation: the system message names the
subject, each dev shot is a user turn ``Question: ...\\nA. ...\\nB. ...\\nC. ...\\nD. ...`` and an agent
turn ``Answer: X``, then the test question as a user turn of the same form; it appends
``" Answer: "`` to the rendered prompt and takes the most likely next token among ``" A"`` ..
``" D"``. :data:`CHOICE_SCORING` tells a policy to do the same.
"""

from __future__ import annotations

import re

from agent_gym.envs.mmlu.data import LETTERS, Question, subject_title

#: What ``info["choice_scoring"]`` holds in the paper's (log-prob) mode; see docs/general.md.
CHOICE_SCORING = {
    "choices": list(LETTERS),
    "continuations": [f" {c}" for c in LETTERS],
    "answer_prefix": " Answer: ",
}


def system_message(subject: str) -> str:
    return (f"The following is a multiple-choice question about {subject_title(subject)}. "
            "Please choose the most suitable one among A, B, C and D as the answer to this question.")


def question_turn(q: Question) -> str:
    """``Question: <q>\\nA. ..\\nB. ..\\nC. ..\\nD. ..`` as upstream writes a dev shot's user turn."""
    return f"Question: {q.question}\n" + "\n".join(f"{c}. {choice}" for c, choice in zip(LETTERS, q.choices))


def observation(q: Question) -> str:
    """The test question's user turn as upstream builds it: the same form, written with a trailing
    ``"\\nAnswer:"`` that is then cut at the first ``"Answer:"`` and right-stripped (so a choice
    ending in spaces loses them; no test question contains ``"Answer:"``)."""
    return (question_turn(q) + "\nAnswer:").split("Answer:", 1)[0].rstrip()


def chat(q: Question, shots: tuple[Question, ...]) -> list[dict[str, str]]:
    """``info["prompt"]``: the subject's system message, then each shot as a user / assistant pair."""
    turns = [{"role": "system", "content": system_message(q.subject)}]
    for shot in shots:
        turns += [{"role": "user", "content": question_turn(shot)},
                  {"role": "assistant", "content": f"Answer: {shot.answer}"}]
    return turns


# ----------------------------------------------------------------- generation mode
# Markdown and LaTeX wrappers that models put around an answer; removed before reading it.
_LATEX_WRAPPERS = re.compile(r"\\(?:boxed|text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}")
_MARKUP = re.compile(r"\*\*|__|[*`$]|\\\(|\\\)|\\\[|\\\]")
# an explicit commitment: "answer is X", "answer: X", "answer is: (X)", "answer is option X"
_EXPLICIT = re.compile(r"answer\s*(?:is\s*:?|:)\s*(?:(?:option|choice)\s+)?\(?([ABCD])\)?(?![\w'])", re.I)
_EXPLICIT_LETTER_CASE = re.compile(r"[ABCD]")
# a reply that is only a choice, or opens with one marked as a choice: "B", "(C) ...", "D. ...", "A) ..."
_LEADING = re.compile(r"\s*(?:\(([ABCD])\)|([ABCD])(?:[.):]|\s*$|\s*\n))")
_LONE_LINE = re.compile(r"^\s*\(?([ABCD])[.)]?\s*$", re.M)


def _unwrap(reply: str) -> str:
    text = reply
    for _ in range(3):  # nested wrappers: \boxed{\text{B}}
        text = _LATEX_WRAPPERS.sub(r"\1", text)
    return _MARKUP.sub("", text)


def parse_letter(reply: str) -> str | None:
    """The choice a reply commits to, or ``None``.

    With markdown (``**``, ``__``, backticks) and LaTeX wrappers (``\\boxed{}``, ``\\text{}``, ``$``)
    removed: the last explicit ``answer is X`` / ``Answer: X`` wins (``answer`` in any case, ``X``
    an upper-case A-D); else a reply that is only a choice (``B``, ``(B)``, ``B.``) or opens with one
    marked as such (``(C) because``, ``D. Spinal``); else a line that is only a choice. A bare
    article ``A`` (``A good way ...``) and lower-case letters are never a choice.
    """
    text = _unwrap(reply)
    found = [m.group(1) for m in _EXPLICIT.finditer(text) if _EXPLICIT_LETTER_CASE.fullmatch(m.group(1))]
    if found:
        return found[-1]
    m = _LEADING.match(text)
    if m:
        return m.group(1) or m.group(2)
    lines = _LONE_LINE.findall(text)
    return lines[-1] if lines else None
