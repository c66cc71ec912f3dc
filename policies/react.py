"""The ReAct policy: AgentLM (or any chat LLM) playing an env turn by turn.

It keeps the episode's conversation (the env's ``info["prompt"]``, then observation / reply turns),
renders it with the model's chat template, and asks the backend for the next reply, returned whole
(the env parses thought and action). Long histories are cut as AgentBench's evaluation cut them
(:mod:`agent_gym.policies.history`); when the model's context is smaller still, more of the oldest
turns go; when even the instruction and the newest observation cannot fit, the policy raises
:class:`~agent_gym.policy.ContextLimitExceeded` and the episode ends with ``agent_context_limit``.

Decoding follows the paper: greedy, 128 new tokens, no stop sequence, unless the env says
otherwise in ``info`` (``max_new_tokens``, ``temperature``, ``top_p``, ``stop``, ``system_prompt``,
``strip_messages``) or the user does (explicit options win over the env's hints).

Choice scoring (MMLU's paper mode, AgentTuning ``eval_general/eval_mmlu_hf.py``): when ``info`` has
``choice_scoring = {"choices", "continuations", "answer_prefix"}`` and the backend can score, the
policy renders the prompt as for generation, appends ``answer_prefix``, asks the backend for the
next-token log-prob of each continuation's last token, and replies ``"Answer: X"`` with the best
choice (ties: the first). Without a scoring backend it generates. ``last_scoring`` records which.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Callable

from agent_gym.policies import templates
from agent_gym.policies.backend import (BACKENDS, Backend, BackendError, Generation, Message, PolicySetupError,
                                        PromptTooLong, can_score, get_backend)
from agent_gym.policies.history import SEGMENT_LIMIT, filter_messages
from agent_gym.policy import ContextLimitExceeded

DEFAULT_MAX_NEW_TOKENS = 128
_UNSET: Any = object()


class ReActPolicy:
    """Plays one episode at a time; make one per episode (they share the cached backend)."""

    name = "react"

    def __init__(self, backend: Backend, *, chat_template: str | None = None, max_new_tokens: int | None = None,
                 temperature: float | None = None, top_p: float | None = None, seed: int | None = None,
                 stop: Sequence[str] | None = None, system_prompt: str | None = _UNSET,
                 strip_messages: bool | None = None, segment_limit: int = SEGMENT_LIMIT, completion: bool = False):
        self.backend = backend
        #: play the env's plain-completion scaffolding (``info["completion"]``, HotpotQA as the paper ran it)
        #: where the env gives one, instead of the chat
        self.completion = completion
        self._text = ""
        self._step = 1
        self.model_name = backend.model_name
        template = chat_template or templates.default_template(backend.model_name)
        if template not in templates.TEMPLATES:
            raise PolicySetupError(f"--chat-template must be one of {', '.join(templates.TEMPLATES)}, got {template!r}")
        self.render: Callable[[Sequence[Message]], str] | None = None
        if template == "auto":
            self.render = backend.chat_template()
            template = "auto" if self.render is not None else "server"
        self.chat_template = template
        self.options = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "stop": stop,
                        "strip_messages": strip_messages}
        self.system_prompt = system_prompt
        self.seed = seed
        self.segment_limit = segment_limit
        self.last_usage: dict[str, int | None] = {"prompt_tokens": None, "completion_tokens": None}
        self.last_generation: Generation | None = None
        #: ``{"mode": "logprobs", "logprobs": [...]}`` or ``{"mode": "generation"}`` after a choice-scored turn
        self.last_scoring: dict[str, Any] | None = None
        self._system: str | None = None
        self._turns: list[Message] = []
        self._prompt_turns: list[Message] = []
        self._hints: dict[str, Any] = {}
        self._used: dict[str, Any] = {}

    # ------------------------------------------------------------------ episode
    def reset(self, info: dict[str, Any]) -> None:
        prompt = [dict(m) for m in info.get("prompt") or []]
        self._system = None
        if prompt and prompt[0]["role"] == "system":
            self._system = prompt.pop(0)["content"]
        self._turns = []
        for m in prompt:
            self._add("assistant" if m["role"] in ("assistant", "agent") else "user", m["content"])
        self._prompt_turns = [dict(m) for m in self._turns]
        self._text, self._step = ((info.get("completion") or {}).get("prompt") or ""), 1
        self._hints = info
        self._calls = 0
        self.last_scoring = None
        self._used = {}

    def act(self, observation: str, info: dict[str, Any]) -> str:
        scaffold = self._hints.get("completion")
        if self.completion and isinstance(scaffold, dict):
            return self._complete(observation, scaffold)
        if info.get("messages"):  # the exact context the paper's harness sent for this call (the card game)
            self._turns = []
            for m in info["messages"]:
                if m.get("role") == "system":
                    self._system = m["content"]
                else:
                    self._add("assistant" if m.get("role") in ("assistant", "agent") else "user", m["content"])
            return self._reply(info)
        # a new conversation per call: Mind2Web's multiple-choice calls were separate sessions, and WebArena's agent
        # saw no history (each prompt was the few-shot examples and the current observation)
        if info.get("fresh_context") or self._hints.get("history") == "none":
            self._turns = [dict(m) for m in self._prompt_turns]
        kept = info.get("kept_reply")  # the reply as the paper's harness kept it in the history (KG: cut at "Observation:")
        if isinstance(kept, str) and self._turns and self._turns[-1]["role"] == "assistant":
            self._turns[-1] = {"role": "assistant", "content": kept}
        self._add("user", observation)
        return self._reply(info)

    def _complete(self, observation: str, scaffold: dict[str, Any]) -> str:
        """One step of the paper's plain-completion form: the thought after ``"Thought n:"``, then the
        action after ``"Action n:"``, each a completion of the whole text cut at its stop (upstream
        BOLAA's ``ReactAgent``); the env gets ``scaffold["reply"]`` with both."""
        n = self._step
        if n > 1:
            self._text += scaffold.get("observation_prefix", "\n") + observation
        parts = []
        for key in ("thought_prefix", "action_prefix"):
            self._text += scaffold[key].format(n=n)
            settings = {"stop": list(scaffold.get("stop", ["\n"])),
                        "max_new_tokens": int(self.options.get("max_new_tokens") or
                                              scaffold.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)),
                        "temperature": float(self.options.get("temperature") if self.options.get("temperature")
                                             is not None else scaffold.get("temperature", 0.0))}
            self._used.update(settings)
            generation = self.backend.generate(self._text, **settings)
            self.last_generation = generation
            text = generation.text.strip("\n").strip().replace("\n", "")  # upstream's format_step
            for stop in settings["stop"]:
                text = text.split(stop, 1)[0]
            self._text += " " + text
            parts.append(text)
        self._step += 1
        self._used["scaffolding"] = "completion"
        return scaffold["reply"].format(n=n, thought=parts[0], action=parts[1])

    def _reply(self, info: dict[str, Any]) -> str:
        scoring = info.get("choice_scoring") or self._hints.get("choice_scoring")
        self.last_scoring = None
        if scoring and self.chat_template != "server" and can_score(self.backend):
            reply = self._until_it_fits(lambda messages: self._score(messages, scoring))
            if reply is not None:
                self._add("assistant", reply)
                return reply
        generation = self._until_it_fits(self._generate)
        if scoring and self.last_scoring is None:  # (a server found unable to score has set its reason)
            self.last_scoring = {"mode": "generation"}
        self.last_generation = generation
        self.last_usage = {"prompt_tokens": generation.prompt_tokens, "completion_tokens": generation.completion_tokens}
        self._add("assistant", generation.text)
        return generation.text

    @property
    def provenance(self) -> dict[str, Any]:
        """What produced the replies, as used (recorded in every trajectory).

        ``policy``, ``backend``, ``url``, ``model``, ``chat_template``, ``system_prompt`` (the system
        message actually rendered; ``""`` for none; ``None`` before the first call), ``strip_messages``,
        the decoding (``max_new_tokens``, ``temperature``, ``top_p``, ``stop``, ``seed``) and ``scoring``
        (``"logprobs"`` / ``"generation"`` for a choice-scored task, else ``None``).
        """
        backend = getattr(self.backend, "provenance", None)
        out: dict[str, Any] = dict(backend) if isinstance(backend, dict) else {
            "backend": getattr(self.backend, "kind", type(self.backend).__name__), "url": getattr(self.backend, "url", None),
            "model": self.model_name}
        out = {"policy": self.name, **out, "chat_template": self.chat_template}
        out["system_prompt"] = self._used.get("system_prompt", self._system_for_render())
        out["strip_messages"] = self._strip()
        for key, default in (("max_new_tokens", DEFAULT_MAX_NEW_TOKENS), ("temperature", 0.0), ("top_p", None)):
            out[key] = self._used.get(key, self._setting(key, default))
        out["stop"] = self._used.get("stop", self._stops())
        out["seed"] = self.seed
        out["scoring"] = (self.last_scoring or {}).get("mode")
        out["scaffolding"] = self._used.get("scaffolding", "chat")  # "completion": the env's plain-completion form
        return out

    # ------------------------------------------------------------------ helpers
    def _add(self, role: str, content: str) -> None:
        if not self._turns:
            role = "user"  # a conversation starts with the user's turn
        if self._turns and self._turns[-1]["role"] == role:  # keep strict alternation: merge same-role turns
            self._turns[-1] = {"role": role, "content": self._turns[-1]["content"] + "\n\n" + content}
        else:
            self._turns.append({"role": role, "content": content})

    def _setting(self, key: str, default: Any) -> Any:
        if self.options.get(key) is not None:
            return self.options[key]
        hinted = self._hints.get(key)
        return hinted if hinted is not None else default

    def _stops(self) -> list[str]:
        stop = self._setting("stop", ())
        return [stop] if isinstance(stop, str) else list(stop)

    def _strip(self) -> bool:
        """Whether messages are ``strip()``-ed before rendering: AgentBench's harness did (default);
        AgentTuning's general and held-out scripts (GSM8K, MMLU, SciWorld) did not (``info["strip_messages"]``)."""
        return bool(self._setting("strip_messages", True))

    def _system_for_render(self) -> str | None:
        if self._system is not None:  # a system message inside the prompt wins (MMLU's subject sentence)
            return self._system
        if self.system_prompt is not _UNSET:
            return self.system_prompt
        if self.chat_template != "llama2":
            return None  # the model's own template decides
        hinted = self._hints.get("system_prompt")
        return hinted if hinted is not None else templates.AGENTLM_SYSTEM

    def _until_it_fits(self, call: Callable[[list[Message]], Any]) -> Any:
        """``call(messages)`` on the history cut to AgentBench's limit, then shorter while the model says too long."""
        max_kept: int | None = None
        while True:
            messages, _ = filter_messages(self._turns, self.segment_limit, max_kept)
            if len(self._turns) > 1 and len(messages) == 1:  # the newest observation did not fit
                raise ContextLimitExceeded(self._too_long(f"the instruction and the newest turns exceed "
                                                          f"{self.segment_limit} segments"))
            try:
                return call(messages)
            except PromptTooLong as exc:
                if len(messages) <= 3:  # instruction, last reply, newest observation: nothing left to drop
                    raise ContextLimitExceeded(self._too_long(str(exc))) from exc
                max_kept = len(messages) - 1 - 2  # drop the oldest reply / observation pair

    def _prompt(self, messages: list[Message]) -> str | list[Message]:
        system = self._system_for_render()
        if self.chat_template == "llama2":
            self._used["system_prompt"] = system or ""
            return templates.llama2_prompt(messages, system, strip=self._strip())
        self._used["system_prompt"] = system
        full = ([{"role": "system", "content": system}] if system else []) + messages
        return self.render(full) if self.render is not None else full

    def _generate(self, messages: list[Message]) -> Generation:
        prompt = self._prompt(messages)
        seed = None if self.seed is None else self.seed + self._calls
        self._calls += 1
        settings: dict[str, Any] = {"stop": self._stops(),
                                    "max_new_tokens": int(self._setting("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)),
                                    "temperature": float(self._setting("temperature", 0.0))}
        top_p = self._setting("top_p", None)
        if top_p is not None:  # passed only when set, so a backend of one's own needs no top_p argument
            settings["top_p"] = float(top_p)
        self._used.update(settings)
        return self.backend.generate(prompt, seed=seed, **settings)

    def _score(self, messages: list[Message], scoring: dict[str, Any]) -> str | None:
        """The best choice by next-token log-prob, as ``"Answer: X"``; None when the backend turns out unable."""
        prompt = self._prompt(messages)
        assert isinstance(prompt, str)
        choices, continuations = list(scoring["choices"]), list(scoring["continuations"])
        try:
            logprobs = self.backend.choice_logprobs(prompt + scoring.get("answer_prefix", ""), continuations)
        except PromptTooLong:
            raise
        except BackendError as exc:
            if can_score(self.backend):
                raise  # a real failure, not a server without log-probs
            self.last_scoring = {"mode": "generation", "reason": str(exc)}
            return None
        best = max(range(len(choices)), key=lambda i: (logprobs[i], -i))  # ties: the first
        self.last_scoring = {"mode": "logprobs",
                             "logprobs": [None if math.isinf(lp) else lp for lp in logprobs]}  # JSON has no -inf
        count = getattr(self.backend, "count_tokens", None)
        self.last_usage = {"prompt_tokens": count(prompt + scoring.get("answer_prefix", "")) if count else None,
                           "completion_tokens": 0}
        self.last_generation = None
        return f"Answer: {choices[best]}"

    def _too_long(self, why: str) -> str:
        return f"{self.model_name}: the conversation cannot fit the model's context ({why})"


def backend_from_options(backend: str | None = "local", *, model: str | None = None, url: str | None = None,
                         device: str | None = None, stream: bool = False, api_key: str | None = None,
                         timeout: float | None = None) -> Backend:
    """The (cached) backend that the CLI's policy flags name, for every LLM policy factory.

    Raises :class:`PolicySetupError` (naming the fix) for an unknown backend or a missing ``--url``."""
    backend = backend or "local"
    if backend not in BACKENDS:
        raise PolicySetupError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    config: dict[str, Any] = {"model": model}
    if backend == "local":
        if device:
            config["device"] = device
    else:
        if not url:
            raise PolicySetupError(f"the {backend} backend needs --url (e.g. http://localhost:30070)")
        config["url"] = url
        if timeout is not None:
            config["timeout"] = float(timeout)
        if backend == "tgi":
            config["stream"] = bool(stream)
        if backend == "openai" and api_key:
            config["api_key"] = api_key
    return get_backend(backend, **config)


def react(env: Any = None, *, backend: str = "local", model: str | None = None, url: str | None = None,
          temperature: float | None = None, max_new_tokens: int | None = None, top_p: float | None = None,
          seed: int | None = None, chat_template: str | None = None, stop: Sequence[str] | None = None,
          device: str | None = None, stream: bool = False, api_key: str | None = None, timeout: float | None = None,
          completion: bool = False, **ignored: Any) -> ReActPolicy:
    """The policy factory the rollout calls once per episode (the backend is loaded once per process).

    Raises :class:`PolicySetupError` (naming the fix) for an unknown backend, a missing ``--url``, a
    model that is not installed or unknown, or a server that does not answer.
    """
    return ReActPolicy(backend_from_options(backend, model=model, url=url, device=device, stream=stream,
                                            api_key=api_key, timeout=timeout),
                       chat_template=chat_template, max_new_tokens=max_new_tokens,
                       temperature=temperature, top_p=top_p, seed=seed, stop=stop, completion=bool(completion))
