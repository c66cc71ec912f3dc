"""``AgentTuning/ReWOO-v0``: ReWOO's Planner / Worker / Solver as AgentTuning ran it (``eval_heldout/rewoo``).

One question per episode. The first observation is the planner prompt (tools of the question's dataset,
few-shot plans, the question). The agent's replies are, in order:

1. the plan (``Plan: ...`` / ``#E1 = Tool[input]`` lines);
2. one reply per ``LLM[...]`` worker call, when ``llm_tool="agent"`` (the default: upstream's LLM tool was the
   evaluated model itself): the observation is the LLM worker's request;
3. the solver's answer: the observation is the solver prompt with every plan and its evidence.

The other workers run inside the env (:mod:`.engine`: Wikipedia over the HotpotQA pages, an exact sympy
Calculator, SearchSOTU, Google / WolframAlpha only through ``endpoints``) and each call is recorded in
``info["workers"]`` (evidence name, tool, input, output, who answered). With ``llm_tool={"backend": ...}`` the
LLM calls go to that backend instead and the episode is two replies. The score is the judge's verdict:
``judge="em"`` (default, exact match after normalisation), ``"f1"``, or ``{"backend": ..., "model": ...}`` for an
LLM judge (CORRECT / INCORRECT, as upstream's langchain QAEvalChain; the paper's was text-davinci-003).
``info["judge"]`` names the judge of every score; ``info["em"]`` and ``info["f1"]`` are always there.
Differences from the paper: docs/rewoo.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from agent_gym.core import ANSWERED, INVALID_ACTION_END, LLAMA2_SYSTEM, Begin, Outcome, TextEnv
from agent_gym.envs.rewoo import data, engine, prompt

JUDGES = ("em", "f1")
MAX_TOOL_INPUT = 8000  # characters of a worker's input after #E substitution


class ReWOOEnv(TextEnv):
    task_name = "rewoo"
    max_turns = None  # upstream put no limit on a plan's length
    # llm_llama: TGI /generate, 256 new tokens, do_sample forced False; Llama-2 template with the short system message
    decoding: ClassVar[dict[str, Any]] = {"max_new_tokens": 256, "temperature": 0.0}
    system_prompt = LLAMA2_SYSTEM
    strip_messages = False
    paper_options: ClassVar[dict[str, Any]] = {
        "judge": {"backend": "openai", "model": "text-davinci-003"}, "llm_tool": "agent",
        "online_tools": {"Google": "serper.dev", "WolframAlpha": "wolframalpha.com"}, "tool_prompts": "upstream"}

    def __init__(self, split: str | None = None, render_mode: str | None = None,
                 tasks_file: str | Path | None = None, judge: str | dict[str, Any] = "em",
                 llm_tool: str | dict[str, Any] = "agent", endpoints: dict[str, str] | None = None,
                 tool_max_new_tokens: int = 256):
        super().__init__(split=split, render_mode=render_mode, tasks_file=tasks_file)
        if not (judge in JUDGES or isinstance(judge, dict)):
            raise ValueError(f"judge must be one of {JUDGES} or a backend config like "
                             f"{{'backend': 'local'}} / {{'backend': 'tgi', 'url': ...}}, got {judge!r}")
        if not (llm_tool == "agent" or isinstance(llm_tool, dict)):
            raise ValueError(f"llm_tool must be 'agent' or a backend config like {{'backend': 'local'}}, got {llm_tool!r}")
        unknown = sorted(set(endpoints or {}) - set(engine.ONLINE_TOOLS))
        if unknown:
            raise ValueError(f"endpoints can name {engine.ONLINE_TOOLS}, not {unknown}")
        self.judge, self.llm_tool = judge, llm_tool
        self.endpoints = dict(endpoints or {})
        self.tool_max_new_tokens = tool_max_new_tokens
        self._backends: dict[str, Any] = {}
        self._reset_episode()

    def _reset_episode(self) -> None:
        self._phase = "plan"
        self._plans: list[str] = []
        self._queue: list[tuple[str, str]] = []
        self._evidence: dict[str, str] = {}
        self._workers: list[dict[str, Any]] = []
        self._waiting: tuple[str, str] | None = None

    @classmethod
    def load_tasks(cls, split: str) -> Sequence[data.Question]:
        return data.load(split)

    @classmethod
    def load_tasks_file(cls, path: Path) -> Sequence[data.Question]:
        """Questions as JSON lines ``{"question", "answer", "tools"?, "dataset"?}`` (see :func:`data.load_file`)."""
        return data.load_file(path)

    def options(self) -> dict[str, Any]:
        return {"judge": self.judge, "llm_tool": self.llm_tool,
                "online_tools": {t: self.endpoints.get(t, "not available") for t in engine.ONLINE_TOOLS},
                "tool_prompts": "upstream" if data.prompts()["workers"] else "ours",
                "gsm8k_split": data.gsm8k_split(), "left_out": dict(data.LEFT_OUT)}

    def engine_info(self) -> dict[str, str]:
        from importlib import metadata

        return {p: metadata.version(p) for p in ("bm25s", "sympy")}

    @classmethod
    def engine_status(cls) -> str:
        try:
            import bm25s  # noqa: F401
            import sympy  # noqa: F401
        except ImportError as exc:
            return f"missing: pip install 'agent-gym[rewoo]' ({exc.name})"
        return "bm25s, sympy (Google / WolframAlpha: endpoints only)"

    # ------------------------------------------------------------------ episode
    def _begin(self, task: data.Question) -> Begin:
        self._reset_episode()
        strings = data.prompts()
        descriptions = (strings["workers"] or {}).get("descriptions") or prompt.OUR_DESCRIPTIONS
        text = prompt.planner_prompt(strings["planner"], task.tools, descriptions,
                                     strings["fewshots"][task.fewshot], task.question)
        unavailable = [t for t in task.tools if t in engine.ONLINE_TOOLS and t not in self.endpoints]
        return Begin(observation=text, extra={
            "dataset": task.dataset, "tools": list(task.tools), "unavailable_tools": unavailable,
            "phase": "plan", "workers": [], "judge": self._judge_label(),
            "tool_prompts": "upstream" if strings["workers"] else "ours"})

    def _act(self, action: str) -> Outcome:
        if self._phase == "plan":
            self._plans = prompt.parse_plans(action)
            try:
                self._queue = list(prompt.parse_evidences(action).items())
            except prompt.PlanError as exc:
                return self._finish(prompt.FAILED_OUTPUT, failure=str(exc))
            return self._advance()
        if self._phase == "worker":
            name, tool_input = self._waiting
            self._record(name, "LLM", tool_input, action.strip("\n").strip(), by="agent")
            return self._advance()
        return self._finish(action.strip())  # llm_llama stripped every generation

    def _advance(self) -> Outcome:
        """Run workers in plan order until one needs the agent (an LLM call) or all are done."""
        while self._queue:
            name, call = self._queue.pop(0)
            parts = prompt.split_call(call)
            if parts is None:
                self._record(name, None, call, call, by="plan")
                continue
            tool, tool_input = parts
            # cut: evidence repeated into an input can make megabytes (a 64 KB plan, 9 MB) that no tool reads
            tool_input = prompt.substitute(tool_input, self._evidence)[:MAX_TOOL_INPUT]
            if tool not in self.task.tools:
                self._record(name, tool, tool_input, engine.NO_EVIDENCE, by="env")
            elif tool == "LLM" and self.llm_tool == "agent":
                self._waiting, self._phase = (name, tool_input), "worker"
                return Outcome(observation=self._llm_request(tool_input), extra=self._extra())
            else:
                output, by = self._run_tool(tool, tool_input)
                self._record(name, tool, tool_input, output, by=by)
        try:
            log = prompt.worker_log(self._plans, self._evidence)
        except prompt.PlanError as exc:
            return self._finish(prompt.FAILED_OUTPUT, failure=str(exc))
        self._phase, self._waiting = "solve", None
        text = prompt.solver_prompt(data.prompts()["solver"], self.task.question, log)
        return Outcome(observation=text, extra=self._extra())

    def _run_tool(self, tool: str, tool_input: str) -> tuple[str, str]:
        if tool == "Wikipedia":
            return engine.wikipedia(engine.wikipedia_index(data.wikipedia_pages), tool_input), "env"
        if tool == "Calculator":
            return engine.calculator(tool_input), "env"
        if tool == "SearchSOTU":
            return engine.search_sotu(engine.sotu_index(data.speech()), tool_input), "env"
        if tool in engine.ONLINE_TOOLS:
            if tool not in self.endpoints:
                return engine.NOT_AVAILABLE.format(tool=tool), "env"
            return engine.endpoint(self.endpoints[tool], tool_input).replace("Answer:", "").strip(), "endpoint"
        if tool == "LLM":
            backend = self._backend("llm_tool", self.llm_tool)
            reply = engine.ask(backend, self._llm_request(tool_input), max_new_tokens=self.tool_max_new_tokens)
            return reply.strip("\n").strip(), "backend"
        return engine.NO_EVIDENCE, "env"

    def _llm_request(self, tool_input: str) -> str:
        workers = data.prompts()["workers"]
        return (workers["llm_instruction"] if workers else prompt.OUR_LLM_INSTRUCTION).format(input=tool_input)

    def _record(self, name: str, tool: str | None, tool_input: str, output: str, by: str) -> None:
        self._evidence[name] = output
        self._workers.append({"evidence": name, "tool": tool, "input": tool_input, "output": output, "by": by})

    def _extra(self) -> dict[str, Any]:
        return {"phase": self._phase, "workers": [dict(w) for w in self._workers]}

    # ------------------------------------------------------------------ judging
    def _judge_label(self) -> dict[str, Any]:
        if isinstance(self.judge, dict):
            return {"judge": "llm", **{k: v for k, v in self.judge.items() if k in ("backend", "model", "url")}}
        return {"judge": self.judge}

    def _backend(self, role: str, config: dict[str, Any]):
        if role not in self._backends:
            self._backends[role] = engine.make_backend(config)
        return self._backends[role]

    def _finish(self, prediction: str, failure: str | None = None) -> Outcome:
        task: data.Question = self.task
        em, f1 = prompt.exact_match(prediction, task.label), prompt.f1_score(prediction, task.label)
        judge = self._judge_label()
        if isinstance(self.judge, dict):
            backend = self._backend("judge", self.judge)
            verdict = engine.ask(backend, prompt.OUR_JUDGE.format(query=task.question, answer=task.label,
                                                                    result=prediction),
                                 max_new_tokens=8, system=None)
            judge.update(engine.backend_label(backend), verdict=verdict)
            score = float(prompt.judged_correct(verdict))
        else:
            score = float(em) if self.judge == "em" else f1
        self._phase = "done"
        verdict_text = f"score {score:g} by the {judge['judge']} judge"
        observation = (f"The plan failed ({failure}): the answer is {prediction!r}, {verdict_text}." if failure
                       else f"Answer: {prediction}\n({verdict_text})")
        return Outcome(observation=observation, score=score, success=score == 1.0, done=True,
                       action_valid=failure is None, end_reason=INVALID_ACTION_END if failure else ANSWERED,
                       extra={**self._extra(), "prediction": prediction, "label": task.label, "em": em, "f1": f1,
                              "judge": judge, "failure": failure})

    def expert_replies(self, task: data.Question) -> list[str]:
        """A one-step plan that needs no tool, then the gold answer (a check of the scorer, not of tools)."""
        return [f"Plan: Answer directly.\n#E1 = {task.label}", task.label]

    @classmethod
    def summarize(cls, trajectories: Sequence[Any]) -> dict[str, float]:
        """Upstream's score: correct / all over every dataset (micro, ``score``); per-dataset means beside it."""
        from agent_gym.metrics import default_summary, group_means

        out = default_summary(trajectories)
        out.update({f"dataset/{k}": v for k, v in
                    sorted(group_means(trajectories, key=lambda t: t.task_id.split("/", 1)[0]).items())})
        return out

    def close(self) -> None:
        self._backends.clear()
        super().close()
