"""``AgentTuning/HotpotQA-v0``: HotpotQA with a ReAct agent over an offline Wikipedia, as AgentTuning ran it.

One question per episode (AgentTuning ``eval_heldout/hotpotQA``, BOLAA's ``ReactAgent``). The first
observation is upstream's whole agent prompt: the ReAct instruction, its two few-shot examples and
``Question: ...``. Each reply is one step, ``Thought n: ...`` then ``Action n: Search[x] | Lookup[k] |
Finish[answer]`` (see :mod:`.prompt` for the parsing and its fallbacks); the observation is
``Observation n: ...`` with the tool's answer, or upstream's invalid-action text. ``Finish`` ends the
episode with reward = answer F1 (HotpotQA's normalisation and yes/no rule), ``success`` = exact match.
At most 10 steps; like upstream, the episode also stops once the prompt with its scratchpad passes
1700 ``cl100k_base`` tokens (``max_context_tokens``; status ``agent_context_limit``, score 0).

Search is offline (:mod:`.engine`): the pages are every paragraph of the 300 questions (2958 titles),
or ``corpus=PATH``, a JSON-lines file of ``{"title", "text"}`` pages (a Wikipedia dump). ``info["completion"]``
has upstream's completion scaffolding (``Thought n:`` / ``Action n:`` prefixes, newline stop) for a
policy that plays the paper's plain-completion form; ``completion_prompt()`` is upstream's prompt text
at any point. Differences from the paper: docs/hotpotqa.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from agent_gym.core import (AGENT_CONTEXT_LIMIT, ANSWERED, CONTEXT_LIMIT, Begin, Outcome, TextEnv, _file_sha256)
from agent_gym.envs.hotpotqa import data, engine, prompt
from agent_gym.textsearch import Explorer, NoPageError, read_jsonl

MAX_STEPS = 10
#: upstream's ``--max_context_len`` default (cl100k tokens of the whole prompt)
MAX_CONTEXT_TOKENS = 1700


class HotpotQAEnv(TextEnv):
    task_name = "hotpotqa"
    max_turns = MAX_STEPS
    # the paper's completion: 256 new tokens, greedy (TGI temperature 1e-5), stop "\n" per Thought / Action call;
    # a chat reply holds both lines, so the chat stop is the next observation instead
    decoding: ClassVar[dict[str, Any]] = {"max_new_tokens": 256, "temperature": 0.0, "stop": ["\nObservation"]}
    system_prompt = ""  # a plain completion: no chat template, no system message
    strip_messages = False
    invalid_action_message = prompt.INVALID_ACTION + " ({reason})"
    paper_options: ClassVar[dict[str, Any]] = {"corpus": "wikipedia (online, langchain 0.0.174)",
                                               "max_context_tokens": MAX_CONTEXT_TOKENS, "similar": 10}

    def __init__(self, split: str | None = None, render_mode: str | None = None,
                 tasks_file: str | Path | None = None, corpus: str | Path | None = None,
                 max_context_tokens: int | None = MAX_CONTEXT_TOKENS, similar: int = 10):
        super().__init__(split=split, render_mode=render_mode, tasks_file=tasks_file)
        self.corpus_path = Path(corpus).expanduser().resolve() if corpus is not None else None
        if self.corpus_path is not None and not self.corpus_path.is_file():
            raise FileNotFoundError(f"corpus {corpus} does not exist (a JSON-lines file of {{\"title\", \"text\"}} pages)")
        self.count_tokens = engine.token_counter() if max_context_tokens else None
        self.max_context_tokens = max_context_tokens if self.count_tokens is not None else None
        self.similar = int(similar)
        self._index = None
        self._explorer: Explorer | None = None
        self._scratchpad = ""
        self._step = 1

    @classmethod
    def load_tasks(cls, split: str) -> Sequence[data.Question]:
        return data.load(split)

    @classmethod
    def load_tasks_file(cls, path: Path) -> Sequence[data.Question]:
        """HotpotQA records as JSON lines (see :func:`data.load_file`)."""
        return data.load_file(path)

    def index(self):
        """The search index (built on first use: the corpus of this env's split, or ``corpus=``)."""
        if self._index is None:
            if self.corpus_path is not None:
                key = f"{self.corpus_path}:{_file_sha256(self.corpus_path)}"
                self._index = engine.open_index(read_jsonl(self.corpus_path), key)
            else:
                docs = data.corpus(list(self.tasks()))
                if not docs:
                    raise ValueError("these questions have no 'context' paragraphs to search: pass corpus=PATH "
                                     "(JSON lines of {\"title\", \"text\"})")
                self._index = engine.open_index(docs, f"questions:{self.split}:{self.tasks_file}")
        return self._index

    def engine_info(self) -> dict[str, str]:
        return engine.versions()

    def options(self) -> dict[str, Any]:
        corpus = ("hotpotqa questions' paragraphs" if self.corpus_path is None
                  else {"path": str(self.corpus_path), "sha256": _file_sha256(self.corpus_path)})
        return {"corpus": corpus, "max_context_tokens": self.max_context_tokens, "similar": self.similar}

    @classmethod
    def engine_status(cls) -> str:
        try:
            import bm25s  # noqa: F401
        except ImportError:
            return "missing: pip install bm25s"
        return "bm25s" + ("" if engine.token_counter() else f" (no context limit: {engine.TOKENIZER_HINT})")

    # ------------------------------------------------------------------ episode
    def _begin(self, task: data.Question) -> Begin:
        self._explorer = Explorer(self.index(), similar=self.similar)
        self._scratchpad, self._step = "", 1
        text = self.completion_prompt()
        return Begin(observation=text, extra={
            "level": task.level, "type": task.type,
            "completion": {"prompt": text, **prompt.COMPLETION},
            "context_tokens": self.count_tokens(text) if self.count_tokens else None,
        })

    def completion_prompt(self) -> str:
        """Upstream's agent prompt now: instruction, examples, question and the scratchpad so far."""
        strings = data.react_prompt()
        return prompt.build_prompt(strings["instruction"], strings["examples"], self.task.question, self._scratchpad)

    def _act(self, action: str) -> Outcome:
        n = self._step
        thought, act = prompt.split_reply(action)
        kind, argument = prompt.parse_action(act)
        self._step += 1
        if kind == "Finish":
            return self._finish(n, thought, act, argument)
        valid = True
        if kind == "Search":
            try:
                result = prompt.format_step(self._explorer.search(argument))
            except Exception:  # noqa: BLE001 - upstream's answer to any search failure
                result = prompt.SEARCH_FAILED
        elif kind == "Lookup":
            try:
                result = prompt.format_step(self._explorer.lookup(argument))
            except NoPageError:
                result = prompt.NO_PAGE
        else:
            result, valid = prompt.INVALID_ACTION, False
        self._scratchpad += prompt.scratchpad_step(n, thought, act, result)
        extra: dict[str, Any] = {"action": [kind, argument]}
        if self.count_tokens is not None:
            tokens = extra["context_tokens"] = self.count_tokens(self.completion_prompt())
            if tokens > self.max_context_tokens and self._step <= MAX_STEPS:
                # upstream's is_halted: the next prompt is too long, the agent stops unanswered
                return Outcome(observation=f"Observation {n}: {result}", score=0.0, success=False, done=True,
                               status=AGENT_CONTEXT_LIMIT, end_reason=CONTEXT_LIMIT, action_valid=valid,
                               extra={**extra, "answer": "", "f1": 0.0, "em": False})
        return Outcome(observation=f"Observation {n}: {result}", action_valid=valid, extra=extra)

    def _finish(self, n: int, thought: str, act: str, answer: str) -> Outcome:
        gold = self.task.answer
        f1, precision, recall = prompt.f1_score(answer, gold)
        em = prompt.exact_match(answer, gold)
        verdict = prompt.CORRECT if em else prompt.INCORRECT
        self._scratchpad += prompt.scratchpad_step(n, thought, act, verdict)
        return Outcome(observation=f"Observation {n}: {verdict}", score=f1, success=em, done=True,
                       end_reason=ANSWERED, extra={"action": ["Finish", answer], "answer": answer, "gold": gold,
                                                   "f1": f1, "precision": precision, "recall": recall, "em": em})

    def expert_replies(self, task: data.Question) -> list[str]:
        """Search each supporting title, then finish with the gold answer."""
        replies = [f"Thought {i}: I need to search {title}.\nAction {i}: Search[{title}]"
                   for i, title in enumerate(task.supporting_titles, 1)]
        n = len(replies) + 1
        return replies + [f"Thought {n}: So the answer is {task.answer}.\nAction {n}: Finish[{task.answer}]"]

    @classmethod
    def summarize(cls, trajectories: Sequence[Any]) -> dict[str, float]:
        """Upstream's aggregation: mean F1 per level file, and the mean of the level means (the paper's
        number, ``mean_of_levels``); ``success_rate`` is exact match."""
        from agent_gym.metrics import default_summary, group_means

        out = default_summary(trajectories)
        levels = group_means(trajectories, key=lambda t: t.task_id.split("/", 1)[0])
        out.update({f"level/{k}": v for k, v in sorted(levels.items())})
        if levels:
            out["mean_of_levels"] = sum(levels.values()) / len(levels)
        return out
