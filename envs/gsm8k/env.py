"""``AgentTuning/GSM8K-v0``: one reply per problem; score 1 when its last number is the gold answer.

The scale is accuracy (0..1 per episode; the paper reports percent over the 1319 test problems).
"""

from __future__ import annotations

from collections.abc import Sequence

from agent_gym.core import INVALID_ACTION, RUNNING, Begin, Outcome, TextEnv
from agent_gym.envs.gsm8k import data, prompt


class GSM8KEnv(TextEnv):
    task_name = "gsm8k"
    splits = ("test",)
    max_turns = 1

    @classmethod
    def load_tasks(cls, split: str) -> Sequence[data.Problem]:
        return data.load(split)

    def _begin(self, task: data.Problem) -> Begin:
        return Begin(observation=prompt.observation(task.question))

    def _act(self, action: str) -> Outcome:
        predicted = prompt.last_number(action)
        correct = prompt.same_number(predicted, self.task.answer)
        return Outcome(
            observation=f"Your answer: {predicted}. " + ("Correct." if correct else "Wrong."),
            score=1.0 if correct else 0.0,
            success=correct,
            done=True,
            action_valid=predicted is not None,
            status=RUNNING if predicted is not None else INVALID_ACTION,
            extra={"predicted": predicted},
        )

    def expert_replies(self, task: data.Problem) -> list[str]:
        return [task.solution]
