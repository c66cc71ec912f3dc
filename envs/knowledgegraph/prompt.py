"""AgentBench's KG prompt and reply parsing, as ``AgentBench.old/src/tasks/knowledgegraph/task.py``
(``KnowledgeGraph.predict_single``) has them. Pure functions: no knowledge base here.

A reply is cut at its first ``Observation:`` and ``\\_`` becomes ``_`` (the cut reply is what the
history keeps). ``Final Answer: #n`` (or ``Find Answer: #n``) anywhere in it answers with variable
``n``; otherwise its first line that starts with ``Action...:`` is the action: the ``name(`` calls on
that line are tried in order, each with the arguments up to its first ``)``, split at commas.
"""

from __future__ import annotations

import dataclasses
import re

ACKNOWLEDGEMENT = "I've understood your instruction, start please."
INVALID_VARIABLE = "Invalid variable id! Need to recheck the action."
NO_ACTION = "No executable function found! Need to recheck the action."
NOT_EXECUTED = "Function is not executed!"

_FINAL = re.compile(r"(?:Find|Final) Answer: #(\d+)")
_ACTION = re.compile(r"Action.*?:")
_NAME = re.compile(r"(?<!\w)(\w+)\(")  # from a word's start only: the same matches, linear time


def messages(instructions: str, one_shot: tuple[str, ...] | list[str]) -> list[dict[str, str]]:
    """The turns before the question: the instructions, the agent's acknowledgement, then the
    one-shot demo as alternating user / agent turns (upstream's ``session.inject`` calls)."""
    turns = [{"role": "user", "content": instructions}, {"role": "assistant", "content": ACKNOWLEDGEMENT}]
    for i, shot in enumerate(one_shot):
        turns.append({"role": "user" if i % 2 == 0 else "assistant", "content": shot})
    return turns


def question_text(question: str, entity_names: list[str] | tuple[str, ...]) -> str:
    """The first observation: ``A new question: ...`` and the entity names in the item's order."""
    return "A new question: " + question + "\nEntities: " + f"[{', '.join(entity_names)}]"


def clean_reply(reply: str) -> str:
    """The reply as upstream keeps it: cut at the first ``Observation:``, ``\\_`` made ``_``."""
    return reply.split("Observation:")[0].replace("\\_", "_")


def final_answer(reply: str) -> int | None:
    """The variable number of the first ``Final Answer: #n`` (or ``Find Answer: #n``), else ``None``."""
    found = _FINAL.findall(reply)
    if not found:
        return None
    # a number past any variable (say 5,000 digits, over Python's int-parsing limit) is just an unknown id
    digits = found[0].lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else 10**18


def action_line(reply: str) -> str | None:
    """The first line starting with ``Action`` and holding a ``:`` later on (``re.match``), else ``None``."""
    return next((line for line in reply.split("\n") if _ACTION.match(line)), None)


@dataclasses.dataclass(frozen=True)
class Call:
    """One ``name(...)`` candidate of an action line: ``arguments`` is ``None`` when the line has
    no ``name(...)`` with a closing parenthesis (upstream's ``matches[0]`` failed)."""

    name: str
    arguments: tuple[str, ...] | None


def calls(line: str) -> list[Call]:
    """The candidate calls of an action line, in the order their names appear (repeats included)."""
    found: dict[str, Call] = {}
    return [found.setdefault(name, Call(name, _arguments(line, name))) for name in _NAME.findall(line)]


def _arguments(line: str, name: str) -> tuple[str, ...] | None:
    r"""Upstream's ``re.findall(name + r"\((.+?)\)", line)[0]`` split at commas, found in linear time:
    the first ``name(`` (anywhere, even inside a longer word) and the first ``)`` after at least one
    character. (The regex itself is quadratic per name: a 64 KiB reply of ``x(x(x(...`` took minutes.)"""
    start = line.find(name + "(")
    if start < 0:
        return None
    begin = start + len(name) + 1
    end = line.find(")", begin + 1)
    if end < 0:
        return None
    return tuple(re.split(r"\s*,\s*", line[begin:end]))


def cannot_execute(name: str, arguments: tuple[str, ...] | None) -> str:
    """Upstream's message for a call that raised. ``arguments`` are the raw arguments of the last
    call whose arguments were read in this episode (upstream reused a stale local), ``None`` if none
    was: then the "syntax error" message."""
    if arguments is None:
        return (f"I may make a syntax error when calling {name} (e.g., unmatched parenthesis). "
                f"I need to fix it and reuse the tool")
    if name == "intersection":
        return (f"{name}({', '.join(arguments)}) cannot be executed. The two variables are not of the same type. "
                f"You may further explore them by call get_relations")
    return f"{name}({', '.join(arguments)}) cannot be executed. You may make a mistake and need to fix it."


def action_reply(call: str) -> str:
    """A reply that makes one call (the gold ``actions`` are written ``get_relations(m.0km5c)``)."""
    return f"Thought: I run the next step of the plan.\nAction: {call}"


def answer_reply(variable: int) -> str:
    return f"Thought: #{variable} is the answer.\nFinal Answer: #{variable}"
