"""The ``openai`` backend: any OpenAI-compatible server (vLLM, TGI's messages API, llama.cpp, sglang, ...).

A rendered prompt string goes to ``/v1/completions`` (the policy applied the chat template, as
with TGI); a list of messages goes to ``/v1/chat/completions`` (the server applies its own). The
official client retries 429, 5xx and lost connections with backoff; a context-length refusal
becomes :class:`PromptTooLong`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from agent_gym.policies.backend import (BackendError, BackendUnavailable, Generation, Message, PromptTooLong,
                                        cut_at_stop)
from agent_gym.policies.tgi import is_too_long, load_tokenizer

_FINISH = {"stop": "eos_token", "length": "length"}


class OpenAIBackend:
    """``url`` is the API base (``http://host:port`` or ``.../v1``); ``model`` defaults to the server's first."""

    def __init__(self, url: str, model: str | None = None, api_key: str | None = None, timeout: float = 120.0,
                 retries: int = 6):
        import openai

        base = url.rstrip("/")
        self.url = base if base.endswith("/v1") else base + "/v1"
        self.client = openai.OpenAI(base_url=self.url, api_key=api_key or os.environ.get("OPENAI_API_KEY") or "none",
                                    timeout=timeout, max_retries=retries)
        self.timeout = timeout
        if model is None:
            try:
                model = self.client.models.list().data[0].id
            except Exception as exc:
                raise BackendUnavailable(f"cannot list the models of {self.url} ({exc}): is the server up? "
                                         f"or pass --model") from exc
        self.model_name = model
        self.context_length: int | None = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def chat_template(self) -> Callable[[Sequence[Message]], str] | None:
        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = load_tokenizer(self.model_name) or False
        tokenizer = self._tokenizer or None
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            return None  # the policy sends messages; the server applies its template
        lock = self._lock

        def render(messages: Sequence[Message]) -> str:
            with lock:
                return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)

        return render

    def generate(self, prompt: str | Sequence[Message], *, stop: Sequence[str] = (), max_new_tokens: int = 128,
                 temperature: float = 0.0, seed: int | None = None) -> Generation:
        import openai

        common: dict[str, Any] = {"model": self.model_name, "max_tokens": max_new_tokens, "temperature": temperature,
                                  "seed": seed, "stop": list(stop) or None}
        try:
            if isinstance(prompt, str):
                response = self.client.completions.create(prompt=prompt, **common)
                text = response.choices[0].text
            else:
                response = self.client.chat.completions.create(messages=list(prompt), **common)
                text = response.choices[0].message.content or ""
        except openai.APITimeoutError as exc:
            raise BackendError(f"{self.url} did not answer within {self.timeout} s (raise --timeout)") from exc
        except (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError) as exc:
            raise BackendUnavailable(f"{self.url} unreachable or overloaded after retries ({exc}); is the server up?") \
                from exc
        except openai.APIStatusError as exc:
            if is_too_long(str(exc)):
                raise PromptTooLong(str(exc)) from exc
            raise BackendError(f"{self.url} refused the request: {exc}") from exc
        choice = response.choices[0]
        text, stopped = cut_at_stop(text, stop)  # servers differ on whether they echo the stop sequence
        usage = response.usage
        return Generation(text, usage.prompt_tokens if usage else None, usage.completion_tokens if usage else None,
                          "stop_sequence" if stopped else _FINISH.get(choice.finish_reason or "", "eos_token"))
