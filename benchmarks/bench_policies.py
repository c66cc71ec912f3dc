"""LLM policy costs on the embedded SmolLM2: local tokens/s, model load times, and batched serving.

    python benchmarks/bench_policies.py [--episodes 64] [--max-new-tokens 16]

1. ``local`` backend: decode tokens/s (greedy, one request), prefill tokens/s (MMLU's 5-shot prompt),
   GGUF conversion time (first use) vs cached load time.
2. ``bench_serve``: 64 short GSM8K episodes played by the ReAct policy through ``agent-gym serve``
   (tgi backend over HTTP) at concurrency 1 vs 16; the server batches requests in flight.
Needs the task data (``agent-gym data import ../shared/data``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def bench_local(runs: int = 3) -> None:
    import gymnasium as gym

    import agent_gym
    from agent_gym.policies import models
    from agent_gym.policies.local import LocalBackend

    tmp = Path(tempfile.mkdtemp(prefix="agent-gym-bench-cache-"))
    old = os.environ.get("AGENT_GYM_MODEL_CACHE")
    os.environ["AGENT_GYM_MODEL_CACHE"] = str(tmp)
    try:
        t0 = time.perf_counter()
        models.converted(models.embedded_gguf())
        convert = time.perf_counter() - t0
        t0 = time.perf_counter()
        backend = LocalBackend()
        load = time.perf_counter() - t0
    finally:
        if old is None:
            os.environ.pop("AGENT_GYM_MODEL_CACHE")
        else:
            os.environ["AGENT_GYM_MODEL_CACHE"] = old
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"GGUF -> safetensors conversion (first use): {convert:.1f} s; load from the cache: {load:.2f} s")

    backend.generate("Count: one, two,", max_new_tokens=4)  # warm-up
    rates = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = backend.generate("Count: one, two,", max_new_tokens=64)
        rates.append(out.completion_tokens / (time.perf_counter() - t0))
    print(f"local decode: {statistics.median(rates):.1f} tok/s (median of {runs}, 64 new tokens, batch 1)")

    gym.register_envs(agent_gym)
    env = gym.make("AgentTuning/MMLU-v0")
    obs, info = env.reset(options={"task": 0})
    messages = info["prompt"] + [{"role": "user", "content": obs}]
    t0 = time.perf_counter()
    out = backend.generate(messages, max_new_tokens=1)
    print(f"local prefill: {out.prompt_tokens / (time.perf_counter() - t0):.0f} tok/s "
          f"({out.prompt_tokens}-token MMLU 5-shot prompt)")


def bench_serve(episodes: int, max_new_tokens: int, levels: list[int]) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "policies"))
    from policy_servers import serve  # the tests' helper: a real server process on a free port

    from agent_gym.rollout import plan, rollout

    with serve("--max-batch-size", str(max(levels))) as (_, url):
        options = {"backend": "tgi", "url": url, "max_new_tokens": max_new_tokens}
        rollout(plan(["AgentTuning/GSM8K-v0"], episodes=2), "react", policy_options=options, progress=False)
        seconds = {}
        for c in levels:
            t0 = time.perf_counter()
            result = rollout(plan(["AgentTuning/GSM8K-v0"], episodes=episodes), "react", concurrency=c,
                             policy_options=options, progress=False)
            seconds[c] = time.perf_counter() - t0
            tokens = sum(t.completion_tokens or 0 for t in result.trajectories)
            errors = sum(t.status == "error" for t in result.trajectories)
            print(f"serve: {episodes} GSM8K episodes at concurrency {c:>2}: {seconds[c]:.1f} s "
                  f"({episodes / seconds[c]:.2f} episodes/s, {tokens / seconds[c]:.1f} generated tok/s, "
                  f"{errors} errors)")
        lo, hi = min(levels), max(levels)
        print(f"serve: concurrency {hi} / concurrency {lo} throughput ratio: {seconds[lo] / seconds[hi]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--skip-local", action="store_true")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    if not args.skip_local:
        bench_local()
    bench_serve(args.episodes, args.max_new_tokens, args.concurrency)


if __name__ == "__main__":
    main()
