"""AgentBench's Mind2Web protocol as pure functions: the question, the reply parser, the
multiple-choice tournament and the step metrics (AgentBench.old ``src/tasks/mind2web/task.py``
and ``dataloader.py``; ../shared/UPSTREAM_SCORING.md section 6).

The question's wording is not kept here: it is read from the first example of the 3-shot prompt
file (whose user turns are upstream's questions), so the data directory stays the one source.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Sequence

#: Candidates per multiple-choice call (upstream's ``num_candidates``) and the ranker cut (``topk``).
NUM_CANDIDATES = 5
TOP_K = 10
#: Previous actions shown in the question (``format_input_multichoice``'s ``previous_k``).
PREVIOUS_K = 5
#: upstream's ``seed`` (configs/tasks/mind2web/std.yaml); here it seeds each step's own shuffle.
SEED = 123

# postprocess_action_llm: the first match of each, on the stripped reply
_ANSWER = re.compile(r"Answer: (A|B|C|D|E|F)")
_ACTION = re.compile(r"Action: (CLICK|SELECT|TYPE)")
_VALUE = re.compile(r"Value: (.*)$", re.MULTILINE)

_EXAMPLE = re.compile(r"'''\n.*\n'''\n\n(?P<head>.*?)Task: .*?\nPrevious actions:\n.*?"
                      r"(?P<ask>What should[^\n]*\n\nA\. [^\n]*\n)B\. ", re.DOTALL)


@dataclasses.dataclass(frozen=True)
class QuestionFormat:
    """The question's fixed wording, as the prompt file's examples show it: ``head`` (before
    ``Task:``) and ``ask`` (the request and option A, ending with a newline)."""

    head: str
    ask: str

    @classmethod
    def from_examples(cls, messages: Sequence[dict[str, str]]) -> "QuestionFormat":
        """Read from the first user turn of the 3-shot prompt; ``ValueError`` if it has another shape."""
        first = next((m["content"] for m in messages if m["role"] == "user"), "")
        match = _EXAMPLE.match(first)
        if match is None:
            raise ValueError("the Mind2Web prompt file's first example is not a multiple-choice question "
                             "(''' html ''', Task:, Previous actions:, A. / B. options): is it llm_prompt_cot.json?")
        return cls(head=match["head"], ask=match["ask"])

    def observation(self, html: str, task: str, previous_actions: Sequence[str], options: Sequence[str]) -> str:
        """One call's user turn: the pruned page, then the question (upstream's
        ``f"'''\\n{html}\\n'''\\n\\n{question}"``) with options B, C, ... in page order."""
        previous = "".join(f"{a}\n" for a in previous_actions[-PREVIOUS_K:]) if previous_actions else "None\n"
        lines = "".join(f"{chr(ord('B') + i)}. {text}\n" for i, text in enumerate(options))
        return f"'''\n{html}\n'''\n\n{self.head}Task: {task}\nPrevious actions:\n{previous}{self.ask}{lines}"


@dataclasses.dataclass(frozen=True)
class Reply:
    """A parsed reply: ``letter`` (``"A"`` when no ``Answer: X`` was found), ``action``
    (``"{op} {value}"``, each part ``""`` by default), and whether ``Answer:`` was found."""

    letter: str
    action: str
    found_answer: bool


def parse_reply(text: str) -> Reply:
    """Upstream's ``postprocess_action_llm``: ``Answer: (A-F)`` (default A), ``Action:
    (CLICK|SELECT|TYPE)`` (default ""), ``Value: (.*)$`` on any line, the first match (default "")."""
    text = text.strip()
    answer, action, value = _ANSWER.search(text), _ACTION.search(text), _VALUE.search(text)
    return Reply(letter=answer.group(1) if answer else "A",
                 action=(action.group(1).strip() if action else "") + " " + (value.group(1).strip() if value else ""),
                 found_answer=answer is not None)


def target_action(op: str, value: str) -> str:
    """The gold action string: ``"{OP} {value}"``, ``"CLICK "`` for a click (upstream builds the
    gold reply ``"X.\\nAction: OP\\nValue: v"``, no Value line for CLICK, and parses it back, so
    only the value's first line counts)."""
    shown = "" if op == "CLICK" else value.split("\n", 1)[0].strip()
    return f"{op} {shown}"


def action_f1(pred: str, label: str) -> float:
    """F1 of the whitespace-token sets (case-sensitive); both empty: 1; one empty: 0 (``calculate_f1``)."""
    p, g = set(pred.split()), set(label.split())
    if not p and not g:
        return 1.0
    if not p or not g:
        return 0.0
    tp = len(p & g)
    if tp == 0:
        return 0.0
    precision, recall = tp / len(p), tp / len(g)
    return 2 * precision * recall / (precision + recall)


def step_metrics(prediction: tuple[str, str] | None, target_elements: Sequence[str] | None,
                 target: str | None) -> dict[str, float]:
    """One step's ``element_acc`` (0/1), ``action_f1`` (0..1) and ``step_success`` (0/1), as
    upstream's ``metric``: a step without a target (no positive in the ranker's top k) scores 0."""
    if prediction is None or target_elements is None or target is None:
        element, f1 = 0.0, 0.0
    else:
        element = float(prediction[0] in target_elements)
        f1 = action_f1(prediction[1], target)
    return {"element_acc": element, "action_f1": f1, "step_success": float(element > 0 and f1 >= 1.0)}


def shuffled_candidates(candidate_ids: Sequence[str], seed: int, sample_id: str) -> list[str]:
    """The step's candidates in the tournament's order: a shuffle seeded by ``(seed, sample_id)``.

    Upstream shuffled with one ``random`` stream seeded once (123) and shared by 8 worker
    threads, so a step's order depended on which steps ran before it; here each step has its own
    stream, the same whatever runs around it."""
    order = list(candidate_ids)
    random.Random(f"{seed}:{sample_id}").shuffle(order)
    return order


class Tournament:
    """One step's knockout of multiple-choice calls (``predict_single``).

    While more than one candidate is left, the next call takes the first ``NUM_CANDIDATES``; an
    answer B-F that names an option moves that element to the end of the list and makes
    ``(element, action)`` the prediction; A (or a letter past the options) drops the batch. At
    the end the prediction is ``("", "")`` if nothing was ever picked or no candidate is left.
    """

    def __init__(self, candidate_ids: Sequence[str], batch: int = NUM_CANDIDATES):
        self.remaining = list(candidate_ids)
        self.batch_size = batch
        self.prediction: tuple[str, str] | None = None
        self.calls = 0

    @property
    def done(self) -> bool:
        return len(self.remaining) <= 1

    def next_batch(self) -> list[str]:
        """The candidates of the next call (taken off the list)."""
        batch, self.remaining = self.remaining[:self.batch_size], self.remaining[self.batch_size:]
        self.calls += 1
        return batch

    def record(self, choices: Sequence[str], reply: Reply) -> str | None:
        """Apply a reply to the call whose options (in letter order, B first) were ``choices``;
        returns the element picked, or ``None``."""
        if reply.letter == "A":
            return None
        index = ord(reply.letter) - ord("B")
        if index >= len(choices):  # upstream: IndexError, printed and ignored
            return None
        self.remaining.append(choices[index])
        self.prediction = (choices[index], reply.action)
        return choices[index]

    @property
    def final(self) -> tuple[str, str]:
        """The step's prediction once :attr:`done`."""
        if self.prediction is None or not self.remaining:
            return ("", "")
        return self.prediction
