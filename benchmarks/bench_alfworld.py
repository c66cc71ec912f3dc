"""ALFWorld reset and step time, side by side: ours vs ALFWorld's own env vs raw TextWorld.

    python benchmarks/bench_alfworld.py [--games 12] [--wording alfworld-0.3|alfworld-0.4]
    python benchmarks/bench_alfworld.py --memory     # RSS over the 134 valid_unseen games, before/after (issue 15)

Targets (issue 5): a reset with a warm compiled-game cache at least 10x faster than ALFWorld's
own env (``AlfredTWEnv`` over ``textworld.gym``, built as AgentBench builds it); a step at most
1.1x the raw TextWorld ``PddlEnv`` (with ALFWorld's name demangler) on the same commands.
Medians over games, 2 of each task type from AgentBench's test list by default. Ours plays the
games in ``--wording`` (default the paper's, alfworld 0.3: the walkthrough's ``move X to Y`` is sent
as ``put X in/on Y``); ALFWorld's env and raw TextWorld play the release's files as they are (0.4).
Needs the ``alfworld`` extra and the ``alfworld`` + ``alfworld-agentbench`` datasets.

``--memory``: the expert plays all 134 valid_unseen games in one process, the process's RSS read
every 33 games; once as before issue 15 (TextWorld's Proposition memo never emptied) and once as
now, each in a fresh process, after a process that fills the compiled-game disk cache (the user's,
or ``$AGENT_GYM_ALFWORLD_CACHE``), so both load every game from disk.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import gymnasium as gym
import yaml

import agent_gym
from agent_gym.envs.alfworld import data, engine, prompt

gym.register_envs(agent_gym)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def pick_games(n: int) -> list[data.Game]:
    by_type: dict[str, list[data.Game]] = {}
    for game in data.load("test"):
        by_type.setdefault(game.task_type, []).append(game)
    picked, i = [], 0
    while len(picked) < n and any(i < len(v) for v in by_type.values()):
        picked += [v[i] for v in by_type.values() if i < len(v)][: n - len(picked)]
        i += 1
    return picked


def commands(game: data.Game) -> list[str]:
    """The walkthrough with a look around before each command: all admissible, all distinct in effect."""
    return [c for command in data.walkthrough(game) for c in ("look", command)]


def alfworld_env(game: data.Game):
    """ALFWorld's own env on one game, as AgentBench's ``SingleAlfredTWEnv`` builds it."""
    from alfworld.agents.environment.alfred_tw_env import AlfredTWEnv

    config = yaml.safe_load((data.require("alfworld-agentbench") / "alfworld_prompts" / "base_config.yaml").read_text())
    tw_env = AlfredTWEnv.__new__(AlfredTWEnv)
    tw_env.config, tw_env.train_eval = config, "eval_out_of_distribution"
    tw_env.game_files, tw_env.num_games = [str(game.path)], 1
    return tw_env.init_env(batch_size=1)


def raw_textworld(game: data.Game):
    import textworld
    from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos

    infos = textworld.EnvInfos(won=True, admissible_commands=True, extras=["gamefile"])
    return textworld.start(str(game.path), infos, wrappers=[AlfredDemangler(shuffle=False), AlfredInfos])


def rss_mb() -> float:
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_child(mode: str) -> None:
    """One process: ``warm`` compiles every game; ``before``/``after`` play them all and print RSS."""
    games = data.load("valid_unseen")
    if mode == "warm":
        for game in games:
            engine.compile_game(game.path)
        return
    if mode == "before":
        engine.TEXTWORLD_MEMO_ENTRIES = sys.maxsize
    env = gym.make("AgentTuning/Alfworld-v0", split="valid_unseen").unwrapped
    env.reset(options={"task": games[0].id})
    gc.collect()
    series, start = [rss_mb()], time.perf_counter()
    for i, game in enumerate(games, 1):
        env.reset(options={"task": game.id})
        for reply in env.expert_replies(game):
            *_, terminated, truncated, _ = env.step(reply)
            if terminated or truncated:
                break
        if i % 33 == 0 or i == len(games):
            gc.collect()
            series.append(rss_mb())
    env.close()
    print(json.dumps({"rss_mb": series, "games": len(games), "s": time.perf_counter() - start}))


def memory() -> None:
    def child(mode: str) -> dict:
        out = subprocess.run([sys.executable, __file__, "--memory-child", mode], check=True,
                             capture_output=True, text=True).stdout
        return json.loads(out) if out.strip() else {}

    child("warm")
    for mode in ("before", "after"):
        r = child(mode)
        series = r["rss_mb"]
        print(f"RSS {mode:6s}: {series[0]:.0f} MB after one game, {series[-1]:.0f} MB after {r['games']} games "
              f"(+{series[-1] - series[0]:.0f} MB, {(series[-1] - series[0]) / r['games']:.2f} MB/game; every 33 games: "
              f"{', '.join(f'{x:.0f}' for x in series)}; {r['s']:.0f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--games", type=int, default=12)
    parser.add_argument("--wording", choices=engine.WORDINGS, default=engine.PAPER_WORDING)
    parser.add_argument("--memory", action="store_true", help="RSS over the 134 valid_unseen games, before/after")
    parser.add_argument("--memory-child", choices=("warm", "before", "after"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child or args.memory:
        memory_child(args.memory_child) if args.memory_child else memory()
        return
    os.environ.setdefault(engine.CACHE_ENV_VAR, tempfile.mkdtemp(prefix="alfworld-bench-cache-"))
    games = pick_games(args.games)
    rows: dict[str, list[float]] = {k: [] for k in (
        "reset alfworld", "reset raw load+reset", "reset ours cold", "reset ours warm disk", "reset ours in memory",
        "step alfworld", "step raw", "step ours", "step ours invalid")}

    env = gym.make("AgentTuning/Alfworld-v0", wording=args.wording).unwrapped
    for game in games:
        cmds = commands(game)
        # ALFWorld's own env: every reset loads (parses and grounds) the game again
        upstream = alfworld_env(game)
        upstream.reset()
        rows["reset alfworld"].append(timed(upstream.reset))
        rows["step alfworld"].append(statistics.median(timed(lambda c=c: upstream.step([c])) for c in cmds))
        upstream.close()
        # ours: cold (compile), warm on-disk cache (a new process), warm in memory (same process)
        engine._MEMORY.clear()
        rows["reset ours cold"].append(timed(lambda: env.reset(options={"task": game.id})))
        engine._MEMORY.clear()
        rows["reset ours warm disk"].append(timed(lambda: env.reset(options={"task": game.id})))
        rows["reset ours in memory"].append(timed(lambda: env.reset(options={"task": game.id})))
        ours = [prompt.expert_reply(engine.command_in(c, args.wording)) for c in cmds]
        rows["step ours"].append(statistics.median(timed(lambda r=r: env.step(r)) for r in ours))
        env.reset(options={"task": game.id})
        rows["step ours invalid"].append(statistics.median(timed(lambda: env.step("ACTION: fly to the moon")) for _ in range(3)))
        # raw TextWorld PddlEnv, the same commands
        raw = raw_textworld(game)
        raw.reset()
        rows["reset raw load+reset"].append(timed(lambda: (raw.load(str(game.path)), raw.reset())))
        rows["step raw"].append(statistics.median(timed(lambda c=c: raw.step(c)) for c in cmds))
        raw.close()
        print(f"{game.id}: reset alfworld {rows['reset alfworld'][-1] * 1e3:.0f} ms, ours warm "
              f"{rows['reset ours warm disk'][-1] * 1e3:.1f} ms; step raw {rows['step raw'][-1] * 1e3:.1f} ms, "
              f"ours {rows['step ours'][-1] * 1e3:.1f} ms", flush=True)
    env.close()

    med = {k: statistics.median(v) * 1e3 for k, v in rows.items()}
    print(f"\nmedians over {len(games)} games (ms), ours in wording {args.wording}:")
    for k, v in med.items():
        print(f"  {k:24s} {v:9.2f}")
    print(f"\nreset: ALFWorld's env / ours (warm disk cache) = {med['reset alfworld'] / med['reset ours warm disk']:.1f}x"
          " (target >= 10x)")
    print(f"reset: raw TextWorld load+reset / ours (warm disk cache) = "
          f"{med['reset raw load+reset'] / med['reset ours warm disk']:.1f}x")
    print(f"reset: ALFWorld's env / ours (in memory)       = {med['reset alfworld'] / med['reset ours in memory']:.1f}x")
    print(f"step:  ours / raw TextWorld                    = {med['step ours'] / med['step raw']:.2f}x (target <= 1.1x)")
    print(f"step:  ALFWorld's env / ours                   = {med['step alfworld'] / med['step ours']:.1f}x")


if __name__ == "__main__":
    main()
