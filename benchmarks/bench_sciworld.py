"""ScienceWorld step time and memory, side by side: ours vs upstream's ``ScienceWorldEnv``.

    python benchmarks/bench_sciworld.py [--steps 320] [--envs 8] [--games 27]
    python benchmarks/bench_sciworld.py --repro 6     # only: the expert's plans with other games running

Targets (issue 5): a step at most 1.1x upstream's ``ScienceWorldEnv.step`` on the same actions,
and 8 concurrent envs in under 1 GB in total (upstream starts one JVM per env, about 1.1 GB).
Also reset time against AgentTuning's eval.py, which planned the gold path at every load.
Step time: the same 8-action cycle on the same game, played in alternating blocks so that load
from other processes hits both sides alike; medians of per-step times. Our env is timed in its
default (the paper's mapping, admissible actions in ``info``) and its raw mode
(``map_actions=False, admissible_actions=False``). Memory: each side in a fresh subprocess that
starts N envs, resets each on a different game and plays 10 steps; then the summed proportional
set size (PSS) of that process and every JVM it started.

``--repro N`` (issue 15): N times, plan and play the expert on each of ``REPRO_TASKS`` while three
threads load other tasks and step them in the same JVM, each try with new envs; prints how many
distinct plans and which outcomes each task got (before the fix: 5 distinct plans in 6 tries for
find-non-living-thing/261, ending 0.75 or 1.0).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import statistics
import subprocess
import sys
import threading
import time

TASK = ("find-plant", 261)
# walk the house and look about; no two consecutive (action, observation) pairs repeat, so
# upstream's loop stop never ends the episode
CYCLE = ["look around", "open door to hallway", "go to hallway", "look around", "inventory",
         "open door to kitchen", "go to kitchen", "look at sink"]


def _ours(**kwargs):
    from agent_gym.envs.sciworld.env import SciWorldEnv

    env = SciWorldEnv(env_step_limit=10**6, **kwargs)
    task_id = f"{TASK[0]}/{TASK[1]}"
    env.reset(options={"task": task_id})

    def step(action: str) -> None:
        *_, term, trunc, _info = env.step(f"Action: {action}")
        if term or trunc:  # not timed away: rare (loop stop after a no-op pair)
            env.reset(options={"task": task_id})

    return env, step


def _raw():
    from scienceworld import ScienceWorldEnv

    env = ScienceWorldEnv("", envStepLimit=10**6)
    env.load(TASK[0], TASK[1], "easy")
    env.reset()
    return env, env.step


def step_times(steps: int, block: int = 40) -> dict[str, float]:
    sides = {"upstream ScienceWorldEnv.step": _raw(), "ours (paper mapping + admissible)": _ours(),
             "ours (raw mode)": _ours(map_actions=False, admissible_actions=False)}
    times: dict[str, list[float]] = {name: [] for name in sides}
    for name, (_env, step) in sides.items():  # warm the JIT on each side
        for i in range(block):
            step(CYCLE[i % len(CYCLE)])
    done = 0
    while done < steps:
        for name, (_env, step) in sides.items():
            for i in range(block):
                start = time.perf_counter()
                step(CYCLE[(done + i) % len(CYCLE)])
                times[name].append(time.perf_counter() - start)
        done += block
    for _env, _step in sides.values():
        _env.close()
    return {name: statistics.median(t) for name, t in times.items()}


def reset_times(games: int) -> dict[str, float]:
    """Median reset: ours vs upstream's eval.py (``load(..., generateGoldPath=True)`` then ``reset``)."""
    from scienceworld import ScienceWorldEnv

    from agent_gym.envs.sciworld import data
    from agent_gym.envs.sciworld.env import SciWorldEnv

    tasks = list(data.load("test"))[::10][:games]
    ours, raw = SciWorldEnv(), ScienceWorldEnv("", envStepLimit=100)
    times: dict[str, list[float]] = {"upstream eval.py (load with gold path + reset)": [], "ours": []}
    for t in tasks:
        start = time.perf_counter()
        raw.load(t.task_name, t.variation, "easy", generateGoldPath=True)
        raw.reset()
        times["upstream eval.py (load with gold path + reset)"].append(time.perf_counter() - start)
        start = time.perf_counter()
        ours.reset(options={"task": t.id})
        times["ours"].append(time.perf_counter() - start)
    ours.close()
    raw.close()
    return {name: statistics.median(t) for name, t in times.items()}


_MEMORY_CHILD = """
import json, sys, psutil
from agent_gym.envs.sciworld import data
side, n = sys.argv[1], int(sys.argv[2])
tasks = [t for t in data.load("test")][::11][:n]
envs = []
for t in tasks:
    if side == "ours":
        from agent_gym.envs.sciworld.env import SciWorldEnv
        e = SciWorldEnv(); e.reset(options={"task": t.id}); act = lambda a, e=e: e.step("Action: " + a)
    else:
        from scienceworld import ScienceWorldEnv
        e = ScienceWorldEnv("", envStepLimit=100); e.load(t.task_name, t.variation, "easy"); e.reset(); act = e.step
    for a in ["look around", "inventory", "open door to hallway", "go to hallway", "look around"] * 2:
        act(a)
    envs.append(e)
me = psutil.Process()
procs = [me] + me.children(recursive=True)
pss = {p.pid: p.memory_full_info().pss for p in procs}
print(json.dumps({"total_mb": sum(pss.values()) / 2**20, "python_mb": pss[me.pid] / 2**20,
                  "jvms": sum(1 for p in procs if "java" in p.name())}))
"""


def memory(side: str, n: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, side, str(n)], capture_output=True, text=True,
                         check=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


REPRO_TASKS = ("find-non-living-thing/261", "find-living-thing/261")
LOADED = ("boil", "melt", "grow-fruit", "chemistry-mix", "find-animal", "power-component", "lifespan-longest-lived")


def repro(tries: int) -> dict[str, dict[str, object]]:
    """Distinct expert plans and the outcomes of ``tries`` episodes per task, with 3 loader threads running."""
    from agent_gym.envs.sciworld import engine
    from agent_gym.envs.sciworld.env import SciWorldEnv

    stop = threading.Event()

    def loader(i: int) -> None:
        game = engine.Game()
        k = 0
        while not stop.is_set():
            game.load(LOADED[(k + i) % len(LOADED)], k % 5, "easy")
            for action in ("look around", "open door to kitchen", "wait1"):
                game.step(action)
            k += 1
        game.close()

    keep = SciWorldEnv(admissible_actions=False)  # holds the JVM between tries
    threads = [threading.Thread(target=loader, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    plans: dict[str, set[str]] = collections.defaultdict(set)
    outcomes: dict[str, list[float]] = collections.defaultdict(list)
    try:
        for _ in range(tries):
            for task_id in REPRO_TASKS:
                env = SciWorldEnv(admissible_actions=False)
                env.reset(options={"task": task_id})
                replies = env.expert_replies(env.task)
                for reply in replies:
                    *_, term, trunc, info = env.step(reply)
                    if term or trunc:
                        break
                plans[task_id].add(hashlib.sha1("\n".join(replies).encode()).hexdigest())
                outcomes[task_id].append(info["score"])
                env.close()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
        keep.close()
    return {t: {"distinct_plans": len(plans[t]), "outcomes": outcomes[t]} for t in REPRO_TASKS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=320)
    parser.add_argument("--envs", type=int, default=8)
    parser.add_argument("--games", type=int, default=27)
    parser.add_argument("--repro", type=int, default=0, metavar="N",
                        help="only the reproducibility check: N expert episodes per task with other games running")
    args = parser.parse_args()
    if args.repro:
        print(f"expert plans and outcomes, {args.repro} tries per task, 3 other games loading and stepping:")
        for task_id, found in repro(args.repro).items():
            print(f"  {task_id:28s} {found['distinct_plans']} distinct plan(s); outcomes {found['outcomes']}")
        return

    medians = step_times(args.steps)
    base = medians["upstream ScienceWorldEnv.step"]
    print(f"step time, median of {args.steps} steps on {TASK[0]}/{TASK[1]}:")
    for name, t in medians.items():
        print(f"  {name:38s} {t * 1000:7.2f} ms   ratio to upstream {t / base:5.2f}x")

    resets = reset_times(args.games)
    base = resets["upstream eval.py (load with gold path + reset)"]
    print(f"reset time, median over {args.games} test games (every 10th of the 270):")
    for name, t in resets.items():
        print(f"  {name:48s} {t * 1000:8.1f} ms   ratio to upstream {t / base:5.2f}x")

    print(f"memory of {args.envs} concurrent envs (PSS of the Python process and its JVMs):")
    mem = {side: memory(side, args.envs) for side in ("ours", "upstream")}
    for side, m in mem.items():
        print(f"  {side:10s} {m['total_mb']:8.0f} MB total  ({m['jvms']} JVM(s), Python {m['python_mb']:.0f} MB)")
    print(f"  ratio ours / upstream: {mem['ours']['total_mb'] / mem['upstream']['total_mb']:.2f}x")


if __name__ == "__main__":
    main()
