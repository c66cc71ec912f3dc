"""``agent-gym serve-env``: every registered env behind OpenEnv's server, for remote trainers.

The server is OpenEnv's own (``openenv.core.env_server.HTTPEnvServer``): a client opens a
WebSocket at ``/ws``, which is one *session* with its own env instance, and exchanges OpenEnv's
messages on it (``{"type": "reset", "data": {...}}``, ``{"type": "step", "data": {"message": REPLY}}``,
``{"type": "state"}``, ``{"type": "close"}``), each answered by one message. So OpenEnv's clients
(``GenericEnvClient``, an ``EnvClient`` subclass such as :class:`agent_gym.remote.AgentGymClient`)
and trainers that speak OpenEnv (TRL) drive any of our envs; :class:`agent_gym.remote.RemoteEnv`
is the same thing as a ``gymnasium.Env[str, str]``.

What OpenEnv's types do not name, this module carries in OpenEnv's extension points (see
docs/env_server.md): the observation schema is ours (:class:`TextObservation`: the text, the whole
gymnasium ``info``, with the paper's ``prompt`` messages, and ``terminated`` / ``truncated``, since
OpenEnv has only ``done``); reset's data takes the env (``env_id``, ``env_kwargs``) and gymnasium's
``options`` (``{"task": ...}``) beside OpenEnv's ``seed``; the session's state
(:class:`SessionState`) names the env, the task and the protocol options, and the task's gold
replies for sessions that asked for them (``expert=True``: the expert policy, replays).

Limits (:func:`create_app`): at most ``max_sessions`` sessions at once (OpenEnv's own
``max_concurrent_envs``: one more is refused with its ``CAPACITY_REACHED`` error); a session idle
(no message in flight) for ``idle_timeout`` seconds is closed with WebSocket close code 4408 and a
reason naming the option, which frees its env through OpenEnv's own session teardown; a message or
request body above ``max_payload_bytes`` is refused with an error reply (the session lives on).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import os
import socket
import sys
import time
from typing import Any

import gymnasium as gym
from pydantic import Field

import agent_gym  # noqa: F401  (registers the ids)
from agent_gym.registration import resolve_ids


def _import_openenv() -> None:
    """Import OpenEnv without its Gradio web UI: ``openenv.core.env_server`` imports it whenever gradio is
    installed (half of the import time, seconds), and it skips it cleanly when the import fails."""
    web_ui = "openenv.core.env_server.web_interface"
    blocked = web_ui not in sys.modules
    if blocked:
        sys.modules[web_ui] = None  # type: ignore[assignment]  (import of it raises ModuleNotFoundError)
    try:
        import openenv.core.env_server  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"the env server needs OpenEnv: pip install 'agent-gym[envserver]' ({exc})") from exc
    finally:
        if blocked and sys.modules.get(web_ui, 0) is None:
            del sys.modules[web_ui]  # whoever wants the web UI later can still import it


_import_openenv()
from openenv.core.env_server.http_server import HTTPEnvServer  # noqa: E402
from openenv.core.env_server.interfaces import Environment  # noqa: E402
from openenv.core.env_server.types import (  # noqa: E402
    Action, ConcurrencyConfig, EnvironmentMetadata, Observation, ServerMode, State)

#: WebSocket close code of a session closed for idling (4000-4999: for applications; 408 as in HTTP's timeout).
IDLE_CLOSE_CODE = 4408
DEFAULT_MAX_SESSIONS = 64
DEFAULT_IDLE_TIMEOUT_S = 600.0
DEFAULT_MAX_PAYLOAD_BYTES = 1 << 20  # a reply is at most 64K characters (TextEnv.max_action_chars): 256 KiB of UTF-8
#: Reset data keys a session understands (OpenEnv's ``seed`` and ``episode_id``, then ours).
RESET_KEYS = ("seed", "episode_id", "options", "env_id", "env_kwargs", "expert", "episode")


# ------------------------------------------------------------------------------- wire types
class TextAction(Action):
    """One agent reply (gymnasium's action): ``{"message": "Thought: ...\\nAction: ..."}``.
    ``message`` is the field name OpenEnv's own text envs use."""

    message: str = Field(..., description="the agent's whole reply (thought and action in the task's format)")


class TextObservation(Observation):
    """What ``reset`` and ``step`` return: ``text`` (gymnasium's observation), ``info`` (the env's
    whole info dict: ``prompt``, ``status``, ``score``, ``end_reason``, decoding, provenance, ...),
    ``terminated`` and ``truncated`` (OpenEnv's ``done`` is their ``or``); ``reward`` is OpenEnv's."""

    text: str = Field(default="", description="the observation the agent reads")
    info: dict[str, Any] = Field(default_factory=dict, description="gymnasium's info dict, as JSON")
    terminated: bool = Field(default=False, description="the task ended (answer given, goal reached, ...)")
    truncated: bool = Field(default=False, description="cut by the paper's round limit, or the engine failed")


class SessionState(State):
    """The session's state (OpenEnv's ``episode_id`` and ``step_count``, then ours): which env and
    task it plays, the env's protocol options, and, for a session reset with ``expert=True``, the
    task's gold replies (``None`` where the data has none)."""

    env_id: str | None = None
    env_kwargs: dict[str, Any] = Field(default_factory=dict)
    task_id: str | None = None
    split: str | None = None
    done: bool = True
    options: dict[str, Any] = Field(default_factory=dict)
    expert_replies: list[str] | None = None


def jsonable(value: Any) -> Any:
    """``value`` as a JSON round trip gives it back (tuples become lists, keys strings; what JSON cannot
    hold, its ``str``, as a trajectory's own ``json.dumps(default=str)`` writes it), so a remote info
    equals the in-process one once recorded. A walk, not a round trip: 5 times faster on an info."""
    kind = type(value)
    if value is None or kind in (str, bool, int, float):
        return value
    if isinstance(value, float):  # numpy's float64 and kin: JSON writes them as numbers
        return float(value)
    if isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, dict):
        return {k if isinstance(k, str) else _json_key(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return str(value)


def _json_key(key: Any) -> str:
    return json.dumps(key) if key is None or isinstance(key, (bool, int, float)) else str(key)


def describe(exc: BaseException) -> str:
    """``"KeyError: unknown task id ..."``: the type travels in the message, so the client can
    raise the same builtin type (see :func:`agent_gym.remote.raise_remote`)."""
    text = exc.args[0] if isinstance(exc, KeyError) and len(exc.args) == 1 else str(exc)
    return f"{type(exc).__name__}: {text}"


class SessionError(RuntimeError):
    """An env call in a session failed; the message is ``"<type>: <message>"``."""


# ------------------------------------------------------------------------------- one session
class SessionEnv(Environment[TextAction, TextObservation, SessionState]):
    """One session's env, made with ``gym.make(env_id, **env_kwargs)`` at its first reset (or
    ``reset(episode=False)``, which makes it and returns its options without starting an
    episode); a reset naming another env or other kwargs closes it and makes the new one. Every
    reset and step of a session runs in that session's own thread (OpenEnv gives each one), so
    engines that care which thread calls them see one."""

    SUPPORTS_CONCURRENT_SESSIONS = True  # each session is its own env instance: nothing is shared

    def __init__(self, allowed: tuple[str, ...]):
        super().__init__()
        self.allowed = allowed
        self.env: gym.Env | None = None
        self.env_id: str | None = None
        self.env_kwargs: dict[str, Any] = {}
        self.episode_id: str | None = None
        self.steps = 0
        self.done = True
        self.expert = False
        self.info: dict[str, Any] = {}

    # -- OpenEnv's Environment
    def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any) -> TextObservation:
        try:
            return self._reset(seed, episode_id, **kwargs)
        except Exception as exc:
            raise SessionError(describe(exc)) from exc

    def step(self, action: TextAction, timeout_s: float | None = None, **kwargs: Any) -> TextObservation:
        if self.env is None or self.done:
            raise SessionError("ResetNeeded: no episode is running in this session: send a reset first")
        try:
            text, reward, terminated, truncated, info = self.env.step(action.message)
        except Exception as exc:
            raise SessionError(describe(exc)) from exc
        self.steps += 1
        self.done = bool(terminated or truncated)
        self.info = info
        return TextObservation(text=text, info=jsonable(info), terminated=bool(terminated), truncated=bool(truncated),
                               done=self.done, reward=float(reward))

    @property
    def state(self) -> SessionState:
        base = self.env.unwrapped if self.env is not None else None
        task = getattr(base, "task", None)
        replies = None
        if self.expert and task is not None and not self.done and callable(getattr(base, "expert_replies", None)):
            # asked for (reset with expert=True) and computed now, as the in-process expert policy does
            # right after reset: some envs plan from the page as it is (MiniWoB)
            try:
                found = base.expert_replies(task)
            except Exception as exc:
                raise SessionError(describe(exc)) from exc
            replies = list(found) if found is not None else None
        return SessionState(episode_id=self.episode_id, step_count=self.steps, env_id=self.env_id,
                            env_kwargs=jsonable(self.env_kwargs), task_id=getattr(task, "id", None),
                            split=getattr(base, "split", None), done=self.done, options=self._options(),
                            expert_replies=replies)

    def get_metadata(self) -> EnvironmentMetadata:
        return EnvironmentMetadata(name="agent-gym", version=agent_gym.__version__,
                                   description="The AgentTuning agent tasks as text envs: " + ", ".join(self.allowed),
                                   documentation_url="docs/env_server.md")

    def close(self) -> None:
        env, self.env = self.env, None
        if env is not None:
            env.close()

    # -- ours
    def _reset(self, seed: int | None, episode_id: str | None, *, options: dict[str, Any] | None = None,
               env_id: str | None = None, env_kwargs: dict[str, Any] | None = None, expert: bool = False,
               episode: bool = True, **unknown: Any) -> TextObservation:
        if unknown:
            raise TypeError(f"reset takes {', '.join(RESET_KEYS)}; not {', '.join(sorted(unknown))}")
        if options is not None and not isinstance(options, dict):
            raise TypeError(f"reset's options must be an object, got {type(options).__name__}")
        if env_kwargs is not None and not isinstance(env_kwargs, dict):
            raise TypeError(f"reset's env_kwargs must be an object, got {type(env_kwargs).__name__}")
        for name, flag in (("expert", expert), ("episode", episode)):
            if not isinstance(flag, bool):  # "no" would be true
                raise TypeError(f"reset's {name} must be true or false, got {flag!r}")
        self._make(env_id, dict(env_kwargs or {}) if env_kwargs is not None or env_id is not None else None)
        self.expert = bool(expert)
        if not episode:  # made (or kept), checked, no episode: what a client needs before its first one
            preflight = getattr(self.env.unwrapped, "preflight", None)
            if callable(preflight):
                preflight()
            self.done = True
            return TextObservation(text="", info={"env_id": self.env_id, "options": self._options()})
        text, info = self.env.reset(seed=seed, options=options)
        self.episode_id, self.steps, self.done, self.info = episode_id, 0, False, info
        return TextObservation(text=text, info=jsonable(info))

    def _make(self, env_id: str | None, env_kwargs: dict[str, Any] | None) -> None:
        """Make the session's env, or keep the one it has when ``env_id`` / ``env_kwargs`` are
        unchanged or not given."""
        if env_id is None:
            if self.env is not None:
                env_id = self.env_id
            elif len(self.allowed) == 1:
                env_id = self.allowed[0]
            else:
                raise ValueError(f"name the env: reset with env_id, one of {', '.join(self.allowed)}")
        else:
            named = resolve_ids([str(env_id)])  # a short name works too (gsm8k)
            if len(named) != 1:
                raise ValueError(f"env_id names one env, not the suite {env_id!r}")
            env_id = named[0]
        if env_id not in self.allowed:
            raise ValueError(f"this server does not serve {env_id!r}; it serves {', '.join(self.allowed)} "
                             f"(agent-gym serve-env --env)")
        if env_kwargs is None:
            env_kwargs = self.env_kwargs if env_id == self.env_id else {}
        if self.env is not None and env_id == self.env_id and env_kwargs == self.env_kwargs:
            return
        from agent_gym.rollout import check_env_kwargs

        check_env_kwargs(env_id, env_kwargs)
        self.close()
        self.env_id, self.env_kwargs, self.done = env_id, env_kwargs, True
        self.env = gym.make(env_id, **env_kwargs)

    def _options(self) -> dict[str, Any]:
        get = getattr(self.env.unwrapped, "options", None) if self.env is not None else None
        return jsonable(get() if callable(get) else {})


# ------------------------------------------------------------------------------- limits (ASGI)
#: What the reaper puts in a connection's inbox to close it (ahead of anything the client sends later).
_REAP = {"type": "agent_gym.reap"}


@dataclasses.dataclass(eq=False)  # kept in a set, by identity
class _Connection:
    last: float
    inbox: asyncio.Queue = dataclasses.field(default_factory=asyncio.Queue)
    in_flight: int = 0
    reaped: bool = False
    closed: bool = False
    gone: bool = False  # the client disconnected: nothing more is sent to it


class Limits:
    """ASGI middleware in front of OpenEnv's app: payload size and idle sessions.

    A WebSocket message (or an HTTP body) above ``max_payload_bytes`` never reaches OpenEnv: the
    client gets OpenEnv's error reply (``{"type": "error", "data": {"code": "VALIDATION_ERROR",
    "reason": "payload_too_large", ...}}``; HTTP: 413) and its session goes on. A WebSocket with
    no message in flight for ``idle_timeout`` seconds is closed (code :data:`IDLE_CLOSE_CODE`, a
    reason naming the option) and OpenEnv is told the client left, so its own teardown closes the
    env and frees the slot. Idleness is judged here rather than by OpenEnv's reaper, which also
    reaps a session whose step runs longer than the timeout and leaves its socket open.
    """

    def __init__(self, app: Any, max_payload_bytes: int, idle_timeout: float | None):
        self.app, self.max_payload_bytes, self.idle_timeout = app, max_payload_bytes, idle_timeout
        self.connections: set[_Connection] = set()
        self._reaper: asyncio.Task | None = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _too_large(self, size: int) -> str:
        return (f"payload of {size} bytes is over this server's limit of {self.max_payload_bytes} bytes "
                f"(agent-gym serve-env --max-payload-bytes)")

    async def _http(self, scope: dict, receive: Any, send: Any) -> None:
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_payload_bytes:
            body = json.dumps({"detail": self._too_large(int(length))}).encode()
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        seen = 0

        async def counted() -> dict:  # a body without a length: stop reading it at the limit
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_payload_bytes:
                return {"type": "http.disconnect"}
            return message

        await self.app(scope, counted, send)

    async def _websocket(self, scope: dict, receive: Any, send: Any) -> None:
        conn = _Connection(last=time.monotonic())
        self.connections.add(conn)
        if self.idle_timeout is not None and (self._reaper is None or self._reaper.done()):
            self._reaper = asyncio.ensure_future(self._reap())

        async def pump() -> None:  # the server's receive is never cancelled under it: one task reads it
            while True:
                message = await receive()
                conn.last = time.monotonic()  # with the put, in one step of the loop: the reaper sees both or neither
                if message["type"] == "websocket.disconnect":
                    conn.gone = True
                conn.inbox.put_nowait(message)
                if message["type"] == "websocket.disconnect":
                    return

        pumping = asyncio.ensure_future(pump())

        async def guarded_receive() -> dict:
            while True:
                message = await conn.inbox.get()
                if message is _REAP:
                    reason = f"idle for more than {self.idle_timeout:g} s (agent-gym serve-env --idle-timeout)"
                    if not conn.closed:
                        conn.closed = True
                        await send({"type": "websocket.close", "code": IDLE_CLOSE_CODE, "reason": reason})
                    return {"type": "websocket.disconnect", "code": IDLE_CLOSE_CODE}
                if message["type"] == "websocket.receive":
                    data = message.get("text")
                    if data is None:  # OpenEnv reads text frames only (it failed with a bare "'text'")
                        await send({"type": "websocket.send", "text": json.dumps({"type": "error", "data": {
                            "message": "a binary WebSocket frame: send each message as a text frame of JSON "
                                       "(OpenEnv's protocol)", "code": "INVALID_JSON"}})})
                        continue
                    size = len(data.encode("utf-8", errors="surrogatepass"))
                    if size > self.max_payload_bytes:
                        await send({"type": "websocket.send", "text": json.dumps({"type": "error", "data": {
                            "message": self._too_large(size), "code": "VALIDATION_ERROR", "reason": "payload_too_large",
                            "limit_bytes": self.max_payload_bytes}})})
                        continue
                    conn.in_flight += 1
                return message

        async def guarded_send(message: dict) -> None:
            if conn.closed or conn.gone:
                return  # closed for idling, or the client left mid-reset: the answer has nobody to go to
            if message["type"] == "websocket.send":
                conn.in_flight = max(0, conn.in_flight - 1)
                conn.last = time.monotonic()
            elif message["type"] == "websocket.close":
                conn.closed = True
                try:
                    await send(message)
                except Exception:  # noqa: BLE001 - the client closed first (OpenEnv's close after its "close" message)
                    pass
                return
            try:
                await send(message)
            except Exception:  # noqa: BLE001 - the client left while the answer was on its way (its reset ran on)
                conn.gone = True

        try:
            await self.app(scope, guarded_receive, guarded_send)
        finally:
            self.connections.discard(conn)
            pumping.cancel()

    async def _reap(self) -> None:
        interval = min(1.0, self.idle_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for conn in list(self.connections):
                if not conn.in_flight and not conn.reaped and now - conn.last > self.idle_timeout:
                    conn.reaped = True
                    conn.inbox.put_nowait(_REAP)  # the inbox is empty: a message in it would have refreshed `last`


# ------------------------------------------------------------------------------- the app
def create_app(env_ids: list[str] | None = None, *, max_sessions: int = DEFAULT_MAX_SESSIONS,
               idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT_S,
               max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> Limits:
    """The ASGI app: OpenEnv's server over :class:`SessionEnv`, behind :class:`Limits`.

    ``env_ids``: ids, short names or suites to serve (default: every registered id); with one, a
    reset may leave ``env_id`` out. ``idle_timeout`` in seconds (``None``: never reap). Raises
    ``KeyError`` for an unknown id and ``ValueError`` for a limit below 1.
    """
    allowed = tuple(resolve_ids(list(env_ids)) if env_ids else resolve_ids(["all"]))
    if max_sessions < 1:
        raise ValueError(f"--max-sessions must be at least 1, got {max_sessions}")
    if max_payload_bytes < 1024:
        raise ValueError(f"--max-payload-bytes must be at least 1024, got {max_payload_bytes}")
    if idle_timeout is not None and idle_timeout <= 0:
        raise ValueError(f"--idle-timeout must be positive (--idle-timeout 0, idle_timeout=None: sessions never "
                         f"time out), got {idle_timeout:g}")
    from fastapi import FastAPI

    app = FastAPI(title="agent-gym env server (OpenEnv protocol)", version=agent_gym.__version__)
    server = HTTPEnvServer(functools.partial(SessionEnv, allowed), TextAction, TextObservation,
                           concurrency_config=ConcurrencyConfig(max_concurrent_envs=max_sessions))
    # production mode: no stateless POST /reset and /step, which would make, play and close a
    # throwaway env per request (useless for multi-turn tasks); /ws, /health, /schema, /metadata stay
    server.register_routes(app, mode=ServerMode.PRODUCTION)
    limits = Limits(app, max_payload_bytes=max_payload_bytes, idle_timeout=idle_timeout)

    @app.get("/agent-gym", tags=["Environment Info"], summary="what this server serves and its limits")
    async def describe_server() -> dict[str, Any]:
        return {"envs": list(allowed), "active_sessions": server.active_sessions, "max_sessions": max_sessions,
                "idle_timeout_s": idle_timeout, "max_payload_bytes": max_payload_bytes,
                "reset_keys": list(RESET_KEYS), "agent_gym": agent_gym.__version__}

    limits.server, limits.allowed = server, allowed  # type: ignore[attr-defined]
    return limits


def serve(env_ids: list[str] | None = None, *, host: str = "127.0.0.1", port: int = 8090,
          max_sessions: int = DEFAULT_MAX_SESSIONS, idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT_S,
          max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES, log_level: str = "warning") -> None:
    """Serve until Ctrl-C / SIGTERM. ``port`` 0 picks a free port; the line printed first says
    which (``agent-gym serve-env: serving N envs on http://HOST:PORT ...``). Raises ``OSError``
    when the port is taken."""
    import uvicorn

    app = create_app(env_ids, max_sessions=max_sessions, idle_timeout=idle_timeout,
                     max_payload_bytes=max_payload_bytes)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)  # before the line below: a client that read it may connect at once (and waits for accept)
    bound = sock.getsockname()[1]
    # messages between the payload limit and this size get the clear error reply; bigger ones are
    # cut by the WebSocket layer itself (close code 1009), so no client can make the server buffer more
    ws_max_size = max(16 << 20, 4 * max_payload_bytes)
    config = uvicorn.Config(app, log_level=log_level, ws_max_size=ws_max_size, lifespan="on")
    url = f"http://{host if family == socket.AF_INET else f'[{host}]'}:{bound}"
    print(f"agent-gym serve-env: serving {len(app.allowed)} envs on {url} (OpenEnv WebSocket at {url}/ws; "
          f"max {max_sessions} sessions, idle timeout {idle_timeout if idle_timeout is not None else 'none'} s, "
          f"max payload {max_payload_bytes} bytes)", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


def main(args: Any) -> int:
    """The ``agent-gym serve-env`` handler (``args`` from the CLI's subparser)."""
    envs = [e for part in (args.env or []) for e in part.split(",") if e] or None
    try:
        serve(envs, host=args.host, port=args.port, max_sessions=args.max_sessions,
              idle_timeout=None if args.idle_timeout == 0 else args.idle_timeout,
              max_payload_bytes=args.max_payload_bytes)
    except (KeyError, ValueError) as exc:
        print(f"agent-gym: error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"agent-gym: error: cannot listen on {args.host}:{args.port}: {exc} (pass another --port)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # uvicorn stops on Ctrl-C, closing every session's env, then raises it again
        code = 130
    else:
        code = 0
    # every session's env is closed by now: skip the interpreter's teardown of 1,400 modules (seconds)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

