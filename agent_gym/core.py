"""The text-env protocol every AgentTuning task follows.

A :class:`TextEnv` is a ``gymnasium.Env[str, str]``: the observation is what the task shows
the agent, the action is the agent's whole reply (thought and action in the task's format).
Rewards of an episode add up to the task's own score for it, normalised to 0..1, so the same
number serves evaluation and trajectory filtering.

A task env implements five small hooks (``load_tasks``, ``_begin``, ``_act`` and optionally
``_reject``, ``expert_replies``); the base class owns everything that must be uniform:
task choice, input hygiene, turn limits, reward bookkeeping, the ``info`` keys and rendering.
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, SupportsFloat

import gymnasium as gym
from gymnasium.error import ResetNeeded

from agent_gym.spaces import AnyText

# End statuses (``info["status"]``), the same words AgentBench uses for a session's end.
RUNNING = "running"
COMPLETED = "completed"
TASK_LIMIT_REACHED = "task_limit_reached"
INVALID_ACTION = "invalid_action"
AGENT_CONTEXT_LIMIT = "agent_context_limit"
ERROR = "error"
STATUSES = (RUNNING, COMPLETED, TASK_LIMIT_REACHED, INVALID_ACTION, AGENT_CONTEXT_LIMIT, ERROR)

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": ...}


class Task(Protocol):
    """What the core needs of a task: a stable id. Envs keep their own dataclasses."""

    id: str


@dataclasses.dataclass
class Begin:
    """What a task env returns when an episode starts."""

    observation: str
    prompt: list[Message] = dataclasses.field(default_factory=list)
    admissible_actions: list[str] | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Outcome:
    """What a task env returns for one agent reply.

    ``score`` is the new running task score on the 0..1 scale (``None``: unchanged);
    ``done`` means the task reached its end (gymnasium's ``terminated``).
    """

    observation: str
    score: float | None = None
    done: bool = False
    status: str = RUNNING
    action_valid: bool = True
    success: bool | None = None
    progress: float | None = None
    admissible_actions: list[str] | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def clean_text(action: Any) -> str:
    """Turn whatever a policy returned into a valid ``str``.

    Bytes are decoded as UTF-8 (bad bytes replaced), lone surrogates are replaced, NUL bytes
    dropped: engines (JVMs, databases, shells) choke on those, and a reply must never crash one.
    """
    if isinstance(action, (bytes, bytearray, memoryview)):
        action = bytes(action).decode("utf-8", errors="replace")
    elif not isinstance(action, str):
        raise TypeError(f"an action is the agent's reply as str, got {type(action).__name__}")
    try:
        action.encode("utf-8")
    except UnicodeEncodeError:
        action = action.encode("utf-8", errors="replace").decode("utf-8")
    if "\x00" in action:
        action = action.replace("\x00", "")
    return action


class TextEnv(gym.Env[str, str]):
    """Base class of every agent-gym env.

    ``reset(seed=None, options=None)``: ``options["task"]`` picks a task by id or index,
    ``options["split"]`` a split; otherwise the seeded ``np_random`` picks one, so the same
    seed gives the same task. Returns the first observation (the task's instruction
    included) and ``info``.

    ``step(reply)``: the reply is parsed with the task's own rules. ``terminated`` is true when
    the task ended (answer given, goal reached, fatal invalid action); ``truncated`` when the
    paper's round limit is reached or the engine failed.

    ``info`` always has: ``task_id``, ``prompt`` (the chat messages the paper's evaluation put
    before the first observation), ``action_valid``, ``success``, ``score`` (running, 0..1),
    ``progress`` (0..1), ``status`` (one of :data:`STATUSES`), ``turn``; and
    ``admissible_actions`` where the engine knows them.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "human"], "render_fps": 1}

    #: Name of the task in reports (the paper's column name).
    task_name: ClassVar[str] = ""
    #: Splits of the task's data; the first is the default (the paper's test set).
    splits: ClassVar[tuple[str, ...]] = ("test",)
    #: The paper's round limit (agent replies per episode); ``None`` for no limit.
    max_turns: ClassVar[int | None] = None
    #: Replies longer than this are refused as invalid actions rather than parsed.
    max_action_chars: ClassVar[int] = 64 * 1024
    #: The invalid-action message; tasks override with the paper's wording.
    invalid_action_message: ClassVar[str] = "Invalid action: {reason}"

    def __init__(self, split: str | None = None, render_mode: str | None = None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self.observation_space = AnyText()
        self.action_space = AnyText()
        self.split = self._check_split(split or self.splits[0])
        self._tasks_by_split: dict[str, Sequence[Task]] = {}
        self._index_by_split: dict[str, dict[str, int]] = {}
        self._task: Task | None = None
        self._prompt: list[Message] = []
        self._transcript: list[tuple[str, str]] = []
        self._info: dict[str, Any] = {}
        self._done = True

    # ----------------------------------------------------------------- task hooks
    @classmethod
    def load_tasks(cls, split: str) -> Sequence[Task]:
        """The tasks of a split, in the paper's order (reads data, starts no engine)."""
        raise NotImplementedError

    def _begin(self, task: Task) -> Begin:
        """Start ``task`` on the engine; return the first observation and the prompt."""
        raise NotImplementedError

    def _act(self, action: str) -> Outcome:
        """Parse and execute one reply of the agent."""
        raise NotImplementedError

    def _reject(self, reason: str) -> Outcome:
        """The outcome of a reply refused before parsing (too long). Multi-turn tasks go on."""
        single_turn = self.max_turns == 1
        return Outcome(
            observation=self.invalid_action_message.format(reason=reason),
            action_valid=False,
            done=single_turn,
            status=INVALID_ACTION if single_turn else RUNNING,
        )

    def expert_replies(self, task: Task) -> list[str] | None:
        """Replies that solve ``task`` (gold answer, walkthrough), where the data has them."""
        return None

    @classmethod
    def engine_status(cls) -> str:
        """Whether the engine this env drives is installed (``agent-gym list`` shows it); a
        missing one names what to install."""
        return "built-in"

    @classmethod
    def summarize(cls, trajectories: Sequence[Any]) -> dict[str, float]:
        """The task's metrics over finished episodes (see :mod:`agent_gym.metrics`)."""
        from agent_gym.metrics import default_summary

        return default_summary(trajectories)

    # --------------------------------------------------------------- task lookup
    def _check_split(self, split: str) -> str:
        if split not in self.splits:
            raise ValueError(f"{type(self).__name__} has splits {list(self.splits)}, not {split!r}")
        return split

    def tasks(self, split: str | None = None) -> Sequence[Task]:
        """The tasks of ``split`` (default: the env's split), loaded once per env."""
        split = self._check_split(split or self.split)
        if split not in self._tasks_by_split:
            tasks = self.load_tasks(split)
            if not tasks:
                raise ValueError(f"{type(self).__name__}: split {split!r} has no tasks")
            self._tasks_by_split[split] = tasks
            self._index_by_split[split] = {t.id: i for i, t in enumerate(tasks)}
        return self._tasks_by_split[split]

    def task_index(self, task: str | int, split: str | None = None) -> int:
        """Index of a task given by id or index; a clear error for unknown ones."""
        tasks = self.tasks(split)
        if isinstance(task, (int,)) and not isinstance(task, bool):
            if not -len(tasks) <= task < len(tasks):
                raise IndexError(f"task index {task} out of range: split has {len(tasks)} tasks")
            return task % len(tasks)
        if isinstance(task, str):
            index = self._index_by_split[split or self.split].get(task)
            if index is None and task.isdigit():
                return self.task_index(int(task), split)
            if index is None:
                examples = ", ".join(t.id for t in tasks[:3])
                raise KeyError(f"unknown task id {task!r} in split {split or self.split!r} (ids look like: {examples})")
            return index
        raise TypeError(f"options['task'] must be a task id or an index, got {type(task).__name__}")

    @property
    def task(self) -> Task | None:
        """The current episode's task."""
        return self._task

    # ------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        if "split" in options:
            self.split = self._check_split(options["split"])
        tasks = self.tasks()
        if options.get("task") is not None:
            index = self.task_index(options["task"])
        else:
            index = int(self.np_random.integers(len(tasks)))
        self._task = tasks[index]
        begin = self._begin(self._task)
        self._prompt = begin.prompt
        self._turn = 0
        self._score = 0.0
        self._done = False
        self._transcript = [(m["role"], m["content"]) for m in begin.prompt]
        self._transcript.append(("user", begin.observation))
        self._info = {
            "task_id": self._task.id,
            "prompt": self._prompt,
            "action_valid": True,
            "success": False,
            "score": 0.0,
            "progress": 0.0,
            "status": RUNNING,
            "turn": 0,
        }
        if begin.admissible_actions is not None:
            self._info["admissible_actions"] = begin.admissible_actions
        self._info.update(begin.extra)
        return begin.observation, dict(self._info)

    def step(self, action: str) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._done:
            raise ResetNeeded("the episode has ended: call reset() before step()")
        action = clean_text(action)
        self._turn += 1
        try:
            if len(action) > self.max_action_chars:
                outcome = self._reject(f"reply too long ({len(action)} characters, limit {self.max_action_chars})")
            else:
                outcome = self._act(action)
        except Exception as exc:  # an engine fault ends this episode, never the caller's run
            outcome = Outcome(
                observation=f"Environment error: {type(exc).__name__}: {exc}",
                status=ERROR,
                action_valid=False,
                extra={"error": "".join(traceback.format_exception_only(type(exc), exc)).strip()},
            )
        terminated = outcome.done
        truncated = outcome.status == ERROR
        status = outcome.status
        if terminated and status == RUNNING:
            status = COMPLETED
        if not (terminated or truncated) and self.max_turns is not None and self._turn >= self.max_turns:
            truncated, status = True, TASK_LIMIT_REACHED

        old_score = self._score
        if outcome.score is not None:
            self._score = float(outcome.score)
        info = self._info
        info["action_valid"] = outcome.action_valid
        info["score"] = self._score
        if outcome.success is not None:
            info["success"] = bool(outcome.success)
        if outcome.progress is not None:
            info["progress"] = float(outcome.progress)
        elif terminated:
            info["progress"] = 1.0 if info["success"] else info["progress"]
        info["status"] = status
        info["turn"] = self._turn
        if outcome.admissible_actions is not None:
            info["admissible_actions"] = outcome.admissible_actions
        info.pop("error", None)
        info.update(outcome.extra)
        self._done = terminated or truncated
        self._transcript.append(("assistant", action))
        self._transcript.append(("user", outcome.observation))
        if self.render_mode == "human":
            print(self._render_turn(-2) + "\n" + self._render_turn(-1), flush=True)
        return outcome.observation, self._score - old_score, terminated, truncated, dict(info)

    def render(self) -> str | None:
        """``ansi``: the episode's transcript as text; ``human``: printed as it happens."""
        if self.render_mode == "ansi":
            return "\n".join(self._render_turn(i) for i in range(len(self._transcript)))
        return None

    def _render_turn(self, i: int) -> str:
        role, text = self._transcript[i]
        return f"--- {role} ---\n{text}"
