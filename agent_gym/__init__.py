"""agent-gym: the AgentTuning agent tasks as Gymnasium text environments.

    import gymnasium as gym
    import agent_gym
    gym.register_envs(agent_gym)
    env = gym.make("AgentTuning/GSM8K-v0")

Importing registers the ids; no engine, model or data is loaded until an env is made.
"""

from agent_gym.core import (
    AGENT_CONTEXT_LIMIT,
    COMPLETED,
    CUSTOM_SPLIT,
    END_REASONS,
    ERROR,
    INVALID_ACTION,
    LLAMA2_SYSTEM,
    RUNNING,
    STATUSES,
    TASK_LIMIT_REACHED,
    Begin,
    Outcome,
    TextEnv,
)
from agent_gym.registration import EnvEntry, register_all, resolve_ids, suites
from agent_gym.spaces import AnyText

__version__ = "0.1.0"

from agent_gym.envs import ENVS as _ENVS  # noqa: E402  (the env table imports this package's modules)

register_all(_ENVS)

__all__ = [
    "AGENT_CONTEXT_LIMIT", "COMPLETED", "CUSTOM_SPLIT", "END_REASONS", "ERROR", "INVALID_ACTION", "LLAMA2_SYSTEM",
    "RUNNING", "STATUSES",
    "TASK_LIMIT_REACHED", "AnyText", "Begin", "EnvEntry", "Outcome", "TextEnv", "resolve_ids", "suites",
]
