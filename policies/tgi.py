"""The ``tgi`` backend: the official ``text-generation`` client against a Text-Generation-Inference server.

Works with real TGI (the paper's setup, see ``docker/``) and with ``agent-gym serve``. Overload
(429) and lost connections are retried with exponential backoff; a validation error for a prompt
that is too long becomes :class:`PromptTooLong` (the policy drops history); other refusals and
timeouts raise :class:`BackendError` at once, with the server's message.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from agent_gym.policies.backend import (BackendError, BackendUnavailable, Generation, Message, PromptTooLong,
                                        cut_at_stop)


def is_too_long(message: str) -> bool:
    """TGI's (and vLLM's / llama.cpp's) wording for a prompt that exceeds the context."""
    text = message.lower()
    return any(k in text for k in ("must be <=", "must have less than", "maximum context length", "context length",
                                   "too long", "exceeds the available context", "context size"))


class TGIBackend:
    """``url`` is the server root (``http://host:port``); ``stream`` uses ``/generate_stream`` (SSE)."""

    def __init__(self, url: str, model: str | None = None, stream: bool = False, timeout: float = 120.0,
                 retries: int = 6, backoff: float = 0.5):
        from text_generation import Client

        self.url = url.rstrip("/")
        self.client = Client(self.url, timeout=int(max(1, timeout)))
        self.stream, self.timeout, self.retries, self.backoff = stream, timeout, retries, backoff
        self._info: dict[str, Any] | None = None
        self._tokenizer: Any = None
        self._tokenizer_lock = threading.Lock()
        self._model = model
        info = self.info(required=model is None)
        self.model_name = model or info.get("model_id") or "tgi"
        self.context_length = info.get("max_total_tokens")

    def info(self, required: bool = True) -> dict[str, Any]:
        """The server's ``GET /info`` (model id, limits); cached."""
        if self._info is None:
            import requests

            try:
                self._info = self._with_retries(lambda: requests.get(f"{self.url}/info", timeout=self.timeout).json())
            except BackendError:
                if required:
                    raise
                return {}
        return self._info

    # ------------------------------------------------------------------ templates and counting
    def _load_tokenizer(self) -> Any:
        with self._tokenizer_lock:
            if self._tokenizer is None:
                self._tokenizer = load_tokenizer(self.model_name) or False
            return self._tokenizer or None

    def chat_template(self) -> Callable[[Sequence[Message]], str] | None:
        tokenizer = self._load_tokenizer()
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            return None
        lock = self._tokenizer_lock

        def render(messages: Sequence[Message]) -> str:
            with lock:
                return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)

        return render

    def _count(self, prompt: str) -> int | None:
        tokenizer = self._load_tokenizer()
        if tokenizer is None:
            return None
        with self._tokenizer_lock:
            return len(tokenizer(prompt).input_ids)

    # ------------------------------------------------------------------ generation
    def generate(self, prompt: str | Sequence[Message], *, stop: Sequence[str] = (), max_new_tokens: int = 128,
                 temperature: float = 0.0, seed: int | None = None) -> Generation:
        if not isinstance(prompt, str):
            return self._chat(prompt, stop, max_new_tokens, temperature, seed)
        params: dict[str, Any] = {"max_new_tokens": max_new_tokens, "stop_sequences": list(stop), "seed": seed,
                                  "do_sample": temperature > 0, "temperature": temperature if temperature > 0 else None}
        text, tokens, finish = self._with_retries(
            (lambda: self._stream(prompt, params)) if self.stream else (lambda: self._once(prompt, params)))
        text, stopped = cut_at_stop(text, stop)
        return Generation(text, self._count(prompt), tokens, "stop_sequence" if stopped else finish)

    def _once(self, prompt: str, params: dict[str, Any]) -> tuple[str, int, str]:
        response = self.client.generate(prompt, **params)
        return response.generated_text, response.details.generated_tokens, response.details.finish_reason.value

    def _stream(self, prompt: str, params: dict[str, Any]) -> tuple[str, int, str]:
        pieces: list[str] = []
        for event in self.client.generate_stream(prompt, **params):
            if not event.token.special:
                pieces.append(event.token.text)
            if event.details is not None:  # the last event carries the whole text
                return event.generated_text or "".join(pieces), event.details.generated_tokens, \
                    event.details.finish_reason.value
        raise ConnectionError("the stream ended before its last event")

    def _chat(self, messages: Sequence[Message], stop: Sequence[str], max_new_tokens: int, temperature: float,
              seed: int | None) -> Generation:
        """Messages API (``/v1/chat/completions``): the server applies its template; stops are cut here."""
        from text_generation.types import Message as TGIMessage

        response = self._with_retries(lambda: self.client.chat(
            [TGIMessage(role=m["role"], content=m["content"]) for m in messages], max_tokens=max_new_tokens,
            seed=seed, temperature=temperature if temperature > 0 else None))
        text, stopped = cut_at_stop(response.choices[0].message.content or "", stop)
        usage = response.usage or {}
        return Generation(text, usage.get("prompt_tokens"), usage.get("completion_tokens"),
                          "stop_sequence" if stopped else response.choices[0].finish_reason)

    def _with_retries(self, call: Callable[[], Any]) -> Any:
        import requests
        from text_generation import errors

        retryable = (errors.OverloadedError, errors.RateLimitExceededError, errors.ShardNotReadyError,
                     requests.ConnectionError, requests.exceptions.ChunkedEncodingError, ConnectionError,
                     json.JSONDecodeError)
        last: BaseException | None = None
        for attempt in range(self.retries + 1):
            try:
                return call()
            except requests.Timeout as exc:  # before ConnectionError: ConnectTimeout is both
                raise BackendError(f"TGI at {self.url} did not answer within {self.timeout} s "
                                   f"(raise --timeout, or lower max_new_tokens)") from exc
            except errors.ValidationError as exc:
                if is_too_long(str(exc)):
                    raise PromptTooLong(str(exc)) from exc
                raise BackendError(f"TGI at {self.url} refused the request: {exc}") from exc
            except retryable as exc:
                last = exc
                if attempt < self.retries:
                    time.sleep(self.backoff * 2 ** attempt * (1 + random.random()))
            except (errors.GenerationError, errors.IncompleteGenerationError, errors.BadRequestError,
                    errors.UnknownError, errors.NotFoundError) as exc:
                raise BackendError(f"TGI at {self.url}: {type(exc).__name__}: {exc}") from exc
        raise BackendUnavailable(f"TGI at {self.url} unreachable or overloaded after {self.retries + 1} tries "
                                 f"({type(last).__name__}: {last}); is the server up? (see docker/README.md)")


def load_tokenizer(model: str | None) -> Any:
    """The tokenizer of ``model`` from a local folder or the HF cache, or ``None`` (never downloads here)."""
    from agent_gym.policies import models

    try:
        from transformers import AutoTokenizer

        path = models.resolve(model) if models.is_default(model) else model
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception:  # unknown to this machine: the caller falls back to the server's template
        return None
