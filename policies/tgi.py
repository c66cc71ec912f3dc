"""The ``tgi`` backend: the official ``text-generation`` client against a Text-Generation-Inference server.

Works with real TGI (the paper's setup, see ``docker/``) and with ``agent-gym serve``. The server is
probed once (``GET /info``, short timeout) when the backend is made: an unreachable one is a
:class:`PolicySetupError` before any episode. Lost connections are retried ``retries`` times with
exponential backoff, overload (429: more requests than the server admits) for up to
:data:`~agent_gym.policies.backend.OVERLOAD_PATIENCE` seconds; a validation error for a prompt that is too long becomes :class:`PromptTooLong`
(the policy drops history); other refusals (the server's own limits such as "`max_new_tokens` must
be <= 192") and timeouts raise :class:`BackendError` at once, with the server's message.

MMLU's paper scoring (:meth:`TGIBackend.choice_logprobs`) asks for one new token with
``top_n_tokens`` (TGI >= 1.0.3; the launcher's ``--max-top-n-tokens`` caps it, default 5) and
reads the continuations' log-probs from ``details.top_tokens``. Tokens are matched by id when the
model's tokenizer is on this machine (or the server has ``POST /tokenize``, TGI >= 1.4), else by text.

Several instances (``--url A --url B``, AgentTuning's several compose services): ``get_backend`` makes one
``TGIBackend`` per instance, with no retries of its own, under :class:`agent_gym.policies.backend.PooledBackend`,
which sends each request to the least-loaded live instance and takes a failing one out for a backoff.
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from agent_gym.policies.backend import (OVERLOAD_PATIENCE, BackendError, BackendOverloaded, BackendUnavailable,
                                        Generation, Message, PolicySetupError, PromptTooLong, cut_at_stop,
                                        is_prompt_too_long, overload_message)

#: how long the probe at construction waits for the server (seconds)
PROBE_TIMEOUT = 5.0
#: top tokens asked for when scoring choices; a server that allows fewer says so and is asked again
SCORING_TOP_N = 20
_TOP_N_LIMIT = re.compile(r"`top_n_tokens` must be >= 0 and <= (\d+)")


class TGIBackend:
    """``url`` is the server root (``http://host:port``); ``stream`` uses ``/generate_stream`` (SSE)."""

    kind = "tgi"

    def __init__(self, url: str, model: str | None = None, stream: bool = False, timeout: float = 120.0,
                 retries: int = 6, backoff: float = 0.5):
        from text_generation import Client

        self.url = url.rstrip("/")
        self.client = Client(self.url, timeout=int(max(1, timeout)))
        self.stream, self.timeout, self.retries, self.backoff = stream, timeout, retries, backoff
        self._tokenizer: Any = None
        self._tokenizer_lock = threading.Lock()
        self._info = self._probe()
        self.model_name = model or self._info.get("model_id") or "tgi"
        self.context_length = self._info.get("max_total_tokens")
        #: ``None`` until the first scoring call finds out what the server allows
        self.top_n: int | None = None
        self.can_score = True  # TGI >= 1.0.3; an older server's refusal turns this off

    def _probe(self) -> dict[str, Any]:
        """``GET /info`` once, with a short timeout: a server that is not there stops the run before it starts."""
        import requests

        try:
            response = requests.get(f"{self.url}/info", timeout=min(PROBE_TIMEOUT, self.timeout))
            response.raise_for_status()
            return response.json()
        except (requests.RequestException, ValueError) as exc:
            raise PolicySetupError(
                f"no TGI server at {self.url} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}): start it "
                f"(docker compose -f docker/agentlm-7b.yml up -d, see docker/README.md; or agent-gym serve) or "
                f"fix --url") from exc

    def info(self) -> dict[str, Any]:
        """The server's ``GET /info`` (model id, limits), as probed when the backend was made."""
        return self._info

    @property
    def provenance(self) -> dict[str, Any]:
        return {"backend": self.kind, "url": self.url, "model": self.model_name,
                "server": {k: self._info.get(k) for k in ("model_id", "model_sha", "version", "router", "sha",
                                                          "max_total_tokens") if self._info.get(k) is not None}}

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
                text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
                return without_added_bos(tokenizer, text)

        return render

    def _count(self, prompt: str) -> int | None:
        tokenizer = self._load_tokenizer()
        if tokenizer is None:
            return None
        with self._tokenizer_lock:
            return len(tokenizer(prompt).input_ids)

    # ------------------------------------------------------------------ generation
    def generate(self, prompt: str | Sequence[Message], *, stop: Sequence[str] = (), max_new_tokens: int = 128,
                 temperature: float = 0.0, top_p: float | None = None, seed: int | None = None) -> Generation:
        sampling = temperature > 0
        top_p = top_p if sampling and top_p is not None and 0 < top_p < 1 else None  # TGI: 0 < top_p < 1
        if not isinstance(prompt, str):
            return self._chat(prompt, stop, max_new_tokens, temperature, top_p, seed)
        params: dict[str, Any] = {"max_new_tokens": max_new_tokens, "stop_sequences": list(stop), "seed": seed,
                                  "do_sample": sampling, "temperature": temperature if sampling else None,
                                  "top_p": top_p}
        text, tokens, finish = self._with_retries(
            (lambda: self._stream(prompt, params)) if self.stream else (lambda: self._once(prompt, params)),
            max_new_tokens)
        text, stopped = cut_at_stop(text, stop)
        return Generation(text, self._count(prompt), tokens, "stop_sequence" if stopped else finish)

    # ------------------------------------------------------------------ scoring (MMLU's paper mode)
    def choice_logprobs(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        """Log-prob of each continuation's last token as the next token, from TGI's ``top_n_tokens``.

        ``-inf`` for a continuation whose token is not among the top tokens the server returned.
        """
        from text_generation import errors

        wanted = self._token_ids(continuations)
        top_n = self.top_n or SCORING_TOP_N
        while True:
            try:
                response = self._with_retries(lambda: self.client.generate(
                    prompt, max_new_tokens=1, do_sample=False, top_n_tokens=top_n), 1)
                break
            except BackendError as exc:
                cause = exc.__cause__
                limit = _TOP_N_LIMIT.search(str(exc))
                if limit and int(limit.group(1)) < top_n and int(limit.group(1)) > 0:
                    top_n = int(limit.group(1))  # this server's --max-top-n-tokens
                    continue
                if isinstance(cause, errors.ValidationError) and "top_n_tokens" in str(exc):
                    self.can_score = False  # --max-top-n-tokens 0, or a TGI before 1.0.3
                raise
        self.top_n = top_n
        top = (response.details.top_tokens or [[]])[0] if response.details else []
        if not top:
            self.can_score = False
            raise BackendError(f"TGI at {self.url} returned no top_n_tokens: it needs TGI >= 1.0.3 with "
                               f"--max-top-n-tokens > 0 (or use MMLU's scoring='generation')")
        return match_top_tokens([(t.id, t.text, t.logprob) for t in top], continuations, wanted)

    def _token_ids(self, continuations: Sequence[str]) -> list[int] | None:
        """Each continuation's last token id, from the local tokenizer or the server's ``/tokenize``; else None."""
        tokenizer = self._load_tokenizer()
        if tokenizer is not None:
            with self._tokenizer_lock:
                return [int(tokenizer(c, add_special_tokens=False).input_ids[-1]) for c in continuations]
        import requests

        ids = []
        for c in continuations:
            try:
                response = requests.post(f"{self.url}/tokenize", json={"inputs": c, "parameters": {}},
                                         timeout=min(PROBE_TIMEOUT, self.timeout))
                tokens = response.json() if response.ok else None
            except (requests.RequestException, ValueError):
                tokens = None
            if not isinstance(tokens, list) or not tokens:
                return None  # no /tokenize (TGI < 1.4): match by text
            ids.append(int(tokens[-1]["id"]))
        return ids

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
              top_p: float | None, seed: int | None) -> Generation:
        """Messages API (``/v1/chat/completions``): the server applies its template; stops are cut here."""
        from text_generation.types import Message as TGIMessage

        response = self._with_retries(lambda: self.client.chat(
            [TGIMessage(role=m["role"], content=m["content"]) for m in messages], max_tokens=max_new_tokens,
            seed=seed, temperature=temperature if temperature > 0 else None, top_p=top_p), max_new_tokens)
        text, stopped = cut_at_stop(response.choices[0].message.content or "", stop)
        usage = response.usage or {}
        return Generation(text, usage.get("prompt_tokens"), usage.get("completion_tokens"),
                          "stop_sequence" if stopped else response.choices[0].finish_reason)

    def _with_retries(self, call: Callable[[], Any], max_new_tokens: int | None = None) -> Any:
        import requests
        from text_generation import errors

        overloaded = (errors.OverloadedError, errors.RateLimitExceededError)
        retryable = (errors.ShardNotReadyError, requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                     ConnectionError, json.JSONDecodeError)
        last: BaseException | None = None
        attempt, busy, busy_until = 0, 0, time.monotonic() + OVERLOAD_PATIENCE
        while True:
            try:
                return call()
            except requests.Timeout as exc:  # before ConnectionError: ConnectTimeout is both
                raise BackendError(f"TGI at {self.url} did not answer within {self.timeout} s "
                                   f"(raise --timeout, or lower max_new_tokens)") from exc
            except errors.ValidationError as exc:
                if is_prompt_too_long(str(exc), max_new_tokens):
                    raise PromptTooLong(str(exc)) from exc
                raise BackendError(f"TGI at {self.url} refused the request (a server limit: change the setting "
                                   f"or the server's launch flags): {exc}") from exc
            except overloaded as exc:  # busy, not gone: retried for OVERLOAD_PATIENCE seconds, not `retries` times
                busy += 1
                if self.retries == 0 or time.monotonic() > busy_until:  # retries=0: a pool picks another instance
                    raise BackendOverloaded(overload_message(f"TGI at {self.url}", exc)) from exc
                time.sleep(min(5.0, self.backoff * 2 ** min(busy, 4)) * (0.5 + random.random()))
            except retryable as exc:
                last = exc
                if attempt >= self.retries:
                    break
                time.sleep(self.backoff * 2 ** attempt * (1 + random.random()))
                attempt += 1
            except (errors.GenerationError, errors.IncompleteGenerationError, errors.BadRequestError,
                    errors.UnknownError, errors.NotFoundError) as exc:
                raise BackendError(f"TGI at {self.url}: {type(exc).__name__}: {exc}") from exc
        raise BackendUnavailable(f"TGI at {self.url} unreachable after {self.retries + 1} tries "
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


def without_added_bos(tokenizer: Any, text: str) -> str:
    """``text`` without a leading BOS that the server's tokenizer will add again (no ``[bos, bos, ...]``).

    A chat template that emits BOS renders it as text; TGI and vLLM's completions route tokenize
    with special tokens, so a tokenizer that adds BOS itself would double it. The server runs the
    same tokenizer as ours (loaded by the model's name), so we check what ours adds.
    """
    bos = getattr(tokenizer, "bos_token", None)
    if not bos or not text.startswith(bos):
        return text
    ids = tokenizer("x").input_ids
    return text[len(bos):] if ids and ids[0] == tokenizer.bos_token_id else text


def match_top_tokens(top: Sequence[tuple[int, str, float]], continuations: Sequence[str],
                     ids: Sequence[int] | None) -> list[float]:
    """Each continuation's log-prob among a server's top tokens ``(id, text, logprob)``; ``-inf`` if absent.

    By id when ``ids`` are known; else by exact text, and when no continuation matches exactly, by
    text without surrounding spaces (servers differ on whether a token's text keeps its leading space).
    """
    if ids is not None:
        by_id = {int(i): lp for i, _, lp in top}
        return [float(by_id.get(int(i), -math.inf)) for i in ids]
    by_text: dict[str, float] = {}
    for _, text, lp in top:
        by_text[text] = max(lp, by_text.get(text, -math.inf))
    if any(c in by_text for c in continuations):
        return [float(by_text.get(c, -math.inf)) for c in continuations]
    stripped: dict[str, float] = {}
    for text, lp in by_text.items():
        stripped[text.strip()] = max(lp, stripped.get(text.strip(), -math.inf))
    return [float(stripped.get(c.strip(), -math.inf)) for c in continuations]
