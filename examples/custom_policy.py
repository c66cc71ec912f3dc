"""Writing your own policy: two methods, ``reset(info)`` and ``act(observation, info) -> str``.

This one answers multiple-choice questions with the longest option (a classic no-model baseline) and
says "I don't know" elsewhere. It plays MMLU through the same rollout machinery as the LLM agent:

    python examples/custom_policy.py
"""

from __future__ import annotations

import re
from typing import Any

from agent_gym.rollout import plan, rollout

OPTION = re.compile(r"^([A-D])\. (.*)$", re.M)


class LongestOptionPolicy:
    """Picks the option with the most characters; the env parses the reply with its own rules."""

    name = "longest-option"
    model_name = None  # no model behind it
    last_usage = {"prompt_tokens": None, "completion_tokens": None}

    def reset(self, info: dict[str, Any]) -> None:
        self.task_id = info["task_id"]  # the prompt (few-shot turns) is in info["prompt"]

    def act(self, observation: str, info: dict[str, Any]) -> str:
        options = OPTION.findall(observation)
        if not options:
            return "I don't know."
        letter, _ = max(options, key=lambda option: len(option[1]))
        return f"The answer is {letter}"


def longest_option(env: Any, **options: Any) -> LongestOptionPolicy:
    """A factory: the rollout calls it once per episode with that episode's env and the CLI's options."""
    return LongestOptionPolicy()


if __name__ == "__main__":
    result = rollout(plan(["AgentTuning/MMLU-v0"], episodes=50), longest_option, concurrency=4, progress=False)
    print(f"{len(result.trajectories)} MMLU questions, longest-option accuracy {result.mean_score:.2f}")
    # The same from the CLI, with no change to the library (the module must be importable):
    #   PYTHONPATH=examples agent-gym run AgentTuning/MMLU-v0 -n 50 --policy custom_policy:longest_option
