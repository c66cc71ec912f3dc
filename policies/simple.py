"""Policies with no model: replay of given replies, the env's expert, uniform random."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


class ReplayPolicy:
    """Plays given replies in order (gold solutions, a recorded trajectory).

    ``replies`` is a list, or a callable that gets the reset ``info`` and returns the list
    for that episode. When the list runs out the policy repeats ``fallback``.
    """

    name = "replay"

    def __init__(self, replies: Sequence[str] | Callable[[dict[str, Any]], Sequence[str]], fallback: str = ""):
        self._source = replies
        self._queue: list[str] = []
        self.fallback = fallback

    def reset(self, info: dict[str, Any]) -> None:
        replies = self._source(info) if callable(self._source) else self._source
        self._queue = list(replies)

    def act(self, observation: str, info: dict[str, Any]) -> str:
        return self._queue.pop(0) if self._queue else self.fallback


class RandomPolicy:
    """Picks uniformly among ``info["admissible_actions"]``; without them, samples the action space."""

    name = "random"

    def __init__(self, action_space: Any = None, seed: int | None = None):
        self.rng = np.random.default_rng(seed)
        self.action_space = action_space

    def reset(self, info: dict[str, Any]) -> None:
        pass

    def act(self, observation: str, info: dict[str, Any]) -> str:
        actions = info.get("admissible_actions")
        if actions:
            return str(actions[int(self.rng.integers(len(actions)))])
        if self.action_space is not None:
            return self.action_space.sample()
        return ""


def expert(env: Any, **options: Any) -> ReplayPolicy:
    """Replays the env's own solution of each task (gold answer, walkthrough, gold actions)."""
    base = env.unwrapped

    def replies(info: dict[str, Any]) -> Sequence[str]:
        found = base.expert_replies(base.task)
        if found is None:
            raise ValueError(f"{type(base).__name__} has no expert solution for task {info.get('task_id')!r}")
        return found

    policy = ReplayPolicy(replies)
    policy.name = "expert"
    return policy


def random_policy(env: Any, seed: int | None = None, **options: Any) -> RandomPolicy:
    return RandomPolicy(env.action_space, seed=seed)
