"""Registration of the AgentTuning ids with gymnasium, and the suites the CLI knows.

Entries are plain data (:class:`EnvEntry`) listed by ``agent_gym.envs``; registering one
imports nothing of its env, so ``import agent_gym`` stays cheap.
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym

NAMESPACE = "AgentTuning"


@dataclasses.dataclass(frozen=True)
class EnvEntry:
    """One env id: where its class lives, the paper's round limit, its suite and dataset.

    ``max_episode_steps`` is the paper's round limit as ``agent-gym list`` shows it; the env
    enforces it itself (``TextEnv.max_turns``), so it is not given to gymnasium, whose
    ``TimeLimit`` would mark an answer on the last allowed turn as truncated too.
    """

    id: str
    entry_point: str
    max_episode_steps: int | None
    suite: str  # "held-in", "held-out" or "general"
    dataset: str | None = None
    kwargs: dict = dataclasses.field(default_factory=dict)


def register_all(entries: list[EnvEntry]) -> None:
    """Register every entry with gymnasium (idempotent: re-import does not warn)."""
    for e in entries:
        if e.id in gym.registry:
            continue
        gym.register(
            id=e.id,
            entry_point=e.entry_point,
            max_episode_steps=None,  # the env ends the episode at its own round limit (see EnvEntry)
            kwargs=dict(e.kwargs),
            disable_env_checker=False,
        )


def entries() -> list[EnvEntry]:
    from agent_gym.envs import ENVS

    return list(ENVS)


def suites() -> dict[str, list[str]]:
    """Suite name -> env ids; ``all`` has every id."""
    out: dict[str, list[str]] = {"all": []}
    for e in entries():
        out.setdefault(e.suite, []).append(e.id)
        out["all"].append(e.id)
    return out


def resolve_ids(names: list[str]) -> list[str]:
    """Expand suite names and short names (``GSM8K`` -> ``AgentTuning/GSM8K-v0``) to ids."""
    known = {e.id for e in entries()}
    by_short = {e.id.split("/", 1)[1].rsplit("-v", 1)[0].lower(): e.id for e in entries()}
    table = suites()
    ids: list[str] = []
    for name in names:
        if name in table:
            ids.extend(table[name])
        elif name in known:
            ids.append(name)
        elif name.lower() in by_short:
            ids.append(by_short[name.lower()])
        else:
            raise KeyError(f"unknown env or suite {name!r}; suites: {', '.join(table)}; ids: {', '.join(sorted(known))}")
    return list(dict.fromkeys(ids))
