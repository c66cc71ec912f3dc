"""AgentBench's WebShop conversation and reply parsing, as pure functions (``AgentBench.old``
``src/tasks/webshop/__init__.py:predict``).

The prompt is AgentBench's instruction as the user turn, ``Ok.`` from the agent, then its one-shot
(four exchanges, read from the data directory's ``agentbench_old_prompts.json``). Every round the
user turn is ``"Observation:\\n{page}\\n\\nAvailable Actions:\\n{actions}"`` with the actions dict in
Python's ``str()`` form. The action is the first ``search[...]`` / ``click[...]`` on the line right
after ``Action:`` (:data:`ACTION_PATTERN`); a reply without one is a format failure that ends the
episode with reward 0.
"""

from __future__ import annotations

import re
from typing import Any

from agent_gym.core import Message

#: AgentBench.old's reply regex: "Action:" (any case of the A), spaces, a newline, spaces, then the action up to
#: the first "]" (AgentBench v0.2 later allowed no newline: ``[Aa]ction: *\n* *``; the paper's harness did not).
ACTION_PATTERN = re.compile(r"[Aa]ction: *\n *((search|click)\[.+?])")
FORMAT_FAIL_MESSAGE = ("Invalid action: no search[...] or click[...] on the line after \"Action:\" "
                       "(the reply format is \"Thought:\\nI think ...\\n\\nAction:\\nclick[something]\"). "
                       "The episode is over, as in AgentBench.")


def messages(strings: dict[str, Any]) -> list[Message]:
    """The chat before the first observation: instruction, ``Ok.`` and the one-shot, roles as chat roles."""
    turns = [{"role": "user", "content": strings["prompt"]}]
    turns += [{"role": "assistant" if t["role"] == "agent" else "user", "content": t["content"]}
              for t in strings["one_shot_turns"]]
    return turns


def observation(page: str, available_actions: dict[str, Any]) -> str:
    """One round's user turn, byte for byte as AgentBench built it."""
    return f"Observation:\n{page}\n\nAvailable Actions:\n{available_actions}"


def parse_action(reply: str) -> str | None:
    """The action AgentBench reads from a reply (``"click[Buy Now]"``), or ``None`` (a format failure)."""
    match = ACTION_PATTERN.search(reply)
    return match.group(1) if match else None


def reply(thought: str, action: str) -> str:
    """A reply in the prompt's format (for experts and tests)."""
    return f"Thought:\n{thought}\n\nAction:\n{action}"
