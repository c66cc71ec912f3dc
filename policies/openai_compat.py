"""The ``openai`` backend: any OpenAI-compatible server (vLLM, TGI's messages API, llama.cpp, sglang, ...).

A rendered prompt string goes to ``/v1/completions`` (the policy applied the chat template, as
with TGI); a list of messages goes to ``/v1/chat/completions`` (the server applies its own). The
server is probed once (``GET /v1/models``, short timeout) when the backend is made: an unreachable
one is a :class:`PolicySetupError`. The official client retries 429, 5xx and lost connections with
backoff; a refusal because the prompt exceeds the context becomes :class:`PromptTooLong`; any other
refusal (a limit on ``max_tokens`` alone, a bad parameter) is a :class:`BackendError` with the message.

MMLU's paper scoring (:meth:`OpenAIBackend.choice_logprobs`) asks ``/v1/completions`` for one token
with ``logprobs=N`` and reads ``top_logprobs`` (token text -> log-prob). Servers with it: vLLM (all
versions; ``--max-logprobs``, default 20, caps N), llama.cpp's server (``n_probs``-backed, recent
builds), sglang, ``agent-gym serve``, OpenAI's legacy completions models (N <= 5). TGI's messages API
has no ``/v1/completions`` logprobs: use the ``tgi`` backend for TGI.

Several servers of one model (``--url A --url B``): one ``OpenAIBackend`` each, with no retries of its own,
under :class:`agent_gym.policies.backend.PooledBackend` (least-loaded first, a failing one out for a backoff).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

from agent_gym.policies.backend import (BackendError, BackendOverloaded, BackendUnavailable, Generation, Message,
                                        PolicySetupError, PromptTooLong, cut_at_stop, is_prompt_too_long,
                                        overload_message)
from agent_gym.policies.tgi import PROBE_TIMEOUT, SCORING_TOP_N, load_tokenizer, match_top_tokens, without_added_bos

# "...logprobs... must be <= 20" / "at most 20" / "maximum allowed: 20" (vLLM, OpenAI)
_LOGPROBS_LIMIT = re.compile(r"logprobs.*?(?:<=|at most|maximum(?: value)?(?: allowed)?(?: is)?:?)\s*(\d+)", re.I | re.S)

_FINISH = {"stop": "eos_token", "length": "length"}


class OpenAIBackend:
    """``url`` is the API base (``http://host:port`` or ``.../v1``); ``model`` defaults to the server's first."""

    kind = "openai"

    def __init__(self, url: str, model: str | None = None, api_key: str | None = None, timeout: float = 120.0,
                 retries: int = 6):
        import openai

        base = url.rstrip("/")
        self.url = base if base.endswith("/v1") else base + "/v1"
        self.client = openai.OpenAI(base_url=self.url, api_key=api_key or os.environ.get("OPENAI_API_KEY") or "none",
                                    timeout=timeout, max_retries=retries)
        self.timeout = timeout
        served = self._probe(api_key or os.environ.get("OPENAI_API_KEY") or "none")
        if model is None:
            if not served:
                raise PolicySetupError(f"{self.url}/models lists no model: pass --model NAME")
            model = served[0]
        self.model_name = model
        self.served_models = served
        self.context_length: int | None = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()
        self.top_n: int | None = None
        self.can_score = True  # until the server shows it has no completions log-probs

    def _probe(self, api_key: str) -> list[str]:
        """``GET /v1/models`` once, with a short timeout; the ids it lists."""
        import openai

        probe = self.client.with_options(timeout=min(PROBE_TIMEOUT, self.timeout), max_retries=0)
        try:
            return [m.id for m in probe.models.list().data]
        except openai.AuthenticationError as exc:
            raise PolicySetupError(f"{self.url} refused the API key ({exc}): pass --policy-arg api_key=... "
                                   f"or set OPENAI_API_KEY") from exc
        except (openai.APIError, ValueError) as exc:
            raise PolicySetupError(f"no OpenAI-compatible server at {self.url} ({type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0][:200]}): start it (vLLM, llama.cpp server, "
                                   f"agent-gym serve) or fix --url") from exc

    @property
    def provenance(self) -> dict[str, Any]:
        return {"backend": self.kind, "url": self.url, "model": self.model_name}

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
                text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
                return without_added_bos(tokenizer, text)

        return render

    def generate(self, prompt: str | Sequence[Message], *, stop: Sequence[str] = (), max_new_tokens: int = 128,
                 temperature: float = 0.0, top_p: float | None = None, seed: int | None = None) -> Generation:
        common: dict[str, Any] = {"model": self.model_name, "max_tokens": max_new_tokens, "temperature": temperature,
                                  "seed": seed, "stop": list(stop) or None}
        if top_p is not None and temperature > 0:
            common["top_p"] = top_p

        def call() -> Any:
            if isinstance(prompt, str):
                return self.client.completions.create(prompt=prompt, **common)
            return self.client.chat.completions.create(messages=list(prompt), **common)

        response = self._call(call, max_new_tokens)
        choice = response.choices[0]
        text = choice.text if isinstance(prompt, str) else (choice.message.content or "")
        text, stopped = cut_at_stop(text, stop)  # servers differ on whether they echo the stop sequence
        usage = response.usage
        return Generation(text, usage.prompt_tokens if usage else None, usage.completion_tokens if usage else None,
                          "stop_sequence" if stopped else _FINISH.get(choice.finish_reason or "", "eos_token"))

    def choice_logprobs(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        """Log-prob of each continuation's last token as the next token, from ``/v1/completions`` ``logprobs``.

        Matched by token text (``top_logprobs`` keys); ``-inf`` where the server did not return it.
        """
        top_n = self.top_n or SCORING_TOP_N
        while True:
            try:
                response = self._call(lambda: self.client.completions.create(
                    model=self.model_name, prompt=prompt, max_tokens=1, temperature=0.0, logprobs=top_n), 1)
                break
            except BackendError as exc:
                limit = _LOGPROBS_LIMIT.search(str(exc))
                if limit and 0 < int(limit.group(1)) < top_n:
                    top_n = int(limit.group(1))
                    continue
                raise
        self.top_n = top_n
        logprobs = response.choices[0].logprobs
        top = (logprobs.top_logprobs or [None])[0] if logprobs is not None else None
        if not top:
            self.can_score = False
            raise BackendError(f"{self.url} returned no logprobs for /v1/completions: the server cannot score "
                               f"choices (vLLM, llama.cpp's server and agent-gym serve can; or use MMLU's "
                               f"scoring='generation')")
        return match_top_tokens([(0, text, float(lp)) for text, lp in top.items()], continuations, None)

    def _call(self, call: Any, max_new_tokens: int | None) -> Any:
        import openai

        try:
            return call()
        except openai.APITimeoutError as exc:
            raise BackendError(f"{self.url} did not answer within {self.timeout} s (raise --timeout)") from exc
        except openai.RateLimitError as exc:  # the client retried it already (max_retries)
            raise BackendOverloaded(overload_message(self.url, exc)) from exc
        except (openai.APIConnectionError, openai.InternalServerError) as exc:
            raise BackendUnavailable(f"{self.url} unreachable or overloaded after retries ({exc}); is the server up?") \
                from exc
        except openai.APIStatusError as exc:
            message = _error_text(exc)
            if is_prompt_too_long(message, max_new_tokens):
                raise PromptTooLong(message) from exc
            raise BackendError(f"{self.url} refused the request (a server limit: change the setting or the "
                               f"server's launch flags): {message}") from exc


def _error_text(exc: Any) -> str:
    """The server's own words: OpenAI's ``{"error": {"message"}}``, vLLM's ``{"message"}``, TGI's ``{"error": str}``."""
    body = getattr(exc, "body", None)
    detail = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        detail = inner.get("message") if isinstance(inner, dict) else inner
        detail = detail or body.get("message")
    elif isinstance(body, str):
        detail = body
    status = getattr(exc, "status_code", None)
    return f"Error code: {status} - {detail}" if detail and str(detail) not in str(exc) else str(exc)
