"""HotpotQA's ReAct prompt, reply parsing and answer scoring (AgentTuning ``eval_heldout/hotpotQA/src/agent_arch.py``,
from salesforce/BOLAA). Pure functions: no corpus, no env.

Upstream asked the model twice per step, as a plain completion: after ``"\\nThought n:"`` for the thought
and after ``"\\nAction n:"`` for the action, each cut at the first newline, each ``format_step``-ed
(stripped, newlines removed), then ``"\\nObservation n: "`` and the tool's answer. In the chat form one
reply carries both (``"Thought 1: ...\\nAction 1: Search[x]"``): :func:`split_reply` takes the first
``Action`` line as the action and what comes before it as the thought; a reply with no ``Action`` label
is the action whole (so ``"Search[x]"`` works). :data:`COMPLETION` is the scaffolding for a policy that
plays upstream's completion form and sends that same reply.
"""

from __future__ import annotations

import re
import string
from collections import Counter

#: The tool replies and messages of upstream's ``BaseAgent.step``.
INVALID_ACTION = "Invalid Action. Valid Actions are Lookup[<topic>] Search[<topic>] and Finish[<answer>]."
NO_PAGE = ("The last page Searched was not found, so you cannot Lookup a keyword in it. "
           "Please try one of the similar pages given.")
SEARCH_FAILED = "Could not find that page, please try again."
CORRECT, INCORRECT = "Answer is CORRECT", "Answer is INCORRECT"

#: How upstream's completion agent was driven (``src/llms.py``: TGI, ``max_new_tokens`` 256,
#: ``temperature`` 1e-5 (greedy), stop ``"\\n"``), with the scratchpad's line formats; ``{n}`` is the step.
COMPLETION = {
    "thought_prefix": "\nThought {n}:",
    "action_prefix": "\nAction {n}:",
    "observation_prefix": "\n",   # + the env's observation, which is "Observation {n}: ..."
    "reply": "Thought {n}: {thought}\nAction {n}: {action}",
    "stop": ["\n"],
    "max_new_tokens": 256,
    "temperature": 0.0,
}

_ACTION_LINE = re.compile(r"^[ \t]*Action(?:[ \t]*\d+)?[ \t]*:(.*)$", re.M)
_THOUGHT_LABEL = re.compile(r"^\s*Thought(?:\s*\d+)?\s*:\s*")


def format_step(text: str) -> str:
    """Upstream's ``format_step``: strip surrounding newlines and spaces, drop the newlines inside."""
    return text.strip("\n").strip().replace("\n", "")


def split_reply(reply: str) -> tuple[str, str]:
    """``(thought, action)`` of a chat reply, each ``format_step``-ed (see the module docstring)."""
    found = _ACTION_LINE.search(reply)
    if found is None:
        return "", format_step(reply)
    thought = _THOUGHT_LABEL.sub("", reply[: found.start()])
    return format_step(thought), format_step(found.group(1))


def parse_action(action: str) -> tuple[str, str]:
    """``(type, argument)``: upstream's ``^(\\w+)\\[(.+)\\]$``, else after stripping spaces and dots
    the prefix match ``^(\\w+)\\[(.+)\\]``, else ``(text, "")`` (an invalid action)."""
    found = re.match(r"^(\w+)\[(.+)\]$", action)
    if found:
        return found.group(1), found.group(2)
    text = action.strip(" ").strip(".")
    found = re.match(r"^(\w+)\[(.+)\]", text)
    if found:
        return found.group(1), found.group(2)
    return text, ""


def build_prompt(instruction: str, examples: str, question: str, scratchpad: str = "") -> str:
    """The agent prompt as ``ReactAgent._build_agent_prompt`` formats it."""
    return instruction.format(examples=examples, question=question, scratchpad=scratchpad)


def scratchpad_step(n: int, thought: str, action: str, observation: str) -> str:
    """One step of upstream's scratchpad: ``"\\nThought n: t\\nAction n: a\\nObservation n: o"``."""
    return f"\nThought {n}: {thought}\nAction {n}: {action}\nObservation {n}: {observation}"


# ------------------------------------------------------------------------------- scoring
def normalize_answer(text: str) -> str:
    """HotpotQA's normalisation: lower case, punctuation removed, articles a/an/the removed, spaces collapsed."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def f1_score(prediction: str, gold: str) -> tuple[float, float, float]:
    """``(f1, precision, recall)`` of the answer's tokens, HotpotQA's official rule: a normalised
    yes / no / noanswer on either side that differs from the other side scores 0."""
    pred, truth = normalize_answer(prediction), normalize_answer(gold)
    if (pred in ("yes", "no", "noanswer") or truth in ("yes", "no", "noanswer")) and pred != truth:
        return 0.0, 0.0, 0.0
    pred_tokens, truth_tokens = pred.split(), truth.split()
    same = sum((Counter(pred_tokens) & Counter(truth_tokens)).values())
    if same == 0:
        return 0.0, 0.0, 0.0
    precision, recall = same / len(pred_tokens), same / len(truth_tokens)
    return 2 * precision * recall / (precision + recall), precision, recall


def exact_match(prediction: str, gold: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(gold)
