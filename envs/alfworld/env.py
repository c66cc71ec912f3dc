"""``AgentTuning/Alfworld-v0``: household tasks in ALFWorld's TextWorld games, AgentBench's protocol.

One episode is one game: the agent's reply is parsed for ``ACTION:``, mapped to an admissible
command as AgentBench does, and played on TextWorld's PDDL engine (invalid commands get
TextWorld's "Nothing happens."). Score 1 when the game is won (``end_reason`` "goal_reached"),
else 0; the metric is the success rate. 35 replies at most; more than 3 replies whose last 3 are
identical end the episode as a failure ("repeated_action", checked before the win, as upstream).
``info["admissible_actions"]`` has the engine's admissible commands (AgentBench never shows them
to the agent: its prompt has no list). AgentBench sent no system message; greedy, 128 new tokens.

Option ``wording``: ``"alfworld-0.3"`` (default, the paper's: ``put X in/on Y``, go-to feedback
"You arrive at loc N." which the observation cleaning strips, no ``help``) or ``"alfworld-0.4"``
(the release's games as they are: ``move X to Y``, "You arrive at drawer 2." left in). See
:func:`.engine.reword`.

Differences from upstream, on purpose: resets use games compiled once and cached on disk (see
:mod:`.engine`), with the same observations; an episode whose engine fails ends with status
"error" rather than a raised exception (AgentBench excludes such games from the denominator, and
so does :meth:`AlfworldEnv.summarize`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from agent_gym.core import GOAL_REACHED, REPEATED_ACTION, TASK_FAILED, Begin, Outcome, TextEnv
from agent_gym.envs.alfworld import data, prompt


class AlfworldEnv(TextEnv):
    task_name = "alfworld"
    splits = data.SPLITS
    split_aliases: ClassVar[dict[str, str]] = {"std": "test"}  # AgentBench.old's configs/tasks/alfworld/std.yaml
    max_turns = 35
    invalid_action_message = "Nothing happens."
    # AgentBench.old's harness: no system message, greedy decoding, 128 new tokens.
    system_prompt: ClassVar[str | None] = ""
    decoding: ClassVar[dict[str, Any]] = {"max_new_tokens": 128, "temperature": 0.0}
    paper_options: ClassVar[dict[str, Any]] = {"wording": "alfworld-0.3"}

    def __init__(self, split: str | None = None, render_mode: str | None = None,
                 tasks_file: str | Path | None = None, wording: str = "alfworld-0.3", use_disk_cache: bool = True):
        from agent_gym.envs.alfworld import engine  # needs the alfworld extra; fail at construction, clearly

        self.wording = engine.check_wording(wording)
        super().__init__(split=split, render_mode=render_mode, tasks_file=tasks_file)
        self._engine_module = engine
        self._game = engine.AlfredGame()
        self._use_disk_cache = use_disk_cache
        self._examples: dict[str, list[str]] | None = None
        self._replies: list[str] = []
        self._admissible: list[str] = []
        self._reached = 0

    @classmethod
    def load_tasks(cls, split: str) -> Sequence[data.Game]:
        return data.load(split)

    @classmethod
    def load_tasks_file(cls, path: Path) -> Sequence[data.Game]:
        """A game list in AgentBench's format (see :func:`.data.load_file`)."""
        return data.load_file(path)

    def engine_info(self) -> dict[str, str]:
        return dict(self._engine_module.versions())

    def options(self) -> dict[str, Any]:
        return {"wording": self.wording}

    @classmethod
    def engine_status(cls) -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = {p: version(p) for p in ("textworld", "fast-downward-textworld", "alfworld", "nltk")}
        except PackageNotFoundError as exc:
            return f"not installed ({exc.name} missing): pip install 'agent-gym[alfworld]'"
        return f"textworld {found['textworld']} + fast-downward {found['fast-downward-textworld']}, alfworld {found['alfworld']}"

    def _begin(self, task: data.Game) -> Begin:
        if self._examples is None:
            self._examples = data.react_examples()
        self._game.load(task.path, use_disk_cache=self._use_disk_cache, wording=self.wording)
        state = self._game.reset()
        self._replies, self._reached = [], 0
        self._admissible = list(state["admissible_commands"])
        return Begin(
            observation=prompt.first_observation(state.feedback),
            prompt=prompt.messages(self._examples, task.id),
            admissible_actions=list(self._admissible),
            extra={"task_type": task.task_type, "game_file": str(task.path)},
        )

    def _act(self, action: str) -> Outcome:
        self._replies.append(action)
        command = prompt.to_command(prompt.parse_action(action), self._admissible)
        valid = command in self._admissible
        state, _, done = self._game.step(command)
        won = bool(state["won"])
        self._admissible = list(state["admissible_commands"])
        reached, total = self._engine_module.subgoals_reached(self.task.task_type, self.task.targets, state["_facts"], won)
        self._reached = max(self._reached, reached)
        end_reason = (GOAL_REACHED if won else TASK_FAILED) if done else None
        if prompt.repeated(self._replies):
            done, won, end_reason = True, False, REPEATED_ACTION
        return Outcome(
            observation=prompt.observation(state.feedback),
            score=1.0 if won else 0.0,
            done=bool(done),
            action_valid=valid,
            success=won,
            progress=1.0 if won else self._reached / total,
            admissible_actions=list(self._admissible),
            end_reason=end_reason,
            extra={"command": command},
        )

    def expert_replies(self, task: data.Game) -> list[str]:
        return [prompt.expert_reply(self._engine_module.command_in(c, self.wording)) for c in data.walkthrough(task)]

    @classmethod
    def summarize(cls, trajectories: Sequence[Any]) -> dict[str, float]:
        """AgentBench's success rate (games whose engine failed are left out), overall and per task type."""
        from agent_gym.metrics import default_summary

        out = default_summary(trajectories)
        counted = [t for t in trajectories if t.status != "error"]
        out["success_rate"] = sum(bool(t.success) for t in counted) / len(counted) if counted else 0.0
        by_type: dict[str, list[bool]] = defaultdict(list)
        for t in counted:
            by_type[t.task_id.split("-", 1)[0]].append(bool(t.success))
        for task_type, wins in sorted(by_type.items()):
            out[f"success_rate/{task_type}"] = sum(wins) / len(wins)
        return out

    def close(self) -> None:
        self._game.close()
        super().close()
