"""AgentTuning/DB-v0 on MariaDB vs SQLite: server start, episode setup, per-command latency,
and the cost of a whole episode (wall time, CPU of this process and of the server, memory).

    python benchmarks/bench_db.py [--episodes 300] [--commands 300] [--engine mariadb|sqlite]
    python benchmarks/bench_db.py --attack [--engine mariadb|sqlite]

``--attack``: 4 episodes in threads, 3 victims replaying gold solutions for as long as one
attacker runs a statement that grows past the storage cap and then hostile SQL (server
variables, accounts, other databases); each victim episode is compared with a clean run's.

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


ATTACK = [
    "INSERT INTO big SELECT REPEAT('x', 1000000) FROM seq_1_to_1000",  # SQLite: rewritten below
    "SET GLOBAL max_connections = 1", "SET GLOBAL sql_mode = ''", "CREATE DATABASE other_db",
    "DROP DATABASE mysql", "CREATE USER 'spare'@'localhost'", "SET PASSWORD = PASSWORD('x')",
]
SQLITE_GROW = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000) "
               "INSERT INTO big SELECT replace(hex(zeroblob(500000)), '0', 'x') FROM c")


def folder_bytes(folder) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:  # gone meanwhile
                pass
    return total


def bench_attack(name: str) -> None:
    import threading
    from pathlib import Path

    from agent_gym.envs.db import data

    questions = {q.id: q for q in data.load()}
    kinds = ("INSERT", "UPDATE", "counting")
    victims = [next(q for q in questions.values() if q.type == kind) for kind in kinds]

    def record(env: DBEnv, q) -> tuple[list, float]:
        t0 = time.perf_counter()
        obs, _ = env.reset(options={"task": q.id})
        seen = [obs]
        for reply in env.expert_replies(q):
            obs, _, term, trunc, info = env.step(reply)
            seen.append(obs)
            if term or trunc:
                seen += [info["status"], info["score"]]
                break
        return seen, time.perf_counter() - t0

    envs = [DBEnv(engine=name) for _ in range(4)]
    clean = [record(envs[i], q) for i, q in enumerate(victims)]
    clean_walls = [record(envs[i], q)[1] for i, q in enumerate(victims) for _ in range(5)]
    runs: list[tuple[int, bool, float]] = []
    attacking = threading.Event()
    attacking.set()
    attack: list[tuple[str, float]] = []
    folder = Path(envs[0].engine.server.socket).parent if name == "mariadb" else None
    peak = [0]

    def victim(i: int) -> None:
        while attacking.is_set():
            seen, wall = record(envs[i], victims[i])
            runs.append((i, seen == clean[i][0], wall))

    def attacker() -> None:
        env = envs[3]
        env.reset(options={"task": "other/0"})
        env.step(prompt.operation("CREATE TABLE big (a LONGTEXT)"))
        for sql in ATTACK:
            sql = SQLITE_GROW if name == "sqlite" and sql.startswith("INSERT") else sql
            t0 = time.perf_counter()
            obs = env.step(prompt.operation(sql))[0]
            attack.append((obs[:60], time.perf_counter() - t0))
        attacking.clear()

    def watch() -> None:
        while attacking.is_set():
            if folder is not None:
                peak[0] = max(peak[0], folder_bytes(folder))
            time.sleep(0.1)

    threads = [threading.Thread(target=victim, args=(i,)) for i in range(3)]
    threads += [threading.Thread(target=attacker), threading.Thread(target=watch)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = time.perf_counter() - t0
    equal = sum(ok for _, ok, _ in runs)
    print(f"\n{name}: attack, 3 victims + 1 attacker in threads, {total:.1f} s")
    print(f"  victim episodes: {len(runs)}, equal to the clean run: {equal}/{len(runs)}")
    print(f"  victim episode wall, median: clean {statistics.median(clean_walls) * 1e3:.1f} ms, "
          f"under attack {statistics.median(w for *_, w in runs) * 1e3:.1f} ms")
    for obs, wall in attack:
        print(f"  attacker {wall:6.2f} s  {obs}")
    if folder is not None:
        print(f"  server folder peak {peak[0] / 2**20:.0f} MB (storage cap {engines.STORAGE_CAP >> 20} MB per episode)")
    else:
        print(f"  process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    for env in envs:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--commands", type=int, default=300)
    parser.add_argument("--engine", choices=engines.ENGINES, help="only this engine (default: both)")
    parser.add_argument("--attack", action="store_true", help="victims' episodes alongside one attacker")
    args = parser.parse_args()
    if args.attack:
        for name in [args.engine] if args.engine else list(engines.ENGINES):
            bench_attack(name)
        return
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
