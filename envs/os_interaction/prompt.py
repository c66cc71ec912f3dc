"""The OS task's prompt, reply parsing, observation format and answer matching (pure functions).

All of it follows ``AgentBench.old/src/tasks/os_interaction/task.py``: the instruction and the
one-shot come from ``agentbench_old_prompts.json`` (read at run time, never copied here);
``parse_action`` is ``extract_action``; ``observation`` is the 800/780-character truncation and the
"The output of the OS" wrapper; ``match`` is ``_judge``'s match branch.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from agent_gym.core import Message

NEW_PROBLEM = "Now, I will start a new problem in a new OS. My problem is:\n\n"
MAX_OUTPUT = 800
KEEP_OUTPUT = 780
TRUNCATED = "\n[truncated because the output is too long]"

_THINK = re.compile(r"Think:\s*(.+)")
_ACT = re.compile(r"Act:\s*(.+)")
_BASH_BLOCK = re.compile(r"```bash\n(.*?)\n```", re.DOTALL)


@dataclasses.dataclass(frozen=True)
class Action:
    """A parsed reply: ``kind`` is ``bash``, ``commit`` (finish / answer) or ``None`` (no action)."""

    kind: str | None
    content: str | None = None
    thought: str = ""


def prompt_messages(prompts: dict[str, Any]) -> list[Message]:
    """The chat before the problem: the instruction with the one-shot question, then the one-shot turns."""
    one_shot = prompts["ONE_SHOT"]
    first = prompts["system_prompt"] + "Now, my problem is:\n\n" + one_shot[0]["content"]
    messages = [{"role": "user", "content": first}]
    for m in one_shot[1:]:
        messages.append({"role": "assistant" if m["role"] == "agent" else "user", "content": m["content"]})
    return messages


def first_observation(description: str) -> str:
    return NEW_PROBLEM + description


def parse_action(reply: str) -> Action:
    """AgentBench's ``extract_action``: the LAST ``Act:`` line that names bash / finish / answer(...) wins.

    ``answer`` needs both parentheses on its line (else the previous Act line is tried); bash
    takes every ```` ```bash ```` block of the reply joined by a blank line ("" when there is none
    or the block is not closed).
    """
    thought = "\n".join(_THINK.findall(reply))
    for act in reversed(_ACT.findall(reply)):
        low = act.lower()
        if low.startswith("bash"):
            return Action("bash", "\n\n".join(_BASH_BLOCK.findall(reply)), thought)
        if low.startswith("finish"):
            return Action("commit", None, thought)
        if low.startswith("answer"):
            content = act[6:].strip()
            left, right = content.find("("), content.rfind(")")
            if left == -1 or right == -1:
                continue
            return Action("commit", content[left + 1:right], thought)
    return Action(None, None, thought)


def truncate(output: str) -> str:
    """Upstream's rule: over 800 characters, keep 780 and say so."""
    return output[:KEEP_OUTPUT] + TRUNCATED if len(output) > MAX_OUTPUT else output


def observation(output: str) -> str:
    output = truncate(output)
    return "The output of the OS:\n\n" + output if output else "The output of the OS is empty."


def match(answer: str | None, spec: dict[str, Any]) -> bool:
    """``_judge``'s match branch: exact string (stripped when ``strip``) or a regex search."""
    if answer is None:
        return False
    if spec.get("strip"):
        answer = answer.strip()
    if "answer" in spec:
        return answer == spec["answer"]
    if "regex" in spec:
        return re.search(spec["regex"], answer) is not None
    return False


_ANSI = re.compile(r"\x1b\][^\x07]*\x07|\x1b\[[0-9;?]*[A-Za-z]|\r")
_TRAILING_PROMPT = re.compile(r"[^\n]*@[^\n]*[#$] *\Z")


def plain(output: str) -> str:
    """The output without terminal escapes, carriage returns and the shell prompt it ends with."""
    return _TRAILING_PROMPT.sub("", _ANSI.sub("", output))


def bash_reply(code: str, thought: str = "I will run a command.") -> str:
    return f"Think: {thought}\n\nAct: bash\n\n```bash\n{code}\n```"


def answer_reply(answer: str, thought: str = "Now I get the answer.") -> str:
    return f"Think: {thought}\n\nAct: answer({answer})"


def finish_reply(thought: str = "The task is done.") -> str:
    return f"Think: {thought}\n\nAct: finish"
