"""Rollouts on a Ray cluster: ``rollout(..., workers="ray", ray_address=...)``, ``agent-gym run --ray ADDRESS``.

The driver (the process that calls :func:`agent_gym.rollout.rollout`) plans the episodes, reads
and writes the run file and retries; it does what it does for threads, so the file, its resume and
its errors are the same (docs/distributed.md). The episodes are played by long-lived Ray actors,
``concurrency`` of them, each holding an :class:`agent_gym.rollout.EpisodeWorker`: one env per env id,
made on its first episode and reused (one JVM, browser or MariaDB per actor), and the policy, built
in the actor from its name for each episode. What travels: to an actor, the policy's name, its
options, the env options and the driver's ``AGENT_GYM_*`` variables once, then one
:class:`~agent_gym.rollout.EpisodeSpec` per episode; back, one :class:`~agent_gym.trajectory.Trajectory`.

An actor that dies (its process killed, its node lost) is not restarted by Ray (``max_restarts=0``):
the driver starts another and plays the dead actor's episode again there.

Ray is an optional extra (``pip install 'agent-gym[ray]'``); this module imports it only when used.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any

from agent_gym.rollout import CLOSE_TIMEOUT_S, RunSetupError, _start_worker

#: CPUs each actor reserves on the cluster (one engine and one episode at a time per actor).
ACTOR_CPUS = 1.0
#: How long the reachability check of an explicit address waits (``ray.init`` itself retries for minutes).
CONNECT_TIMEOUT_S = 5.0
FIX = ("start a cluster with `ray start --head` and pass --ray auto (or its HOST:6379, or ray://HOST:10001 "
       "for Ray Client), or pass --ray local for a private one on this machine")


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RunSetupError(f"Ray workers need Ray: pip install 'agent-gym[ray]' ({exc})") from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """``HOST:PORT`` of an explicit address (``ray://`` included); None for ``auto`` / ``local``."""
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _auto_address() -> str | None:
    """Where ``auto`` would connect (``RAY_ADDRESS``, else the cluster ``ray start`` left on this machine),
    or None. Ray's own lookup, which is private: any failure leaves the check to ``ray.init``."""
    try:
        from ray._private.services import canonicalize_bootstrap_address

        return canonicalize_bootstrap_address("auto")
    except Exception:  # noqa: BLE001 - no cluster found, or the private API moved
        return None


def _check_reachable(address: str) -> None:
    """:class:`RunSetupError` within seconds when nothing listens at an explicit address: ``ray.init``
    would retry for minutes before saying so."""
    target = _auto_address() if address == "auto" else address
    where = _host_port(target) if target else None
    if where is None:
        return
    try:
        socket.create_connection(where, timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        found = f" (auto found {target})" if address == "auto" else ""
        raise RunSetupError(f"no Ray cluster at {address}{found}: {exc.strerror or exc}; {FIX}") from None


def connect(address: str | None = None) -> Any:
    """Connect this process to the cluster at ``address`` (``auto``, the default: ``RAY_ADDRESS`` or the
    one ``ray start`` runs here; ``local``: a private cluster of this machine; ``HOST:PORT``;
    ``ray://HOST:PORT``) unless already connected, and return the ``ray`` module.

    A process already connected (``ray.init`` called by the user or an earlier rollout) keeps its
    connection; an explicit ``HOST:PORT`` other than the one it is connected to is refused.
    Raises :class:`RunSetupError` naming the fix: Ray not installed, nothing at the address.
    """
    ray = _import_ray()
    address = address or "auto"
    if _host_port(address) is not None:  # before all else: a mistyped address is named as such
        _check_reachable(address)
    if ray.is_initialized():
        current = ray.get_runtime_context().gcs_address
        want = _host_port(address)
        have = _host_port(current or "")
        if want is None or have is None or want[1] == have[1] and _same_host(want[0], have[0]):
            return ray
        raise RunSetupError(f"this process is already connected to the Ray cluster at {current}, not {address}: "
                            f"pass --ray {current} (or auto), or play from a fresh process")
    if address == "auto":
        _check_reachable(address)
    try:
        ray.init(address=address, ignore_reinit_error=True)
    except Exception as exc:  # noqa: BLE001 - Ray raises bare Exception too (a local node that did not start)
        raise RunSetupError(f"cannot connect to a Ray cluster at {address}: {_first_line(exc)}; {FIX}") from None
    return ray


def _same_host(a: str, b: str) -> bool:
    try:
        return socket.gethostbyname(a) == socket.gethostbyname(b) or {a, b} <= {"127.0.0.1", "localhost"}
    except OSError:
        return a == b


def _environ() -> dict[str, str]:
    """The driver's ``AGENT_GYM_*`` variables (data directory, engines' settings): set in every actor."""
    return {k: v for k, v in os.environ.items() if k.startswith("AGENT_GYM_")}


_actor_class: Any = None


def _actor() -> Any:
    """The actor class, made once Ray is imported (``ray.remote`` at import time would need Ray installed)."""
    global _actor_class
    if _actor_class is None:
        ray = _import_ray()

        @ray.remote(max_restarts=0, max_task_retries=0)
        class EpisodeActor:
            """An :class:`agent_gym.rollout.EpisodeWorker` in a Ray actor (the envs live as long as the actor)."""

            def __init__(self, environ: dict[str, str], policy: str, policy_options: dict[str, Any],
                         env_kwargs: dict[str, Any]):
                os.environ.update(environ)  # an actor has a process of its own: nothing else sees this
                self.state, self.worker = _start_worker(policy, policy_options, env_kwargs)

            def ready(self) -> tuple[str, Any]:
                if self.state == "ready":
                    return "ready", (os.getpid(), socket.gethostname())
                return "failed", self.worker

            def call(self, call: str, arg: Any) -> tuple[str, Any]:
                return self.worker.answer(call, arg)

            def close(self) -> None:
                if self.state == "ready":
                    self.worker.close()

        _actor_class = EpisodeActor
    return _actor_class


class _ActorHandle:
    def __init__(self, actor: Any, ref: Any):
        self.actor, self.ref = actor, ref

    def __repr__(self) -> str:
        return "a Ray actor"


class RayBackend:
    """Ray actors as the rollout's workers (:class:`agent_gym.rollout._Crew` drives them). Made by the
    rollout for ``workers="ray"``; connects at once, so a cluster that cannot be reached stops the run
    before the first episode (:class:`RunSetupError`)."""

    noun = "Ray actor"
    start_hint = (f" (each actor reserves {ACTOR_CPUS:g} CPU: is one free? `ray status` shows the cluster; "
                  f"is agent-gym installed on every node?)")

    def __init__(self, address: str | None, policy: str, policy_options: dict[str, Any], env_kwargs: dict[str, Any]):
        self.ray = connect(address)
        self.args = (_environ(), policy, policy_options, env_kwargs)

    def spawn(self) -> _ActorHandle:
        actor = _actor().options(num_cpus=ACTOR_CPUS).remote(*self.args)
        return _ActorHandle(actor, actor.ready.remote())

    def submit(self, handle: _ActorHandle, call: str, arg: Any) -> None:
        handle.ref = handle.actor.call.remote(call, arg)

    def wait(self, handles: Sequence[_ActorHandle], timeout: float) -> list[tuple[Any, str, Any]]:
        ray = self.ray
        by_ref = {h.ref: h for h in handles if h.ref is not None}
        if not by_ref:
            return []
        done, _ = ray.wait(list(by_ref), num_returns=1, timeout=timeout)
        if done:  # every other answer that is in too
            done, _ = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=0)
        events = []
        for ref in done:
            handle = by_ref[ref]
            handle.ref = None
            try:
                events.append((handle, *ray.get(ref)))
            except ray.exceptions.RayTaskError as exc:  # the method raised (answer() catches all: not expected)
                events.append((handle, "error", str(exc)[-4000:]))
            except ray.exceptions.RayError as exc:  # the actor died: killed, out of memory, node lost
                events.append((handle, "dead", f"a Ray actor died ({type(exc).__name__}: {_first_line(exc)})"))
        return events

    def kill(self, handle: _ActorHandle) -> None:
        try:
            self.ray.kill(handle.actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass

    def close(self, handles: Sequence[_ActorHandle], timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Each actor closes its engines (within ``timeout`` in all), then the actors end."""
        refs = [h.actor.close.remote() for h in handles]
        if refs:
            self.ray.wait(refs, num_returns=len(refs), timeout=timeout)
        for h in handles:
            self.kill(h)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
