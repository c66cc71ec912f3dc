"""Policies that play agent-gym envs: the ReAct LLM agent, replay / expert, random, human.

A policy factory is ``factory(env, **options) -> Policy``; the rollout calls it once per
episode with the env that episode runs on. ``options`` are the CLI's policy flags
(``model``, ``backend``, ``url``, ``temperature``, ``max_new_tokens``, ...); a factory takes
the ones it knows. Factories are named here and imported only when used.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from agent_gym.policy import Policy

POLICIES: dict[str, str] = {
    "expert": "agent_gym.policies.simple:expert",
    "random": "agent_gym.policies.simple:random_policy",
    "react": "agent_gym.policies.react:react",
    "human": "agent_gym.policies.human:human",
}


def policy_factory(name: str) -> Callable[..., Policy]:
    """The factory registered as ``name``."""
    try:
        module, _, attr = POLICIES[name].partition(":")
    except KeyError:
        raise KeyError(f"unknown policy {name!r}; known: {', '.join(sorted(POLICIES))}") from None
    return getattr(importlib.import_module(module), attr)


def make_policy(name: str, env: Any, **options: Any) -> Policy:
    return policy_factory(name)(env, **options)
