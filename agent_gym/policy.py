"""The policy protocol: what a rollout asks of an agent.

A policy sees exactly what an agent sees: the observation and ``info`` (which carries the
task's prompt). Implementations live in ``agent_gym.policies``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


class PolicySetupError(RuntimeError):
    """A policy or its backend cannot be made (model not installed, unknown model, server unreachable).

    Raised once, before any episode, with one message that names the fix; a run stops on it
    before playing anything (``agent-gym run`` exits 2).
    """


class ContextLimitExceeded(RuntimeError):
    """Raised by a policy when the episode's conversation cannot fit its model's context.

    The rollout ends the episode with status ``agent_context_limit``, as AgentBench does.
    """


@runtime_checkable
class Policy(Protocol):
    """An agent: ``reset`` at the start of an episode, then ``act`` once per turn.

    ``act`` returns the agent's whole reply (thought and action in the task's format).
    A policy may expose ``name`` (recorded in trajectories) and ``last_usage``
    (``{"prompt_tokens": int, "completion_tokens": int}`` of its latest call).
    """

    def reset(self, info: dict[str, Any]) -> None: ...

    def act(self, observation: str, info: dict[str, Any]) -> str: ...


def policy_name(policy: Any) -> str:
    return getattr(policy, "name", None) or type(policy).__name__
