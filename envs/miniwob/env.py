"""``AgentTuning/MiniWoB-v0``: MiniWoB++ in headless Chromium with AgentTuning's protocol.

One episode is one of the 46 tasks of AgentTuning's ``available_tasks.txt`` with a recorded seed
(10 per task: 460 episodes). The observation is what the paper's agent saw: the task's utterance
and the page's HTML (``#wrap``, plus the rest of ``<body>`` for click-dialog(-2), use-autocomplete
and choose-date); ``info["utterance"]`` and ``info["html"]`` give them apart. A reply is one
instruction of the paper's action language (:mod:`.prompt`: ``clickxpath``, ``clickoption``,
``movemouse``, ``type``, ``press``), parsed strictly; an invalid one is answered with the valid
forms and does not touch the page. The episode ends when MiniWoB's reward turns non-zero (as
upstream's loop), when ``movemouse`` reaches nothing (upstream: a failed episode), or at the step
limit. Success (the paper's metric, micro-averaged over episodes) is a final MiniWoB reward
``> 0``; the score is 1 for success, else 0. MiniWoB's own reward (time-discounted, -1..1) is in
``info["miniwob_reward"]``, its undiscounted reward in ``info["raw_reward"]``.

Step limit: upstream's agent decided it (its plan's numbered items + 1); an agent tells the env
with :meth:`MiniWoBEnv.limit_steps` (the ``rci`` policy does). Otherwise ``max_replies``
(default 30) bounds an episode; invalid replies count. Decoding (``llm_agent.py``'s TGI call):
greedy, 512 new tokens, the reply cut at ``[INST]``; Llama-2's short system message.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent_gym.core import (GOAL_REACHED, INVALID_ACTION_END, LLAMA2_SYSTEM, RUNNING, TASK_FAILED, Begin, Outcome,
                            TextEnv)
from agent_gym.envs.miniwob import data, engine, prompt


class MiniWoBEnv(TextEnv):
    task_name = "miniwob"
    splits = ("test",)
    max_turns = None  # the agent's own plan sets the number of steps (see limit_steps)
    decoding = {"max_new_tokens": 512, "temperature": 0.0, "stop": ["[INST]"]}
    system_prompt = LLAMA2_SYSTEM
    strip_messages = False  # FastChat got the turns as they were
    # pointer_move_ms is not a protocol option: upstream's 250 ms and our 0 ms moves dispatch the same
    # events to the page (engine.POINTER_MOVE_MS); it is still recorded in every trajectory's options
    paper_options = {"episode_max_time_ms": engine.EPISODE_MAX_TIME_MS, "seeds": "unseeded", "data_mode": "train"}
    invalid_action_message = prompt.INVALID_ACTION

    def __init__(self, split: str | None = None, render_mode: str | None = None,
                 tasks_file: str | Path | None = None, max_replies: int | None = 30,
                 pointer_move_ms: int = engine.POINTER_MOVE_MS):
        """``max_replies``: replies per episode when the agent sets no step limit (``None``: none;
        an episode then ends only when MiniWoB ends it, at the latest after 1000 s).
        ``pointer_move_ms``: how long a pointer move to an element before a click or hover takes
        (default 0; 250 is Selenium's default, which AgentTuning's computergym clicks had: chromedriver
        waits it out and then dispatches the same events, so only the wall clock differs; a step is
        about 6x faster without it). Recorded in every trajectory's options."""
        super().__init__(split=split, render_mode=render_mode, tasks_file=tasks_file)
        if max_replies is not None and (isinstance(max_replies, bool) or not isinstance(max_replies, int)
                                        or max_replies < 1):
            raise ValueError(f"max_replies must be a positive int or None, not {max_replies!r}")
        self.max_replies = max_replies
        self.max_turns = max_replies
        if isinstance(pointer_move_ms, bool) or not isinstance(pointer_move_ms, int) or pointer_move_ms < 0:
            raise ValueError(f"pointer_move_ms must be an int >= 0, not {pointer_move_ms!r}")
        self.pointer_move_ms = pointer_move_ms
        self._page: engine.Page | None = None
        self._state: dict[str, Any] = {}

    @classmethod
    def load_tasks(cls, split: str) -> Sequence[data.Episode]:
        return data.load(split)

    @classmethod
    def load_tasks_file(cls, path: Path) -> Sequence[data.Episode]:
        return data.load_file(path)

    def engine_info(self) -> dict[str, str]:
        return self._page.versions() if self._page is not None else engine.engine_versions()

    def options(self) -> dict[str, Any]:
        return {"episode_max_time_ms": engine.EPISODE_MAX_TIME_MS, "seeds": "recorded (0-9)", "data_mode": "train",
                "max_replies": self.max_replies, "pointer_move_ms": self.pointer_move_ms}

    @classmethod
    def engine_status(cls) -> str:
        from agent_gym.browser import BrowserError, find_chromium

        try:
            engine.html_dir()
            chrome, _ = find_chromium()
        except BrowserError as exc:
            return f"missing: {exc}"
        return f"miniwob {engine.engine_versions()['miniwob']} + {chrome}"

    def limit_steps(self, steps: int) -> None:
        """End this episode after ``steps`` replies in all (upstream: the plan's items + 1)."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive int, not {steps!r}")
        self.max_turns = self._turn + steps if getattr(self, "_turn", 0) else steps

    def _begin(self, task: data.Episode) -> Begin:
        self.max_turns = self.max_replies
        if self._page is not None and not self._page.browser.alive():  # chromium killed or crashed: a new one
            self._page.close()
            self._page = None
        if self._page is None:
            self._page = engine.Page(pointer_move_ms=self.pointer_move_ms)
        self._state = self._page.begin(task.task, task.seed)
        return Begin(observation=self._observation(), extra=self._extra(task.task))

    def _observation(self) -> str:
        return prompt.observation(self._state["utterance"], self._html())

    def _html(self) -> str:
        return prompt.page_html(self.task.task, self._state["body"], self._state["extra"])

    def _extra(self, task: str) -> dict[str, Any]:
        return {"utterance": self._state["utterance"], "html": self._html(), "miniwob_task": task,
                "seed": self.task.seed, "miniwob_reward": 0.0, "raw_reward": 0.0}

    def _act(self, action: str) -> Outcome:
        parsed = prompt.parse(action)
        if isinstance(parsed, str):
            return Outcome(observation=self.invalid_action_message.format(reason=parsed), action_valid=False,
                           extra={"action_note": parsed})
        try:
            note = self._page.perform(parsed.kind, parsed.arg)
        except ValueError as exc:  # upstream: "Invalid action or rci action fail", the episode fails
            meta = self._page.metadata()
            return Outcome(observation=f"Action failed: {exc}", score=0.0, done=True, success=False,
                           status=RUNNING, end_reason=INVALID_ACTION_END,
                           extra={"action_note": str(exc), "miniwob_reward": float(meta["reward"] or 0),
                                  "raw_reward": float(meta["raw_reward"] or 0)})
        meta = self._page.state()  # one round trip: the reward and, while running, the new page
        reward = float(meta["reward"] or 0)
        extra = {"action_note": note, "miniwob_reward": reward, "raw_reward": float(meta["raw_reward"] or 0),
                 "miniwob_reason": meta.get("reason")}
        if reward != 0 or meta["done"]:  # upstream: `if rewards[0] != 0: break`, then `if all(dones): break`
            success = reward > 0
            return Outcome(observation=f"The episode ended with reward {reward:.4f}.", score=float(success),
                           done=True, success=success, end_reason=GOAL_REACHED if success else TASK_FAILED,
                           extra=extra)
        self._state = meta
        extra.update(utterance=self._state["utterance"], html=self._html())
        return Outcome(observation=self._observation(), extra=extra)  # the core applies the step limit

    def expert_replies(self, task: data.Episode) -> list[str] | None:
        """A scripted solution for the tasks :mod:`.expert` knows (planned from the page as it is now)."""
        from agent_gym.envs.miniwob import expert

        if self.task is None or self.task.id != task.id or not self._state:
            return None
        return expert.solve(task.task, self._state["utterance"], self._html())

    @classmethod
    def summarize(cls, trajectories: Sequence[Any]) -> dict[str, float]:
        """The paper's number: successes / episodes over every task (micro), plus each task's rate."""
        from agent_gym.metrics import default_summary, group_means

        out = default_summary(trajectories)
        per_task = group_means(trajectories, key=lambda t: t.task_id.rsplit("/", 1)[0])
        out.update({f"task/{k}": v for k, v in sorted(per_task.items())})
        return out

    def close(self) -> None:
        if self._page is not None:
            self._page.close()
            self._page = None
        super().close()
