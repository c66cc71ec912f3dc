"""The one interface every LLM backend offers the ReAct policy, and the per-process backend cache.

``generate(prompt, stop=..., max_new_tokens=..., temperature=..., seed=...) -> Generation``: the
prompt is a rendered string (the policy applies the chat template, so every backend sees the same
text) or, for servers that apply their own template, a list of chat messages. The returned text
never contains the stop sequence that ended it, whatever the server does with stop sequences.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from typing import Any, Callable, Protocol

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
                 temperature: float = 0.0, seed: int | None = None) -> Generation: ...

    def chat_template(self) -> Callable[[Sequence[Message]], str] | None:
        """Renders messages with the served model's own chat template, when the backend knows it."""
        ...


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
    raise ValueError(f"unknown backend {kind!r}: use local, tgi or openai")
