"""Episodes per second with the expert policy at 1, 2 and 4 workers: threads vs worker processes vs
Ray actors, for ALFWorld (TextWorld: CPU-bound Python) and DB (MariaDB: the work is in the server).

    python benchmarks/bench_scale.py [--alfworld 32] [--db 120] [--workers 1,2,4] [--kinds threads,processes,ray]

Each cell is one ``rollout()`` of the first N tasks of the env's test split (no output file), with the
expert wrapped so that each trajectory records the process that played it. ``ep/s`` is the steady rate
while every worker is warm and busy: the episodes that started after the last worker ended its first
(cold) episode and ended before the first worker ended its last, over that window; so worker start (a
fresh interpreter, an engine) and the ragged end are left out. ``warm s`` is the time until every
worker had ended one episode; ``wall s`` the whole rollout. Threads all record one process: their
window is from the k-th to the last-but-k episode's end. ``cpu/wall`` is the CPU the workers used over
the wall time of the rollout (this process for threads, the reaped worker processes for processes;
not measured for Ray, whose actors are the raylet's children). Threads stay at or under 1.0 when the
engine holds the GIL; processes can use every core. Ratios are against the same kind at 1 worker, and
against threads at the same count. Ray runs on a private local cluster of max(--workers) logical CPUs
(one per actor).

Needs the ALFWorld and dbbench data, the ``alfworld``, ``db`` and ``ray`` extras, and mariadb-server.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path
from typing import Any

import agent_gym  # noqa: F401  (registers the ids)
from agent_gym.rollout import plan, rollout

ENVS = {"alfworld": "AgentTuning/Alfworld-v0", "db": "AgentTuning/DB-v0"}


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def expert_pid(env: Any, **options: Any) -> Any:
    """The expert, recording in its provenance the process it plays in (``bench_scale:expert_pid``)."""
    from agent_gym.policies.simple import expert

    policy = expert(env, **options)
    policy.provenance = lambda: {"policy": "expert", "pid": os.getpid()}
    return policy


def steady_rate(trajs: list[Any], workers: int) -> tuple[float, float]:
    """Episodes per second while every worker was warm and busy, and when that began (see the docstring)."""
    spans = sorted((t.started_at, t.started_at + t.seconds, t.provenance["policy"]["pid"]) for t in trajs)
    by_pid: dict[int, list[float]] = {}
    for _, end, pid in spans:
        by_pid.setdefault(pid, []).append(end)
    ends = sorted(end for _, end, _ in spans)
    if len(by_pid) > 1:
        t0, t1 = max(min(e) for e in by_pid.values()), min(max(e) for e in by_pid.values())
    else:  # one process: threads (or one worker)
        k = min(workers, max(1, (len(ends) - 1) // 3))
        t0, t1 = ends[k - 1], ends[-k] if workers > 1 else ends[-1]
    inside = [1 for start, end, _ in spans if start >= t0 and end <= t1]
    if t1 <= t0 or not inside:
        return float("nan"), t0
    return len(inside) / (t1 - t0), t0


def measure(env_id: str, episodes: int, kind: str, workers: int) -> dict[str, float]:
    specs = plan([env_id], episodes=episodes)
    cpu0, t0, wall0 = cpu_seconds(), time.perf_counter(), time.time()
    res = rollout(specs, "bench_scale:expert_pid", concurrency=workers, progress=False, workers=kind)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    rate, warm = steady_rate([t for t in res.trajectories if t.provenance.get("policy")], workers)
    score = sum(t.score for t in res.trajectories) / max(1, len(res.trajectories))
    return {"eps": rate, "start": warm - wall0, "wall": wall, "cpu_wall": cpu / wall if kind != "ray" else float("nan"),
            "errors": len(res.errors), "score": score}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alfworld", type=int, default=32, help="ALFWorld episodes per cell (0: skip)")
    ap.add_argument("--db", type=int, default=120, help="DB episodes per cell (0: skip)")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--kinds", default="threads,processes,ray")
    args = ap.parse_args()
    counts = [int(x) for x in args.workers.split(",")]
    kinds = [k.strip() for k in args.kinds.split(",")]
    if "ray" in kinds:
        import ray

        t0 = time.perf_counter()
        here = str(Path(__file__).resolve().parent)  # the actors import bench_scale:expert_pid
        ray.init(num_cpus=max(counts), include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": here}})
        print(f"ray: a local cluster of {max(counts)} logical CPUs started in {time.perf_counter() - t0:.1f}s "
              f"(not counted)")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
    rows = []
    for name, n in (("alfworld", args.alfworld), ("db", args.db)):
        if n <= 0:
            continue
        t0 = time.perf_counter()  # warm the disk caches (ALFWorld's compiled games): the first cell is not penalised
        rollout(plan([ENVS[name]], episodes=n), "expert", progress=False)
        print(f"{name}: warm-up of {n} episodes in {time.perf_counter() - t0:.1f}s (not counted)", flush=True)
        for kind in kinds:
            for w in counts:
                r = measure(ENVS[name], n, kind, w)
                rows.append((name, kind, w, r))
                print(f"  {name:8} {kind:9} {w}: {r['eps']:.2f} ep/s, warm {r['start']:.1f}s, wall {r['wall']:.1f}s, "
                      f"errors {r['errors']}", flush=True)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end\n")
    print(f"{'env':8} {'workers':9} {'n':>2} {'ep/s':>6} {'x vs 1':>6} {'x vs threads':>12} {'cpu/wall':>8} "
          f"{'warm s':>7} {'wall s':>6} {'score':>5} {'errors':>6}")
    base = {(e, k, w): r for e, k, w, r in rows}
    for env, kind, w, r in rows:
        one = base.get((env, kind, 1), r)["eps"]
        threads = base.get((env, "threads", w), r)["eps"]
        cw = "-" if r["cpu_wall"] != r["cpu_wall"] else f"{r['cpu_wall']:.2f}"
        print(f"{env:8} {kind:9} {w:>2} {r['eps']:6.2f} {r['eps'] / one:6.2f} {r['eps'] / threads:12.2f} {cw:>8} "
              f"{r['start']:7.1f} {r['wall']:6.1f} {r['score']:5.2f} {r['errors']:6d}")


if __name__ == "__main__":
    main()
