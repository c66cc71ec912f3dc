"""The RCI agent AgentTuning ran on MiniWoB++ (``eval_heldout/miniwob++/llm_agent.py:LLMAgent``).

Per episode: a plan (``initialize_plan``: the plan prompt, then ``erci`` rounds of "find problems
with this plan" and a revised plan), whose numbered items + 1 give the number of steps (the policy
tells the env with ``env.unwrapped.limit_steps``). Per step: the action prompt (base prompt, page
HTML, task, plan, the instructions so far), then with state grounding the ``update_action`` prompt,
then up to ``irci`` corrections while the instruction matches none of the action regexes. If it
still matches none, upstream failed the episode: here that instruction is sent as the episode's
last reply (the env refuses it and the step limit ends the episode, unsuccessful).

Every model call is upstream's chat: ``BIG_PROMPT`` / "Ok.", few-shot.json's examples 0 and 5, then
the RCI prompt (each new task prefixed "The previous task has ended, and I'll start a new task
now."), Llama-2's short system message, greedy, 512 new tokens, the reply cut at ``[INST]``. The
prompt strings are read at run time from the data directory (``miniwob/agenttuning/prompt``, see
:func:`agent_gym.envs.miniwob.data.rci_prompts`); without the derived ``BIG_PROMPT`` file the first
two turns are left out and ``info``-level provenance says so (``policy.big_prompt = False``).

Options (CLI policy flags): ``backend``, ``model``, ``url``, ``chat_template`` as for ``react``;
``erci`` (1), ``irci`` (3), ``state_grounding`` (True) as ``eval-tgi.sh``; ``max_new_tokens`` (512);
``max_steps`` (None: the plan's) and ``few_shot`` (True; False sends only the RCI prompt): settings
for smoke runs on a small CPU model, which change scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent_gym.core import LLAMA2_SYSTEM
from agent_gym.policies import templates
from agent_gym.policies.backend import Backend, Message, PolicySetupError

NEW_TASK = "The previous task has ended, and I'll start a new task now.\n\n"
# llm_agent.py: rci_plan's two prompts, and the headers of the page, plan and history sections
CRITIQUE = "\n\nFind problems with this plan for the given task compared to the example plans.\n\n"
REVISE = "\n\nBased on this, what is the plan for the agent to complete the task?\n\n"


class RCIPolicy:
    """One episode of the RCI agent; make one per episode (they share the cached backend)."""

    name = "rci"

    def __init__(self, backend: Backend, env: Any = None, *, erci: int = 1, irci: int = 3,
                 state_grounding: bool = True, max_new_tokens: int = 512, max_steps: int | None = None,
                 chat_template: str | None = None, few_shot: bool = True):
        self.backend = backend
        self.few_shot = bool(few_shot)
        self.model_name = backend.model_name
        self.env = env
        self.erci, self.irci, self.state_grounding = int(erci), int(irci), bool(state_grounding)
        self.max_new_tokens = int(max_new_tokens)
        self.max_steps = max_steps
        template = chat_template or templates.default_template(backend.model_name)
        if template not in templates.TEMPLATES:
            raise PolicySetupError(f"--chat-template must be one of {', '.join(templates.TEMPLATES)}, got {template!r}")
        self.render = backend.chat_template() if template == "auto" else None
        self.chat_template = template if template != "auto" or self.render is not None else "server"
        self.calls: list[dict[str, str]] = []  # every (prompt, reply) of the episode, as upstream's trajs

    # ------------------------------------------------------------------ episode
    def reset(self, info: dict[str, Any]) -> None:
        from agent_gym.envs.miniwob.data import rci_prompts

        self.prompts = rci_prompts(info["miniwob_task"])
        self.task = info["utterance"]
        self.html = info["html"]
        self.plan: str | None = None
        self.past: list[str] = []
        self.calls = []

    def act(self, observation: str, info: dict[str, Any]) -> str:
        self.html = info.get("html", self.html)
        if self.plan is None:
            self.plan = self._initialize_plan()
            steps = _plan_steps(self.plan)
            if self.max_steps is not None:
                steps = min(steps, int(self.max_steps))
            self._limit(steps)
        try:
            instruction = self._generate_action()
        except _RCIFailed as exc:  # upstream: ValueError, the episode fails
            self._limit(1)
            return exc.instruction
        return instruction

    @property
    def provenance(self) -> dict[str, Any]:
        return {"policy": "rci", "erci": self.erci, "irci": self.irci, "state_grounding": self.state_grounding,
                "max_new_tokens": self.max_new_tokens, "max_steps": self.max_steps, "few_shot": self.few_shot, "chat_template": self.chat_template,
                "big_prompt": getattr(getattr(self, "prompts", None), "big_prompt", None) is not None,
                **getattr(self.backend, "provenance", {})}

    # ------------------------------------------------------------- upstream's steps
    def _page(self, init_plan: bool = False) -> str:
        pt = "\n\nBelow is the HTML code of the webpage where the agent should solve a task.\n" + self.html + "\n\n"
        if self.prompts.example and init_plan:
            pt += self.prompts.example + "\n\n"
        return pt + "Current task: " + self.task + "\n"

    def _initialize_plan(self) -> str:
        p = self.prompts
        pt = p.base + self._page(init_plan=True) + p.initialize_plan
        message = "\n" + self._ask(pt)
        pt += message
        for _ in range(self.erci):
            pt += CRITIQUE
            pt += self._ask(pt)
            pt += REVISE
            message = self._ask(pt)
            pt += message
        return message

    def _generate_action(self) -> str:
        from agent_gym.envs.miniwob.prompt import clean_reply, matches

        p = self.prompts
        pt = p.base + self._page() + "\n\nHere is a plan you are following now.\n" + self.plan + "\n\n"
        pt += "\n\nWe have a history of instructions that have been already executed by the autonomous agent so far.\n"
        pt += "".join(f"{i + 1}: {inst}\n" for i, inst in enumerate(self.past)) or "No instruction has been executed yet."
        pt += "\n\n"
        if self.past:
            # as upstream: the order replaces the action prompt's "{order}" in the original string, so the
            # "{prev_inst}" replacement made just before is lost (it is overwritten in every branch)
            n = len(self.past)
            order = "2nd" if n == 1 else "3rd" if n == 2 else f"{n + 1}th"
            action_prompt = p.action.replace("{order}", order)
        else:
            action_prompt = p.first_action
        pt += "Based on the plan and the history of instructions executed so far, " + action_prompt
        message = self._ask(pt)
        pt += clean_reply(message) + "`."
        if p.update_action and self.state_grounding:
            pt += p.update_action
            message = self._ask(pt)
            pt += message
        instruction = clean_reply(message)
        for _ in range(self.irci + 1):
            if matches(instruction):
                self.past.append(instruction)
                return instruction
            if _ == self.irci:
                break
            pt += p.rci_action
            message = self._ask(pt)
            pt += message
            instruction = clean_reply(message)
        raise _RCIFailed(instruction)

    def _limit(self, steps: int) -> None:
        limit = getattr(getattr(self.env, "unwrapped", None), "limit_steps", None)
        if limit is not None:
            limit(max(1, steps))

    # ------------------------------------------------------------------- model
    def _messages(self, pt: str) -> list[Message]:
        p = self.prompts
        turns: list[Message] = []
        if p.big_prompt is not None:
            turns += [{"role": "user", "content": p.big_prompt}, {"role": "assistant", "content": "Ok."}]
        if not self.few_shot:  # a smoke-test setting: the task's own prompt only
            return turns + [{"role": "user", "content": pt}]
        first, fifth = p.few_shot[0]["conversations"], p.few_shot[5]["conversations"]
        turns += [{"role": "user", "content": first[0]["value"]}, {"role": "assistant", "content": first[1]["value"]},
                  {"role": "user", "content": NEW_TASK + fifth[0]["value"]},
                  {"role": "assistant", "content": fifth[1]["value"]},
                  {"role": "user", "content": NEW_TASK + pt}]
        return turns

    def _ask(self, pt: str) -> str:
        turns = self._messages(pt)
        prompt: str | Sequence[Message]
        if self.chat_template == "llama2":
            prompt = templates.llama2_prompt(turns, LLAMA2_SYSTEM, strip=False)
        else:
            full = [{"role": "system", "content": LLAMA2_SYSTEM}, *turns]
            prompt = self.render(full) if self.render is not None else full
        text = self.backend.generate(prompt, stop=["[INST]"], max_new_tokens=self.max_new_tokens,
                                     temperature=0.0).text
        reply = text.split("[INST]")[0].strip()
        self.calls.append({"prompt": pt, "reply": reply})
        return reply


class _RCIFailed(Exception):
    def __init__(self, instruction: str):
        super().__init__(instruction)
        self.instruction = instruction


def _plan_steps(plan: str) -> int:
    """Upstream's ``get_plan_step``: the count of "1.", "2.", ... present in the plan, plus 1."""
    idx = 1
    while f"{idx}." in plan:
        idx += 1
    return idx


def rci(env: Any = None, *, backend: str = "local", model: str | None = None, url: str | None = None,
        max_new_tokens: int | None = None, chat_template: str | None = None, device: str | None = None,
        timeout: float | None = None, api_key: str | None = None, erci: int = 1, irci: int = 3,
        state_grounding: bool = True, max_steps: int | None = None, few_shot: bool = True,
        **ignored: Any) -> RCIPolicy:
    """The policy factory (``agent-gym run AgentTuning/MiniWoB-v0 --policy rci``); raises
    :class:`PolicySetupError` naming the fix for an unknown backend or a missing ``--url``."""
    from agent_gym.policies.react import backend_from_options

    llm = backend_from_options(backend, model=model, url=url, device=device, timeout=timeout, api_key=api_key)
    return RCIPolicy(llm, env, erci=erci, irci=irci, state_grounding=state_grounding,
                     max_new_tokens=512 if max_new_tokens is None else max_new_tokens, max_steps=max_steps,
                     chat_template=chat_template, few_shot=few_shot)
