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
import os
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (its every thread)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def overhead(url: str, server_pid: int, env_id: str, calls: int, **kwargs) -> dict[str, float]:
    episodes = plan_episodes(env_id, calls, **kwargs)
    local = gym.make(env_id, **kwargs)
    remote = RemoteEnv(url, env_id, **kwargs)
    try:
        time_calls(local, episodes[:3])  # warm both (caches, connections)
        time_calls(remote, episodes[:3])
        # alternate the two sides in blocks, so a busy moment of a shared machine hits both alike; CPU
        # time (this process, all threads, and the server's) is the cost that does not depend on the load
        lr, ls, rr, rs = [], [], [], []
        cpu_local = cpu_remote = 0.0
        for i in range(0, len(episodes), 10):
            block = episodes[i:i + 10]
            c0 = time.process_time()
            a, b = time_calls(local, block)
            c1, s1 = time.process_time(), cpu_seconds(server_pid)
            c, d = time_calls(remote, block)
            cpu_local += c1 - c0
            cpu_remote += time.process_time() - c1 + cpu_seconds(server_pid) - s1
            lr += a
            ls += b
            rr += c
            rs += d
    finally:
        local.close()
        remote.close()
    med, n = statistics.median, len(lr) + len(ls)
    p10 = lambda xs: statistics.quantiles(xs, n=10)[0]  # noqa: E731
    return {"steps": len(ls), "local_step_ms": 1e3 * med(ls), "remote_step_ms": 1e3 * med(rs),
            "local_reset_ms": 1e3 * med(lr), "remote_reset_ms": 1e3 * med(rr),
            "step_overhead_ms": 1e3 * (med(rs) - med(ls)), "reset_overhead_ms": 1e3 * (med(rr) - med(lr)),
            "step_overhead_p10_ms": 1e3 * (p10(rs) - p10(ls)),
            "cpu_overhead_ms": 1e3 * (cpu_remote - cpu_local) / n}


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


ECHO_SERVER = """
import functools, json, socket, sys
import gymnasium as gym, uvicorn
from fastapi import FastAPI
from openenv.core.env_server.http_server import HTTPEnvServer
from openenv.core.env_server.interfaces import Environment
from openenv.core.env_server.types import ServerMode
import agent_gym
from agent_gym.envserver import Limits, SessionState, TextAction, TextObservation, jsonable

gym.register_envs(agent_gym)
env = gym.make("AgentTuning/GSM8K-v0")
env.reset(seed=0)
INFO = jsonable(env.step("The answer is 1")[4])  # a real step's info: the same payload as GSM8K's


class Echo(Environment[TextAction, TextObservation, SessionState]):
    SUPPORTS_CONCURRENT_SESSIONS = True

    def reset(self, seed=None, episode_id=None, **kwargs):
        return TextObservation(text="", info=INFO)

    def step(self, action, timeout_s=None, **kwargs):
        return TextObservation(text=action.message, info=INFO, reward=0.0)

    @property
    def state(self):
        return SessionState()


app = FastAPI()
HTTPEnvServer(Echo, TextAction, TextObservation).register_routes(app, mode=ServerMode.PRODUCTION)
if sys.argv[1] == "limits":
    app = Limits(app, max_payload_bytes=1 << 20, idle_timeout=600)
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(64)
print(f"serving on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on")).run(sockets=[sock])
"""


def openenv_floor(calls: int) -> dict[str, float]:
    """Median ms per step through OpenEnv's server and client alone: an env that echoes at once with a GSM8K
    step's info, served bare and behind :class:`agent_gym.envserver.Limits`, stepped with the client RemoteEnv
    uses (``AgentGymClient(...).sync()``). What is left of RemoteEnv's overhead above it is agent-gym's."""
    out = {}
    for mode in ("bare", "limits"):
        proc = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, mode], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        line = proc.stdout.readline()
        if "serving" not in line:
            raise SystemExit(f"the echo server did not start: {line}{proc.stdout.read()}")
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        url = line.split(" on ", 1)[1].strip()
        try:
            with AgentGymClient(base_url=url).sync() as client:
                client.reset()
                times = []
                for i in range(calls + 20):
                    t0 = time.perf_counter()
                    client.step(TextAction(message=f"The answer is {i}"))
                    times.append(time.perf_counter() - t0)
            out[mode] = 1e3 * statistics.median(times[20:])
        finally:
            proc.terminate()
            proc.wait()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="steps per env in the overhead measurement")
    parser.add_argument("--sessions", default="50,200", help="session counts to hold open at once")
    args = parser.parse_args()

    proc, url = start_server("--env", "gsm8k,db")
    try:
        gsm8k = overhead(url, proc.pid, GSM8K, args.calls)
        db = overhead(url, proc.pid, DB, args.calls, engine="sqlite")
    finally:
        proc.terminate()
        proc.wait()
    print(f"\nper call (ms), the same calls here and through the server; overhead = server - here (target < 2 ms/step)."
          f"\nmedian and 10th percentile of wall time, and CPU time (client + server) per call, which a busy machine"
          f"\ndoes not inflate (load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"{'env':<28}{'steps':>6}{'step here':>11}{'step remote':>13}{'overhead':>10}{'p10 ovh':>9}"
          f"{'reset here':>12}{'reset remote':>14}{'overhead':>10}{'CPU ovh/call':>14}")
    for name, r in ((GSM8K, gsm8k), (DB + " (sqlite)", db)):
        print(f"{name:<28}{r['steps']:>6}{r['local_step_ms']:>11.3f}{r['remote_step_ms']:>13.3f}"
              f"{r['step_overhead_ms']:>10.3f}{r['step_overhead_p10_ms']:>9.3f}{r['local_reset_ms']:>12.3f}"
              f"{r['remote_reset_ms']:>14.3f}{r['reset_overhead_ms']:>10.3f}{r['cpu_overhead_ms']:>14.3f}")

    floor = openenv_floor(args.calls)
    print(f"\nOpenEnv's own floor (an env that answers at once with a GSM8K step's info, the same client): "
          f"{floor['bare']:.3f} ms per step bare, {floor['limits']:.3f} ms behind agent-gym's Limits middleware; "
          f"agent-gym's part of the GSM8K overhead: {gsm8k['step_overhead_ms'] - floor['bare']:.3f} ms")

    rows = sessions([int(n) for n in args.sessions.split(",")])
    print("\nsessions held open at once by one server (each a GSM8K env with an episode running), server RSS (MiB);"
          "\nthe last count is played twice: RSS that stays put means closed sessions' memory is used again")
    print(f"{'sessions':>9}{'before':>9}{'open':>9}{'closed':>9}{'MiB/session':>13}{'open all (s)':>14}{'step all (s)':>14}")
    for r in rows:
        print(f"{r['sessions']:>9}{r['rss_before_mib']:>9.1f}{r['rss_open_mib']:>9.1f}{r['rss_closed_mib']:>9.1f}"
              f"{r['mib_per_session']:>13.2f}{r['open_s']:>14.2f}{r['step_all_s']:>14.2f}")


if __name__ == "__main__":
    main()
