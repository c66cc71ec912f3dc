"""Policies that play agent-gym envs: the ReAct LLM agent, replay / expert, random, human.

A policy factory is ``factory(env, **options) -> Policy``; the rollout calls it once per
episode with the env that episode runs on. ``options`` are the CLI's policy flags
(``model``, ``backend``, ``url``, ``temperature``, ``max_new_tokens``, ...); a factory takes
the ones it knows. A factory is named one of three ways (:func:`policy_factory`): a name
registered here, a name another package registers in the entry-point group
``agent_gym.policies``, or an import path ``"package.module:factory"``.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from agent_gym.policies.backend import PolicySetupError
from agent_gym.policy import Policy

POLICIES: dict[str, str] = {
    "expert": "agent_gym.policies.simple:expert",
    "random": "agent_gym.policies.simple:random_policy",
    "react": "agent_gym.policies.react:react",
    "human": "agent_gym.policies.human:human",
    "rci": "agent_gym.policies.rci:rci",  # MiniWoB++'s RCI agent as AgentTuning ran it
}
#: the entry-point group where other packages register policy factories by name
ENTRY_POINT_GROUP = "agent_gym.policies"


class UnknownPolicyError(PolicySetupError, KeyError):
    """No policy of that name (also a ``KeyError``, as the registry lookup raised before)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_policies() -> list[str]:
    """Every name :func:`policy_factory` accepts (built-in and entry points), sorted."""
    return sorted({*POLICIES, *_entry_points()})


def policy_factory(name: str) -> Callable[..., Policy]:
    """The factory for ``name``: built-in, entry point (group ``agent_gym.policies``) or ``"module:factory"``.

    Raises :class:`PolicySetupError` with one line: an unknown name lists the known ones; an import
    path that does not import names the module or attribute that is missing.
    """
    if name in POLICIES:
        module, _, attr = POLICIES[name].partition(":")
        return getattr(importlib.import_module(module), attr)
    if ":" not in name:
        found = _entry_points().get(name)
        if found is None:
            raise UnknownPolicyError(f"unknown policy {name!r}; known: {', '.join(known_policies())} "
                                     f"(or package.module:factory)")
        try:
            return found.load()
        except Exception as exc:
            raise PolicySetupError(f"policy {name!r} (entry point {found.value}) cannot be loaded: "
                                   f"{type(exc).__name__}: {exc}") from exc
    module, _, attr = name.partition(":")
    try:
        target: Any = importlib.import_module(module)
    except ImportError as exc:
        raise PolicySetupError(f"policy {name!r}: cannot import {module!r} ({exc}); is it installed or on "
                               f"PYTHONPATH?") from exc
    for part in attr.split("."):
        if not hasattr(target, part):
            raise PolicySetupError(f"policy {name!r}: {module!r} has no {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise PolicySetupError(f"policy {name!r}: {attr!r} is not callable (a factory(env, **options) -> policy)")
    return target


def make_policy(name: str, env: Any, **options: Any) -> Policy:
    return policy_factory(name)(env, **options)
