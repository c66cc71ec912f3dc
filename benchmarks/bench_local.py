"""The local backend before and after KV prefix reuse and continuous batching, side by side in one run.

    python benchmarks/bench_local.py [--alfworld 16] [--os 16] [--max-new-tokens 32] [--turns 8]
                                     [--concurrency 1 16] [--before-rev REV]

ALFWorld and OS episodes played by the ReAct policy on the embedded SmolLM2 (CPU), for each engine
and concurrency: wall time, seconds per episode (wall / episodes), prompt tokens computed
(prefill) per episode, turns, and the peak resident memory of the process while that row ran
(sampled every 0.2 s; the first row includes loading the model). ``before`` is ``policies/local.py``
as of ``--before-rev`` (default: the last commit before the prefix cache), loaded from git into this
process; ``after`` is the current engine, with its prefix cache (``after-nocache``: without it).
Needs ``AGENT_GYM_DATA`` (ALFWorld, AgentBench OS) and, for OS, bubblewrap and ``AGENT_GYM_OS_ROOTFS``.
``--turns`` caps each episode's replies (gymnasium's TimeLimit) to keep the run short.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
BEFORE_REV = "5f48343"  # the last commit whose local backend had no prefix cache and a static batcher


def old_backend(rev: str):
    """``LocalBackend`` of ``policies/local.py`` at ``rev``, imported under another name."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:policies/local.py"], capture_output=True,
                            text=True, check=True).stdout
    path = Path(tempfile.mkdtemp(prefix="agent-gym-bench-")) / "local_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("agent_gym_local_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.LocalBackend()


def rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRSS:
    """The largest resident set size of this process while the block runs (MiB)."""

    def __enter__(self):
        self.start = self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb())
            self._stop.wait(0.2)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def play(backend, episodes, concurrency: int, max_new_tokens: int, turns: int | None):
    from agent_gym.policies.react import ReActPolicy
    from agent_gym.rollout import rollout

    stats = getattr(backend, "stats", None)
    before = stats() if stats else None
    t0 = time.perf_counter()
    result = rollout(episodes, lambda env, **_: ReActPolicy(backend, max_new_tokens=max_new_tokens),
                     concurrency=concurrency, progress=False,
                     env_kwargs={"max_episode_steps": turns} if turns else None)
    wall = time.perf_counter() - t0
    trajs = result.trajectories
    sent = sum(t.prompt_tokens or 0 for t in trajs)
    prefill = stats()["prefill_tokens"] - before["prefill_tokens"] if stats else sent  # before: every prompt whole
    return {"wall": wall, "episodes": len(trajs), "turns": sum(len(t.steps) for t in trajs), "prompt": sent,
            "prefill": prefill, "generated": sum(t.completion_tokens or 0 for t in trajs),
            "errors": sum(t.status == "error" for t in trajs), "by_env": {
                env: sum(t.seconds for t in trajs if t.env_id == env) / max(1, sum(t.env_id == env for t in trajs))
                for env in sorted({t.env_id for t in trajs})}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alfworld", type=int, default=16)
    parser.add_argument("--os", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--turns", type=int, default=None, help="cap on replies per episode (default: the env's)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--engines", nargs="+", default=["before", "after"],
                        choices=["before", "after", "after-nocache"])
    parser.add_argument("--c1-episodes", type=int, default=None,
                        help="episodes per env at concurrency 1 (default: as many as at the others)")
    parser.add_argument("--before-at", type=int, nargs="+", default=None,
                        help="the concurrencies at which to run the before engine (default: all)")
    parser.add_argument("--before-rev", default=BEFORE_REV)
    args = parser.parse_args()

    import gymnasium as gym

    import agent_gym
    from agent_gym.policies.local import LocalBackend
    from agent_gym.rollout import plan

    gym.register_envs(agent_gym)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"max_new_tokens {args.max_new_tokens}, turns cap {args.turns}", flush=True)

    def episodes(c: int):
        n_alf, n_os = ((args.c1_episodes, args.c1_episodes) if c == 1 and args.c1_episodes else (args.alfworld, args.os))
        return (plan(["AgentTuning/Alfworld-v0"], episodes=n_alf) if n_alf else []) + \
            (plan(["AgentTuning/OS-v0"], episodes=n_os) if n_os else [])

    rows = []
    after = None
    warm = False
    for name in args.engines:
        with PeakRSS() as memory:
            if name == "before":
                backend = old_backend(args.before_rev)
            else:
                after = after or LocalBackend(max_batch=max(args.concurrency))
                backend = after if name == "after" else after.variant(prefix_cache_mb=0)
        print(f"{name}: model loaded, RSS {memory.start:.0f} -> {memory.peak:.0f} MiB", flush=True)
        if not warm:  # the envs' first episode loads their engines and data: not part of any row
            play(backend, episodes(1)[:1] + episodes(1)[-1:], 1, 1, 1)
            warm = True
        for c in args.concurrency:
            if name == "before" and args.before_at and c not in args.before_at:
                continue
            cache = getattr(getattr(backend, "batcher", None), "prefix_cache", None)
            if cache is not None:
                cache.clear()  # every row starts cold: no row reuses another row's episodes
            with PeakRSS() as rss:
                r = play(backend, episodes(c), c, args.max_new_tokens, args.turns)
            r.update(engine=name, concurrency=c, rss=rss.peak, rss_growth=rss.peak - rss.start)
            if hasattr(backend, "stats"):
                r["cache_mb"] = backend.stats()["cache_bytes"] / 2**20
            rows.append(r)
            print(f"{name:>13} c={c:<2} {r['episodes']:>2} episodes {r['turns']:>3} turns: {r['wall']:7.1f} s wall, "
                  f"{r['wall'] / r['episodes']:6.1f} s/episode, prefill {r['prefill'] / r['episodes']:7.0f} tok/episode "
                  f"(of {r['prompt'] / r['episodes']:.0f} sent), {r['generated']} generated, {r['errors']} errors, "
                  f"peak RSS {r['rss']:.0f} MiB (+{r['rss_growth']:.0f} in the row), prefix cache {r.get('cache_mb', 0):.0f} MiB, per-env mean episode s { {k.split('/')[-1]: round(v, 1) for k, v in r['by_env'].items()} }", flush=True)

    def find(engine: str, c: int):
        return next((r for r in rows if r["engine"] == engine and r["concurrency"] == c), None)

    lo, hi = min(args.concurrency), max(args.concurrency)
    b1, a1, ahi = find("before", lo), find("after", lo), find("after", hi)
    if b1 and a1:
        print(f"per episode at concurrency {lo}: before {b1['wall'] / b1['episodes']:.1f} s, after "
              f"{a1['wall'] / a1['episodes']:.1f} s: {(b1['wall'] / b1['episodes']) / (a1['wall'] / a1['episodes']):.2f}x "
              f"faster; prefill tokens/episode {b1['prefill'] / b1['episodes']:.0f} -> {a1['prefill'] / a1['episodes']:.0f}")
    if a1 and ahi and hi != lo:
        print(f"after: throughput at concurrency {hi} / concurrency {lo}: "
              f"{(ahi['episodes'] / ahi['wall']) / (a1['episodes'] / a1['wall']):.2f}x (episodes/s)")
    bhi = find("before", hi)
    if bhi and ahi and hi != lo:
        print(f"concurrency {hi}: after / before throughput {(ahi['episodes'] / ahi['wall']) / (bhi['episodes'] / bhi['wall']):.2f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
