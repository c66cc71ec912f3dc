"""Trajectories: the record of one episode, JSONL in and out, and AgentInstruct export.

One JSON object per line, appended as each episode ends, so a file is always a valid record
of the finished episodes (see :mod:`agent_gym.rollout`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

# info keys that are the same at every step or large; kept once per trajectory instead
_STEP_INFO_SKIP = ("prompt", "admissible_actions", "provenance", "system_prompt", "choice_scoring",
                   "messages")  # the card game's per-call chat: its turns are the transcript already


@dataclasses.dataclass
class Step:
    """One agent reply and what the env answered."""

    action: str
    observation: str
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclasses.dataclass
class Trajectory:
    """One episode of one env: everything needed to score it, replay it or train on it."""

    env_id: str
    task_id: str
    episode_id: str
    prompt: list[dict[str, str]]
    first_observation: str
    steps: list[Step] = dataclasses.field(default_factory=list)
    score: float = 0.0
    success: bool = False
    status: str = "running"
    end_reason: str | None = None  # why it ended: one of agent_gym.core.END_REASONS
    policy: str = ""
    model: str | None = None
    seed: int | None = None
    split: str | None = None
    started_at: float = 0.0
    seconds: float = 0.0
    error: str | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: what produced the score: {"env": the env's info["provenance"], "policy": the policy's provenance}
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def agent(self) -> str:
        """Who played: ``policy`` or ``policy:model``."""
        return f"{self.policy}:{self.model}" if self.model else self.policy

    @property
    def total_reward(self) -> float:
        return sum(s.reward for s in self.steps)

    @property
    def turns(self) -> int:
        return len(self.steps)

    @property
    def prompt_tokens(self) -> int | None:
        counts = [s.prompt_tokens for s in self.steps if s.prompt_tokens is not None]
        return sum(counts) if counts else None

    @property
    def completion_tokens(self) -> int | None:
        counts = [s.completion_tokens for s in self.steps if s.completion_tokens is not None]
        return sum(counts) if counts else None

    def messages(self) -> list[dict[str, str]]:
        """The conversation as chat messages: prompt, first observation, then reply / observation turns.

        The last observation (what the env said after the final reply) is left out: the agent
        never answered it, and AgentInstruct conversations end with the agent's turn.
        """
        msgs = [dict(m) for m in self.prompt]
        msgs.append({"role": "user", "content": self.first_observation})
        for i, s in enumerate(self.steps):
            msgs.append({"role": "assistant", "content": s.action})
            if i + 1 < len(self.steps):
                msgs.append({"role": "user", "content": s.observation})
        return msgs

    def conversations(self) -> list[list[dict[str, str]]]:
        """The conversations the agent had: one (:meth:`messages`), or one per reply when the env
        asked for a fresh context at each call (``info["fresh_context"]``, Mind2Web: each multiple-choice
        call was its own session upstream, and AgentInstruct kept them as one-turn records)."""
        if not any(s.info.get("fresh_context") for s in self.steps):
            return [self.messages()]
        out, observation = [], self.first_observation
        for s in self.steps:
            out.append([*(dict(m) for m in self.prompt), {"role": "user", "content": observation},
                        {"role": "assistant", "content": s.action}])
            observation = s.observation
        return out

    def to_agentinstruct_records(self) -> list[dict[str, Any]]:
        """:meth:`to_agentinstruct` per conversation (:meth:`conversations`); ids ``<id>`` then ``<id>_call<k>``."""
        base = self.to_agentinstruct()
        convs = self.conversations()
        if len(convs) == 1:
            return [base]
        n_prompt = len(self.prompt)
        return [{"id": f"{base['id']}_call{k}", "conversations": [
            {"from": "gpt" if m["role"] == "assistant" else "human", "value": m["content"],
             "loss": bool(m["role"] == "assistant" and i >= n_prompt)} for i, m in enumerate(conv)]}
            for k, conv in enumerate(convs)]

    def to_agentinstruct(self) -> dict[str, Any]:
        """The AgentInstruct conversation format: the prompt turns carry ``loss: false``,
        the agent's replies ``loss: true`` (the first observation and later env turns are
        human turns with ``loss: false``)."""
        n_prompt = len(self.prompt)
        convs = []
        for i, m in enumerate(self.messages()):
            is_agent = m["role"] == "assistant"
            convs.append({
                "from": "gpt" if is_agent else "human",
                "value": m["content"],
                "loss": bool(is_agent and i >= n_prompt),
            })
        task = self.env_id.split("/")[-1].rsplit("-v", 1)[0].lower()
        return {"id": f"{task}_{self.task_id}".replace("/", "_"), "conversations": convs}

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["total_reward"] = self.total_reward
        d["prompt_tokens"] = self.prompt_tokens
        d["completion_tokens"] = self.completion_tokens
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Trajectory":
        """A record read back (:meth:`to_dict`'s shape; unknown keys are ignored). Raises ``TypeError``
        naming the field when one has the wrong type (a score written as text would otherwise be
        averaged as garbage or crash a report far from the file)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in fields}
        _check_types(kw, _TRAJECTORY_TYPES, "trajectory")
        steps = d.get("steps", [])
        if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
            raise TypeError("steps must be a list of step objects")
        for s in steps:
            _check_types(s, _STEP_TYPES, "step")
        kw["steps"] = [Step(**s) for s in steps]
        return cls(**kw)


_NUMBER = (int, float)
_TRAJECTORY_TYPES: dict[str, tuple[type, ...]] = {
    "env_id": (str,), "task_id": (str,), "episode_id": (str,), "prompt": (list,), "first_observation": (str,),
    "score": _NUMBER, "success": (bool,), "status": (str,), "seconds": _NUMBER, "started_at": _NUMBER,
    "meta": (dict,), "provenance": (dict,)}
_STEP_TYPES: dict[str, tuple[type, ...]] = {
    "action": (str,), "observation": (str,), "reward": _NUMBER, "terminated": (bool,), "truncated": (bool,),
    "info": (dict,), "seconds": _NUMBER}


def _check_types(record: dict[str, Any], types: dict[str, tuple[type, ...]], what: str) -> None:
    for key, allowed in types.items():
        if key in record:
            value = record[key]
            # bool is an int in Python, but true is no score
            if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
                raise TypeError(f"{what} field {key!r} is {type(value).__name__} {value!r:.40}, "
                                f"not {' or '.join(t.__name__ for t in allowed)}")


def step_info(info: dict[str, Any]) -> dict[str, Any]:
    """The part of a step's ``info`` worth storing per step (JSON-safe)."""
    return {k: v for k, v in info.items() if k not in _STEP_INFO_SKIP and _jsonable(v)}


def _jsonable(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool, list, dict))


def dumps(traj: Trajectory) -> str:
    """One JSONL line (with its newline)."""
    return json.dumps(traj.to_dict(), ensure_ascii=False, default=str) + "\n"


@dataclasses.dataclass(frozen=True)
class DamagedLine:
    """A line of a run file that is not a whole trajectory record (a disk fault, a hand edit, a
    stray write), skipped by every reader. ``line`` counts from 1, as editors do."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path} line {self.line}: {self.reason}"


class DamagedRecordWarning(UserWarning):
    """Warned by :func:`read_jsonl` for each damaged line when the caller does not collect them."""


def read_jsonl(path: str | os.PathLike, damaged: list[DamagedLine] | None = None) -> Iterator[Trajectory]:
    """Trajectories of a file, in file order.

    A last line with no newline (a write cut short by a crash) is skipped silently: its episode
    never finished being recorded. Any other line that is not a trajectory record (not UTF-8,
    not JSON, not a trajectory's fields) is skipped and reported with the file and line
    number: appended to ``damaged`` when a list is given, else warned as
    :class:`DamagedRecordWarning`. One bad line never hides the rest of the file.
    """
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.endswith(b"\n"):
                break  # torn final write: the episode never finished being recorded
            if not raw.strip():
                continue
            try:
                traj = Trajectory.from_dict(json.loads(raw.decode("utf-8").rstrip("\r\n")))
            except UnicodeDecodeError as exc:
                problem = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
            except json.JSONDecodeError as exc:
                problem = f"not JSON ({exc.msg}: column {exc.colno})"
            except (TypeError, ValueError, AttributeError, KeyError) as exc:
                problem = f"not a trajectory record ({type(exc).__name__}: {exc})"
            else:
                yield traj
                continue
            bad = DamagedLine(str(path), number, f"skipped, {problem}")
            if damaged is None:
                warnings.warn(str(bad), DamagedRecordWarning, stacklevel=2)
            else:
                damaged.append(bad)


def newest(trajs: Iterable[Trajectory], key: Callable[[Trajectory], Any] | None = None
           ) -> tuple[list[Trajectory], int]:
    """The newest record of each episode, and how many older records they supersede.

    Run files are append-only: a resumed run appends a new record for an episode it played
    again (one recorded as ``error``), and every reader counts the newest (the later line).
    ``key`` says what one episode is; default ``(agent, episode_id)``, so files of several
    agents can be read together. Order: each episode where its newest record stands.
    """
    key = key or (lambda t: (t.agent, t.episode_id))
    latest: dict[Any, Trajectory] = {}
    count = 0
    for t in trajs:
        k = key(t)
        latest.pop(k, None)  # re-inserted last: the order of the newest records
        latest[k] = t
        count += 1
    return list(latest.values()), count - len(latest)


def write_jsonl(trajs: Iterable[Trajectory], path: str | os.PathLike) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for t in trajs:
            fh.write(dumps(t))
            n += 1
    return n


def repair_tail(path: Path) -> None:
    """Cut a trailing partial line left by a killed writer, so appends start on a fresh line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
        size = fh.seek(0, os.SEEK_END)
        pos = size
        block = 1 << 16
        while pos > 0:
            start = max(0, pos - block)
            fh.seek(start)
            chunk = fh.read(pos - start)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                fh.truncate(start + nl + 1)
                return
            pos = start
        fh.truncate(0)
