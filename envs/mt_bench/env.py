"""``AgentTuning/MTBench-v0``: two turns per question, then both answers graded 1-10 by an LLM judge.

``reset`` shows the first question; the first reply gets the second question; the second reply
ends the episode and is when the judge grades each turn with FastChat's single-answer prompts
(``info["judgments"]``: prompt name, messages, judgment, rating). The score is on 0..1: the mean of
the two ratings over 10 (``info["ratings"]`` keeps FastChat's raw ratings, -1 where none could be
read; such a turn is left out of the mean, as FastChat leaves it out). The judge is any backend
(``judge``, ``judge_model``, ``judge_url``), recorded in ``info["judge"]``; the paper's was GPT-4.
Protocol: AgentTuning ``eval_general/eval_mt_bench_tgi.py`` then FastChat's ``gen_judgment.py``
(see docs/mt_bench.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from agent_gym.core import ANSWERED, LLAMA2_SYSTEM, Begin, Outcome, TextEnv
from agent_gym.envs.mt_bench import data, engine, prompt


class MTBenchEnv(TextEnv):
    """``judge``: ``"local"`` (default: the embedded model, or ``judge_model``), ``"tgi"`` or ``"openai"``
    (with ``judge_url``); ``judge_max_new_tokens``: the judgment's length (FastChat's 2048)."""

    task_name = "mt_bench"
    max_turns = 2
    # the answer's temperature is per category (prompt.TEMPERATURE): set in info at reset
    decoding: ClassVar[dict[str, Any]] = {"max_new_tokens": prompt.ANSWER_MAX_NEW_TOKENS, "temperature": 0.0}
    system_prompt: ClassVar[str | None] = LLAMA2_SYSTEM
    strip_messages = False  # the questions went to FastChat as they are (the answers were stripped: see _act)
    paper_options: ClassVar[dict[str, Any]] = {"judge": "openai", "judge_model": "gpt-4",
                                               "judge_max_new_tokens": prompt.JUDGE_MAX_NEW_TOKENS}

    def __init__(self, split: str | None = None, render_mode: str | None = None,
                 tasks_file: str | Path | None = None, judge: str = "local", judge_model: str | None = None,
                 judge_url: str | None = None, judge_max_new_tokens: int = prompt.JUDGE_MAX_NEW_TOKENS):
        self.judge = engine.Judge(judge, judge_model, judge_url, judge_max_new_tokens)
        super().__init__(split=split, render_mode=render_mode, tasks_file=tasks_file)
        self._answers: list[str] = []

    @classmethod
    def load_tasks(cls, split: str) -> Sequence[data.Question]:
        return data.load()

    @classmethod
    def load_tasks_file(cls, path: Path) -> Sequence[data.Question]:
        return data.load_file(path)

    def options(self) -> dict[str, Any]:
        return {"judge": self.judge.kind, "judge_model": self.judge.model_name,
                "judge_max_new_tokens": self.judge.max_new_tokens}

    def engine_info(self) -> dict[str, str]:
        return {"judge": f"{self.judge.kind}:{self.judge.model_name}"}

    def _begin(self, task: data.Question) -> Begin:
        self._answers = []
        data.judge_prompts()  # a missing judge_prompts.jsonl stops the reset, not the last step
        return Begin(observation=task.turns[0],
                     extra={"category": task.category, "temperature": prompt.temperature(task.category)})

    def _act(self, action: str) -> Outcome:
        self._answers.append(action.strip())  # eval_mt_bench_tgi.py stored (and judged) stripped answers
        if len(self._answers) < 2:
            return Outcome(observation=self.task.turns[1])
        judgments = [self.judge.judge(*prompt.judge_messages(data.judge_prompts(), self.task, self._answers, turn))
                     for turn in (1, 2)]
        ratings = [j.rating for j in judgments]
        rated = [r for r in ratings if prompt.is_rating(r)]
        score = prompt.score(ratings)
        summary = ", ".join(f"turn {i}: {r if prompt.is_rating(r) else 'no rating'}" for i, r in enumerate(ratings, 1))
        return Outcome(
            observation=f"Judged by {self.judge.model_name}: {summary}.",
            score=score,
            success=bool(rated) and score >= 0.5,
            done=True,
            end_reason=ANSWERED,
            extra={"ratings": ratings, "judgments": [j.to_info() for j in judgments], "judge": self.judge.describe()},
        )

    def _reject(self, reason: str) -> Outcome:
        # an unreadable (over-long) reply is an empty answer: the episode goes on to the next question
        outcome = self._act("")
        outcome.action_valid = False
        outcome.extra["rejected"] = reason
        return outcome

    def expert_replies(self, task: data.Question) -> list[str] | None:
        return list(task.reference) if task.reference else None

    @classmethod
    def summarize(cls, trajectories: Sequence[Any]) -> dict[str, float]:
        """FastChat's means (``show_result.py``): every judgment with a rating counts once, those
        without (-1) are left out. ``score``: the overall mean rating over 10 (0..1);
        ``mt_bench_rating``: the same on MT-Bench's 1-10 scale (the paper's number);
        ``turn/1``, ``turn/2`` and ``category/<name>`` on 0..1; ``unrated_judgments``: how many
        judgments had no rating."""
        from agent_gym.metrics import default_summary

        out = default_summary(trajectories)
        by_turn: dict[str, list[float]] = defaultdict(list)
        by_category: dict[str, list[float]] = defaultdict(list)
        unrated = 0
        for t in trajectories:
            info = t.steps[-1].info if t.steps else {}
            for turn, rating in enumerate(info.get("ratings") or [], 1):
                if not prompt.is_rating(rating):
                    unrated += 1
                    continue
                by_turn[str(turn)].append(rating)
                by_category[str(info.get("category"))].append(rating)
        every = [r for rs in by_turn.values() for r in rs]
        mean = sum(every) / len(every) if every else 0.0
        out.update({"score": mean / 10, "mt_bench_rating": mean, "unrated_judgments": unrated})
        out.update({f"turn/{k}": sum(v) / len(v) / 10 for k, v in sorted(by_turn.items())})
        out.update({f"category/{k}": sum(v) / len(v) / 10 for k, v in sorted(by_category.items())})
        return out
