"""The text-env protocol every AgentTuning task follows.

A :class:`TextEnv` is a ``gymnasium.Env[str, str]``: the observation is what the task shows
the agent, the action is the agent's whole reply (thought and action in the task's format).
Rewards of an episode add up to the task's own score for it, normalised to 0..1, so the same
number serves evaluation and trajectory filtering.

A task env implements a few small hooks (``load_tasks``, ``_begin``, ``_act`` and optionally
``load_tasks_file``, ``_reject``, ``expert_replies``, ``engine_info``, ``options``) and declares the
paper's protocol as class attributes (``splits``, ``max_turns``, ``decoding``, ``system_prompt``,
``paper_options``); the base class owns everything that must be uniform: task choice, input
hygiene, turn limits, reward bookkeeping, the ``info`` keys, provenance and rendering.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import traceback
from collections.abc import Sequence
from pathlib import Path
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

# Why an episode ended (``info["end_reason"]``; ``None`` while it runs). One word per cause in every env.
ANSWERED = "answered"                  # the agent gave its final answer / finish action
GOAL_REACHED = "goal_reached"          # the engine says the task is done (game won, task completed)
TASK_FAILED = "task_failed"            # the engine says the task is lost
INVALID_ACTION_END = "invalid_action"  # an invalid reply ended the episode (the task's own rule)
FAILED_ACTIONS = "failed_actions"      # too many failed actions in a row (SciWorld: 10)
REPEATED_ACTION = "repeated_action"    # the agent repeated itself (ALFWorld: 3 same replies; SciWorld: a loop)
ROUND_LIMIT = "round_limit"            # the paper's limit on agent replies (``max_turns``) was reached
ENV_STEP_LIMIT = "env_step_limit"      # the engine's own limit on moves
ENV_ERROR = "env_error"                # the engine failed (status ``error``)
CONTEXT_LIMIT = "context_limit"        # the policy could not fit the conversation (set on the trajectory)
END_REASONS = (ANSWERED, GOAL_REACHED, TASK_FAILED, INVALID_ACTION_END, FAILED_ACTIONS, REPEATED_ACTION,
               ROUND_LIMIT, ENV_STEP_LIMIT, ENV_ERROR, CONTEXT_LIMIT)

#: Llama-2-chat's short default system message, which AgentTuning's general and held-out scripts sent
#: (FastChat ``llama-2`` conversation with this system message: eval_gsm8k_tgi.py, science-world/eval.py).
LLAMA2_SYSTEM = "You are a helpful, respectful and honest assistant."

#: The split name of an env made with ``tasks_file=``.
CUSTOM_SPLIT = "custom"

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
    ``done`` means the task reached its end (gymnasium's ``terminated``); ``end_reason`` says why
    (one of :data:`END_REASONS`; the core fills ``round_limit`` and ``env_error`` itself, and
    ``answered`` / ``invalid_action`` for a task end the env left unnamed).
    """

    observation: str
    score: float | None = None
    done: bool = False
    status: str = RUNNING
    action_valid: bool = True
    success: bool | None = None
    progress: float | None = None
    admissible_actions: list[str] | None = None
    end_reason: str | None = None
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

    ``__init__(split=None, render_mode=None, tasks_file=None)``: ``split`` is one of
    :attr:`splits` (or an upstream name in :attr:`split_aliases`); ``tasks_file`` a file of the
    user's own tasks in the task's upstream format (read by :meth:`load_tasks_file`; the split is
    then ``"custom"`` and the file's path and sha256 go into every episode's provenance).

    ``reset(seed=None, options=None)``: ``options["task"]`` picks a task by id or index,
    ``options["split"]`` a split; otherwise the seeded ``np_random`` picks one, so the same
    seed gives the same task. Returns the first observation (the task's instruction
    included) and ``info``.

    ``step(reply)``: the reply is parsed with the task's own rules. ``terminated`` is true when
    the task ended (answer given, goal reached, fatal invalid action); ``truncated`` when the
    paper's round limit (:attr:`max_turns`, enforced here rather than by gymnasium's
    ``TimeLimit``, so an answer on the last allowed turn is not also truncated) cut the episode,
    or the engine failed.

    ``info`` always has: ``task_id``, ``prompt`` (the chat messages the paper's evaluation put
    before the first observation), ``action_valid``, ``success``, ``score`` (running, 0..1),
    ``progress`` (0..1), ``status`` (one of :data:`STATUSES`), ``end_reason`` (one of
    :data:`END_REASONS`, ``None`` while running), ``turn``; the paper's decoding for the task
    (``max_new_tokens``, ``temperature``, and ``top_p`` / ``stop`` where the paper set them) and
    ``system_prompt`` (``""``: the paper sent none) and ``strip_messages`` (whether it stripped each
    message); ``provenance`` (package, dataset, engine
    versions, protocol options) from ``reset``; and ``admissible_actions`` where the engine knows them.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "human"], "render_fps": 1}

    #: Name of the task in reports (the paper's column name).
    task_name: ClassVar[str] = ""
    #: Splits of the task's data; the first is the default and is always ``"test"`` (the paper's test set).
    splits: ClassVar[tuple[str, ...]] = ("test",)
    #: Upstream's names for splits (``{"std": "test"}``), accepted wherever a split is named.
    split_aliases: ClassVar[dict[str, str]] = {}
    #: The paper's round limit (agent replies per episode); ``None`` for no limit.
    max_turns: ClassVar[int | None] = None
    #: The paper's decoding for the task, given to policies through ``info`` (AgentBench.old's
    #: held-in scripts: greedy, 128 new tokens; see ../shared/UPSTREAM_SCORING.md per task).
    decoding: ClassVar[dict[str, Any]] = {"max_new_tokens": 128, "temperature": 0.0}
    #: The system message the paper's harness sent: ``""`` for none (AgentBench's held-in harness),
    #: ``None`` to leave it to the policy.
    system_prompt: ClassVar[str | None] = None
    #: Whether the paper's harness ``strip()``-ed every message before rendering (AgentBench did; the
    #: AgentTuning general and held-out scripts passed them as they were).
    strip_messages: ClassVar[bool] = True
    #: The protocol options (see :meth:`options`) that reproduce the paper.
    paper_options: ClassVar[dict[str, Any]] = {}
    #: Replies longer than this are refused as invalid actions rather than parsed.
    max_action_chars: ClassVar[int] = 64 * 1024
    #: The invalid-action message; tasks override with the paper's wording.
    invalid_action_message: ClassVar[str] = "Invalid action: {reason}"

    def __init__(self, split: str | None = None, render_mode: str | None = None,
                 tasks_file: str | Path | None = None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self.observation_space = AnyText()
        self.action_space = AnyText()
        self._tasks_by_split: dict[str, Sequence[Task]] = {}
        self._index_by_split: dict[str, dict[str, int]] = {}
        self.tasks_file: Path | None = None
        if tasks_file is not None:
            self.tasks_file = Path(tasks_file).expanduser().resolve()
            if not self.tasks_file.is_file():
                raise FileNotFoundError(f"tasks_file {tasks_file} does not exist")
            self.split = CUSTOM_SPLIT
        else:
            self.split = self.resolve_split(split or self.splits[0])
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

    @classmethod
    def load_tasks_file(cls, path: Path) -> Sequence[Task]:
        """The tasks of a user's file in the task's upstream format (``tasks_file=``)."""
        raise NotImplementedError(f"{cls.__name__} does not read a tasks_file yet")

    def engine_info(self) -> dict[str, str]:
        """Versions of the engines behind the env (``{"mariadb": "10.11.6"}``), for provenance."""
        return {}

    def options(self) -> dict[str, Any]:
        """The protocol options this env runs with (compare :attr:`paper_options`), for provenance."""
        return {}

    def preflight(self) -> None:
        """Raise, naming the fix, when no episode can be played as the env is configured (a site
        URL or an endpoint that is not set, files that are absent). The rollout calls it once per
        env before the first episode, so such a run stops with nothing recorded, and
        ``agent-gym eval`` lists the task as "not run" with this message. Cheap: it starts no engine."""

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
    @classmethod
    def resolve_split(cls, split: str) -> str:
        """The split's own name (``std`` -> ``test`` where upstream said ``std``); a clear error
        for an unknown one."""
        split = cls.split_aliases.get(split, split)
        if split not in cls.splits:
            aliases = f" (aliases: {', '.join(f'{a}={b}' for a, b in cls.split_aliases.items())})" if cls.split_aliases else ""
            raise ValueError(f"{cls.__name__} has splits {list(cls.splits)}{aliases}, not {split!r}")
        return split

    def _check_split(self, split: str) -> str:
        if split == CUSTOM_SPLIT and self.tasks_file is not None:
            return split
        return self.resolve_split(split)

    @classmethod
    def read_tasks_file(cls, path: str | Path) -> Sequence[Task]:
        """:meth:`load_tasks_file`, with ``ValueError`` naming the file for a file not in the task's
        format (a loader's own message is kept when it names the file and line)."""
        try:
            return cls.load_tasks_file(Path(path))
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            if str(path) in str(exc):
                raise
            raise ValueError(f"{cls.__name__}: tasks_file {path} is not in the task's upstream format "
                             f"({type(exc).__name__}: {exc}); see the env's page in docs/") from None

    def tasks(self, split: str | None = None) -> Sequence[Task]:
        """The tasks of ``split`` (default: the env's split), loaded once per env."""
        split = self._check_split(split or self.split)
        if split not in self._tasks_by_split:
            tasks = self.read_tasks_file(self.tasks_file) if split == CUSTOM_SPLIT else self.load_tasks(split)
            if not tasks:
                where = f"tasks_file {self.tasks_file}" if split == CUSTOM_SPLIT else f"split {split!r}"
                raise ValueError(f"{type(self).__name__}: {where} has no tasks")
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
            index = self._index_by_split[self._check_split(split or self.split)].get(task)
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
        # a split whose tasks cannot be had (data missing, unknown task) leaves the env on its own split
        split = self._check_split(options["split"]) if "split" in options else self.split
        tasks = self.tasks(split)
        if options.get("task") is not None:
            index = self.task_index(options["task"], split)
        else:
            index = int(self.np_random.integers(len(tasks)))
        self.split = split
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
            "end_reason": None,
            "turn": 0,
            **self.decoding,
            "system_prompt": self.system_prompt,
            "strip_messages": self.strip_messages,
            "provenance": self.provenance(),
        }
        if begin.admissible_actions is not None:
            self._info["admissible_actions"] = begin.admissible_actions
        self._info.update(begin.extra)
        return begin.observation, _fresh(self._info)

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
                end_reason=ENV_ERROR,
                extra={"error": "".join(traceback.format_exception_only(type(exc), exc)).strip()},
            )
        terminated = outcome.done
        truncated = outcome.status == ERROR
        status = outcome.status
        if terminated and status == RUNNING:
            status = COMPLETED
        end_reason = outcome.end_reason
        if not (terminated or truncated) and self.max_turns is not None and self._turn >= self.max_turns:
            truncated, status = True, TASK_LIMIT_REACHED
        if terminated or truncated:
            end_reason = end_reason or _DEFAULT_END_REASON.get(status, ANSWERED)

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
        info["end_reason"] = end_reason if (terminated or truncated) else None
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
        return outcome.observation, self._score - old_score, terminated, truncated, _fresh(info)

    def provenance(self) -> dict[str, Any]:
        """What produced this episode's score: the package, the task data and its checksum
        state, the engines' versions and the protocol options (with the paper's, to compare)."""
        from agent_gym import data as data_layer

        prov: dict[str, Any] = {"agent_gym": package_version(), "git": git_revision()}
        if self.tasks_file is not None:
            prov["tasks_file"] = {"path": str(self.tasks_file), "sha256": _file_sha256(self.tasks_file)}
        else:
            name = dataset_of(type(self))
            if name is not None:
                # once per env: checking every file's checksum state cost MiniWoB's 320 files 80 ms a reset
                cached = getattr(self, "_dataset_provenance", None)
                if cached is None or cached[0] != name:
                    state = getattr(data_layer, "dataset_state", None)
                    try:
                        found = state(name) if state else {"name": name}
                    except Exception as exc:  # noqa: BLE001 - provenance must never break a reset
                        found = {"name": name, "state": f"unknown ({exc})"}
                    cached = self._dataset_provenance = (name, found)
                prov["dataset"] = copy.deepcopy(cached[1])
        prov["split"] = self.split
        prov["engine"] = self.engine_info()
        prov["options"] = self.options()
        prov["paper_options"] = dict(self.paper_options)
        return prov

    def render(self) -> str | None:
        """``ansi``: the episode's transcript as text; ``human``: printed as it happens."""
        if self.render_mode == "ansi":
            return "\n".join(self._render_turn(i) for i in range(len(self._transcript)))
        return None

    def _render_turn(self, i: int) -> str:
        role, text = self._transcript[i]
        return f"--- {role} ---\n{text}"


# Why an episode ended, when the env did not say: by its end status.
_DEFAULT_END_REASON = {TASK_LIMIT_REACHED: ROUND_LIMIT, ERROR: ENV_ERROR, INVALID_ACTION: INVALID_ACTION_END,
                       AGENT_CONTEXT_LIMIT: CONTEXT_LIMIT, COMPLETED: ANSWERED}


def _fresh(info: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``info`` that shares no dict with earlier ones (callers keep and may change them)."""
    return {k: copy.deepcopy(v) if isinstance(v, dict) else v for k, v in info.items()}


def dataset_of(env_cls: type) -> str | None:
    """The dataset name registered for an env class (``None`` for an unregistered class)."""
    from agent_gym.registration import entries

    target = f"{env_cls.__module__}:{env_cls.__name__}"
    return next((e.dataset for e in entries() if e.entry_point == target), None)


@functools.lru_cache(maxsize=1)
def package_version() -> str:
    from agent_gym import __version__

    return __version__


@functools.lru_cache(maxsize=1)
def git_revision() -> str | None:
    """The commit of the source tree agent_gym runs from (an editable install), else ``None``;
    a ``+dirty`` suffix when tracked files differ from it."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("+dirty" if dirty else "")


@functools.lru_cache(maxsize=64)
def _file_sha256_cached(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    st = path.stat()
    return _file_sha256_cached(str(path), st.st_mtime_ns, st.st_size)
