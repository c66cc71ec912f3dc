"""The ReAct policy: AgentLM (or any chat LLM) playing an env turn by turn.

It keeps the episode's conversation (the env's ``info["prompt"]``, then observation / reply turns),
renders it with the model's chat template, and asks the backend for the next reply, returned whole
(the env parses thought and action). Long histories are cut as AgentBench's evaluation cut them
(:mod:`agent_gym.policies.history`); when the model's context is smaller still, more of the oldest
turns go; when even the instruction and the newest observation cannot fit, the policy raises
:class:`~agent_gym.policy.ContextLimitExceeded` and the episode ends with ``agent_context_limit``.

Decoding follows the paper: greedy, 128 new tokens, no stop sequence, unless the env says
otherwise in ``info`` (``max_new_tokens``, ``temperature``, ``stop``, ``system_prompt``) or the
user does (explicit options win over the env's hints).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

from agent_gym.policies import templates
from agent_gym.policies.backend import Backend, Generation, Message, PromptTooLong, get_backend
from agent_gym.policies.history import SEGMENT_LIMIT, filter_messages
from agent_gym.policy import ContextLimitExceeded

DEFAULT_MAX_NEW_TOKENS = 128
_UNSET: Any = object()


class ReActPolicy:
    """Plays one episode at a time; make one per episode (they share the cached backend)."""

    name = "react"

    def __init__(self, backend: Backend, *, chat_template: str | None = None, max_new_tokens: int | None = None,
                 temperature: float | None = None, seed: int | None = None, stop: Sequence[str] | None = None,
                 system_prompt: str | None = _UNSET, segment_limit: int = SEGMENT_LIMIT):
        self.backend = backend
        self.model_name = backend.model_name
        template = chat_template or templates.default_template(backend.model_name)
        if template not in templates.TEMPLATES:
            raise ValueError(f"chat_template must be one of {', '.join(templates.TEMPLATES)}, got {template!r}")
        self.render: Callable[[Sequence[Message]], str] | None = None
        if template == "auto":
            self.render = backend.chat_template()
            template = "auto" if self.render is not None else "server"
        self.chat_template = template
        self.options = {"max_new_tokens": max_new_tokens, "temperature": temperature, "stop": stop}
        self.system_prompt = system_prompt
        self.seed = seed
        self.segment_limit = segment_limit
        self.last_usage: dict[str, int | None] = {"prompt_tokens": None, "completion_tokens": None}
        self.last_generation: Generation | None = None
        self._system: str | None = None
        self._turns: list[Message] = []
        self._hints: dict[str, Any] = {}

    # ------------------------------------------------------------------ episode
    def reset(self, info: dict[str, Any]) -> None:
        prompt = [dict(m) for m in info.get("prompt") or []]
        self._system = None
        if prompt and prompt[0]["role"] == "system":
            self._system = prompt.pop(0)["content"]
        self._turns = []
        for m in prompt:
            self._add("assistant" if m["role"] in ("assistant", "agent") else "user", m["content"])
        self._hints = info
        self._calls = 0

    def act(self, observation: str, info: dict[str, Any]) -> str:
        self._add("user", observation)
        max_kept: int | None = None
        while True:
            messages, _ = filter_messages(self._turns, self.segment_limit, max_kept)
            if len(self._turns) > 1 and len(messages) == 1:  # the newest observation did not fit
                raise ContextLimitExceeded(self._too_long(f"the instruction and the newest turns exceed "
                                                          f"{self.segment_limit} segments"))
            try:
                generation = self._generate(messages)
                break
            except PromptTooLong as exc:
                if len(messages) <= 3:  # instruction, last reply, newest observation: nothing left to drop
                    raise ContextLimitExceeded(self._too_long(str(exc))) from exc
                max_kept = len(messages) - 1 - 2  # drop the oldest reply / observation pair
        self.last_generation = generation
        self.last_usage = {"prompt_tokens": generation.prompt_tokens, "completion_tokens": generation.completion_tokens}
        self._add("assistant", generation.text)
        return generation.text

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

    def _generate(self, messages: list[Message]) -> Generation:
        prompt: str | list[Message]
        if self.chat_template == "llama2":
            system = self.system_prompt if self.system_prompt is not _UNSET else self._hints.get(
                "system_prompt", templates.AGENTLM_SYSTEM)
            prompt = templates.llama2_prompt(messages, self._system if self._system is not None else system)
        else:
            full = ([{"role": "system", "content": self._system}] if self._system else []) + messages
            prompt = self.render(full) if self.render is not None else full
        stop = self._setting("stop", ())
        seed = None if self.seed is None else self.seed + self._calls
        self._calls += 1
        return self.backend.generate(prompt, stop=[stop] if isinstance(stop, str) else list(stop),
                                     max_new_tokens=int(self._setting("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)),
                                     temperature=float(self._setting("temperature", 0.0)), seed=seed)

    def _too_long(self, why: str) -> str:
        return f"{self.model_name}: the conversation cannot fit the model's context ({why})"


def react(env: Any = None, *, backend: str = "local", model: str | None = None, url: str | None = None,
          temperature: float | None = None, max_new_tokens: int | None = None, seed: int | None = None,
          chat_template: str | None = None, stop: Sequence[str] | None = None, device: str | None = None,
          stream: bool = False, api_key: str | None = None, timeout: float | None = None,
          **ignored: Any) -> ReActPolicy:
    """The policy factory the rollout calls once per episode (the backend is loaded once per process)."""
    backend = backend or "local"
    config: dict[str, Any] = {"model": model}
    if backend == "local":
        if device:
            config["device"] = device
    else:
        if not url:
            raise ValueError(f"the {backend} backend needs --url (e.g. http://localhost:30070)")
        config["url"] = url
        if timeout is not None:
            config["timeout"] = float(timeout)
        if backend == "tgi":
            config["stream"] = bool(stream)
        if backend == "openai" and api_key:
            config["api_key"] = api_key
    return ReActPolicy(get_backend(backend, **config), chat_template=chat_template, max_new_tokens=max_new_tokens,
                       temperature=temperature, seed=seed, stop=stop)
