"""``AgentTuning/KnowledgeGraph-v0``: AgentBench's Knowledge Graph task, one Freebase question per
episode, its tools run as SPARQL on a Freebase endpoint or a local RDF store.

The episode follows ``AgentBench.old``'s ``KnowledgeGraph.predict_single``: the instructions, the
agent's acknowledgement and the one-shot demo are the prompt; ``A new question: ...`` with the
entity names is the first observation. Each reply (at most 15) is cut at ``Observation:``; a
``Final Answer: #n`` ends the episode with variable ``n``'s values (an unknown ``n`` gets
"Invalid variable id! ..." and the episode goes on); otherwise the first ``Action...:`` line's
calls are tried in order (``#k`` -> variable ``k``, an entity name -> its mid) until one runs, and
its observation (or upstream's "cannot be executed" / "Function is not executed!" / "No executable
function found!" message, an invalid action) is the next observation. The score is the F1 of the
answer set against the gold set (0 without an answer after 15 replies); ``summarize`` gives
upstream's ``main`` (mean F1), ``EM`` and ``executability``.

Knowledge base (``endpoint=`` an HTTP SPARQL endpoint, ``$AGENT_GYM_KG_ENDPOINT``; or
``rdf_file=`` an RDF file / pyoxigraph store folder, ``$AGENT_GYM_KG_RDF``): needed from the first
tool call on; without one, ``preflight`` and that call say what to set. Every query is bounded by
``timeout`` seconds: an endpoint that is down or too slow ends the episode with status ``error``.
``ontology=`` a folder with ``vocab.json`` and ``fb_roles`` (default AgentBench's).
Differences from upstream are listed in docs/knowledgegraph.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from agent_gym.core import ANSWERED, Begin, Outcome, TextEnv
from agent_gym.envs.knowledgegraph import data, engine, prompt

#: Upstream's ``round`` (configs/tasks/knowledgegraph/std.yaml): agent replies per question.
MAX_ROUNDS = 15

# Names upstream's task module had (its own, and api.py's by ``import *``): for these its
# ``getattr`` succeeded, so the call's arguments were read before the call failed, which changes
# the failure message (see prompt.cannot_execute). Any other name failed before that.
_UPSTREAM_MODULE_NAMES = frozenset({
    *engine.Tools.NAMES, "Task", "Dataset", "DataPiece", "SparqlExecuter", "re", "sys", "json", "INSTRUCTIONS",
    "DEMOS", "ONE_SHOT", "KnowledgeGraph", "Union", "Path", "postprocess_raw_code", "lisp_to_sparql", "range_info",
    "path", "vocab", "attributes", "relations", "variable_relations_cache", "variable_attributes_cache", "Variable",
    "final_execute"})


def f1(predicted: Sequence[str], gold: frozenset[str]) -> float:
    """AgentBench's per-question F1 of answer sets (0 when nothing is right)."""
    pred = set(predicted)
    tp = len(pred & gold)
    if tp == 0:
        return 0.0
    precision, recall = tp / len(pred), tp / len(gold)
    return 2 * precision * recall / (precision + recall)


class KnowledgeGraphEnv(TextEnv):
    task_name = "kg"
    splits = ("test", "dev")
    split_aliases: ClassVar[dict[str, str]] = {"std": "test"}
    max_turns = MAX_ROUNDS
    system_prompt = ""  # AgentBench.old's harness: no system message, greedy, 128 new tokens
    decoding: ClassVar[dict[str, Any]] = {"max_new_tokens": 128, "temperature": 0.0}
    paper_options: ClassVar[dict[str, Any]] = {"kb": "sparql-http"}  # a Freebase Virtuoso server

    def __init__(self, split: str | None = None, render_mode: str | None = None,
                 tasks_file: str | Path | None = None, endpoint: str | None = None,
                 rdf_file: str | Path | None = None, timeout: float = engine.QUERY_TIMEOUT,
                 ontology: str | Path | None = None):
        super().__init__(split=split, render_mode=render_mode, tasks_file=tasks_file)
        if not timeout or float(timeout) <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self._ontology_dir = ontology
        self._kb: engine.KnowledgeBase | None = None
        try:  # a knowledge base named here is opened now (no query yet): a bad URL or path fails at once
            self._kb = engine.open_knowledge_base(endpoint, rdf_file, timeout=float(timeout))
        except LookupError:  # none named: fine until the first tool call, which says what to set
            pass
        self._tools: engine.Tools | None = None

    # ---------------------------------------------------------------- setup
    @classmethod
    def load_tasks(cls, split: str) -> Sequence[data.Question]:
        return data.load(split)

    @classmethod
    def load_tasks_file(cls, path: Path) -> Sequence[data.Question]:
        """Questions in AgentBench's KG JSON format (see :func:`data.load_file`)."""
        return data.load_file(path)

    def kb(self) -> engine.KnowledgeBase:
        """The knowledge base, opened on first use (``LookupError`` naming what to set if none is given)."""
        if self._kb is None:
            raise LookupError(engine.SETUP_HINT)
        return self._kb

    def preflight(self) -> None:
        self.kb()
        data.load_ontology(self._ontology_dir)

    def engine_info(self) -> dict[str, str]:
        try:
            kb = self.kb()
        except (LookupError, OSError, ValueError, ImportError):
            return {}
        return {kb.name: kb.version()}

    def options(self) -> dict[str, Any]:
        try:
            return {"kb": self.kb().name}
        except (LookupError, OSError, ValueError, ImportError):
            return {"kb": None}

    @classmethod
    def engine_status(cls) -> str:
        import os

        if os.environ.get(engine.ENDPOINT_ENV):
            return f"SPARQL endpoint {os.environ[engine.ENDPOINT_ENV]}"
        if os.environ.get(engine.RDF_FILE_ENV):
            return f"local RDF {os.environ[engine.RDF_FILE_ENV]} (pyoxigraph)"
        return f"no knowledge base: set {engine.ENDPOINT_ENV} (Freebase SPARQL URL) or {engine.RDF_FILE_ENV}"

    # ---------------------------------------------------------------- episode
    def _begin(self, task: data.Question) -> Begin:
        self._tools = None  # caches are per episode (upstream: per process)
        self._variables: list[engine.Variable] = []
        self._actions: list[str] = []
        self._last_arguments: tuple[str, ...] | None = None
        self._kept_reply = ""
        instructions, one_shot = data.prompts()
        return Begin(observation=prompt.question_text(task.question, [name for name, _ in task.entities]),
                     prompt=prompt.messages(instructions, one_shot),
                     extra={"actions": [], "variables": 0, "source": task.source})

    def tools(self) -> engine.Tools:
        if self._tools is None:
            self._tools = engine.Tools(self.kb(), data.load_ontology(self._ontology_dir))
        return self._tools

    def _act(self, action: str) -> Outcome:
        reply = self._kept_reply = prompt.clean_reply(action)
        number = prompt.final_answer(reply)
        if number is not None:
            if number >= len(self._variables):
                return self._say(prompt.INVALID_VARIABLE, valid=False)
            return self._finish(self.tools().answer(self._variables[number]))
        line = prompt.action_line(reply)
        if line is None:
            return self._say(prompt.NO_ACTION, valid=False)
        message = prompt.NOT_EXECUTED
        tools = self.tools()
        failed: set[prompt.Call] = set()  # a call that failed fails again: a line may repeat one thousands of times
        for call in prompt.calls(line):
            if call.name in _UPSTREAM_MODULE_NAMES and call.arguments is not None:
                self._last_arguments = call.arguments
            try:
                if call in failed or call.arguments is None or call.name not in engine.Tools.NAMES:
                    raise engine.ToolError(call.name)
                var, message = tools.call(call.name, self._resolve(call.arguments))
            except (engine.ToolError, engine.QueryError, ValueError, IndexError):
                failed.add(call)
                message = prompt.cannot_execute(call.name, self._last_arguments)
                continue
            self._actions.append(f"{call.name}({', '.join(call.arguments)})")
            if "##" in message:
                message = message.replace("##", f"#{len(self._variables)}")
                self._variables.append(var)
            return self._say(message, valid=True)
        return self._say(message, valid=False)

    def _resolve(self, arguments: tuple[str, ...]) -> list[Any]:
        """``#k`` -> variable ``k``, an entity name -> its mid, anything else as written (after
        upstream's removal of ``variable `` / ``Variable ``, which only applies to the first two)."""
        entities = self.task.entity_mids
        out: list[Any] = []
        for raw in arguments:
            name = raw.replace("variable ", "").replace("Variable ", "")
            if name.startswith("#"):
                out.append(self._variables[int(name[1:])])  # ValueError / IndexError: cannot be executed
            else:
                out.append(entities.get(name, raw))
        return out

    def _say(self, observation: str, valid: bool) -> Outcome:
        return Outcome(observation=observation, action_valid=valid, extra=self._extra())

    def _extra(self) -> dict[str, Any]:
        # kept_reply: the reply as upstream's history kept it (cut at "Observation:"), for a policy's own history
        return {"actions": list(self._actions), "variables": len(self._variables), "kept_reply": self._kept_reply}

    def _finish(self, predicted: list[str]) -> Outcome:
        task: data.Question = self.task
        score = f1(predicted, task.answers)
        exact = set(predicted) == set(task.answers)
        return Outcome(observation=f"Final answer: {len(set(predicted))} values, F1 {score:.3f}.", score=score,
                       success=exact, done=True, end_reason=ANSWERED, progress=score,
                       extra={"answer": sorted(set(predicted)), "f1": score, **self._extra()})

    def expert_replies(self, task: data.Question) -> list[str] | None:
        """The gold ``actions`` as replies, then ``Final Answer`` with the last variable they make."""
        if not task.actions:
            return None
        makes = sum(not a.startswith(("get_relations", "get_attributes")) for a in task.actions)
        return [prompt.action_reply(a) for a in task.actions] + [prompt.answer_reply(max(makes - 1, 0))]

    @classmethod
    def summarize(cls, trajectories: Sequence[Any]) -> dict[str, float]:
        """Upstream's metrics over the episodes that did not end in ``error`` (upstream left an item
        that raised out of its means): ``main`` = ``F1`` (mean F1, the paper's KG number), ``EM``
        (answer set equals the gold set) and ``executability`` (a non-empty answer)."""
        from agent_gym.metrics import default_summary

        out = default_summary(trajectories)
        scored = [t for t in trajectories if t.status != "error"]
        if scored:
            answers = [(t.steps[-1].info.get("answer") if t.steps else None) for t in scored]
            out["F1"] = out["main"] = sum(t.score for t in scored) / len(scored)
            out["EM"] = sum(bool(t.success) for t in scored) / len(scored)
            out["executability"] = sum(bool(a) for a in answers) / len(scored)
        return out

    def close(self) -> None:
        if self._kb is not None:
            self._kb.close()
        super().close()
