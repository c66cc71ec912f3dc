"""The ``human`` policy: a person plays any env in the terminal.

Each turn shows the observation and reads a reply; replies span several lines (most tasks want a
thought and an action), so a reply ends with an empty line. ``/prompt`` shows the task's prompt
again, ``/actions`` the admissible actions, ``/quit`` (or end of input) gives up the episode.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO


class HumanQuit(RuntimeError):
    """The person gave up (``/quit`` or end of input); the episode is recorded with status ``error``."""


class HumanPolicy:
    name = "human"
    model_name = "human"

    def __init__(self, stdin: TextIO | None = None, stdout: TextIO | None = None):
        self.stdin, self.stdout = stdin or sys.stdin, stdout or sys.stdout
        self.last_usage = {"prompt_tokens": None, "completion_tokens": None}
        self._prompt: list[dict[str, str]] = []

    def _say(self, text: str) -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def reset(self, info: dict[str, Any]) -> None:
        self._prompt = list(info.get("prompt") or [])
        self._say(f"\n=== task {info.get('task_id', '?')} ===")
        if self._prompt:
            self._show_prompt()

    def _show_prompt(self) -> None:
        for m in self._prompt:
            self._say(f"--- {m['role']} ---\n{m['content']}")

    def act(self, observation: str, info: dict[str, Any]) -> str:
        self._say(f"--- observation (turn {info.get('turn', 0)}) ---\n{observation}")
        while True:
            self._say("--- your reply (end with an empty line; /prompt, /actions, /quit) ---")
            lines: list[str] = []
            while True:
                line = self.stdin.readline()
                if not line:  # end of input
                    if lines:
                        return "\n".join(lines)
                    raise HumanQuit("end of input: episode abandoned")
                line = line.rstrip("\n")
                if not lines and line.strip() in ("/quit", "/prompt", "/actions"):
                    break
                if not line and lines:
                    return "\n".join(lines)
                if line or lines:
                    lines.append(line)
            command = line.strip()
            if command == "/quit":
                raise HumanQuit("the player quit")
            if command == "/prompt":
                self._show_prompt()
            else:
                actions = info.get("admissible_actions")
                self._say("\n".join(map(str, actions)) if actions else "(this task lists no admissible actions)")


def human(env: Any = None, **options: Any) -> HumanPolicy:
    return HumanPolicy()
