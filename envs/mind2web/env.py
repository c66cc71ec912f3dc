"""``AgentTuning/Mind2Web-v0``: Mind2Web's action prediction as AgentBench ran it, one annotated task
per episode, one multiple-choice call per env step.

Each step of the task (an annotated action on a page snapshot) is a knockout tournament
(AgentBench.old ``Mind2Web.predict_single``): the step's candidate elements that the ranker put in
its top 10 are shuffled, and while more than one is left the next 5 are shown as options B-F
beside "A. None of the above", on the page pruned around them. An answered B-F carries that
element on to a later call; the last element standing, with the action of the reply that last
picked it, is the step's prediction. The observation is that call's question; the reply is parsed
for ``Answer:`` / ``Action:`` / ``Value:`` (defaults A, "", ""; a reply without ``Answer:`` is
marked ``action_valid=False`` and counts as A, as upstream). When a step's tournament ends it is
scored (element accuracy, action F1, step success: ``info["step_results"]``) and the next step's
first call follows; steps with no positive candidate in the top 10, or one candidate only, are
scored 0 with no call, as upstream.

Every call was a fresh session upstream (the 3-shot prompt, then the question): ``info["prompt"]``
is that 3-shot prompt and ``info["fresh_context"]`` is true, so a policy answers each observation
after the prompt alone. The episode's score is the task's fraction of successful steps (rewards add
up to it); :meth:`Mind2WebEnv.summarize` gives the paper's numbers, micro-averaged over steps.

Splits: ``test`` (Mind2Web's Cross-Domain test set; AgentBench's own ``std`` files were never
released; aliases ``std``, ``test_domain``), ``test_task``, ``test_website``; ``tasks_file=PATH``
plays a file in Mind2Web's format with the ranker scores of ``scores_file=`` or a
``scores_all_data.pkl`` beside it (else the data directory's). Differences from upstream
(docs/mind2web.md): each step's candidate order is seeded by the step itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from agent_gym.core import ANSWERED, Begin, Outcome, TextEnv
from agent_gym.data import DataMissingError
from agent_gym.envs.mind2web import data, engine, prompt

#: What a score file is called beside a ``tasks_file`` (Mind2Web's own name for it).
SCORES_NAME = "scores_all_data.pkl"


class Mind2WebEnv(TextEnv):
    task_name = "mind2web"
    splits = ("test", "test_task", "test_website")
    split_aliases: ClassVar[dict[str, str]] = {"std": "test", "test_domain": "test"}
    max_turns = None  # upstream had no round limit: ceil-ish (candidates - 1) / 4 calls per step
    system_prompt = ""  # AgentBench.old's harness: no system message, greedy, 128 new tokens
    decoding: ClassVar[dict[str, Any]] = {"max_new_tokens": 128, "temperature": 0.0}
    paper_options: ClassVar[dict[str, Any]] = {
        "top_k": prompt.TOP_K, "num_candidates": prompt.NUM_CANDIDATES,
        "candidate_order": "one random stream seeded 123, shared by 8 threads"}

    def __init__(self, split: str | None = None, render_mode: str | None = None,
                 tasks_file: str | Path | None = None, scores_file: str | Path | None = None,
                 shuffle_seed: int = prompt.SEED):
        super().__init__(split=split, render_mode=render_mode, tasks_file=tasks_file)
        if scores_file is not None and not Path(scores_file).expanduser().is_file():
            raise FileNotFoundError(f"scores_file {scores_file} does not exist")
        self.scores_file = Path(scores_file).expanduser().resolve() if scores_file is not None else None
        if self.tasks_file is not None and self.scores_file is None:
            try:  # a tasks_file with no ranker scores anywhere cannot play a step: refuse it before any episode
                self.ranks_path()
            except DataMissingError:
                raise FileNotFoundError(
                    f"no ranker scores for tasks_file {self.tasks_file}: pass scores_file=PATH, or put "
                    f"{SCORES_NAME} beside the tasks file, or run `agent-gym data fetch mind2web` for "
                    f"Mind2Web's own") from None
        self.shuffle_seed = int(shuffle_seed)
        self._questions: prompt.QuestionFormat | None = None
        self._current: data.Task | None = None
        self._step = -1
        self._results: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ data
    @classmethod
    def load_tasks(cls, split: str) -> Sequence[data.TaskRef]:
        """References to the split's tasks (each read from its file when its episode starts)."""
        return data.load(split)

    @classmethod
    def load_tasks_file(cls, path: Path) -> Sequence[data.Task]:
        """Tasks in Mind2Web's test-file format (a JSON list; see :func:`data.load_file`)."""
        return data.load_file(path)

    def ranks_path(self) -> Path:
        """The ranker score file this env reads: ``scores_file=``, else ``scores_all_data.pkl``
        beside a ``tasks_file``, else the data directory's."""
        if self.scores_file is not None:
            return self.scores_file
        if self.tasks_file is not None and (self.tasks_file.parent / SCORES_NAME).is_file():
            return self.tasks_file.parent / SCORES_NAME
        return data.scores_path()

    def engine_info(self) -> dict[str, str]:
        from lxml import etree

        return {"lxml": ".".join(map(str, etree.LXML_VERSION))}

    def options(self) -> dict[str, Any]:
        return {"top_k": prompt.TOP_K, "num_candidates": prompt.NUM_CANDIDATES,
                "candidate_order": f"seeded per step ({self.shuffle_seed}, sample id)"}

    @classmethod
    def engine_status(cls) -> str:
        return "built-in (lxml)"

    # ------------------------------------------------------------------ episode
    def _plan(self, task: data.Task, index: int) -> tuple[list[str], list[str], str]:
        """Step ``index``'s candidates in tournament order, its target elements (positives in
        the top k) and its target action (``Mind2Web.get_data`` / ``predict_single``)."""
        step = task.steps[index]
        ranks = data.step_ranks(self.ranks_path(), task.sample_id(step))
        if ranks is None:
            raise KeyError(f"the ranker score file {self.ranks_path()} has no scores for step {task.sample_id(step)} "
                           f"(annotation_id_action_uid): pass the matching scores_file=")
        # a candidate the file does not rank is left out (upstream raised KeyError)
        pos = [c for c in step.pos_ids if ranks.get(c, math.inf) < prompt.TOP_K]
        neg = [c for c in step.neg_ids if ranks.get(c, math.inf) < prompt.TOP_K]
        order = prompt.shuffled_candidates(pos + neg, self.shuffle_seed, task.sample_id(step))
        return order, pos, prompt.target_action(step.op, step.value)

    def _begin(self, task: data.Task | data.TaskRef) -> Begin:
        task = self._current = data.resolve(task)
        if self._questions is None:
            self._questions = prompt.QuestionFormat.from_examples(data.prompt_template())
        self._step, self._results, self._tournament, self._tree = -1, [], None, None
        self._choices: list[str] = []
        observation = self._advance(task)
        self._idle = observation is None
        if observation is None:  # no step has a choice to make: every step scores 0 without a call
            observation = (f"Task: {task.confirmed_task}\nNo step of this task has a positive candidate among the "
                           f"ranker's top {prompt.TOP_K} and a second candidate to choose from: all "
                           f"{len(task.steps)} steps score 0. Any reply ends the episode.")
        return Begin(observation=observation, prompt=[dict(m, role="assistant" if m["role"] == "agent" else "user")
                                                      for m in data.prompt_template()],
                     extra={"num_steps": len(task.steps), "website": task.website, "domain": task.domain,
                            "step_results": list(self._results), "fresh_context": True, **self._call_info()})

    def _advance(self, task: data.Task) -> str | None:
        """Score finished steps and move on to the next call; ``None`` when the task is over."""
        while True:
            if self._tournament is not None and not self._tournament.done:
                batch = self._tournament.next_batch()
                page = engine.multiple_choice(self._tree, batch)
                self._choices = [node for node, _ in page.choices]
                step = self._step
                return self._questions.observation(page.html, task.confirmed_task, task.action_reprs[:step],
                                                   [text for _, text in page.choices])
            if self._tournament is not None:
                self._score_step(task, self._tournament.final)
            self._tournament, self._tree, self._choices = None, None, []
            self._step += 1
            if self._step >= len(task.steps):
                return None
            order, self._targets, self._target_action = self._plan(task, self._step)
            if not self._targets:
                self._score_step(task, None)
                continue
            self._tournament = prompt.Tournament(order)
            self._tree = self._page(task, self._step) if not self._tournament.done else None

    @staticmethod
    def _page(task: data.Task, index: int) -> Any:
        try:
            return engine.parse(task.steps[index].cleaned_html)
        except ValueError as exc:  # named: which task, which step, so the file can be fixed
            raise ValueError(f"task {task.id}, action {index} ({task.steps[index].action_uid}): {exc}") from None

    def _score_step(self, task: data.Task, prediction: tuple[str, str] | None) -> None:
        targets = self._targets or None
        result = prompt.step_metrics(prediction, targets, self._target_action if targets else None)
        self._results.append({
            "step": self._step, "action_uid": task.steps[self._step].action_uid,
            "calls": self._tournament.calls if self._tournament is not None else 0,
            "prediction": list(prediction or ("", "")), "target_elements": list(targets or []),
            "target_action": self._target_action if targets else None, **result})

    def _call_info(self) -> dict[str, Any]:
        return {"step": self._step, "call": self._tournament.calls if self._tournament is not None else 0,
                "choices": [[chr(ord("B") + i), node] for i, node in enumerate(self._choices)]}

    def _reject(self, reason: str) -> Outcome:
        """A reply too long to parse counts as one without ``Answer:`` (upstream's default A): the
        tournament goes on, since each call's question is shown once."""
        return self._answer(prompt.Reply(letter="A", action=" ", found_answer=False), reason)

    def _act(self, action: str) -> Outcome:
        return self._answer(prompt.parse_reply(action))

    def _answer(self, reply: prompt.Reply, refused: str | None = None) -> Outcome:
        task = self._current
        before = len(self._results)
        valid = refused is None
        if self._idle:
            observation = None
        else:
            picked = self._tournament.record(self._choices, reply)
            valid = reply.found_answer and (reply.letter == "A" or picked is not None)
            observation = self._advance(task)
        score = sum(r["step_success"] for r in self._results) / len(task.steps)
        extra = {"step_results": self._results[before:], "fresh_context": True, "reply": {
            "letter": reply.letter, "action": reply.action}, **self._call_info()}
        if refused:
            extra["reply"]["refused"] = refused
        progress = len(self._results) / len(task.steps)
        if observation is None:
            done = len(self._results)
            correct = sum(int(r["step_success"]) for r in self._results)
            return Outcome(observation=f"Task over: {correct} of {done} steps right.", score=score, done=True,
                           success=correct == len(task.steps), progress=1.0, action_valid=valid,
                           end_reason=ANSWERED, extra=extra)
        return Outcome(observation=observation, score=score, progress=progress, action_valid=valid, extra=extra)

    def expert_replies(self, task: data.Task | data.TaskRef) -> list[str]:
        """Replies that pick a gold element whenever one is offered, with the gold action (and A
        otherwise), in the order this env asks; every step with a target and two or more
        candidates then succeeds."""
        task = data.resolve(task)
        replies = []
        for index, step in enumerate(task.steps):
            order, targets, _ = self._plan(task, index)
            if not targets:
                continue
            tournament, tree = prompt.Tournament(order), self._page(task, index)
            value = step.value.split("\n", 1)[0].strip()
            gold = f"Action: {step.op}" + (f"\nValue: {value}" if step.op != "CLICK" else "")
            while not tournament.done:
                choices = [node for node, _ in engine.multiple_choice(tree, tournament.next_batch()).choices]
                hit = next((i for i, node in enumerate(choices) if node in targets), None)
                reply = "Answer: A." if hit is None else f"Answer: {chr(ord('B') + hit)}.\n{gold}"
                tournament.record(choices, prompt.parse_reply(reply))
                replies.append(reply)
        return replies or ["Answer: A."]

    @classmethod
    def summarize(cls, trajectories: Sequence[Any]) -> dict[str, float]:
        """Upstream's ``metric``, micro-averaged over every step of every episode (0..1):
        ``micro/element_acc``, ``micro/action_f1``, ``micro/step_sr``; ``score`` is the step
        success rate (the paper's Mind2Web number), ``episode_score`` the mean per-task score.
        Steps an episode never reached (an error, a context limit) count 0, as upstream's failed
        items did."""
        from agent_gym.metrics import default_summary

        out = default_summary(trajectories)
        totals = {"element_acc": 0.0, "action_f1": 0.0, "step_success": 0.0}
        steps = 0
        for t in trajectories:
            results = list((t.meta or {}).get("step_results") or [])
            results += [r for s in t.steps for r in (s.info or {}).get("step_results") or []]
            for r in results:
                for key in totals:
                    totals[key] += float(r.get(key, 0.0))
            steps += max(int((t.meta or {}).get("num_steps") or 0), len(results))
        if trajectories:
            out["episode_score"] = out["score"]
            out["steps"] = steps
            for key, name in (("element_acc", "element_acc"), ("action_f1", "action_f1"), ("step_success", "step_sr")):
                out[f"micro/{name}"] = totals[key] / steps if steps else 0.0
            out["score"] = out["micro/step_sr"]
        return out
