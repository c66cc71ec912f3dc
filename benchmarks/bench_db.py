"""AgentTuning/DB-v0 on MariaDB vs SQLite: server start, episode setup, per-command latency,
and the cost of a whole episode (wall time, CPU of this process and of the server, memory).

    python benchmarks/bench_db.py [--episodes 300] [--commands 300] [--engine mariadb|sqlite]

On MariaDB an episode's setup is its database, table and account (``CREATE USER`` with a
random password, ``GRANT`` on that database) and its teardown ``DROP DATABASE`` and ``DROP
USER``; ``create`` / ``drop`` below time those two halves alone (docs/db.md has the numbers
before and after per-episode accounts).

Needs the dbbench data (``agent-gym data import ../shared/data``) and, for MariaDB,
``mariadb-server`` and the ``db`` extra. Numbers are medians unless said otherwise.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

import agent_gym  # noqa: F401  (registers the datasets)
from agent_gym.envs.db import engine as engines, prompt
from agent_gym.envs.db.env import DBEnv
from agent_gym.envs.db.mariadb import MariaDBServer

COMMANDS = {
    "SELECT COUNT(*)": "SELECT COUNT(*) FROM `{t}`",
    "SELECT * (truncated)": "SELECT * FROM `{t}`",
    "SELECT WHERE": "SELECT * FROM `{t}` WHERE `{c}` = 'x'",
    "UPDATE": "UPDATE `{t}` SET `{c}` = 'y' WHERE `{c}` = 'x'",
    "SQL error": "SELEC 1",
}


def cpu_seconds(pid: int | None = None) -> float:
    """User+system CPU seconds of this process (``pid`` None) or of another one."""
    if pid is None:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def server_pid(server: MariaDBServer) -> int | None:
    """The mariadbd pid (``setpriv`` execs it, so the Popen pid is the server's)."""
    return server._proc.pid if server.running else None  # noqa: SLF001 - benchmark introspection


def bench_server_start() -> None:
    server = MariaDBServer()
    t0 = time.perf_counter()
    server.acquire()
    first = time.perf_counter() - t0
    pid = server_pid(server)
    print(f"mariadb: server start {first * 1000:.0f} ms (datadir copied from the cached template; "
          f"the first start on a machine also runs mariadb-install-db once), RSS idle {rss_mb(pid):.0f} MB")
    server.release()


def bench_engine(name: str, episodes: int, commands: int) -> dict[str, float]:
    env = DBEnv(engine=name)
    tasks = env.tasks()[:episodes]
    env.reset(options={"task": 0})  # starts the server (not counted below)
    server = getattr(env.engine, "server", None)
    pid = server_pid(server) if server else None

    setup = []
    for i in range(len(tasks)):
        t0 = time.perf_counter()
        env.reset(options={"task": i})
        setup.append(time.perf_counter() - t0)

    create, drop = [], []  # the engine's two halves of a reset, without the env around them
    cpu0, server_cpu0 = cpu_seconds(), cpu_seconds(pid) if pid else 0.0
    for task in tasks:
        t0 = time.perf_counter()
        db = env.engine.create(task.table)
        t1 = time.perf_counter()
        db.drop()
        create.append(t1 - t0)
        drop.append(time.perf_counter() - t1)
    setup_cpu = (cpu_seconds() - cpu0 + ((cpu_seconds(pid) - server_cpu0) if pid else 0.0)) / len(tasks)

    q = next(t for t in tasks if t.table.rows and not t.type.startswith("INSERT"))
    latency = {}
    for label, template in COMMANDS.items():
        env.reset(options={"task": q.id})
        reply = prompt.operation(template.format(t=q.table.name, c=prompt.mysql_escape(q.table.columns[0])))
        times = []
        for _ in range(commands):
            t0 = time.perf_counter()
            env.step(reply)
            times.append(time.perf_counter() - t0)
            if env.unwrapped._done:  # noqa: SLF001
                env.reset(options={"task": q.id})
        latency[label] = statistics.median(times)

    # whole gold-replay episodes: reset, the gold SQL, the answer, scoring, drop
    cpu0, server_cpu0, t0 = cpu_seconds(), cpu_seconds(pid) if pid else 0.0, time.perf_counter()
    solved = 0
    for task in tasks:
        env.reset(options={"task": task.id})
        for reply in env.expert_replies(task):
            *_, term, trunc, info = env.step(reply)
            if term or trunc:
                break
        solved += info["success"]
    wall = (time.perf_counter() - t0) / len(tasks)
    cpu = (cpu_seconds() - cpu0) / len(tasks)
    server_cpu = ((cpu_seconds(pid) - server_cpu0) / len(tasks)) if pid else 0.0
    server_rss = rss_mb(pid) if pid else 0.0
    env.close()

    print(f"\n{name}: episode setup (reset: fresh database + table) median {statistics.median(setup) * 1000:.2f} ms, "
          f"p95 {sorted(setup)[int(0.95 * len(setup)) - 1] * 1000:.2f} ms over {len(setup)} questions; "
          f"engine create {statistics.median(create) * 1000:.2f} ms + drop {statistics.median(drop) * 1000:.2f} ms, "
          f"{setup_cpu * 1000:.2f} ms CPU (here + server)")
    for label, seconds in latency.items():
        print(f"  per command {label:22} {seconds * 1000:.3f} ms")
    print(f"  whole episode (gold replay, {solved}/{len(tasks)} solved): {wall * 1000:.2f} ms wall, "
          f"{cpu * 1000:.2f} ms CPU here + {server_cpu * 1000:.2f} ms CPU in mariadbd"
          + (f"; server RSS {server_rss:.0f} MB" if pid else ""))
    return {"wall": wall, "cpu": cpu + server_cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--commands", type=int, default=300)
    parser.add_argument("--engine", choices=engines.ENGINES, help="only this engine (default: both)")
    args = parser.parse_args()
    results = {}
    if args.engine in (None, "mariadb"):
        if engines.mariadb_available() is None:
            bench_server_start()
            results["mariadb"] = bench_engine("mariadb", args.episodes, args.commands)
        else:
            print(f"mariadb: skipped ({engines.mariadb_available()})")
    if args.engine in (None, "sqlite"):
        results["sqlite"] = bench_engine("sqlite", args.episodes, args.commands)
    if len(results) == 2:
        m, s = results["mariadb"], results["sqlite"]
        print(f"\ncost per episode, MariaDB / SQLite: wall {m['wall'] / s['wall']:.1f}x, CPU {m['cpu'] / s['cpu']:.1f}x")


if __name__ == "__main__":
    main()
