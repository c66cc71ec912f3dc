"""Rollouts: many episodes of one or many envs, several at once, resumable, stoppable.

Each finished trajectory is appended to the output JSONL file as one line, written by one
``os.write`` of the whole line, the moment its episode ends. A rerun with the same output
skips the episodes already recorded and plays again those whose newest record is an
``error`` (a model that was missing, a server that was down; ``retry_errors=False`` keeps
them). The file stays append-only: every reader takes the newest record of each episode
(:func:`agent_gym.trajectory.newest`). So a run killed at any point loses at most the
episodes in flight, and an error is never frozen into the score. A line that is no
trajectory record (a disk fault, an edit) is skipped and named (file, line number): its
episode is played again. The output is locked (``flock``) while a rollout writes it, so a
second run on the same file is refused (:class:`RunSetupError`) instead of playing every
episode beside the first.

Before the first episode the rollout makes one env per env id and one policy, in the calling
thread: a policy that cannot be built (model not installed, server unreachable) stops the
run with :class:`RunSetupError` and nothing recorded. A file recorded by another policy or
model is refused (:class:`RunSetupError`) rather than silently skipped.

Episodes run on daemon worker threads: envs are taken from a pool (one env is used by one
thread at a time; engines are reused across episodes), one policy per episode from the
factory. Threads suit policies that wait on a server: ``concurrency`` requests stay in flight.
Engines that are CPU-bound Python (TextWorld, the card game) serialise on the GIL under threads:
``workers="processes"`` plays the episodes in ``concurrency`` worker processes of this machine and
``workers="ray"`` in as many Ray actors of a cluster (:mod:`agent_gym.distributed`). A worker is
long-lived: it makes one env per env id on first use and plays episode after episode on it, with the
policy built in the worker, by name, for each episode. The driver (this process) plans, checks,
writes the file and retries, as with threads, so the file and its resume are the same; a worker
that dies (killed, out of memory) has its episode played again on another one.

Ctrl-C (SIGINT, when the rollout runs in the main thread): the first one says it is
stopping, keeps what finished (already written), abandons the episodes in flight (they are
not recorded: a resume plays them), closes the engines and returns with ``interrupted``
set; a second one ends the process at once (exit status 130). Lines are written whole, so
neither corrupts the file (a torn last line is cut off on resume anyway).
"""

from __future__ import annotations

import collections
import dataclasses
import fcntl
import inspect
import json
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import agent_gym  # noqa: F401  (registers the ids)
from agent_gym.data import sha256_of
from agent_gym.episode import run_episode
from agent_gym.policy import Policy, policy_name
from agent_gym.trajectory import DamagedLine, Trajectory, dumps, newest, read_jsonl, repair_tail

PolicyFactory = Callable[..., Policy]

#: ``gym.make``'s own keywords, accepted beside an env's ``__init__`` parameters.
_MAKE_KWARGS = ("max_episode_steps", "disable_env_checker")
#: How long closing the engines may take after Ctrl-C before the rollout gives up on them.
CLOSE_TIMEOUT_S = 30.0
#: Where episodes run: threads of this process (the default), worker processes of this machine, Ray actors.
WORKER_KINDS = ("threads", "processes", "ray")
#: How often an episode is played again after its worker died under it before it is recorded as an error.
WORKER_DEATH_RETRIES = 2
#: How long the first worker may take to start (a Ray cluster with no free CPU never starts one).
WORKER_START_TIMEOUT_S = 600.0


class RunSetupError(RuntimeError):
    """The run cannot start: the policy or an env cannot be made, or the output file holds
    another agent's episodes. Raised before the first episode; nothing is recorded."""


@dataclasses.dataclass(frozen=True)
class EpisodeSpec:
    """One planned episode; ``episode_id`` is its identity in the output file."""

    env_id: str
    task: str  # task id
    split: str
    seed: int | None
    repeat: int = 0
    tasks_file_sha256: str | None = None  # split "custom": the sha256 of the tasks file

    @property
    def split_key(self) -> str:
        """The split as the episode id names it. A tasks file's episodes are keyed by the file
        (``custom:<first 12 hex of its sha256>``), so two files' tasks written to one output,
        whose ids may well be the same, are never taken for each other on resume."""
        return f"{self.split}:{self.tasks_file_sha256[:12]}" if self.tasks_file_sha256 else self.split

    @property
    def episode_id(self) -> str:
        return f"{self.env_id}|{self.split_key}|{self.task}|{self.repeat}"


def env_class(env_id: str) -> type:
    """The env's class, without making an env (no engine starts)."""
    entry = gym.spec(env_id).entry_point
    return gym.envs.registration.load_env_creator(entry) if isinstance(entry, str) else entry


def env_options(cls: type) -> list[str]:
    """The keywords ``gym.make`` accepts for an env class: its ``__init__`` parameters, following
    ``**kwargs`` up the class hierarchy, and gymnasium's own (``max_episode_steps``, ...)."""
    names: list[str] = []
    if not isinstance(cls, type):  # an entry point that is a function: its own parameters
        params = inspect.signature(cls).parameters.values()
        if any(p.kind is p.VAR_KEYWORD for p in params):
            return []  # takes anything: nothing to check against
        return [*[p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)], *_MAKE_KWARGS]
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is None or klass is object:
            continue
        params = inspect.signature(init).parameters.values()
        names += [p.name for p in params if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return list(dict.fromkeys([*names, *_MAKE_KWARGS]))


def check_env_kwargs(env_id: str, env_kwargs: dict[str, Any]) -> None:
    """A clear ``ValueError`` for a keyword the env does not take (a mistyped ``--env-arg``)."""
    known = env_options(env_class(env_id))
    for name in env_kwargs if known else ():
        if name not in known:
            raise ValueError(f"{env_id} has no option {name!r}; its options: {', '.join(known)}")


def plan(env_ids: Sequence[str], episodes: int | None = None, split: str | None = None, repeats: int = 1,
         seed: int = 0, sample: bool = False, tasks: Sequence[str] | None = None,
         tasks_file: str | Path | None = None) -> list[EpisodeSpec]:
    """The episodes of a run: per env the first ``episodes`` tasks of the split (the paper's
    order), or a seeded random sample of them; ``tasks`` picks ids (or indices) explicitly;
    ``tasks_file`` takes the tasks of a user's file (split ``"custom"``; the episode ids name the
    file by its sha256, see :attr:`EpisodeSpec.split_key`).

    Raises ``ValueError`` for an unknown split or task and a non-positive count, and
    :class:`agent_gym.data.DataMissingError` (naming the command) when the data is absent.
    """
    if episodes is not None and episodes < 1:
        raise ValueError(f"--episodes must be at least 1, got {episodes} (leave it out for the whole split)")
    if repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {repeats}")
    specs: list[EpisodeSpec] = []
    file_sha256 = None
    if tasks_file is not None:
        tasks_file = Path(tasks_file).expanduser().resolve()
        if not tasks_file.is_file():
            raise FileNotFoundError(f"tasks_file {tasks_file} does not exist")
        file_sha256 = sha256_of(tasks_file)
    for env_id in env_ids:
        cls = env_class(env_id)
        if tasks_file is not None:
            sp = "custom"
            all_ids = [t.id for t in cls.read_tasks_file(tasks_file)]
        else:
            resolve = getattr(cls, "resolve_split", None)
            sp = (resolve(split) if resolve else split) if split else cls.splits[0]
            if sp not in cls.splits:
                raise ValueError(f"{env_id} has splits {list(cls.splits)}, not {split!r}")
            all_ids = [t.id for t in cls.load_tasks(sp)]
        if tasks:
            ids = [_task_id(env_id, sp, t, all_ids) for t in tasks]
        else:
            ids = all_ids
            if sample:
                rng = np.random.default_rng(seed)
                ids = [ids[i] for i in rng.permutation(len(ids))]
            if episodes is not None:
                ids = ids[:episodes]
        for r in range(repeats):
            for i, task_id in enumerate(ids):
                specs.append(EpisodeSpec(env_id, task_id, sp, seed=seed + r * len(ids) + i, repeat=r,
                                         tasks_file_sha256=file_sha256))
    return specs


def _task_id(env_id: str, split: str, task: str, all_ids: list[str]) -> str:
    """The id of ``task`` (an id, or an index into the split as the env accepts)."""
    task = str(task)
    if task in all_ids:
        return task
    if task.isdigit() and int(task) < len(all_ids):
        return all_ids[int(task)]
    raise ValueError(f"{env_id} split {split!r} has no task {task!r} ({len(all_ids)} tasks, ids like "
                     f"{', '.join(repr(i) for i in all_ids[:3])}; an index 0..{len(all_ids) - 1} works too)")


def recorded(output: Path, damaged: list[DamagedLine] | None = None) -> tuple[dict[str, Trajectory], int]:
    """The newest record of each episode in ``output`` (by episode id; a torn last line is cut
    off first), and how many older records they supersede. A damaged line (no trajectory
    record) is skipped and reported (``damaged``, else a warning), so its episode is played again."""
    if not output.exists():
        return {}, 0
    repair_tail(output)
    latest, superseded = newest(read_jsonl(output, damaged), key=lambda t: t.episode_id)
    return {t.episode_id: t for t in latest}, superseded


def finished_ids(output: Path) -> set[str]:
    """Episode ids recorded in ``output`` with any status."""
    return set(recorded(output)[0])


class _Writer:
    """The run file, open for appending and locked for the whole run; appends one trajectory
    per line with a single ``os.write`` of the whole line.

    The lock is an advisory ``flock`` on the file itself, so a second rollout (another process,
    or this one) on the same output is refused instead of playing every episode again beside
    the first. ``flock`` and not ``lockf``: a POSIX lock would be dropped as soon as any other
    descriptor of the file in this process closes (the readers open and close it).
    """

    def __init__(self, path: Path, fsync: bool = False):
        self.path, self.fsync = path, fsync
        self.wrote = False
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                fd, self.created = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644), True
            except FileExistsError:
                try:
                    fd, self.created = os.open(path, os.O_WRONLY | os.O_APPEND), False
                except FileNotFoundError:
                    continue  # removed in between (a refused setup cleaning up): create it then
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunSetupError(f"{path} is being written by another agent-gym run (it holds the file's lock): "
                                    "let that run finish, or pass another --output") from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the file was removed or replaced before we locked it: lock the one there now
        self._fd: int | None = fd

    def write(self, traj: Trajectory) -> None:
        if self._fd is None:
            return
        data = dumps(traj).encode("utf-8")
        while data:  # one write for any line a pipe or disk takes whole; the rest only if it was cut
            data = data[os.write(self._fd, data):]
        self.wrote = True
        if self.fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        """Release the lock (closing the descriptor releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def discard(self) -> None:
        """Close after a run that could not start: a file this run created and left empty is
        removed (still under the lock), so a setup that cannot work leaves nothing behind."""
        if self._fd is not None and self.created and not self.wrote and os.fstat(self._fd).st_size == 0:
            self.path.unlink(missing_ok=True)
        self.close()


@dataclasses.dataclass
class RolloutResult:
    """What a rollout did. ``trajectories``: the episodes played by this call (in the order
    they ended); ``skipped``: planned episodes already recorded (and kept); ``retried``: those
    among the played that were recorded as ``error`` before; ``kept_errors``: recorded
    errors kept by ``retry_errors=False``; ``resumed_score``: the score sum of the skipped;
    ``interrupted``: stopped by Ctrl-C, ``abandoned`` episodes not played or not finished;
    ``damaged``: lines of the output that were no trajectory record (skipped, reported)."""

    trajectories: list[Trajectory]
    skipped: int
    seconds: float
    output: Path | None
    retried: int = 0
    kept_errors: list[Trajectory] = dataclasses.field(default_factory=list)
    resumed_score: float = 0.0
    interrupted: bool = False
    abandoned: int = 0
    damaged: list[DamagedLine] = dataclasses.field(default_factory=list)

    @property
    def mean_score(self) -> float:
        return sum(t.score for t in self.trajectories) / len(self.trajectories) if self.trajectories else 0.0

    @property
    def errors(self) -> list[Trajectory]:
        """Episodes of the run whose newest record is an error (played now, or kept)."""
        return [t for t in self.trajectories if t.status == "error"] + self.kept_errors


class _EnvPool:
    """Envs by id; each is used by one thread at a time and reused across episodes."""

    def __init__(self, env_kwargs: dict[str, Any], env_server: str | None = None):
        self.env_kwargs = env_kwargs
        self.env_server = env_server
        self._free: dict[str, list[gym.Env]] = {}
        self.all: list[gym.Env] = []
        self._lock = threading.Lock()

    def take(self, env_id: str) -> gym.Env:
        with self._lock:
            free = self._free.get(env_id)
            if free:
                return free.pop()
        if self.env_server is not None:  # the env lives in a session of `agent-gym serve-env`
            from agent_gym.remote import RemoteEnv

            env = RemoteEnv(self.env_server, env_id, **self.env_kwargs)
        else:
            env = gym.make(env_id, **self.env_kwargs)
        with self._lock:
            self.all.append(env)
        return env

    def give(self, env_id: str, env: gym.Env) -> None:
        with self._lock:
            self._free.setdefault(env_id, []).append(env)

    def close_all(self, timeout: float) -> bool:
        """Close every env (engines stop) within ``timeout`` seconds; False if some did not finish."""
        def close() -> None:
            for env in self.all:
                try:
                    env.close()
                except Exception:  # noqa: BLE001 - closing the rest matters more
                    pass

        closer = threading.Thread(target=close, name="close-envs", daemon=True)
        closer.start()
        closer.join(timeout)
        return not closer.is_alive()


def agent_of(policy: Any) -> str:
    """The agent a trajectory records: ``policy`` or ``policy:model``."""
    model = getattr(policy, "model_name", None)
    name = policy_name(policy)
    return f"{name}:{model}" if model else name


def _setup_message(what: str, exc: BaseException) -> str:
    from agent_gym.policy import PolicySetupError

    if isinstance(exc, PolicySetupError):
        return str(exc)
    return f"cannot make {what}: {type(exc).__name__}: {exc}"


def rollout(episodes: Iterable[EpisodeSpec], policy: PolicyFactory | str, *, output: str | Path | None = None,
            concurrency: int = 1, policy_options: dict[str, Any] | None = None,
            env_kwargs: dict[str, Any] | None = None, progress: bool = True, fsync: bool = False,
            retry_errors: bool = True, on_episode: Callable[[Trajectory], None] | None = None,
            handle_sigint: bool = True, workers: str | None = None,
            ray_address: str | None = None, env_server: str | None = None) -> RolloutResult:
    """Play ``episodes`` with ``policy`` (a factory ``f(env, **options)`` or a registered name,
    ``"module:factory"`` included), ``concurrency`` at a time, appending each trajectory to
    ``output`` as it ends.

    ``workers``: ``"threads"`` (default), ``"processes"``
    (``concurrency`` worker processes on this machine) or ``"ray"`` (``concurrency`` Ray actors;
    ``ray_address`` as ``ray.init`` takes it, ``"auto"`` by default; a ``ray_address`` alone means
    ``"ray"``). Process and Ray workers build the policy from its name: ``policy`` must be a name
    or a factory importable as ``module:factory`` (not a lambda, closure or ``__main__`` function:
    :class:`RunSetupError`), and ``policy_options`` and ``env_kwargs`` must pickle. Their
    trajectories equal the threads' for the same episodes (the same seeds, the same env options).
    ``env_server``: the URL of an ``agent-gym serve-env`` server whose sessions hold the envs
    (:class:`agent_gym.remote.RemoteEnv`; thread workers only: the server runs the engines). Task ids
    are still planned from this machine's data.

    Raises :class:`RunSetupError` before the first episode when the policy or an env cannot be
    made, ``output`` holds episodes of another agent, another rollout holds ``output``'s lock
    (the lock is held from the start to the end of the run), or the workers cannot start (no
    Ray cluster at ``ray_address``, ``ray`` not installed). ``handle_sigint``: in the main thread,
    Ctrl-C stops the run as the module docstring says (the result has ``interrupted``).
    """
    if workers is None:
        workers = "ray" if ray_address else "threads"
    if workers not in WORKER_KINDS:
        raise ValueError(f"workers must be one of {', '.join(WORKER_KINDS)}, got {workers!r}")
    if ray_address and workers != "ray":
        raise ValueError(f"a Ray address ({ray_address}) plays on Ray workers, not {workers}: leave one of them out")
    if env_server and workers != "threads":
        raise ValueError(f"the envs of an env server ({env_server}) are played from threads (the server runs the "
                         f"engines), not {workers}: leave one of them out")
    policy_ref = None
    if workers != "threads":
        policy_ref = policy_reference(policy)
    if isinstance(policy, str):
        policy = resolve_policy(policy)
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    output = Path(output) if output is not None else None
    episodes = list(episodes)
    policy_options = dict(policy_options or {})
    env_kwargs = dict(env_kwargs or {})
    for env_id in dict.fromkeys(e.env_id for e in episodes):
        check_env_kwargs(env_id, env_kwargs)
    # the lock first: a second run on this output is refused before it reads, builds or plays anything
    writer = _Writer(output, fsync=fsync) if output is not None else None
    damaged: list[DamagedLine] = []
    pool = _EnvPool(env_kwargs, env_server)
    agent = None
    crew: _Crew | None = None
    try:
        records, _ = recorded(output, damaged) if output is not None else ({}, 0)
        for bad in damaged:
            print(f"agent-gym: warning: {bad}; the episode it held, if any, is played again", file=sys.stderr)
        options: dict[str, dict[str, Any]] = {}
        env_ids = list(dict.fromkeys(e.env_id for e in episodes))
        if episodes and env_server is not None:
            _check_env_server(env_server, env_ids, min(concurrency, len(episodes)))
        if episodes and workers == "threads":
            agent, options = _probe(env_ids, policy, policy_options, pool)
        elif episodes:  # the first worker makes the envs and the policy: where they will run, not here
            crew = _Crew(_backend(workers, ray_address, policy_ref, policy_options, env_kwargs))
            agent, options = crew.probe(env_ids)
        others = sorted({t.agent for t in records.values() if t.policy} - {agent})
        if others and agent is not None:
            raise RunSetupError(
                f"{output} holds episodes of {', '.join(others)}, not {agent}: pass another --output "
                f"(a file holds one agent's episodes, so a resume never mixes two)")
        for t in records.values():  # nor two protocols of one env (GSM8K's extraction, ALFWorld's wording, ...)
            recorded_options = (t.provenance.get("env") or {}).get("options")
            if t.env_id in options and recorded_options is not None and recorded_options != options[t.env_id]:
                changed = sorted(k for k in set(recorded_options) | set(options[t.env_id])
                                 if recorded_options.get(k) != options[t.env_id].get(k))
                detail = ", ".join(f"{k}={options[t.env_id].get(k)!r} (file: {recorded_options.get(k)!r})"
                                   for k in changed)
                raise RunSetupError(f"{output} holds {t.env_id} episodes played with other env options: {detail}; "
                                    f"pass another --output (a file holds one protocol per env)")
    except BaseException:
        pool.close_all(CLOSE_TIMEOUT_S)
        if crew is not None:
            crew.close()
        if writer is not None:
            writer.discard()
        raise

    todo, skipped, kept_errors, retried = [], [], [], 0
    for e in episodes:
        old = records.get(e.episode_id)
        if old is None:
            todo.append(e)
        elif old.status == "error" and retry_errors:
            todo.append(e)
            retried += 1
        else:
            skipped.append(old)
            if old.status == "error":
                kept_errors.append(old)
    try:
        if crew is not None:
            result = crew.play(todo, skipped, output=output, writer=writer, concurrency=concurrency,
                               progress=progress, on_episode=on_episode, handle_sigint=handle_sigint,
                               retried=retried, kept_errors=kept_errors, total=len(episodes))
        else:
            result = _play(todo, skipped, policy, policy_options, pool, output=output, writer=writer,
                           concurrency=concurrency, progress=progress, on_episode=on_episode,
                           handle_sigint=handle_sigint, retried=retried, kept_errors=kept_errors,
                           total=len(episodes))
    finally:
        if writer is not None:
            writer.close()  # releases the lock
    result.damaged = damaged
    return result


def _check_env_server(url: str, env_ids: Sequence[str], workers: int) -> None:
    """:class:`RunSetupError` when the env server at ``url`` is down, does not serve one of ``env_ids``,
    or has fewer free sessions than the run may hold (each worker keeps one env per env id)."""
    from agent_gym.remote import RemoteEnvError, server_info

    try:
        info = server_info(url)
    except RemoteEnvError as exc:
        raise RunSetupError(str(exc)) from None
    served = info.get("envs") or []
    missing = [e for e in env_ids if served and e not in served]
    if missing:
        raise RunSetupError(f"the env server at {url} does not serve {', '.join(missing)} (it serves "
                            f"{', '.join(served)}): start it with --env naming them")
    needed = workers * len(env_ids)
    free = int(info.get("max_sessions", needed)) - int(info.get("active_sessions", 0))
    if needed > free:
        raise RunSetupError(f"the env server at {url} has {free} free sessions of {info.get('max_sessions')}; this "
                            f"run may hold {needed} (-c {workers} x {len(env_ids)} envs): lower -c, or start the server "
                            f"with --max-sessions {needed + int(info.get('active_sessions', 0))}")


def resolve_policy(name: str) -> PolicyFactory:
    """A policy factory by name: a registered one (``react``, ``expert``, ...) or a user's
    ``"module:factory"`` (the module importable from ``sys.path``)."""
    from agent_gym.policies import policy_factory

    try:
        return policy_factory(name)
    except KeyError:
        module, sep, attr = name.partition(":")
        if not sep or not module or not attr:
            raise
    import importlib

    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise KeyError(f"policy {name!r}: cannot import {attr} from {module} ({exc}); "
                       f"a module:factory policy must be importable (PYTHONPATH)") from None
    if not callable(factory):
        raise KeyError(f"policy {name!r}: {attr} is not callable (want factory(env, **options) -> policy)")
    return factory


def _probe(env_ids: Sequence[str], policy: PolicyFactory, policy_options: dict[str, Any],
           pool: _EnvPool) -> tuple[str, dict[str, dict[str, Any]]]:
    """Make one env and one policy per env id, here, before any episode; the agent's name and
    each env's protocol options."""
    envs = {}
    for env_id in env_ids:
        try:
            envs[env_id] = pool.take(env_id)
            preflight = getattr(envs[env_id].unwrapped, "preflight", None)
            if callable(preflight):
                preflight()
        except Exception as exc:
            raise RunSetupError(_setup_message(f"env {env_id}", exc)) from exc
    agent = None
    for env_id, env in envs.items():  # per env: a policy may not play every env (the expert needs gold replies)
        try:
            made = agent_of(policy(env, **policy_options))
        except Exception as exc:
            raise RunSetupError(_setup_message(f"the policy {getattr(policy, '__name__', policy)!r}", exc)) from exc
        agent = agent or made
    options = {}
    for env_id, env in envs.items():
        get = getattr(env.unwrapped, "options", None)
        # as a trajectory stores them (JSON), so a resume compares like with like
        options[env_id] = json.loads(json.dumps(get() if callable(get) else {}, default=str))
        pool.give(env_id, env)
    return agent, options


def _play(todo: list[EpisodeSpec], skipped: list[Trajectory], policy: PolicyFactory, policy_options: dict[str, Any],
          pool: _EnvPool, *, output: Path | None, writer: _Writer | None, concurrency: int, progress: bool,
          on_episode: Callable[[Trajectory], None] | None, handle_sigint: bool, retried: int,
          kept_errors: list[Trajectory], total: int) -> RolloutResult:
    stop = threading.Event()
    feed = iter(todo)
    feed_lock = threading.Lock()
    finished: queue.Queue[Trajectory] = queue.Queue()

    def worker() -> None:
        while not stop.is_set():
            with feed_lock:
                spec = next(feed, None)
            if spec is None:
                return
            traj = _play_one(spec, policy, policy_options, pool)
            if not stop.is_set():
                finished.put(traj)

    resumed_score = sum(t.score for t in skipped)
    bar = _progress_bar(total, skipped, resumed_score) if progress else None
    previous_handler = _stop_on_sigint(stop, output) if handle_sigint else None

    results: list[Trajectory] = []
    started = time.perf_counter()
    threads = [threading.Thread(target=worker, name=f"episode-{i}", daemon=True)
               for i in range(min(concurrency, len(todo)))]
    ended = False
    try:
        for t in threads:
            t.start()
        while len(results) < len(todo) and not stop.is_set():
            try:
                traj = finished.get(timeout=0.1)
            except queue.Empty:
                if not any(t.is_alive() for t in threads) and finished.empty():
                    break
                continue
            _record(traj, results, writer, on_episode, bar, skipped, resumed_score)
        ended = not stop.is_set()
    finally:
        interrupted = stop.is_set()
        stop.set()  # workers take no new episode
        if writer is not None:
            writer.close()
        if bar is not None:
            bar.close()
        if ended:
            for t in threads:
                t.join()
        # after Ctrl-C (or an exception) the episodes in flight are abandoned: their engines close under them
        if not pool.close_all(CLOSE_TIMEOUT_S):
            print(f"agent-gym: some engines did not close within {CLOSE_TIMEOUT_S:.0f}s", file=sys.stderr)
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler)
    return RolloutResult(results, skipped=len(skipped), seconds=time.perf_counter() - started, output=output,
                         retried=retried, kept_errors=kept_errors, resumed_score=resumed_score,
                         interrupted=interrupted, abandoned=len(todo) - len(results) if interrupted else 0)


def _play_one(spec: EpisodeSpec, policy: PolicyFactory, policy_options: dict[str, Any], pool: _EnvPool) -> Trajectory:
    """One episode on an env of ``pool`` (taken, given back), with a policy made for it: what every
    worker kind does (a thread here, a worker process, a Ray actor)."""
    try:
        env = pool.take(spec.env_id)
    except Exception:  # an engine that fails to start later in the run is that episode's error
        return _error_record(spec)
    try:
        try:
            agent = policy(env, **policy_options)
        except Exception:
            return _error_record(spec)
        return run_episode(env, agent, env_id=spec.env_id, task=spec.task, seed=spec.seed,
                           episode_id=spec.episode_id, split=spec.split)
    finally:
        pool.give(spec.env_id, env)


def _progress_bar(total: int, skipped: list[Trajectory], resumed_score: float) -> Any:
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=len(skipped), unit="ep", dynamic_ncols=True)
    if skipped:
        bar.set_postfix(score=f"{100 * resumed_score / len(skipped):.1f}%")
    return bar


def _stop_on_sigint(stop: threading.Event, output: Path | None) -> Any:
    """In the main thread: the first Ctrl-C sets ``stop``, the second ends the process. Returns the
    handler it replaced (to put back), or None where signals cannot be handled (another thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def on_sigint(signum: int, frame: Any) -> None:
        if stop.is_set():  # second Ctrl-C: at once (lines are written whole; none is half done here)
            os._exit(130)
        stop.set()
        print(f"\nagent-gym: stopping: keeping the finished episodes{f' in {output}' if output else ''}, "
              "cancelling the rest, closing the engines (Ctrl-C again to quit at once)", file=sys.stderr, flush=True)

    return signal.signal(signal.SIGINT, on_sigint)


def _record(traj: Trajectory, results: list[Trajectory], writer: _Writer | None,
            on_episode: Callable[[Trajectory], None] | None, bar: Any, skipped: list[Trajectory],
            resumed_score: float) -> None:
    """A finished episode, in the driver: one line of the file, the result, the callback, the bar."""
    if writer is not None:
        writer.write(traj)
    results.append(traj)
    if on_episode:
        on_episode(traj)
    if bar is not None:
        done = len(skipped) + len(results)
        bar.set_postfix(score=f"{100 * (resumed_score + sum(r.score for r in results)) / done:.1f}%", refresh=False)
        bar.update(1)


def _error_record(spec: EpisodeSpec, error: str | None = None) -> Trajectory:
    return Trajectory(env_id=spec.env_id, task_id=spec.task, episode_id=spec.episode_id, prompt=[],
                      first_observation="", status="error", end_reason="env_error", seed=spec.seed, split=spec.split,
                      started_at=time.time(), error=error or traceback.format_exc()[-4000:])



# ---------------------------------------------------------------- process and Ray workers


def policy_reference(policy: PolicyFactory | str) -> str:
    """The name a worker process or Ray actor builds ``policy`` from: a name as given, or a factory's
    ``module:qualname`` when importing that gives back the same object. :class:`RunSetupError` for a
    factory that cannot travel by name (a lambda, a closure, a ``__main__`` function)."""
    if policy == "human":  # a worker has no terminal (its stdin is not the user's)
        raise RunSetupError("the human policy plays at this terminal: play it with workers='threads' (no --workers, "
                            "no --ray)")
    if isinstance(policy, str):
        return policy
    module, qualname = getattr(policy, "__module__", None), getattr(policy, "__qualname__", None)
    if module and qualname and module != "__main__" and "<" not in qualname:
        import importlib

        try:
            target: Any = importlib.import_module(module)
            for part in qualname.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError):
            target = None
        if target is policy:
            return f"{module}:{qualname}"
    raise RunSetupError(f"process and Ray workers build the policy by name in each worker, and {policy!r} has none "
                        f"they can import (a lambda, a closure or a function of __main__): define the factory in a "
                        f"module and pass it as 'module:factory', or play with workers='threads'")


class EpisodeWorker:
    """The worker side of process and Ray workers: a policy factory resolved by name, one env per env id
    made on first use and reused for every later episode (one JVM, browser or MariaDB per worker), a
    policy made for each episode, as a thread does. Used by the process workers below and the Ray
    actors of :mod:`agent_gym.distributed`.

    Raises what :func:`resolve_policy` raises for a policy name this worker cannot import.
    """

    def __init__(self, policy: str, policy_options: dict[str, Any], env_kwargs: dict[str, Any]):
        self.factory = resolve_policy(policy)
        self.policy_options = policy_options
        self.pool = _EnvPool(env_kwargs)

    def probe(self, env_ids: Sequence[str]) -> tuple[str, dict[str, dict[str, Any]]]:
        """The rollout's setup check, here: the agent's name and each env's options; :class:`RunSetupError`."""
        return _probe(env_ids, self.factory, self.policy_options, self.pool)

    def play(self, spec: EpisodeSpec) -> Trajectory:
        """One episode; never raises (a fault is the trajectory's ``error``)."""
        return _play_one(spec, self.factory, self.policy_options, self.pool)

    def close(self) -> None:
        """Close every env (the engines stop)."""
        self.pool.close_all(CLOSE_TIMEOUT_S)

    def answer(self, call: str, arg: Any) -> tuple[str, Any]:
        """One driver request as a reply that always pickles: ``("ok", result)``, ``("setup", message)``
        for a :class:`RunSetupError`, ``("error", traceback)`` for anything else."""
        try:
            return "ok", self.probe(arg) if call == "probe" else self.play(arg)
        except RunSetupError as exc:
            return "setup", str(exc)
        except Exception:  # noqa: BLE001 - reported to the driver, which records it
            return "error", traceback.format_exc()[-4000:]


def _start_worker(policy: str, policy_options: dict[str, Any], env_kwargs: dict[str, Any]) -> tuple[str, Any]:
    """An :class:`EpisodeWorker` in a ``("ready", worker)`` pair, or ``("failed", message)``."""
    try:
        return "ready", EpisodeWorker(policy, policy_options, env_kwargs)
    except Exception as exc:  # noqa: BLE001 - the driver says it and stops
        return "failed", f"{type(exc).__name__}: {exc}"


def _process_main(fd: int) -> None:
    """A worker process (``python -c``, see :class:`_ProcessBackend`): its setup from the driver's socket
    (``sys.path``, policy name, options), then requests ``(call, arg)``, one reply each, until
    ``("close", None)`` or the driver is gone; then the engines are closed."""
    from multiprocessing.connection import Connection

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the driver decides
    conn = Connection(fd)
    sys_path, policy, policy_options, env_kwargs = conn.recv()
    sys.path[:] = sys_path  # the driver's (a factory importable there is importable here)
    state, worker = _start_worker(policy, policy_options, env_kwargs)
    conn.send((state, os.getpid() if state == "ready" else worker))
    if state != "ready":
        return
    try:
        while True:
            try:
                call, arg = conn.recv()
            except (EOFError, OSError):  # the driver ended
                return
            if call == "close":
                return
            conn.send(worker.answer(call, arg))
    except OSError:  # the driver ended while this episode played
        return
    finally:
        worker.close()


class _ProcessHandle:
    def __init__(self, proc: Any, conn: Any):
        self.proc, self.conn = proc, conn

    def __repr__(self) -> str:
        return f"worker process {self.proc.pid}"


class _ProcessBackend:
    """Worker processes of this machine, each an :class:`EpisodeWorker` answering the driver over a
    socket pair. A fresh interpreter (``python -c``), not ``multiprocessing``'s spawn, which would
    import the caller's ``__main__`` again (a script without a main guard would start its run anew)
    and fork would copy the driver's threads and engines."""

    noun = "worker process"

    def __init__(self, policy: str, policy_options: dict[str, Any], env_kwargs: dict[str, Any]):
        self.setup = (list(sys.path), policy, policy_options, env_kwargs)

    def spawn(self) -> _ProcessHandle:
        import socket
        import subprocess
        from multiprocessing.connection import Connection

        ours, theirs = socket.socketpair()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", f"from agent_gym.rollout import _process_main; _process_main({theirs.fileno()})"],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        conn = Connection(ours.detach())
        conn.send(self.setup)
        return _ProcessHandle(proc, conn)

    def submit(self, handle: _ProcessHandle, call: str, arg: Any) -> None:
        try:
            handle.conn.send((call, arg))
        except OSError:  # died: wait() says so
            pass

    def wait(self, handles: Sequence[_ProcessHandle], timeout: float) -> list[tuple[Any, str, Any]]:
        from multiprocessing.connection import wait

        by_conn = {h.conn: h for h in handles}
        events = []
        for conn in wait(list(by_conn), timeout):
            h = by_conn[conn]
            try:
                events.append((h, *conn.recv()))
                continue
            except (EOFError, OSError):  # the process closed its end: it ended
                pass
            try:
                code = h.proc.wait(5.0)
            except Exception:  # noqa: BLE001 - still ending: say so as it is
                code = None
            why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
            events.append((h, "dead", f"{h} ended ({why})"))
        answered = {id(h) for h, *_ in events}
        for h in handles:  # ended, but an engine it started still holds its socket open (no EOF)
            if id(h) not in answered and h.proc.poll() is not None and not h.conn.poll():
                code = h.proc.returncode
                why = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
                events.append((h, "dead", f"{h} ended ({why})"))
        return events

    def kill(self, handle: _ProcessHandle) -> None:
        handle.proc.kill()
        handle.proc.wait()
        handle.conn.close()

    def close(self, handles: Sequence[_ProcessHandle], timeout: float) -> None:
        import subprocess

        for h in handles:
            self.submit(h, "close", None)
        end = time.monotonic() + timeout
        for h in handles:
            try:
                h.proc.wait(max(0.0, end - time.monotonic()))
                h.conn.close()
            except subprocess.TimeoutExpired:
                self.kill(h)


def _backend(kind: str, ray_address: str | None, policy: str, policy_options: dict[str, Any],
             env_kwargs: dict[str, Any]) -> Any:
    if kind == "processes":
        return _ProcessBackend(policy, policy_options, env_kwargs)
    from agent_gym.distributed import RayBackend

    return RayBackend(ray_address, policy, policy_options, env_kwargs)


class _Crew:
    """The driver's side of process and Ray workers. It starts them, hands each one episode at a
    time, writes what comes back (the driver alone writes the file) and replaces a worker that died;
    the episode it was playing goes to the front of the queue, to be played on another worker
    (:data:`WORKER_DEATH_RETRIES` times, then recorded as an error, which a resume plays again)."""

    def __init__(self, backend: Any):
        self.backend = backend
        self.live: list[Any] = []
        self.idle: list[Any] = []

    def _spawn(self) -> Any:
        handle = self.backend.spawn()
        self.live.append(handle)
        return handle

    def _drop(self, handle: Any) -> None:
        self.backend.kill(handle)
        self.live.remove(handle)

    def _next(self, handle: Any, timeout: float) -> tuple[str, Any]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for _, kind, payload in self.backend.wait([handle], 0.5):
                return kind, payload
        return "timeout", f"no answer within {timeout:.0f}s"

    def probe(self, env_ids: Sequence[str]) -> tuple[str, dict[str, dict[str, Any]]]:
        """Start the first worker and make the envs and the policy there; :class:`RunSetupError` if it cannot."""
        noun = self.backend.noun
        first = self._spawn()
        kind, payload = self._next(first, WORKER_START_TIMEOUT_S)
        if kind != "ready":
            hint = getattr(self.backend, "start_hint", "")
            raise RunSetupError(f"the first {noun} did not start: {payload}{hint}")
        self.backend.submit(first, "probe", list(env_ids))
        kind, payload = self._next(first, WORKER_START_TIMEOUT_S)
        if kind == "ok":
            self.idle.append(first)
            return payload
        if kind == "setup":
            raise RunSetupError(payload)
        raise RunSetupError(f"the first {noun} failed making the envs and the policy: {payload}")

    def play(self, todo: list[EpisodeSpec], skipped: list[Trajectory], *, output: Path | None,
             writer: _Writer | None, concurrency: int, progress: bool,
             on_episode: Callable[[Trajectory], None] | None, handle_sigint: bool, retried: int,
             kept_errors: list[Trajectory], total: int) -> RolloutResult:
        backend, noun = self.backend, self.backend.noun
        stop = threading.Event()
        queue_ = collections.deque(todo)
        deaths: collections.Counter[str] = collections.Counter()
        busy: dict[Any, EpisodeSpec] = {}
        idle, starting = list(self.idle), []
        self.idle = []
        failed_starts = 0
        resumed_score = sum(t.score for t in skipped)
        bar = _progress_bar(total, skipped, resumed_score) if progress else None
        previous_handler = _stop_on_sigint(stop, output) if handle_sigint else None
        results: list[Trajectory] = []
        started = time.perf_counter()
        ended = False
        try:
            while len(idle) + len(starting) < min(concurrency, len(todo)):
                starting.append(self._spawn())
            stalled_since = None
            while (queue_ or busy) and not stop.is_set():
                while idle and queue_:
                    handle, spec = idle.pop(), queue_.popleft()
                    backend.submit(handle, "play", spec)
                    busy[handle] = spec
                if busy:
                    stalled_since = None
                elif stalled_since is None:
                    stalled_since = time.monotonic()
                elif time.monotonic() - stalled_since > WORKER_START_TIMEOUT_S:  # every worker gone, none starts
                    raise RunSetupError(f"no {noun} has started for {WORKER_START_TIMEOUT_S:.0f}s"
                                        f"{getattr(backend, 'start_hint', '')}; the finished episodes are kept: "
                                        f"resume with the same output")
                for handle, kind, payload in backend.wait([*busy, *starting], 0.1):
                    if handle in starting:
                        starting.remove(handle)
                        if kind == "ready":
                            idle.append(handle)
                            failed_starts = 0
                            continue
                        self._drop(handle)
                        failed_starts += 1
                        if failed_starts > concurrency + 2:  # a worker that cannot start: not a fault of one episode
                            raise RunSetupError(f"{noun}s keep failing to start ({payload}); the finished episodes "
                                                f"are kept: fix the workers and resume with the same output")
                        if not idle and not busy:
                            starting.append(self._spawn())
                        continue
                    spec = busy.pop(handle)
                    if kind == "ok":
                        idle.append(handle)
                        _record(payload, results, writer, on_episode, bar, skipped, resumed_score)
                    elif kind == "dead":
                        self._drop(handle)
                        deaths[spec.episode_id] += 1
                        if deaths[spec.episode_id] > WORKER_DEATH_RETRIES:
                            _record(_error_record(spec, f"its {noun} died under it {deaths[spec.episode_id]} times "
                                                        f"(last: {payload}); resume to play it again"),
                                    results, writer, on_episode, bar, skipped, resumed_score)
                        else:
                            print(f"agent-gym: {payload} while playing {spec.episode_id}; playing it again on "
                                  f"another {noun}", file=sys.stderr)
                            queue_.appendleft(spec)
                        if queue_:
                            starting.append(self._spawn())
                    else:  # the worker answered with a fault of its own loop: this episode's error record
                        idle.append(handle)
                        _record(_error_record(spec, str(payload)), results, writer, on_episode, bar, skipped,
                                resumed_score)
            ended = not stop.is_set()
        finally:
            interrupted = stop.is_set()
            stop.set()
            if writer is not None:
                writer.close()
            if bar is not None:
                bar.close()
            for handle in starting:  # never ready (a Ray actor waiting for a CPU): nothing to close in it
                self._drop(handle)
            self.close(graceful=ended)
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
        return RolloutResult(results, skipped=len(skipped), seconds=time.perf_counter() - started, output=output,
                             retried=retried, kept_errors=kept_errors, resumed_score=resumed_score,
                             interrupted=interrupted, abandoned=len(todo) - len(results) if interrupted else 0)

    def close(self, graceful: bool = True) -> None:
        """Stop every worker: ``graceful`` lets each close its engines (within :data:`CLOSE_TIMEOUT_S`),
        else they are killed (Ctrl-C, a fault: the episodes in flight are abandoned)."""
        live, self.live, self.idle = self.live, [], []
        if graceful:
            self.backend.close(live, CLOSE_TIMEOUT_S)
        else:
            for handle in live:
                self.backend.kill(handle)
