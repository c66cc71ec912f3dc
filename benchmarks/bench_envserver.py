"""The env server's cost: time per reset / step through ``agent-gym serve-env`` vs in process, and
how many sessions one server holds open at once, with its memory (RSS) per session.

    python benchmarks/bench_envserver.py [--calls 300] [--sessions 50,200]

Target (issue 14): the server adds under 2 ms per step. The server runs in its own process (the CLI's
``agent-gym serve-env``); calls go through :class:`agent_gym.remote.RemoteEnv` (OpenEnv's WebSocket
client). Overhead = remote time - in-process time for the same calls on the same env, side by side
in one run. Sessions: N clients (OpenEnv's async client, one event loop here) each open a session
and reset a GSM8K episode; the server's RSS before and after gives the memory per open session.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import gymnasium as gym

import agent_gym  # noqa: F401
from agent_gym.envserver import TextAction
from agent_gym.remote import AgentGymClient, RemoteEnv

GSM8K, DB = "AgentTuning/GSM8K-v0", "AgentTuning/DB-v0"


def start_server(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "agent_gym.cli", "serve-env", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    if "serving" not in line:
        raise SystemExit(f"serve-env did not start: {line}{proc.stdout.read()}")
    # keep reading what it logs: a full pipe would block the server
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc, line.split(" on ", 1)[1].split()[0]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def time_calls(env: gym.Env, episodes: list[tuple[int, list[str]]]) -> tuple[list[float], list[float]]:
    """Seconds per reset and per step over ``episodes`` (seed, replies)."""
    resets, steps = [], []
    for seed, replies in episodes:
        t0 = time.perf_counter()
        env.reset(seed=seed)
        resets.append(time.perf_counter() - t0)
        for reply in replies:
            t0 = time.perf_counter()
            _, _, terminated, truncated, _ = env.step(reply)
            steps.append(time.perf_counter() - t0)
            if terminated or truncated:
                break
    return resets, steps


def plan_episodes(env_id: str, calls: int, **kwargs) -> list[tuple[int, list[str]]]:
    """Seeds and the expert's replies, made here once so both sides play exactly the same calls."""
    env = gym.make(env_id, **kwargs)
    out, n = [], 0
    seed = 0
    while n < calls:
        env.reset(seed=seed)
        replies = list(env.unwrapped.expert_replies(env.unwrapped.task))
        out.append((seed, replies))
        n += len(replies)
        seed += 1
    env.close()
    return out


def overhead(url: str, env_id: str, calls: int, **kwargs) -> dict[str, float]:
    episodes = plan_episodes(env_id, calls, **kwargs)
    local = gym.make(env_id, **kwargs)
    remote = RemoteEnv(url, env_id, **kwargs)
    try:
        time_calls(local, episodes[:3])  # warm both (caches, connections)
        time_calls(remote, episodes[:3])
        # alternate the two sides in blocks, so a busy moment of a shared machine hits both alike
        lr, ls, rr, rs = [], [], [], []
        for i in range(0, len(episodes), 10):
            block = episodes[i:i + 10]
            a, b = time_calls(local, block)
            c, d = time_calls(remote, block)
            lr += a
            ls += b
            rr += c
            rs += d
    finally:
        local.close()
        remote.close()
    med = statistics.median
    return {"steps": len(ls), "local_step_ms": 1e3 * med(ls), "remote_step_ms": 1e3 * med(rs),
            "local_reset_ms": 1e3 * med(lr), "remote_reset_ms": 1e3 * med(rr),
            "step_overhead_ms": 1e3 * (med(rs) - med(ls)), "reset_overhead_ms": 1e3 * (med(rr) - med(lr)),
            "step_overhead_mean_ms": 1e3 * (statistics.fmean(rs) - statistics.fmean(ls))}


async def open_sessions(url: str, n: int) -> list[AgentGymClient]:
    clients = [AgentGymClient(base_url=url, message_timeout_s=600) for _ in range(n)]
    for i in range(0, n, 16):  # 16 at a time: the server makes each env in the session's own thread
        await asyncio.gather(*(c.reset(env_id=GSM8K, seed=j) for j, c in enumerate(clients[i:i + 16], i)))
    return clients


async def close_sessions(clients: list[AgentGymClient]) -> None:
    await asyncio.gather(*(c.close() for c in clients))


async def step_sessions(clients: list[AgentGymClient]) -> None:
    await asyncio.gather(*(c.step(TextAction(message="The answer is 1")) for c in clients))


def sessions(counts: list[int]) -> list[dict[str, float]]:
    proc, url = start_server("--env", "gsm8k", "--max-sessions", str(max(counts) + 1))
    rows = []
    loop = asyncio.new_event_loop()
    try:
        warm = loop.run_until_complete(open_sessions(url, 1))  # imports and caches, not sessions
        loop.run_until_complete(close_sessions(warm))
        time.sleep(1)
        for n in [*counts, counts[-1]]:  # the largest twice: memory freed by closed sessions is used again
            base = rss_mib(proc.pid)
            t0 = time.perf_counter()
            clients = loop.run_until_complete(open_sessions(url, n))
            opened = time.perf_counter() - t0
            full = rss_mib(proc.pid)
            t0 = time.perf_counter()
            loop.run_until_complete(step_sessions(clients))  # every session still answers
            stepped = time.perf_counter() - t0
            loop.run_until_complete(close_sessions(clients))
            time.sleep(1.5)
            after = rss_mib(proc.pid)
            rows.append({"sessions": n, "rss_before_mib": base, "rss_open_mib": full, "rss_closed_mib": after,
                         "mib_per_session": (full - base) / n, "open_s": opened, "step_all_s": stepped})
    finally:
        loop.close()
        proc.terminate()
        proc.wait()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="steps per env in the overhead measurement")
    parser.add_argument("--sessions", default="50,200", help="session counts to hold open at once")
    args = parser.parse_args()

    proc, url = start_server("--env", "gsm8k,db")
    try:
        gsm8k = overhead(url, GSM8K, args.calls)
        db = overhead(url, DB, args.calls, engine="sqlite")
    finally:
        proc.terminate()
        proc.wait()
    print("\nper call, median over the same calls (ms); overhead = through the server - in process (target < 2 ms/step)")
    print(f"{'env':<28}{'steps':>6}{'step here':>11}{'step remote':>13}{'overhead':>10}{'reset here':>12}"
          f"{'reset remote':>14}{'overhead':>10}")
    for name, r in ((GSM8K, gsm8k), (DB + " (sqlite)", db)):
        print(f"{name:<28}{r['steps']:>6}{r['local_step_ms']:>11.3f}{r['remote_step_ms']:>13.3f}"
              f"{r['step_overhead_ms']:>10.3f}{r['local_reset_ms']:>12.3f}{r['remote_reset_ms']:>14.3f}"
              f"{r['reset_overhead_ms']:>10.3f}")

    rows = sessions([int(n) for n in args.sessions.split(",")])
    print("\nsessions held open at once by one server (each a GSM8K env with an episode running), server RSS (MiB);"
          "\nthe last count is played twice: RSS that stays put means closed sessions' memory is used again")
    print(f"{'sessions':>9}{'before':>9}{'open':>9}{'closed':>9}{'MiB/session':>13}{'open all (s)':>14}{'step all (s)':>14}")
    for r in rows:
        print(f"{r['sessions']:>9}{r['rss_before_mib']:>9.1f}{r['rss_open_mib']:>9.1f}{r['rss_closed_mib']:>9.1f}"
              f"{r['mib_per_session']:>13.2f}{r['open_s']:>14.2f}{r['step_all_s']:>14.2f}")


if __name__ == "__main__":
    main()
