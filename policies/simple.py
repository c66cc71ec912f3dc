"""Policies with no model: replay of given replies, the env's expert, uniform random."""

from __future__ import annotations

import copy
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
    """Picks uniformly among ``info["admissible_actions"]``; without them, samples the action space.

    Each episode draws from its own generator, seeded by the episode's seed: with ``env`` given,
    the seed the env was last reset with (``env.unwrapped.np_random_seed``; the rollout resets
    each episode with the plan's seed), mixed with ``seed`` when that is given too. So every
    episode of a run gets other text, and a run played again gets the same. A reset without a
    new seed (the env's generator unchanged) continues the previous episode's stream rather
    than repeating it. Without ``env`` the generator is seeded once with ``seed``.
    The action space is sampled through a private copy, so envs' shared spaces stay untouched.
    """

    name = "random"

    def __init__(self, action_space: Any = None, seed: int | None = None, env: Any = None):
        self.seed, self._env = seed, env
        self.rng = np.random.default_rng(seed)
        self.action_space = copy.deepcopy(action_space) if action_space is not None else None
        if self.action_space is not None:
            self.action_space.seed(int(self.rng.integers(2**32)))
        self._seeded_from: Any = None  # the env generator the current stream was seeded from

    def reset(self, info: dict[str, Any]) -> None:
        if self._env is None:
            return
        base = self._env.unwrapped
        generator = base.np_random
        if generator is self._seeded_from:
            return  # reset without a seed: go on with this stream
        self._seeded_from = generator
        episode_seed = base.np_random_seed
        if episode_seed is None or episode_seed < 0:  # a generator set by hand: no seed to read
            return
        self.rng = np.random.default_rng(episode_seed if self.seed is None else [self.seed, episode_seed])
        if self.action_space is not None:
            self.action_space.seed(int(self.rng.integers(2**32)))

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
    from agent_gym.core import TextEnv
    from agent_gym.policy import PolicySetupError

    if isinstance(base, TextEnv) and type(base).expert_replies is TextEnv.expert_replies:
        env_id = getattr(getattr(env, "spec", None), "id", None) or type(base).__name__
        raise PolicySetupError(f"{env_id} has no expert solutions (its data has no gold replies): "
                               f"play it with another policy")

    def replies(info: dict[str, Any]) -> Sequence[str]:
        found = base.expert_replies(base.task)
        if found is None:
            raise ValueError(f"{type(base).__name__} has no expert solution for task {info.get('task_id')!r} "
                             f"(its data has none: playing it again will not help; leave it out with --task)")
        return found

    policy = ReplayPolicy(replies)
    policy.name = "expert"
    return policy


def random_policy(env: Any, seed: int | None = None, **options: Any) -> RandomPolicy:
    """Uniform random replies, seeded per episode (see :class:`RandomPolicy`); ``seed``: the run's."""
    return RandomPolicy(env.action_space, seed=seed, env=env)
