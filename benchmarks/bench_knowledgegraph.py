"""KnowledgeGraph env: step latency of gold episodes on the embedded pyoxigraph store and through a real
SPARQL HTTP server over the same graph (tests/fixtures/knowledgegraph), and the cost of building the
SPARQL of the 150 std gold programs. Measurements, printed; nothing asserted.

    python benchmarks/bench_knowledgegraph.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures" / "knowledgegraph"


def episodes(env, rounds: int) -> list[float]:
    """Seconds per step over ``rounds`` plays of every fixture question's gold replies."""
    times = []
    for _ in range(rounds):
        for task in env.tasks():
            env.reset(options={"task": task.id})
            for reply in env.expert_replies(task):
                t = time.perf_counter()
                env.step(reply)
                times.append(time.perf_counter() - t)
    return times


def show(name: str, times: list[float]) -> None:
    times = sorted(times)
    p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
    print(f"{name:<28} steps {len(times):5d}  median {statistics.median(times) * 1e3:7.2f} ms  "
          f"p99 {p99 * 1e3:7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    from agent_gym.envs.knowledgegraph import data, engine
    from agent_gym.envs.knowledgegraph.env import KnowledgeGraphEnv

    kw = {"tasks_file": FIX / "questions.json", "ontology": FIX / "ontology"}
    show("pyoxigraph (embedded)", episodes(KnowledgeGraphEnv(rdf_file=FIX / "rockets.ttl", **kw), args.rounds))
    server = subprocess.Popen([sys.executable, str(FIX / "sparql_server.py"), str(FIX / "rockets.ttl")],
                              stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline().split()[1])
        env = KnowledgeGraphEnv(endpoint=f"http://127.0.0.1:{port}/sparql", **kw)
        show("SPARQL over HTTP (local)", episodes(env, args.rounds))
    finally:
        server.kill()
        server.wait()
    try:
        questions = data.load("test")
    except Exception as exc:  # noqa: BLE001 - the data may be absent
        print(f"std questions not here ({exc}); translation skipped")
        return
    programs = [q.s_expression for q in questions]
    t = time.perf_counter()
    built = 0
    for p in programs:
        try:
            engine.to_sparql(p)
            built += 1
        except Exception:  # noqa: BLE001 - s_expressions hold forms the tools never build (literals, TC)
            pass
    per = (time.perf_counter() - t) / len(programs)
    print(f"to_sparql over std s_expressions: {built}/{len(programs)} translated, {per * 1e6:.0f} us each")


if __name__ == "__main__":
    main()
