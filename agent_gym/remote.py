"""An env served by ``agent-gym serve-env``, used as if it were here.

:class:`RemoteEnv` is a ``gymnasium.Env[str, str]`` whose ``reset`` and ``step`` go through one
session of the server, over OpenEnv's WebSocket protocol with OpenEnv's own client
(:class:`AgentGymClient`, an ``openenv.core.EnvClient``). The same seed and task give the same
observations, rewards and ``info`` as ``gym.make(env_id, **env_kwargs)`` would here::

    env = RemoteEnv("http://127.0.0.1:8090", "AgentTuning/GSM8K-v0")
    obs, info = env.reset(seed=0, options={"task": 3})
    obs, reward, terminated, truncated, info = env.step("... The answer is 18")
    env.close()                                   # ends the session on the server

Faults name the server and the fix: :class:`EnvServerUnavailable` (nothing listens at the URL,
or the server went away), :class:`EnvServerFull` (the server holds its ``--max-sessions``),
:class:`SessionClosed` (the server closed this session, e.g. for idling past ``--idle-timeout``;
the next ``reset`` opens a new one). An error of the env itself (an unknown task id, missing
data) is raised as the same builtin type it has in process (``KeyError``, ``ValueError``, ...).
"""

from __future__ import annotations

import asyncio
import re
import types
from typing import Any, SupportsFloat

import gymnasium as gym
from gymnasium.error import ResetNeeded

from agent_gym.core import clean_text
from agent_gym.spaces import AnyText

from agent_gym.envserver import IDLE_CLOSE_CODE, SessionState, TextAction, TextObservation  # first: imports OpenEnv
from openenv.core.client_types import StepResult  # noqa: E402
from openenv.core.env_client import EnvClient  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402


class RemoteEnvError(RuntimeError):
    """A remote env call failed for a reason of the server or the connection (not of the env)."""


class EnvServerUnavailable(RemoteEnvError, ConnectionError):
    """Nothing answers at the server's URL, or the connection to it was lost."""


class EnvServerFull(RemoteEnvError):
    """The server holds as many sessions as its ``--max-sessions`` allows."""


class SessionClosed(RemoteEnvError):
    """The server closed this session (idle past ``--idle-timeout``, or shut down); its episode is lost."""


class AgentGymClient(EnvClient[TextAction, TextObservation, SessionState]):
    """OpenEnv's WebSocket client for agent-gym's server: one instance is one session.

    Async, as OpenEnv's clients are (``.sync()`` for a blocking one)::

        async with AgentGymClient(base_url="http://127.0.0.1:8090") as client:
            result = await client.reset(env_id="AgentTuning/GSM8K-v0", seed=0, options={"task": 3})
            result.observation.text, result.observation.info["prompt"]
            result = await client.step(TextAction(message="... The answer is 18"))
            result.reward, result.observation.terminated, result.observation.info["status"]
    """

    def _step_payload(self, action: TextAction | str) -> dict[str, Any]:
        return {"message": action if isinstance(action, str) else action.message}

    def _parse_result(self, payload: dict[str, Any]) -> StepResult[TextObservation]:
        obs = TextObservation(**payload.get("observation", {}), done=payload.get("done", False),
                              reward=payload.get("reward"))
        return StepResult(observation=obs, reward=payload.get("reward"), done=payload.get("done", False))

    def _parse_state(self, payload: dict[str, Any]) -> SessionState:
        return SessionState(**payload)


# The env errors a session reports as "<type>: <message>" that are raised here as that type.
_ERROR_TYPES: dict[str, type[BaseException]] = {
    t.__name__: t for t in (ValueError, KeyError, IndexError, TypeError, FileNotFoundError, NotImplementedError)}
_ERROR_TYPES["ResetNeeded"] = ResetNeeded
_SERVER_ERROR = re.compile(r"^Server error: (?P<message>.*) \(code: (?P<code>[A-Z_]+)\)$", re.S)
_TYPED = re.compile(r"^(?P<type>[A-Za-z_][A-Za-z0-9_]*): (?P<message>.*)$", re.S)


def server_info(url: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """What the server at ``url`` serves and its limits (``GET /agent-gym``): ``envs``, ``active_sessions``,
    ``max_sessions``, ``idle_timeout_s``, ``max_payload_bytes``. Raises :class:`EnvServerUnavailable`
    naming the URL when nothing answers there."""
    import json
    import urllib.error
    import urllib.request

    base = re.sub(r"^ws(s?)://", r"http\1://", url.rstrip("/"))
    try:
        with urllib.request.urlopen(f"{base}/agent-gym", timeout=timeout_s) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise EnvServerUnavailable(f"no agent-gym env server answers at {url} ({exc}): start one with "
                                   f"`agent-gym serve-env --port PORT`, or check the URL") from None


class RemoteEnv(gym.Env[str, str]):
    """``gym.make(env_id, **env_kwargs)`` on the server at ``url``, played from here.

    The session opens here (the server makes the env, checks it as a run's setup does, and sends
    its protocol options), so a server that is down, full, or does not serve ``env_id``, or an
    option the env does not take, raises before any episode. ``timeout_s``: how long one reset or
    step may take on the server. ``reset(seed=None, options=None)`` and ``step(reply)`` are the
    env's own (see :class:`agent_gym.core.TextEnv`); ``close()`` ends the session.
    """

    metadata = {"render_modes": []}

    def __init__(self, url: str, env_id: str, *, timeout_s: float = 300.0, connect_timeout_s: float = 10.0,
                 **env_kwargs: Any):
        self.url, self.env_id, self.env_kwargs = url.rstrip("/"), env_id, dict(env_kwargs)
        self.timeout_s, self.connect_timeout_s = timeout_s, connect_timeout_s
        self.observation_space = AnyText()
        self.action_space = AnyText()
        self._sync: Any = None
        self._protocol_options: dict[str, Any] = {}
        self._task: types.SimpleNamespace | None = None
        self._open()

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        if self._sync is None:  # the last session was closed (idle, server restart): a reset opens a new one
            self._open()
        data = {"seed": _plain(seed), "options": _plain(options), "env_id": self.env_id, "env_kwargs": self.env_kwargs,
                "expert": True}
        result = self._request(lambda client: client.reset(**data))
        info = result.observation.info
        self._task = types.SimpleNamespace(id=info.get("task_id"))
        return result.observation.text, info

    def step(self, action: str) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._sync is None:
            raise SessionClosed(f"the session with the env server at {self.url} is closed: call reset() to open a "
                                f"new one")
        message = clean_text(action)  # as the env would take it in process (bytes decoded, NULs dropped)
        result = self._request(lambda client: client.step(TextAction(message=message)))
        obs = result.observation
        return obs.text, float(result.reward or 0.0), obs.terminated, obs.truncated, obs.info

    def render(self) -> None:
        return None

    def close(self) -> None:
        sync, self._sync = self._sync, None
        if sync is not None:
            try:
                sync.close()  # sends OpenEnv's close message: the server closes the env at once
            except Exception:  # noqa: BLE001 - a server already gone has nothing left to close
                pass

    # ------------------------------------------------------------------ what the rollout and policies ask of an env
    @property
    def task(self) -> types.SimpleNamespace | None:
        """The current episode's task (``.id``), as :attr:`agent_gym.core.TextEnv.task`."""
        return self._task

    def expert_replies(self, task: Any) -> list[str] | None:
        """The server env's gold replies for the current task (the expert policy asks right after reset)."""
        state = self.state()
        if task is not None and state.task_id != getattr(task, "id", task):
            raise ValueError(f"expert replies are for the current task {state.task_id!r}, not {getattr(task, 'id', task)!r}")
        return state.expert_replies

    def options(self) -> dict[str, Any]:
        """The server env's protocol options (as :meth:`agent_gym.core.TextEnv.options`)."""
        return dict(self._protocol_options)

    def preflight(self) -> None:
        """The server env's own preflight (a site URL or endpoint missing there), raised here."""
        self._configure()

    def state(self) -> SessionState:
        """The session's state on the server (env, task, options; gold replies after a reset)."""
        return self._request(lambda client: client.state())

    # ------------------------------------------------------------------ the session
    def _open(self) -> None:
        client = AgentGymClient(base_url=self.url, connect_timeout_s=self.connect_timeout_s,
                                message_timeout_s=self.timeout_s)
        self._sync = client.sync()
        self._configure()

    def _configure(self) -> None:
        result = self._request(lambda client: client.reset(env_id=self.env_id, env_kwargs=self.env_kwargs, episode=False))
        self._protocol_options = result.observation.info.get("options", {})

    def _request(self, call: Any) -> Any:
        """``call(async_client)`` on the session's loop, its faults raised as this module's errors."""
        sync = self._sync
        if sync is None:
            raise SessionClosed(f"the session with the env server at {self.url} is closed: call reset() to open a new one")
        try:
            return sync._run(self._guarded(sync.async_client, call))
        except (RemoteEnvError, ResetNeeded, *_ERROR_TYPES.values()):
            if self._sync is not None and getattr(self._sync.async_client, "_ws", None) is None:
                self._drop()  # the connection is gone: the next reset opens a new session
            raise

    async def _guarded(self, client: AgentGymClient, call: Any) -> Any:
        try:
            return await call(client)
        except ConnectionClosed as exc:
            pending = await _pending_error(client)  # the server may have said why before it closed
            client._ws = None
            if pending is not None:
                raise self._server_error(pending["message"], pending["code"]) from None
            raise self._closed(exc) from None
        except ConnectionError as exc:  # OpenEnv's connect() failing: nothing listens there
            client._ws = None
            raise EnvServerUnavailable(
                f"no env server answers at {self.url} ({exc.__cause__ or exc}): start one with "
                f"`agent-gym serve-env --port PORT`, or check the URL") from None
        except (asyncio.TimeoutError, TimeoutError):
            raise RemoteEnvError(f"the env server at {self.url} did not answer within {self.timeout_s:g} s "
                                 f"(RemoteEnv(timeout_s=...))") from None
        except RuntimeError as exc:
            found = _SERVER_ERROR.match(str(exc))
            if found is None:
                raise
            if found["code"] == "CAPACITY_REACHED":
                client._ws = None
            raise self._server_error(found["message"], found["code"]) from None

    def _server_error(self, message: str, code: str) -> BaseException:
        if code == "CAPACITY_REACHED":
            return EnvServerFull(f"the env server at {self.url} is full: {message} Close other sessions "
                                 f"(RemoteEnv.close()) or start the server with a larger --max-sessions")
        typed = _TYPED.match(message)
        if typed and typed["type"] in _ERROR_TYPES:
            return _ERROR_TYPES[typed["type"]](f"{typed['message']} (env server at {self.url})")
        if typed and typed["type"] == "DataMissingError":
            from agent_gym.data import DataMissingError

            return DataMissingError(f"on the env server at {self.url}: {typed['message']}")
        return RemoteEnvError(f"the env server at {self.url} answered: {message} ({code})")

    def _closed(self, exc: ConnectionClosed) -> BaseException:
        frame = exc.rcvd
        if frame is not None and frame.code == IDLE_CLOSE_CODE:
            return SessionClosed(f"the env server at {self.url} closed this session: {frame.reason}. The episode "
                                 f"in it is lost: call reset() to open a new session (or step sooner)")
        why = f" (close code {frame.code}{': ' + frame.reason if frame.reason else ''})" if frame is not None else ""
        if frame is not None and frame.code == 1009:
            why += ": a message was over the server's size limit (agent-gym serve-env --max-payload-bytes)"
        return EnvServerUnavailable(f"the connection to the env server at {self.url} was lost{why}; is it still "
                                    f"running? A reset() reconnects once it is (`agent-gym serve-env`)")

    def _drop(self) -> None:
        sync, self._sync = self._sync, None
        try:
            sync._stop_loop()
        except Exception:  # noqa: BLE001
            pass


async def _pending_error(client: AgentGymClient) -> dict[str, str] | None:
    """An error message the server sent before closing (OpenEnv's capacity refusal), if one is waiting."""
    ws = client._ws
    if ws is None:
        return None
    try:
        raw = await asyncio.wait_for(ws.recv(), timeout=0.5)
    except Exception:  # noqa: BLE001 - nothing waiting
        return None
    import json

    try:
        message = json.loads(raw)
    except ValueError:
        return None
    if message.get("type") != "error":
        return None
    data = message.get("data") or {}
    return {"message": str(data.get("message", "")), "code": str(data.get("code", "UNKNOWN"))}


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers (JSON has no numpy)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":
        return item()
    return value
