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

Several inference instances of one model (AgentTuning's README: more ports in the compose file; its
harnesses spread requests over a range of ports): a ``url`` with several addresses, comma-separated
(the CLI's ``--url`` given several times), makes a :class:`PooledBackend` for ``tgi`` and ``openai``.
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
import threading
import time
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


class BackendOverloaded(BackendUnavailable):
    """The server refused the request as too many (429 / TGI's overloaded) for :data:`OVERLOAD_PATIENCE`
    seconds of retries: more requests in flight (``-c``) than it admits (its ``--max-concurrent-requests``)."""


#: how long (seconds) a request refused as one too many keeps being retried: a full server is busy, not gone
OVERLOAD_PATIENCE = 600.0


def overload_message(url: str, exc: BaseException) -> str:
    return (f"{url} refused requests as too many for {OVERLOAD_PATIENCE:.0f} s ({type(exc).__name__}: {exc}): "
            f"lower -c, or raise the server's limit (TGI and agent-gym serve: --max-concurrent-requests)")


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
    if kind in ("tgi", "openai") and len(split_urls(config.get("url") or "")) > 1:
        return PooledBackend(kind, split_urls(config.pop("url")), **config)
    return _make_one(kind, **config)


def _make_one(kind: str, **config: Any) -> Backend:
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


def split_urls(url: str | Sequence[str]) -> list[str]:
    """The addresses in ``url``: a comma-separated string (the CLI's ``--url A --url B``) or a list; no blanks."""
    parts = url.split(",") if isinstance(url, str) else [u for item in url for u in str(item).split(",")]
    return [u.strip() for u in parts if u.strip()]


#: first wait (seconds) before an instance that failed is tried again; it doubles with each failure in a row
POOL_BACKOFF = 1.0
#: the longest such wait (seconds)
POOL_MAX_BACKOFF = 60.0
#: how long (seconds) a request waits for some instance to come back when every one is out, before it fails
POOL_PATIENCE = 30.0


@dataclasses.dataclass
class _Instance:
    url: str
    backend: Any = None           # made at start, or when it is first tried again after failing at start
    in_flight: int = 0            # requests of this process on it now
    requests: int = 0             # requests it answered
    failures: int = 0             # failures in a row
    down_until: float = 0.0       # time.monotonic() before which it is not tried; inf: never again
    error: str | None = None      # its last failure


class PooledBackend:
    """One backend over several instances of one model (``tgi`` or ``openai`` servers at ``urls``).

    Each call goes to the live instance with the fewest requests of this process in flight (ties: the
    one that answered fewest). An instance that cannot be reached or stays overloaded
    (:class:`BackendUnavailable`: refused or dropped connections, 5xx) is taken out for
    ``POOL_BACKOFF`` seconds, doubling with each failure in a row up to ``POOL_MAX_BACKOFF``, and the
    call goes to another instance: a request whose server died mid-reply is sent again whole, so an
    episode neither fails nor is played twice. When every instance is out, the call waits for the
    first to come back, at most ``patience`` seconds, then raises :class:`BackendUnavailable` naming
    each instance and its error. An instance that refuses a request as one too many
    (:class:`BackendOverloaded`, 429) stays in: the request waits a moment and goes to the least-loaded
    instance again, for up to :data:`OVERLOAD_PATIENCE` seconds. Other errors (a prompt too long, a server's refusal, a timeout) are
    the request's, not the instance's, and are raised as they are.

    At construction every instance is probed; those that answer must serve the same model (else
    :class:`PolicySetupError`), those that do not are out (tried again later); none answering is a
    :class:`PolicySetupError` naming each. Instances are made with no retries of their own: the pool
    retries, on another instance.
    """

    def __init__(self, kind: str, urls: Sequence[str], *, patience: float = POOL_PATIENCE, **config: Any):
        if kind not in ("tgi", "openai"):
            raise PolicySetupError(f"several --url are for the tgi and openai backends, not {kind!r}")
        urls = split_urls(urls)
        if len(set(urls)) != len(urls):
            raise PolicySetupError(f"--url names an instance twice: {', '.join(urls)}")
        self.kind, self.patience = kind, patience
        self._config = {**config, "retries": 0}  # the pool retries, on another instance
        self._instances = [_Instance(u) for u in urls]
        self._lock = threading.Lock()
        self._model_id: str | None = None
        self._started = False
        for inst in self._instances:
            self._open(inst)
        self._started = True
        made = [i for i in self._instances if i.backend is not None]
        if not made:
            raise PolicySetupError("no inference instance answers: " + "; ".join(
                f"{i.url}: {i.error}" for i in self._instances))
        first = made[0].backend
        self.model_name: str = first.model_name
        self.context_length: int | None = min((i.backend.context_length for i in made
                                               if i.backend.context_length), default=None)

    # ------------------------------------------------------------------ instances
    @staticmethod
    def _identity(backend: Any) -> str:
        """What must be equal across instances: the served model (TGI's ``model_id``), else the model name."""
        info = backend.info() if callable(getattr(backend, "info", None)) else {}
        return str(info.get("model_id") or backend.model_name)

    def _open(self, inst: _Instance) -> bool:
        """Make ``inst``'s backend (probing its server); False, with the instance taken out, when it fails."""
        try:
            backend = _make_one(self.kind, url=inst.url, **self._config)
        except PolicySetupError as exc:
            self._failed(inst, str(exc))
            return False
        identity = self._identity(backend)
        with self._lock:
            self._model_id = self._model_id or identity
            if identity != self._model_id:
                message = (f"{inst.url} serves {identity}, the other instances {self._model_id}: every --url must "
                           f"serve the same model")
                if not self._started:
                    raise PolicySetupError(message)
                inst.down_until, inst.error = math.inf, message  # came up later with another model: never used
                return False
            inst.backend = backend
        return True

    def _failed(self, inst: _Instance, error: str) -> None:
        with self._lock:
            inst.failures += 1
            inst.error = error
            inst.down_until = time.monotonic() + min(POOL_MAX_BACKOFF, POOL_BACKOFF * 2 ** (inst.failures - 1))

    def _take(self, deadline: float) -> _Instance:
        """The live instance with the fewest requests in flight (counted in); waits while every one is out."""
        while True:
            with self._lock:
                now = time.monotonic()
                live = [i for i in self._instances if i.down_until <= now]
                if live:
                    inst = min(live, key=lambda i: (i.in_flight, i.requests))
                    inst.in_flight += 1
                    return inst
                back = min(i.down_until for i in self._instances)
            if back == math.inf or back > deadline:
                raise BackendUnavailable(
                    f"every inference instance is down ({len(self._instances)}: " + "; ".join(
                        f"{i.url}: {i.error}" for i in self._instances) + "): start them again (see docker/README.md) "
                    "and resume the run")
            time.sleep(max(0.0, back - now))

    def _call(self, call: Callable[[Any], Any]) -> Any:
        deadline = time.monotonic() + self.patience
        busy_until, busy = time.monotonic() + OVERLOAD_PATIENCE, 0
        while True:
            inst = self._take(deadline)
            try:
                if inst.backend is None and not self._open(inst):
                    continue
                result = call(inst.backend)
            except BackendOverloaded as exc:  # a full instance is busy, not down: wait a little and try again
                busy += 1
                if time.monotonic() > busy_until:
                    raise BackendOverloaded(overload_message(self.url, exc)) from exc
                time.sleep(min(5.0, 0.2 * 2 ** min(busy, 5)) * (0.5 + random.random()))
                deadline = time.monotonic() + self.patience
                continue
            except BackendUnavailable as exc:  # the instance's fault: out for a while, the request goes elsewhere
                self._failed(inst, str(exc))
                continue
            finally:
                with self._lock:
                    inst.in_flight -= 1
            with self._lock:
                inst.requests += 1
                inst.failures, inst.error = 0, None
                inst.down_until = min(inst.down_until, time.monotonic())  # it answers: in, whatever failed before
            return result

    def instances(self) -> list[dict[str, Any]]:
        """Each instance's state: ``url``, ``up``, ``in_flight``, ``requests`` answered, ``failures`` in a row, ``error``."""
        with self._lock:
            now = time.monotonic()
            return [{"url": i.url, "up": i.down_until <= now, "in_flight": i.in_flight, "requests": i.requests,
                     "failures": i.failures, "error": i.error} for i in self._instances]

    # ------------------------------------------------------------------ the backend interface
    @property
    def url(self) -> str:
        return ",".join(i.url for i in self._instances)

    @property
    def provenance(self) -> dict[str, Any]:
        made = next(i.backend for i in self._instances if i.backend is not None)
        return {**made.provenance, "url": self.url, "urls": [i.url for i in self._instances]}

    @property
    def can_score(self) -> bool:
        return all(can_score(i.backend) for i in self._instances if i.backend is not None)

    def info(self) -> dict[str, Any]:
        made = next(i.backend for i in self._instances if i.backend is not None)
        return made.info() if callable(getattr(made, "info", None)) else {}

    def chat_template(self) -> Callable[[Sequence[Message]], str] | None:
        made = next(i.backend for i in self._instances if i.backend is not None)
        return made.chat_template()

    def generate(self, prompt: str | Sequence[Message], *, stop: Sequence[str] = (), max_new_tokens: int = 128,
                 temperature: float = 0.0, top_p: float | None = None, seed: int | None = None) -> Generation:
        return self._call(lambda b: b.generate(prompt, stop=stop, max_new_tokens=max_new_tokens,
                                               temperature=temperature, top_p=top_p, seed=seed))

    def choice_logprobs(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        return self._call(lambda b: b.choice_logprobs(prompt, continuations))
