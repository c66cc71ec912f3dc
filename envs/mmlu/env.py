"""``AgentTuning/MMLU-v0``: one reply per question, 5-shot; score 1 for the right letter.

The prompt holds the subject's 5 dev questions as chat turns (Hendrycks' 5-shot prompt).
Metrics: accuracy per subject and over all 14042 questions (the paper's number).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent_gym.core import INVALID_ACTION, RUNNING, Begin, Outcome, TextEnv
from agent_gym.envs.mmlu import data, prompt


class MMLUEnv(TextEnv):
    task_name = "mmlu"
    splits = ("test", "dev")
    max_turns = 1

    def __init__(self, split: str | None = None, render_mode: str | None = None, shots: int = 5):
        super().__init__(split=split, render_mode=render_mode)
        self.shots = shots

    @classmethod
    def load_tasks(cls, split: str) -> Sequence[data.Question]:
        return data.load(split)

    def _begin(self, task: data.Question) -> Begin:
        shots = data.shots_by_subject().get(task.subject, ())[: self.shots] if self.shots else ()
        shots = tuple(s for s in shots if s.id != task.id or self.split != "dev")
        return Begin(
            observation=prompt.observation(task, with_header=not shots),
            prompt=prompt.few_shot_messages(task.subject, shots),
            admissible_actions=list(data.LETTERS),
            extra={"subject": task.subject},
        )

    def _act(self, action: str) -> Outcome:
        letter = prompt.parse_letter(action)
        correct = letter == self.task.answer
        return Outcome(
            observation=f"Your answer: {letter}. " + ("Correct." if correct else "Wrong."),
            score=1.0 if correct else 0.0,
            success=correct,
            done=True,
            action_valid=letter is not None,
            status=INVALID_ACTION if letter is None else RUNNING,
            extra={"predicted": letter},
        )

    def expert_replies(self, task: data.Question) -> list[str]:
        return [task.answer]

    @classmethod
    def summarize(cls, trajectories: Sequence[Any]) -> dict[str, float]:
        from agent_gym.metrics import default_summary, group_means

        out = default_summary(trajectories)
        per_subject = group_means(trajectories, key=lambda t: t.task_id.split("/", 1)[0])
        out["subject_macro_avg"] = sum(per_subject.values()) / len(per_subject) if per_subject else 0.0
        out.update({f"subject/{k}": v for k, v in sorted(per_subject.items())})
        return out
