"""The one interface every LLM backend offers the ReAct policy, and the per-process backend cache.

``generate(prompt, stop=..., max_new_tokens=..., temperature=..., top_p=..., seed=...) -> Generation``:
the prompt is a rendered string (the policy applies the chat template, so every backend sees the same
text) or, for servers that apply their own template, a list of chat messages. The returned text
never contains the stop sequence that ended it, whatever the server does with stop sequences.

``choice_logprobs(prompt, continuations) -> list[float]`` (optional; ``can_score`` says whether it
works): the log-probability of the last token of each continuation as the very next token after
``prompt``, as AgentTuning's ``eval_general/eval_mmlu_hf.py`` scores MMLU. ``-inf`` where a server did
not return that token among its top tokens (it then ranks below every token it did return).

Errors: :class:`PolicySetupError` when a backend cannot be made at all (no model, no server: the
message names the fix), :class:`PromptTooLong` for a prompt beyond the context (the policy drops
history), :class:`BackendError` for any other refusal (a server's own configuration limits included).
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Sequence
from typing import Any, Callable, Protocol

from agent_gym.policy import PolicySetupError  # noqa: F401  (raised here; the core's class)

Message = dict[str, str]


@dataclasses.dataclass
class Generation:
    """One reply of the model and what it cost."""

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str = "eos_token"  # eos_token | stop_sequence | length (TGI's words)


class BackendError(RuntimeError):
    """The backend refused or failed a request (the message says what to change)."""


class BackendUnavailable(BackendError):
    """The server could not be reached, or stayed overloaded, through every retry."""


class PromptTooLong(BackendError):
    """The prompt plus ``max_new_tokens`` does not fit the model's context; drop history and retry."""


class Backend(Protocol):
    model_name: str
    #: prompt + new tokens the model accepts; ``None`` when unknown (the server will say)
    context_length: int | None

    def generate(self, prompt: str | Sequence[Message], *, stop: Sequence[str] = (), max_new_tokens: int = 128,
                 temperature: float = 0.0, top_p: float | None = None, seed: int | None = None) -> Generation: ...

    def chat_template(self) -> Callable[[Sequence[Message]], str] | None:
        """Renders messages with the served model's own chat template, when the backend knows it."""
        ...

    @property
    def provenance(self) -> dict[str, Any]:
        """``{"backend": kind, "url": ..., "model": ...}`` for trajectories."""
        ...


class ScoringBackend(Backend, Protocol):
    #: whether :meth:`choice_logprobs` can answer (a server without log-probs cannot)
    can_score: bool

    def choice_logprobs(self, prompt: str, continuations: Sequence[str]) -> list[float]: ...


def can_score(backend: Any) -> bool:
    """Whether ``backend`` offers next-token log-probabilities (MMLU's paper scoring)."""
    return callable(getattr(backend, "choice_logprobs", None)) and bool(getattr(backend, "can_score", False))


# What servers say when the PROMPT does not fit (TGI, vLLM, llama.cpp, OpenAI). A limit on the new
# tokens alone ("`max_new_tokens` must be <= 192") is the server's configuration: dropping history
# cannot fix it, so it is not one of these.
_TOO_LONG = (
    re.compile(r"`inputs` tokens \+ `max_new_tokens` must be <= (?P<limit>\d+)\. Given: (?P<prompt>\d+) `inputs` "
               r"tokens and (?P<new>\d+) `max_new_tokens`"),                                    # TGI
    re.compile(r"`inputs` must have less than \d+ tokens"),                                     # TGI
    re.compile(r"maximum context length is (?P<limit>\d+) tokens.*?(?:\((?P<prompt>\d+) in the messages, "
               r"(?P<new>\d+) in the completion\)|your request has (?P<prompt2>\d+) input tokens)", re.S),  # vLLM
    re.compile(r"context_length_exceeded|exceeds the available context size|prompt is too long|"
               r"input is too long|too many input tokens", re.I),                                 # OpenAI, llama.cpp
)


def is_prompt_too_long(message: str, max_new_tokens: int | None = None) -> bool:
    """Whether a server's refusal means the prompt does not fit the context (so history can be dropped).

    False for limits on the new tokens alone, and for overflows where the new tokens by themselves
    already reach the context limit (no history cut can help: the setting must change).
    """
    for pattern in _TOO_LONG:
        found = pattern.search(message)
        if not found:
            continue
        groups = found.groupdict()
        limit, new = groups.get("limit"), groups.get("new")
        if new is None and max_new_tokens is not None and limit is not None:
            new = str(max_new_tokens)
        if limit is not None and new is not None and int(new) >= int(limit):
            return False
        return True
    return False


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the earliest stop sequence in it, and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


_cache: dict[tuple, Backend] = {}
_cache_lock = threading.Lock()


def get_backend(kind: str = "local", **config: Any) -> Backend:
    """The backend of this process for ``kind`` and ``config``, made on first use.

    Policies are made once per episode and episodes run in threads; the model (or HTTP client)
    must be loaded once and shared, so backends are cached by their full configuration.
    """
    config = {k: v for k, v in config.items() if v is not None}  # unset == default: one backend, not two
    key = (kind, tuple(sorted((k, repr(v)) for k, v in config.items())))
    with _cache_lock:
        found = _cache.get(key)
        if found is None:
            found = _cache[key] = _make(kind, **config)
        return found


BACKENDS = ("local", "tgi", "openai")


def _make(kind: str, **config: Any) -> Backend:
    if kind == "local":
        from agent_gym.policies.local import LocalBackend

        return LocalBackend(**config)
    if kind == "tgi":
        from agent_gym.policies.tgi import TGIBackend

        return TGIBackend(**config)
    if kind == "openai":
        from agent_gym.policies.openai_compat import OpenAIBackend

        return OpenAIBackend(**config)
    raise PolicySetupError(f"unknown backend {kind!r}: use one of {', '.join(BACKENDS)}")
