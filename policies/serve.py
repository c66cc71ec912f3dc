"""``agent-gym serve``: a Text-Generation-Inference-compatible server backed by the local backend.

For small models on one machine and for the test suite: the real ``text-generation`` client, the
OpenAI client and our ``tgi`` / ``openai`` backends talk to it exactly as to TGI. Routes (TGI's
wire format): ``POST /`` (JSON list, or SSE with ``"stream": true``), ``/generate``,
``/generate_stream`` (SSE), ``POST /tokenize``, ``GET /info``, ``/health``; OpenAI's ``/v1/completions``,
``/v1/chat/completions`` and ``/v1/models``. Errors are TGI's ``{"error", "error_type"}`` with
422 (validation), 429 (overloaded: more than ``--max-concurrent-requests`` in flight) and 500.
Requests in flight are decoded together with continuous batching (they join and leave the batch
between tokens, ``--max-batch-size``), and prompts reuse the KV of cached prefixes
(``--prefix-cache-mb``), as in the ``local`` backend (:mod:`agent_gym.policies.local`).
OpenAI's routes stream with ``"stream": true`` (SSE chunks, then ``data: [DONE]``).

Log-probs as both protocols give them, so MMLU's paper scoring works against this server: TGI's
``top_n_tokens`` (``details.top_tokens``, and each token's ``logprob``) and OpenAI's completions
``logprobs=N`` (``top_logprobs``), both capped by ``--max-top-n-tokens`` (default 20: vLLM's
``--max-logprobs`` default; TGI's launcher defaults to 5).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

from agent_gym.policies.backend import PromptTooLong, cut_at_stop

VERSION = "agent-gym-serve/0.1"


class ServeError(Exception):
    """An error answered as TGI does: HTTP status, message, ``error_type``."""

    def __init__(self, status: int, message: str, error_type: str):
        super().__init__(message)
        self.status, self.error_type = status, error_type


def validation(message: str) -> ServeError:
    return ServeError(422, f"Input validation error: {message}", "validation")


class Server:
    """The model, its batcher and the request limits; the routes are methods."""

    def __init__(self, args: argparse.Namespace):
        from agent_gym.policies.local import Batcher, LocalModel, prefix_cache_bytes

        self.model = LocalModel(args.model, device=args.device, dtype=args.dtype,
                                context_length=args.max_total_tokens)
        self.batcher = Batcher(self.model, max_batch=args.max_batch_size,
                               prefix_cache_bytes=prefix_cache_bytes(args.prefix_cache_mb),
                               prefill_chunk=args.prefill_chunk)
        self.max_total = self.model.context_length
        self.max_input = args.max_input_tokens or self.max_total - 1
        self.max_concurrent = args.max_concurrent_requests
        self.max_stop = args.max_stop_sequences
        self.max_top_n = args.max_top_n_tokens
        self.in_flight = 0

    # ------------------------------------------------------------------ app
    def app(self) -> Any:
        from aiohttp import web

        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._errors])
        app.router.add_get("/health", self.health)
        app.router.add_get("/info", self.info)
        app.router.add_post("/", self.root)
        app.router.add_post("/generate", self.generate)
        app.router.add_post("/generate_stream", self.generate_stream)
        app.router.add_post("/tokenize", self.tokenize)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        return app

    @staticmethod
    def _json_error(exc: ServeError) -> Any:
        """TGI's error body, on every route: TGI answers its OpenAI-compatible ``/v1/`` routes so too, and the
        ``text-generation`` client's messages API reads it (a prompt too long must stay a validation error)."""
        from aiohttp import web

        return web.json_response({"error": str(exc), "error_type": exc.error_type}, status=exc.status)

    @property
    def _errors(self) -> Any:
        from aiohttp import web

        @web.middleware
        async def errors(request: Any, handler: Any) -> Any:
            try:
                return await handler(request)
            except ServeError as exc:
                return self._json_error(exc)
            except web.HTTPException:
                raise
            except Exception as exc:  # a bug or a model failure: TGI's generation error, the server lives on
                return self._json_error(ServeError(500, f"{type(exc).__name__}: {exc}", "generation"))

        return errors

    # ------------------------------------------------------------------ TGI routes
    async def health(self, request: Any) -> Any:
        from aiohttp import web

        return web.Response(status=200)

    async def info(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response({
            "model_id": self.model.name, "model_sha": None, "model_dtype": str(self.model.model.dtype),
            "model_device_type": str(self.model.device), "model_pipeline_tag": "text-generation",
            "max_concurrent_requests": self.max_concurrent, "max_best_of": 1, "max_stop_sequences": self.max_stop,
            "max_top_n_tokens": self.max_top_n,
            "max_input_tokens": self.max_input, "max_input_length": self.max_input,
            "max_total_tokens": self.max_total, "max_batch_size": self.batcher.max_batch,
            "validation_workers": 1, "version": VERSION, "router": "agent-gym serve",
        })

    async def root(self, request: Any) -> Any:
        body = await _body(request)
        if body.get("stream"):
            return await self._stream(request, body)
        result = await self._generate(body)
        from aiohttp import web

        return web.json_response([result])

    async def generate(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response(await self._generate(await _body(request)))

    async def generate_stream(self, request: Any) -> Any:
        return await self._stream(request, await _body(request))

    async def tokenize(self, request: Any) -> Any:
        """TGI's ``/tokenize`` (>= 1.4): the tokens the model sees for ``inputs``, with their character spans."""
        from aiohttp import web

        body = await _body(request)
        inputs = body.get("inputs")
        if not isinstance(inputs, str) or not inputs:
            raise validation("`inputs` cannot be empty")
        ids = self.model.encode(inputs)
        return web.json_response([{"id": i, "text": self.model.token_text(i)} for i in ids])

    # ------------------------------------------------------------------ OpenAI routes
    async def models(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response({"object": "list", "data": [
            {"id": self.model.name, "object": "model", "created": 0, "owned_by": "agent-gym"}]})

    async def completions(self, request: Any) -> Any:
        from aiohttp import web

        body = await _body(request)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise validation("`prompt` must be one string")
        params = _openai_params(body)
        logprobs = body.get("logprobs")
        if logprobs is not None:
            if not isinstance(logprobs, int) or isinstance(logprobs, bool) or not 0 <= logprobs <= self.max_top_n:
                raise validation(f"`logprobs` must be an integer >= 0 and <= {self.max_top_n}. Given: {logprobs}")
            params["top_n_tokens"] = logprobs
            params["logprobs"] = True
        if body.get("stream"):
            if logprobs is not None:
                raise validation("`logprobs` is not streamed by this server: ask without `stream`")
            return await self._openai_stream(request, body, prompt, params, chat=False)
        req, _ = await self._run(prompt, params)
        text = _openai_text(req)
        return web.json_response({
            "id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": self.model.name, "system_fingerprint": VERSION,
            "choices": [{"index": 0, "text": text, "logprobs": self._openai_logprobs(req) if logprobs is not None
                         else None, "finish_reason": _openai_finish(req)}],
            "usage": _usage(req)})

    def _openai_logprobs(self, req: Any) -> dict[str, Any]:
        """OpenAI's legacy completions ``logprobs`` object for the generated tokens."""
        texts = [self.model.token_text(t) for t in req.tokens]
        offsets, at = [], 0
        for text in texts:
            offsets.append(at)
            at += len(text)
        top = []
        for step in req.top_tokens:
            entry: dict[str, float] = {}
            for i, lp in step:  # distinct ids can share a text: keep the likelier, as a dict must
                text = self.model.token_text(i)
                entry[text] = max(lp, entry.get(text, lp))
            top.append(entry)
        return {"tokens": texts, "token_logprobs": list(req.token_logprobs), "top_logprobs": top or None,
                "text_offset": offsets}

    async def chat_completions(self, request: Any) -> Any:
        from aiohttp import web

        body = await _body(request)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise validation("`messages` must be a non-empty list")
        try:
            prompt = self.model.render([{"role": m["role"], "content": m.get("content") or ""} for m in messages])
        except (KeyError, TypeError, ValueError) as exc:
            raise validation(f"bad `messages`: {exc}") from exc
        params = _openai_params(body)
        logprobs, top = body.get("logprobs"), body.get("top_logprobs")
        if logprobs not in (None, True, False):
            raise validation(f"`logprobs` must be true or false. Given: {logprobs!r}")
        if top is not None:
            if not logprobs:
                raise validation("`top_logprobs` needs `logprobs: true`")
            if not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= self.max_top_n:
                raise validation(f"`top_logprobs` must be an integer >= 0 and <= {self.max_top_n}. Given: {top!r}")
        if logprobs:
            params["logprobs"], params["top_n_tokens"] = True, top or 0
        if body.get("stream"):
            if logprobs:
                raise validation("`logprobs` is not streamed by this server: ask without `stream`")
            return await self._openai_stream(request, body, prompt, params, chat=True)
        req, _ = await self._run(prompt, params)
        text = _openai_text(req)
        return web.json_response({
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": self.model.name, "system_fingerprint": VERSION,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": self._chat_logprobs(req) if logprobs else None,
                         "finish_reason": _openai_finish(req)}],
            "usage": _usage(req)})

    def _chat_logprobs(self, req: Any) -> dict[str, Any]:
        """OpenAI's chat ``logprobs`` object: ``content``, one entry per generated token (its text, log-prob,
        UTF-8 bytes and ``top_logprobs``, the most likely ``top_logprobs`` tokens at that position)."""
        def entry(token: int, logprob: float) -> dict[str, Any]:
            text = self.model.token_text(token)
            return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8", errors="replace"))}

        tops = req.top_tokens if req.top_n else [[] for _ in req.tokens]
        return {"content": [{**entry(t, lp), "top_logprobs": [entry(i, x) for i, x in step]}
                            for t, lp, step in zip(req.tokens, req.token_logprobs, tops)]}

    async def _openai_stream(self, request: Any, body: dict[str, Any], prompt: str, params: dict[str, Any],
                             chat: bool) -> Any:
        """OpenAI's streaming form (SSE): ``chat.completion.chunk`` deltas (or ``text_completion`` pieces), then
        a chunk with ``finish_reason``, the usage chunk if ``stream_options.include_usage``, and ``data: [DONE]``.

        Text that could be the start of a stop sequence is held back until the next tokens tell; the stop
        sequence itself is never sent (as OpenAI drops it).
        """
        req = self._request(prompt, params)
        kind = "chat.completion.chunk" if chat else "text_completion"
        head = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}", "object": kind,
                "created": int(time.time()), "model": self.model.name, "system_fingerprint": VERSION}

        def chunk(text: str | None, finish: str | None = None, first: bool = False) -> dict[str, Any]:
            if chat:
                delta = ({"role": "assistant", "content": ""} if first else {} if text is None else {"content": text})
                choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
            return {**head, "choices": [choice]}

        async def write(response: Any, events: asyncio.Queue) -> None:
            if chat:
                await _sse(response, chunk(None, first=True), space=True)
            sent = 0
            while await events.get() is not None:
                safe = _releasable(req.text, req.stop)
                if len(safe) > sent:
                    await _sse(response, chunk(safe[sent:]), space=True)
                    sent = len(safe)
            if req.error is not None:
                await _sse(response, {"error": {"message": f"{type(req.error).__name__}: {req.error}",
                                                "type": "generation", "code": 500}}, space=True)
            else:
                rest = _openai_text(req)[sent:]
                if rest:
                    await _sse(response, chunk(rest), space=True)
                await _sse(response, chunk(None, _openai_finish(req)), space=True)
                if (body.get("stream_options") or {}).get("include_usage"):
                    await _sse(response, {**head, "choices": [], "usage": _usage(req)}, space=True)
            await response.write(b"data: [DONE]\n\n")

        return await self._event_stream(request, req, write)

    # ------------------------------------------------------------------ generation
    def _request(self, inputs: Any, params: dict[str, Any]) -> Any:
        """Validate as TGI's router does; return a ready :class:`Request`."""
        from agent_gym.policies.local import Request

        if not isinstance(inputs, str) or not inputs:
            raise validation("`inputs` cannot be empty")
        max_new = params.get("max_new_tokens")
        max_new = 20 if max_new is None else max_new
        if not isinstance(max_new, int) or isinstance(max_new, bool):
            raise validation(f"`max_new_tokens` must be a whole number, not {type(max_new).__name__}. Given: {max_new!r}")
        if max_new <= 0:
            raise validation("`max_new_tokens` must be strictly positive")
        temperature = params.get("temperature")
        if temperature is not None and (not isinstance(temperature, (int, float)) or isinstance(temperature, bool)
                                        or not math.isfinite(temperature) or temperature <= 0):
            raise validation("`temperature` must be strictly positive")
        stop = params.get("stop") or []
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise validation("`stop` must be a list of strings")
        if len(stop) > self.max_stop:
            raise validation(f"`stop` supports up to {self.max_stop} stop sequences. Given: {len(stop)}")
        seed = params.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2 ** 64):
            raise validation("`seed` must be a whole number from 0 to 2^64 - 1")  # torch's generator takes 64 bits
        top_p = params.get("top_p")
        if top_p is not None and (not isinstance(top_p, (int, float)) or not 0.0 < top_p < 1.0):
            raise validation("`top_p` must be > 0.0 and < 1.0")
        top_n = params.get("top_n_tokens") or 0
        if not isinstance(top_n, int) or not 0 <= top_n <= self.max_top_n:
            raise validation(f"`top_n_tokens` must be >= 0 and <= {self.max_top_n}. Given: {top_n}")
        truncate = params.get("truncate")
        if truncate is not None and (not isinstance(truncate, int) or isinstance(truncate, bool) or truncate <= 0):
            raise validation(f"`truncate` must be a whole number > 0. Given: {truncate!r}")
        ids = self.model.encode(inputs)
        if truncate is not None:
            ids = ids[-truncate:]  # TGI keeps the last `truncate` tokens of the input
        if len(ids) > self.max_input:
            raise validation(f"`inputs` must have less than {self.max_input} tokens. Given: {len(ids)}")
        try:
            self.model.check_fits(len(ids), max_new)
        except PromptTooLong as exc:
            raise ServeError(422, str(exc), "validation") from exc
        sampling = bool(params.get("do_sample")) or temperature is not None or top_p is not None
        return Request(ids, max_new, tuple(stop), float(temperature or 1.0) if sampling else 0.0, seed,
                       top_p=float(top_p) if top_p is not None else None, top_n=top_n,
                       logprobs=bool(params.get("logprobs", True)))

    def _admit(self) -> None:
        if self.in_flight >= self.max_concurrent:
            raise ServeError(429, "Model is overloaded", "overloaded")
        self.in_flight += 1

    async def _run(self, inputs: Any, params: dict[str, Any]) -> tuple[Any, str]:
        req = self._request(inputs, params)
        self._admit()
        loop = asyncio.get_running_loop()
        finished = loop.create_future()
        req.on_done = lambda: loop.call_soon_threadsafe(_resolve, finished)
        try:
            self.batcher.submit(req)
            await finished
        except asyncio.CancelledError:  # the client went away: stop decoding for it
            req.cancelled = True
            raise
        finally:
            self.in_flight -= 1
        if req.error is not None:
            raise ServeError(500, f"{type(req.error).__name__}: {req.error}", "generation")
        return req, req.text

    async def _generate(self, body: dict[str, Any]) -> dict[str, Any]:
        req, text = await self._run(body.get("inputs"), body.get("parameters") or {})
        details = {"finish_reason": req.finish_reason, "generated_tokens": len(req.tokens), "seed": req.seed,
                   "prefill": [], "tokens": [self._token(t, lp) for t, lp in zip(req.tokens, req.token_logprobs)]}
        if req.top_n:
            details["top_tokens"] = [[self._token(i, lp) for i, lp in step] for step in req.top_tokens]
        if not (body.get("parameters") or {}).get("details"):  # TGI answers with details only when asked
            return {"generated_text": text}
        return {"generated_text": text, "details": details}

    def _token(self, token: int, logprob: float | None) -> dict[str, Any]:
        special = token in self.model.eos_ids
        return {"id": token, "text": "" if special else self.model.token_text(token), "logprob": logprob,
                "special": special}

    async def _stream(self, request: Any, body: dict[str, Any]) -> Any:
        req = self._request(body.get("inputs"), body.get("parameters") or {})

        async def write(response: Any, events: asyncio.Queue) -> None:
            pending, n = None, 0
            while True:
                event = await events.get()
                if event is None:
                    break
                if pending is not None:
                    await _sse(response, {"token": pending, "generated_text": None, "details": None})
                # the batcher records a token's log-prob before announcing it, so entry n is there
                logprob = req.token_logprobs[n] if n < len(req.token_logprobs) else None
                pending = {"id": event[0], "text": event[1], "logprob": logprob, "special": event[2]}
                n += 1
            if req.error is not None:
                await _sse(response, {"error": f"{type(req.error).__name__}: {req.error}", "error_type": "generation"})
            elif pending is not None:
                await _sse(response, {"token": pending, "generated_text": req.text, "details": {
                    "finish_reason": req.finish_reason, "generated_tokens": len(req.tokens), "seed": req.seed}})

        return await self._event_stream(request, req, write)

    async def _event_stream(self, request: Any, req: Any, write: Any) -> Any:
        """Run ``req`` and answer with server-sent events: ``write(response, events)`` gets each token as
        ``(id, text, special)`` on ``events`` and ``None`` at the end. A client that goes away cancels ``req``."""
        from aiohttp import web

        self._admit()
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        req.on_token = lambda tid, text, special: loop.call_soon_threadsafe(events.put_nowait, (tid, text, special))
        req.on_done = lambda: loop.call_soon_threadsafe(events.put_nowait, None)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        try:
            self.batcher.submit(req)
            await response.prepare(request)
            await write(response, events)
        except (asyncio.CancelledError, ConnectionResetError):
            req.cancelled = True
            raise
        finally:
            self.in_flight -= 1
        await response.write_eof()
        return response


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


async def _body(request: Any) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise validation(f"Failed to deserialize the JSON body: {exc}") from exc
    if not isinstance(body, dict):
        raise validation("the JSON body must be an object")
    return body


async def _sse(response: Any, payload: dict[str, Any], space: bool = False) -> None:
    """One server-sent event; ``space``: ``data: {...}`` as OpenAI writes it (TGI writes ``data:{...}``)."""
    await response.write((b"data: " if space else b"data:") + json.dumps(payload).encode() + b"\n\n")


def _releasable(text: str, stops: Sequence[str]) -> str:
    """The part of ``text`` that can be streamed: before any stop sequence, and short of a tail that may
    still grow into one (``"fo"`` while ``"four"`` is a stop)."""
    text = cut_at_stop(text, stops)[0].rstrip("\ufffd")  # a character whose bytes are not all there yet
    hold = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), hold, -1):
            if text.endswith(stop[:n]):
                hold = n
                break
    return text[:len(text) - hold]


def _openai_params(body: dict[str, Any]) -> dict[str, Any]:
    if body.get("n") not in (None, 1):
        raise validation(f"`n` must be 1: this server returns one choice per request (send {body.get('n')!r} "
                         f"requests, with seeds for different samples)")
    temperature = body.get("temperature")
    return {"max_new_tokens": body.get("max_tokens") if body.get("max_tokens") is not None else 16,
            "stop": body.get("stop"), "seed": body.get("seed"), "logprobs": False,
            "temperature": temperature if temperature else None,
            "top_p": body.get("top_p") if temperature and body.get("top_p") not in (None, 1, 1.0) else None}


def _openai_finish(req: Any) -> str:
    return "length" if req.finish_reason == "length" else "stop"


def _usage(req: Any) -> dict[str, int]:
    return {"prompt_tokens": len(req.ids), "completion_tokens": len(req.tokens),
            "total_tokens": len(req.ids) + len(req.tokens)}


def _openai_text(req: Any) -> str:
    return cut_at_stop(req.text, req.stop)[0]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="HF id, local folder or .gguf (default: embedded SmolLM2)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16, float16 (default: float32 on CPU)")
    parser.add_argument("--max-batch-size", type=int, default=16, help="requests decoded together")
    parser.add_argument("--max-concurrent-requests", type=int, default=128, help="more in flight get 429")
    parser.add_argument("--max-input-tokens", type=int, default=None)
    parser.add_argument("--max-total-tokens", type=int, default=None, help="prompt + new tokens (default: model's)")
    parser.add_argument("--max-stop-sequences", type=int, default=4)
    parser.add_argument("--prefix-cache-mb", type=float, default=None,
                        help="bound of the KV prefix cache shared by requests, MiB (default "
                             "$AGENT_GYM_PREFIX_CACHE_MB or 1024; 0: off)")
    parser.add_argument("--prefill-chunk", type=int, default=512,
                        help="most prompt tokens computed between two decode steps of the running batch")
    parser.add_argument("--max-top-n-tokens", type=int, default=20,
                        help="most log-probs per token a request may ask for (TGI top_n_tokens, OpenAI logprobs)")


def run(args: argparse.Namespace) -> int:
    from aiohttp import web

    server = Server(args)
    print(f"agent-gym serve: {server.model.name} on {server.model.device}, "
          f"listening on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    web.run_app(server.app(), host=args.host, port=args.port, print=None, handler_cancellation=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agent-gym serve", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
