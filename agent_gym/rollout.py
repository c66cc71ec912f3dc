"""Rollouts: many episodes of one or many envs, several at once, resumable.

Each finished trajectory is appended to the output JSONL file as one line, written in one
call and flushed, the moment its episode ends. A rerun with the same output skips the
episodes already in the file, so a run killed at any point loses at most the episodes in
flight and never records one twice.

Episodes run on a thread pool: one env per worker thread and env id (envs are not
thread-safe; engines are reused across episodes), one policy per episode from the factory.
Threads suit policies that wait on a server: ``concurrency`` requests stay in flight.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import agent_gym  # noqa: F401  (registers the ids)
from agent_gym.episode import run_episode
from agent_gym.policy import Policy
from agent_gym.trajectory import Trajectory, dumps, read_jsonl, repair_tail

PolicyFactory = Callable[..., Policy]


@dataclasses.dataclass(frozen=True)
class EpisodeSpec:
    """One planned episode; ``episode_id`` is its identity in the output file."""

    env_id: str
    task: str  # task id
    split: str
    seed: int | None
    repeat: int = 0

    @property
    def episode_id(self) -> str:
        return f"{self.env_id}|{self.split}|{self.task}|{self.repeat}"


def env_class(env_id: str) -> type:
    """The env's class, without making an env (no engine starts)."""
    entry = gym.spec(env_id).entry_point
    return gym.envs.registration.load_env_creator(entry) if isinstance(entry, str) else entry


def plan(env_ids: Sequence[str], episodes: int | None = None, split: str | None = None, repeats: int = 1,
         seed: int = 0, sample: bool = False, tasks: Sequence[str] | None = None) -> list[EpisodeSpec]:
    """The episodes of a run: per env the first ``episodes`` tasks of the split (the paper's
    order), or a seeded random sample of them; ``tasks`` picks ids explicitly."""
    specs: list[EpisodeSpec] = []
    for env_id in env_ids:
        cls = env_class(env_id)
        sp = split or cls.splits[0]
        if tasks:
            ids = list(tasks)
        else:
            ids = [t.id for t in cls.load_tasks(sp)]
            if sample:
                rng = np.random.default_rng(seed)
                ids = [ids[i] for i in rng.permutation(len(ids))]
            if episodes is not None:
                ids = ids[:episodes]
        for r in range(repeats):
            for i, task_id in enumerate(ids):
                specs.append(EpisodeSpec(env_id, task_id, sp, seed=seed + r * len(ids) + i, repeat=r))
    return specs


def finished_ids(output: Path) -> set[str]:
    """Episode ids already recorded in ``output`` (a torn last line is cut off first)."""
    if not output.exists():
        return set()
    repair_tail(output)
    return {t.episode_id for t in read_jsonl(output)}


class _Writer:
    """Appends one trajectory per line: a single write of the whole line, then flush."""

    def __init__(self, path: Path | None, fsync: bool = False):
        self.path, self.fsync = path, fsync
        self._lock = threading.Lock()
        self._fh = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(path, "a", encoding="utf-8")

    def write(self, traj: Trajectory) -> None:
        if self._fh is None:
            return
        line = dumps(traj)
        with self._lock:
            self._fh.write(line)
            self._fh.flush()
            if self.fsync:
                os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


@dataclasses.dataclass
class RolloutResult:
    trajectories: list[Trajectory]
    skipped: int
    seconds: float
    output: Path | None

    @property
    def mean_score(self) -> float:
        return sum(t.score for t in self.trajectories) / len(self.trajectories) if self.trajectories else 0.0


def rollout(episodes: Iterable[EpisodeSpec], policy: PolicyFactory | str, *, output: str | Path | None = None,
            concurrency: int = 1, policy_options: dict[str, Any] | None = None,
            env_kwargs: dict[str, Any] | None = None, progress: bool = True, fsync: bool = False,
            on_episode: Callable[[Trajectory], None] | None = None) -> RolloutResult:
    """Play ``episodes`` with ``policy`` (a factory ``f(env, **options)`` or a registered name),
    ``concurrency`` at a time, appending each trajectory to ``output`` as it ends."""
    if isinstance(policy, str):
        from agent_gym.policies import policy_factory

        policy = policy_factory(policy)
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    output = Path(output) if output is not None else None
    episodes = list(episodes)
    done_ids = finished_ids(output) if output is not None else set()
    todo = [e for e in episodes if e.episode_id not in done_ids]
    policy_options = dict(policy_options or {})
    env_kwargs = dict(env_kwargs or {})

    local = threading.local()
    all_envs: list[gym.Env] = []
    envs_lock = threading.Lock()

    def env_for(env_id: str) -> gym.Env:
        cache = getattr(local, "envs", None)
        if cache is None:
            cache = local.envs = {}
        if env_id not in cache:
            cache[env_id] = gym.make(env_id, **env_kwargs)
            with envs_lock:
                all_envs.append(cache[env_id])
        return cache[env_id]

    def play(spec: EpisodeSpec) -> Trajectory:
        try:
            env = env_for(spec.env_id)
            agent = policy(env, **policy_options)
        except Exception as exc:  # a broken env or policy setup is an episode error, not a crash
            import traceback

            return Trajectory(env_id=spec.env_id, task_id=spec.task, episode_id=spec.episode_id, prompt=[],
                              first_observation="", status="error", seed=spec.seed, split=spec.split,
                              started_at=time.time(), error="".join(traceback.format_exception(exc))[-4000:])
        return run_episode(env, agent, env_id=spec.env_id, task=spec.task, seed=spec.seed,
                           episode_id=spec.episode_id, split=spec.split)

    writer = _Writer(output, fsync=fsync)
    results: list[Trajectory] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(episodes), initial=len(episodes) - len(todo), unit="ep", dynamic_ncols=True)
    started = time.perf_counter()
    score_sum = 0.0
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="episode")
    try:
        pending: set[Future] = set()
        queue = iter(todo)
        for spec in queue:  # keep at most `concurrency` episodes queued, so a kill loses only those
            pending.add(pool.submit(play, spec))
            if len(pending) >= concurrency:
                break
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                traj = fut.result()
                writer.write(traj)
                results.append(traj)
                score_sum += traj.score
                if on_episode:
                    on_episode(traj)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(score=f"{100 * score_sum / len(results):.1f}%", refresh=False)
                nxt = next(queue, None)
                if nxt is not None:
                    pending.add(pool.submit(play, nxt))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        writer.close()
        if bar is not None:
            bar.close()
        for env in all_envs:
            try:
                env.close()
            except Exception:
                pass
    return RolloutResult(results, skipped=len(episodes) - len(todo), seconds=time.perf_counter() - started,
                         output=output)
