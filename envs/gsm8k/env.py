"""``AgentTuning/GSM8K-v0``: one reply per problem, after the paper's 8-shot chat; score 1 when the
answer read from the reply equals the gold number.

The scale is accuracy (0..1 per episode; the paper reports percent over the 1319 test problems).
Protocol: AgentTuning ``eval_general/eval_gsm8k_tgi.py`` (see docs/general.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from agent_gym.core import ANSWERED, INVALID_ACTION, INVALID_ACTION_END, LLAMA2_SYSTEM, RUNNING, Begin, Outcome, TextEnv
from agent_gym.envs.gsm8k import data, prompt


class GSM8KEnv(TextEnv):
    """``extraction``: ``"paper"`` (default; upstream's last run of digits) or ``"robust"`` (signs,
    separators, decimals, ``\\boxed{}``); see :mod:`agent_gym.envs.gsm8k.prompt`."""

    task_name = "gsm8k"
    splits = ("test", "train")
    max_turns = 1
    decoding: ClassVar[dict[str, Any]] = {"max_new_tokens": 512, "temperature": 0.0}
    system_prompt: ClassVar[str | None] = LLAMA2_SYSTEM
    strip_messages = False  # upstream passed the turns to FastChat unstripped
    paper_options: ClassVar[dict[str, Any]] = {"extraction": "paper"}

    def __init__(self, split: str | None = None, render_mode: str | None = None,
                 tasks_file: str | Path | None = None, extraction: str = "paper"):
        if extraction not in prompt.EXTRACTIONS:
            raise ValueError(f"extraction must be one of {list(prompt.EXTRACTIONS)}, got {extraction!r}")
        super().__init__(split=split, render_mode=render_mode, tasks_file=tasks_file)
        self.extraction = extraction

    @classmethod
    def load_tasks(cls, split: str) -> Sequence[data.Problem]:
        return data.load(split)

    @classmethod
    def load_tasks_file(cls, path: Path) -> Sequence[data.Problem]:
        return data.load_file(path)

    def options(self) -> dict[str, Any]:
        return {"extraction": self.extraction}

    def engine_info(self) -> dict[str, str]:
        return {}

    def _begin(self, task: data.Problem) -> Begin:
        strings = data.paper_prompt()
        return Begin(observation=prompt.observation(task.question, strings), prompt=prompt.chat(strings),
                     # upstream passed the strings to FastChat as they are (the instruction ends in a
                     # space, the question turn starts with a newline): policies must not strip them
                     extra={"extraction": self.extraction})

    def _act(self, action: str) -> Outcome:
        predicted = prompt.extract(action, self.extraction)
        correct = prompt.is_correct(predicted, self.task.answer)
        return Outcome(
            observation=f"Your answer: {predicted}. " + ("Correct." if correct else "Wrong."),
            score=1.0 if correct else 0.0,
            success=correct,
            done=True,
            action_valid=predicted is not None,
            status=RUNNING if predicted is not None else INVALID_ACTION,
            end_reason=ANSWERED if predicted is not None else INVALID_ACTION_END,
            extra={"predicted": predicted},
        )

    def expert_replies(self, task: data.Problem) -> list[str]:
        # the reference solution, its "#### 2,125" line said as the shots say it ("The answer is 2125")
        body = task.solution.rsplit("####", 1)[0].rstrip()
        return [f"{body}\nThe answer is {task.answer.replace(',', '')}"]
