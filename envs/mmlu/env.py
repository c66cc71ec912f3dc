"""``AgentTuning/MMLU-v0``: one reply per question after the subject's 5 dev shots; score 1 for the
right letter.

``scoring="logprobs"`` (default, the paper's): ``info["choice_scoring"]`` asks the policy to pick the
most likely next token among " A".." D" after the rendered prompt plus " Answer: " and reply with
it; ``"generation"``: the policy writes an answer. The reply is read by the strict parser either way.
Metrics: accuracy over all 14042 questions (micro, the paper's number), per category (STEM,
humanities, social sciences, other) and per subject. Protocol: AgentTuning
``eval_general/eval_mmlu_hf.py`` (see docs/general.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from agent_gym.core import ANSWERED, INVALID_ACTION, INVALID_ACTION_END, RUNNING, Begin, Outcome, TextEnv
from agent_gym.envs.mmlu import data, prompt

SCORINGS = ("logprobs", "generation")


class MMLUEnv(TextEnv):
    """``shots``: dev examples per prompt (5, the paper's); ``scoring``: ``"logprobs"`` or ``"generation"``."""

    task_name = "mmlu"
    splits = ("test", "dev")
    max_turns = 1
    # the paper reads one next-token distribution; generation mode lets the policy write a short answer
    decoding: ClassVar[dict[str, Any]] = {"max_new_tokens": 1, "temperature": 0.0}
    generation_decoding: ClassVar[dict[str, Any]] = {"max_new_tokens": 32, "temperature": 0.0}
    system_prompt: ClassVar[str | None] = None  # per subject: set at reset (also info["prompt"][0])
    strip_messages = False  # upstream passed the turns to FastChat unstripped
    paper_options: ClassVar[dict[str, Any]] = {"scoring": "logprobs", "shots": 5}

    def __init__(self, split: str | None = None, render_mode: str | None = None,
                 tasks_file: str | Path | None = None, shots: int = 5, scoring: str = "logprobs"):
        if scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {list(SCORINGS)}, got {scoring!r}")
        if not 0 <= shots <= 5:
            raise ValueError(f"shots must be 0..5 (MMLU has 5 dev questions per subject), got {shots}")
        super().__init__(split=split, render_mode=render_mode, tasks_file=tasks_file)
        self.shots = shots
        self.scoring = scoring
        if scoring == "generation":
            self.decoding = dict(self.generation_decoding)

    @classmethod
    def load_tasks(cls, split: str) -> Sequence[data.Question]:
        return data.load(split)

    @classmethod
    def load_tasks_file(cls, path: Path) -> Sequence[data.Question]:
        return data.load_file(path)

    def options(self) -> dict[str, Any]:
        return {"scoring": self.scoring, "shots": self.shots}

    def engine_info(self) -> dict[str, str]:
        return {}

    def _shots(self, task: data.Question) -> tuple[data.Question, ...]:
        if not self.shots:
            return ()
        shots = data.shots_near(self.tasks_file, task.subject) if self.tasks_file else None
        if shots is None:
            shots = data.shots_by_subject().get(task.subject, ())
        # on the dev split a question is never its own example (upstream plays only test questions)
        return tuple(s for s in shots if not (self.split == "dev" and s.id == task.id))[: self.shots]

    def _begin(self, task: data.Question) -> Begin:
        extra: dict[str, Any] = {"subject": task.subject, "scoring": self.scoring}
        chat = prompt.chat(task, self._shots(task))
        if chat and chat[0]["role"] == "system":  # the paper's system message names the subject
            extra["system_prompt"] = chat[0]["content"]
        if self.scoring == "logprobs":
            extra["choice_scoring"] = {k: list(v) if isinstance(v, list) else v
                                       for k, v in prompt.CHOICE_SCORING.items()}
        return Begin(
            observation=prompt.observation(task),
            prompt=chat,
            admissible_actions=list(data.LETTERS),
            extra=extra,
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
            end_reason=INVALID_ACTION_END if letter is None else ANSWERED,
            extra={"predicted": letter},
        )

    def expert_replies(self, task: data.Question) -> list[str]:
        return [f"Answer: {task.answer}"]

    @classmethod
    def summarize(cls, trajectories: Sequence[Any]) -> dict[str, float]:
        """``score``: micro accuracy over all questions (the paper's); ``category/<name>``: micro
        accuracy within each of the paper's four categories (STEM, humanities, social sciences, other); ``subject/<name>`` per subject; and
        ``subject_macro_avg``, the mean of the subject accuracies."""
        from agent_gym.metrics import default_summary, group_means

        out = default_summary(trajectories)
        subject = lambda t: t.task_id.split("/", 1)[0]  # noqa: E731
        per_subject = group_means(trajectories, key=subject)
        out["subject_macro_avg"] = sum(per_subject.values()) / len(per_subject) if per_subject else 0.0
        in_categories = [t for t in trajectories if subject(t) in data.CATEGORY_OF]
        per_category = group_means(in_categories, key=lambda t: data.CATEGORY_OF[subject(t)])
        out.update({f"category/{c}": per_category[c] for c in data.CATEGORIES if c in per_category})
        out.update({f"subject/{k}": v for k, v in sorted(per_subject.items())})
        return out
