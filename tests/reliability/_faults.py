"""Helpers of the engine-fault and soak tests: finding an engine's processes, killing one in the
middle of an episode from inside a policy, and counting what a process holds.

Processes are found from the env's own engine objects where the engine keeps its process (the JVM's
``proc``, MariaDB's ``_proc``, the bwrap sandbox's ``_proc``, the browser's tagged pids) and from the
process tree (psutil) otherwise. Other test runs may have their own java or chromium on this machine,
so nothing is ever found or killed by name alone: only descendants of the process under test count.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil

#: Engine executables whose processes must never outlive a run (the issue's orphan list).
ENGINE_NAMES = ("java", "mariadbd", "mysqld", "chromium", "chrome", "chromedriver", "bwrap")
ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


# ---------------------------------------------------------------------------------- processes
def engine_name(proc: psutil.Process) -> str | None:
    """The engine a process is (one of :data:`ENGINE_NAMES`), by its executable's name."""
    try:
        cmd = proc.cmdline()
        names = {proc.name(), os.path.basename(cmd[0]) if cmd else ""}
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    return next((n for n in ENGINE_NAMES if n in names), None)


def engine_descendants(pid: int | None = None) -> dict[int, str]:
    """``{pid: engine name}`` of the live engine processes below ``pid`` (default: this process)."""
    try:
        children = psutil.Process(pid or os.getpid()).children(recursive=True)
    except psutil.NoSuchProcess:
        return {}
    out = {}
    for child in children:
        name = engine_name(child)
        if name is not None and _alive(child.pid):
            out[child.pid] = name
    return out


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def alive(pids: Sequence[int]) -> list[int]:
    """The pids of ``pids`` still running (zombies count as gone)."""
    return [p for p in pids if _alive(p)]


def wait_gone(pids: Sequence[int], timeout: float = 20.0) -> list[int]:
    """Wait until none of ``pids`` runs; the ones still running after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    left = alive(pids)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = alive(left)
    return left


def kill(pids: Sequence[int], signalled: list[int] | None = None) -> list[int]:
    """SIGKILL each of ``pids`` (gone ones are skipped) and wait until they are gone (a signal is
    delivered when the process next runs: a step right after could still find it); the pids signalled.
    ``signalled``: a list to add them to as they are signalled, before the wait (another thread reads it)."""
    done = [] if signalled is None else signalled
    for pid in pids:
        done.append(pid)  # before the signal: a reader never sees a killed pid missing
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            done.remove(pid)
    wait_gone(done, 10.0)
    return done


@dataclasses.dataclass
class Usage:
    """What a process holds at one moment: open descriptors, threads, live child processes (all
    descendants, zombies excluded), resident memory (MiB, its own and its descendants')."""

    seconds: float
    episodes: int
    fds: int
    threads: int
    children: int
    rss_mib: float
    children_rss_mib: float

    def row(self) -> str:
        return (f"{self.seconds:7.1f}s {self.episodes:5d} ep  fds {self.fds:4d}  threads {self.threads:3d}  "
                f"children {self.children:3d}  rss {self.rss_mib:7.1f} MiB  children rss {self.children_rss_mib:7.1f} MiB")


def usage(episodes: int = 0, started: float | None = None, pid: int | None = None) -> Usage:
    proc = psutil.Process(pid or os.getpid())
    kids = []
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.status() != psutil.STATUS_ZOMBIE:
                kids.append(child.memory_info().rss)
    return Usage(seconds=time.monotonic() - (started or time.monotonic()), episodes=episodes, fds=proc.num_fds(),
                 threads=proc.num_threads(), children=len(kids), rss_mib=proc.memory_info().rss / 2**20,
                 children_rss_mib=sum(kids) / 2**20)


# ------------------------------------------------------------------------- faults in episodes
class Fault:
    """A fault injected once, from inside a policy: ``kill(env)`` runs before the policy's reply
    number ``turn`` (0 = the first) in the episode of task ``victim``; ``revive()`` (say, restarting
    a server that is not the env's own) runs before the next episode's policy is made. ``killed``:
    the pids killed (or any marker of what was killed)."""

    def __init__(self, victim: str, kill: Callable[[Any], Sequence[Any]], turn: int = 1,
                 revive: Callable[[], None] | None = None):
        self.victim, self.turn, self._kill, self._revive = victim, turn, kill, revive
        self.killed: list[Any] = []
        self.fired = self.revived = False

    def policy(self, inner: Callable[..., Any]) -> Callable[..., Any]:
        """A policy factory: ``inner``'s policies, with this fault injected."""
        fault = self

        def factory(env: Any, **options: Any) -> Any:
            if fault.fired and not fault.revived and fault._revive is not None:
                fault._revive()
                fault.revived = True
            return _Faulty(inner(env, **options), env, fault)

        return factory


class _Faulty:
    """A policy that injects a :class:`Fault` into the episodes of another."""

    def __init__(self, inner: Any, env: Any, fault: Fault):
        self.inner, self.env, self.fault = inner, env, fault
        self.name = getattr(inner, "name", type(inner).__name__)
        self.model_name = getattr(inner, "model_name", None)
        self._task, self._turn = None, 0

    def reset(self, info: dict[str, Any]) -> None:
        self._task, self._turn = info["task_id"], 0
        self.inner.reset(info)

    def act(self, observation: str, info: dict[str, Any]) -> str:
        if self._task == self.fault.victim and self._turn == self.fault.turn and not self.fault.fired:
            self.fault.fired = True
            self.fault.killed = self.fault._kill(self.env)  # a list a watcher thread may still fill
        self._turn += 1
        return self.inner.act(observation, info)

    def provenance(self) -> dict[str, Any]:
        prov = getattr(self.inner, "provenance", None)
        return prov() if callable(prov) else {}


def scripted(replies: dict[str, Sequence[str]]) -> Callable[..., Any]:
    """A policy factory replaying fixed replies per task id (for envs whose data has no gold replies)."""
    from agent_gym.policies.simple import ReplayPolicy

    def factory(env: Any, **options: Any) -> Any:
        policy = ReplayPolicy(lambda info: replies[info["task_id"]])
        policy.name = "scripted"
        return policy

    return factory


# ------------------------------------------------------------------ servers on a fixed port
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Wait until something listens on ``port`` (``RuntimeError`` if ``proc`` exits first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


# tests/fixtures/knowledgegraph/sparql_server.py binds port 0; this runs it bound to a given port,
# so a restarted server is found where the env's endpoint setting points
_FIXED_PORT = """
import http.server, runpy, sys
port = int(sys.argv.pop(1))
class Fixed(http.server.ThreadingHTTPServer):
    def __init__(self, address, handler):
        super().__init__((address[0], port), handler)
http.server.ThreadingHTTPServer = Fixed
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


class ChildServer:
    """A server in a child process that :meth:`kill` ends at once and :meth:`start` brings back."""

    proc: subprocess.Popen | None = None

    def kill(self) -> list[int]:
        pid = self.proc.pid
        self.proc.kill()
        self.proc.wait(10)
        return [pid]

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class SparqlServer(ChildServer):
    """The KG tests' SPARQL server over ``tests/fixtures/knowledgegraph/rockets.ttl`` as a child
    process on one port for its whole life; :meth:`start` after :meth:`kill` serves again there."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/sparql"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        kg = FIXTURES / "knowledgegraph"
        self.proc = subprocess.Popen([sys.executable, "-c", _FIXED_PORT, str(self.port), str(kg / "sparql_server.py"),
                                      str(kg / "rockets.ttl")], stdout=subprocess.DEVNULL)
        wait_port(self.port, self.proc)


class LLMServer(ChildServer):
    """``agent-gym serve`` (the embedded SmolLM2 behind TGI's protocol) as a child process on one
    port; :meth:`start` after :meth:`kill` serves again at the same URL."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        import requests

        self.proc = subprocess.Popen([sys.executable, "-m", "agent_gym.policies.serve", "--port", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent-gym serve exited with {self.proc.returncode}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError("agent-gym serve not healthy after 180 s")


@contextlib.contextmanager
def serving(server: Any) -> Iterator[Any]:
    server.start()
    try:
        yield server
    finally:
        server.close()


def kill_during_step(find: Callable[[], Sequence[int]], delay: float = 0.3, timeout: float = 30.0) -> list[int]:
    """Start a thread that waits until ``find()`` returns pids (an engine started by the coming
    step), then SIGKILLs them ``delay`` seconds later. Returns the list the thread fills."""
    killed: list[int] = []

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = list(find())
            if pids:
                time.sleep(delay)
                # recorded as signalled, not after the wait: the episode the kill ends, and the rollout,
                # can finish before the killed processes are reaped, and the test then reads this list
                kill(pids, signalled=killed)
                return
            time.sleep(0.01)

    threading.Thread(target=watch, name="kill-during-step", daemon=True).start()
    return killed


# ------------------------------------------------------------------------------------------ soak
@dataclasses.dataclass
class SoakEnv:
    """One env of the soak: how to make it, how many episodes it plays in the full (1000) and the short
    (CI) soak, and with which policy (``"expert"``, ``"random"`` or replies by task)."""

    env_id: str
    full: int
    short: int = 0
    kwargs: Callable[[contextlib.ExitStack], dict[str, Any]] = lambda resources: {}
    policy: str | dict[str, Sequence[str]] = "expert"
    tasks: Sequence[str] | None = None  # default: the split's first ``min(count, 20)`` tasks, cycled


def _webarena_kwargs(resources: contextlib.ExitStack) -> dict[str, Any]:
    import json
    import tempfile

    sys.path.insert(0, str(FIXTURES / "webarena"))
    from local_sites import Server  # the WebArena tests' shop on localhost, in this process

    server = Server()
    resources.callback(server.close)
    folder = Path(resources.enter_context(tempfile.TemporaryDirectory(prefix="agent-gym-soak-")))
    tasks = folder / "tasks.json"  # the fixture's tasks WEBARENA_REPLIES solve (no LLM judge needed)
    tasks.write_text(json.dumps([t for t in json.loads((FIXTURES / "webarena" / "tasks.json").read_text())
                                 if str(t["task_id"]) in WEBARENA_REPLIES]))
    return {"tasks_file": tasks, "shopping": server.url, "sleep_after_execution": 0.0, "eval_sleep": 0.0}


WEBARENA_REPLIES = {"0": ["```stop [$12.50]```"],
                    "9": ["```goto [http://onestopmarket.com/product/2]```", "```stop [$39.99]```"],
                    "10": ["```stop```"]}
_KG = FIXTURES / "knowledgegraph"
#: The soak's mix: 1000 episodes in the full run, cheap envs taking most; every env a few.
SOAK_ENVS = [
    SoakEnv("AgentTuning/GSM8K-v0", 300, 60),
    SoakEnv("AgentTuning/MMLU-v0", 240, 50),
    SoakEnv("AgentTuning/ReWOO-v0", 100, 15),
    SoakEnv("AgentTuning/HotpotQA-v0", 100, 15),
    SoakEnv("AgentTuning/KnowledgeGraph-v0", 60, 10, lambda r: {"tasks_file": _KG / "questions.json",
                                                                "ontology": _KG / "ontology",
                                                                "rdf_file": _KG / "rockets.ttl"}),
    SoakEnv("AgentTuning/DB-v0", 60, 12),
    SoakEnv("AgentTuning/CardGame-v0", 40, 6, policy="random"),
    SoakEnv("AgentTuning/HumanEval-v0", 40, 8),
    SoakEnv("AgentTuning/OS-v0", 16, 4),
    SoakEnv("AgentTuning/MiniWoB-v0", 16, 4, lambda r: {"pointer_move_ms": 0}, tasks=["click-test/0", "choose-list/0"]),
    SoakEnv("AgentTuning/WebShop-v0", 6, 0, lambda r: {  # the tests' catalogue (the real one could not be had)
        "catalogue": FIXTURES / "webshop" / "items_shuffle_fixture.json",
        "index_dir": r.enter_context(__import__("tempfile").TemporaryDirectory(prefix="agent-gym-soak-webshop-"))}),
    SoakEnv("AgentTuning/Alfworld-v0", 12),
    SoakEnv("AgentTuning/WebArena-v0", 6, 0, _webarena_kwargs, policy=WEBARENA_REPLIES, tasks=list(WEBARENA_REPLIES)),
    # no gold replies in MT-Bench's data: random text, judged by the embedded model in 8 tokens
    SoakEnv("AgentTuning/MTBench-v0", 2, 0, lambda r: {"judge_max_new_tokens": 8}, policy="random"),
    SoakEnv("AgentTuning/SciWorld-v0", 2, 0, tasks=["power-component/17", "find-living-thing/281"]),
]


def soak_schedule(counts: dict[str, int]) -> list[tuple[str, int]]:
    """``(env_id, k)`` for the k-th episode of each env, interleaved: every env's first episode in the
    first round (so every engine is up early), the rest spread evenly over the run."""
    order = [(k / n if k else -1.0, i, env_id, k) for i, (env_id, n) in enumerate(counts.items()) for k in range(n)]
    return [(env_id, k) for *_, env_id, k in sorted(order)]


def soak(short: bool, samples: int = 20, emit: Callable[[dict[str, Any]], None] = print,
         only: Sequence[str] | None = None) -> None:
    """Play the soak's episodes in this process, one env per id (engines reused), emitting JSON-ready
    records: ``{"usage": ...}`` about ``samples`` times, with the engine processes then alive,
    ``{"episode": ...}`` for an episode that ended in error, and ``{"done": ...}`` (statuses) at the end,
    after every env is closed."""
    import gymnasium as gym

    import agent_gym
    from agent_gym.episode import run_episode

    gym.register_envs(agent_gym)
    # ``only`` names envs to play (those the short soak leaves out play their full count)
    counts = {s.env_id: (s.short if short else s.full) or (s.full if only else 0) for s in SOAK_ENVS
              if not only or s.env_id in only}
    counts = {env_id: n for env_id, n in counts.items() if n}
    chosen = [s for s in SOAK_ENVS if s.env_id in counts]
    schedule = soak_schedule(counts)
    every = max(1, len(schedule) // samples)
    started = time.monotonic()
    statuses: dict[str, dict[str, int]] = {s.env_id: {} for s in chosen}
    with contextlib.ExitStack() as resources:
        envs, policies, tasks = {}, {}, {}
        for spec in chosen:
            env = gym.make(spec.env_id, **spec.kwargs(resources))
            resources.callback(env.close)
            envs[spec.env_id] = env
            tasks[spec.env_id] = list(spec.tasks or [t.id for t in env.unwrapped.tasks()[:min(counts[spec.env_id], 20)]])
            if isinstance(spec.policy, dict):
                policies[spec.env_id] = scripted(spec.policy)
            else:
                from agent_gym.rollout import resolve_policy

                policies[spec.env_id] = resolve_policy(spec.policy)
        for done, (env_id, k) in enumerate(schedule):
            if done % every == 0:
                emit({"usage": dataclasses.asdict(usage(done, started)), "engines": engine_descendants()})
            ids = tasks[env_id]
            traj = run_episode(envs[env_id], policies[env_id](envs[env_id]), env_id=env_id, task=ids[k % len(ids)],
                               seed=k)
            statuses[env_id][traj.status] = statuses[env_id].get(traj.status, 0) + 1
            if traj.status == "error":
                emit({"episode": {"env_id": env_id, "task": traj.task_id, "error": (traj.error or "")[-600:]}})
        emit({"usage": dataclasses.asdict(usage(len(schedule), started)), "engines": engine_descendants()})
    emit({"done": {"statuses": statuses, "seconds": time.monotonic() - started,
                   "after_close": dataclasses.asdict(usage(len(schedule), started)),
                   "engines_after_close": engine_descendants()}})


if __name__ == "__main__":  # python tests/reliability/_faults.py soak [short|full] [ENV_ID ...]
    import json

    if len(sys.argv) < 3 or sys.argv[1] != "soak":
        sys.exit("usage: _faults.py soak short|full [ENV_ID ...]")
    soak(sys.argv[2] == "short", emit=lambda record: print(json.dumps(record), flush=True), only=sys.argv[3:])
