"""Card game measurements (printed, not asserted): the baselines against each other and a random player, how
fast the engine plays, and, given AgentBench's C++ engine, whether ours sends the same messages.

    python benchmarks/bench_cardgame.py [--games 1000]
    python benchmarks/bench_cardgame.py --cpp PATH/logic/bin/main [--games 300] [--fuzz]

Sides alternate with the seed (even seeds: the first-named player moves first); seeds 0..N-1.

``--cpp``: AgentBench.old ``src/tasks/card_game/logic``, built with its Makefile (``g++ ... -std=c++17``).
Bots play through the C++ engine (its judge protocol on stdin/stdout) and the same messages go to ours;
every message the C++ engine sends (each fish's id, hp and attack, the last actions' hits, passives and
skill, the last guess) and the winner must equal ours. ``--fuzz`` sends a random, often illegal,
message for 4 % of the moves, to compare the illegal-move rules too.
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import subprocess
import tempfile
import time
from collections import Counter

from agent_gym.envs.cardgame import engine
from agent_gym.envs.cardgame.baselines import Baseline1, Baseline2, RandomPlayer


def matchup(bot, against, games: int) -> tuple[float, Counter, float]:
    wins, ends = 0, Counter()
    start = time.perf_counter()
    for seed in range(games):
        rng = random.Random(seed)
        side = seed % 2
        players = [None, None]
        players[side], players[side ^ 1] = bot(rng), against(rng)
        game = engine.play(players)
        wins += game.winner == side
        ends[game.end] += 1
    return wins / games, ends, (time.perf_counter() - start) / games


class CppEngine:
    """AgentBench's logic binary, spoken to as its judger did: 4-byte big-endian length + JSON in, and out
    (after a second 4-byte word)."""

    def __init__(self, binary: str, workdir: str):
        self.proc = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=workdir)
        self.send({"player_list": [1, 1], "player_num": 2, "replay": f"{workdir}/replay.json"})

    def send(self, obj) -> None:
        data = json.dumps(obj).encode()
        self.proc.stdin.write(struct.pack(">I", len(data)) + data)
        self.proc.stdin.flush()

    def recv(self) -> dict:
        size = struct.unpack(">I", self.proc.stdout.read(8)[:4])[0]
        return json.loads(self.proc.stdout.read(size))

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _essentials(action):
    if not action:
        return None
    return (action.get("ActionFish"), action["skill"]["type"], bool(action["skill"]["isSkill"]),
            [(t["pos"], t["player"], int(t["value"])) for t in action["skill"].get("targets") or []],
            [(h["target"], h["player"], int(h["value"]), bool(h["traceable"])) for h in action.get("hit") or []],
            [(p["type"], p["source"], p["player"], int(p["value"])) for p in action.get("passive") or []])


def _guess(info):
    info = info or {}
    return info.get("AssertPos"), info.get("AssertContent"), info.get("AssertResult")


def compare_with_cpp(binary: str, seed: int, bots, fuzz: bool, workdir: str) -> tuple[int, str]:
    """One game through both engines; raises AssertionError at the first difference. Returns (phases, end)."""
    rng = random.Random(seed)
    players = [bots[0](rng), bots[1](rng)]
    ours, views = engine.Aquawar(), [engine.PlayerView(0), engine.PlayerView(1)]
    cpp, phases = CppEngine(binary, workdir), 0
    try:
        while True:
            msg = cpp.recv()
            if msg.get("state") == -1:
                result = json.loads(msg["end_info"])
                winner = 0 if result["0"] == 100 else 1 if result["1"] == 100 else None
                assert ours.over and winner == ours.winner, (seed, result, ours.winner, ours.end)
                return phases, ours.end
            if "content" not in msg:
                continue  # the time-limit message before each phase
            content, p = json.loads(msg["content"][0]), msg["player"][0]
            kind = content["Action"]
            if kind == "Finish":
                continue
            if kind == "Pick":
                order = players[p].pick(views[p])
                ours.pick(p, order)
                cpp.send({"player": p, "content": json.dumps({"Action": "Pick", "ChooseFishs": order})})
                continue
            mine = ours.assert_message(p) if kind == "Assert" else ours.action_message(p)
            where = (seed, phases, kind)
            assert not ours.over and content["GameInfo"] == mine["GameInfo"], (where, content["GameInfo"], mine)
            if kind == "Assert":
                for key in ("EnemyAction", "MyAction"):
                    assert _essentials(content.get(key)) == _essentials(mine[key]), (where, key)
                assert _guess(content.get("EnemyAssert")) == _guess(mine["EnemyAssert"]), where
            else:
                assert _guess(content.get("AssertReply")) == _guess(mine["AssertReply"]), where
            views[p].receive(content)
            if kind == "Assert":
                out = engine.assert_message(views[p], players[p].guess(views[p]))
                if fuzz and rng.random() < 0.04:
                    out = {"Action": "Assert", "Pos": rng.randint(0, 3), "ID": rng.randint(1, 12)}
                ours.assert_(p, out)
            else:
                out = players[p].act(views[p]).to_message()
                if fuzz and rng.random() < 0.04:
                    out = {"Action": "Action", "Type": rng.randint(0, 1), "MyPos": rng.randint(0, 3),
                           "EnemyPos": rng.randint(0, 3), "MyList": rng.sample(range(4), rng.randint(0, 2)),
                           "EnemyList": rng.sample(range(4), rng.randint(0, 4))}
                ours.action(p, out)
            phases += 1
            cpp.send({"player": p, "content": json.dumps(out)})
    finally:
        cpp.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--games", type=int, default=1000)
    parser.add_argument("--cpp", help="AgentBench's compiled logic/bin/main: compare every message with ours")
    parser.add_argument("--fuzz", action="store_true", help="with --cpp: 4 %% random (often illegal) moves")
    args = parser.parse_args()
    if args.cpp:
        pairs = [(Baseline1, Baseline2), (Baseline2, Baseline1), (RandomPlayer, Baseline1), (Baseline2, RandomPlayer),
                 (RandomPlayer, RandomPlayer)]
        ends, total = Counter(), 0
        with tempfile.TemporaryDirectory() as workdir:
            for seed in range(args.games):
                phases, end = compare_with_cpp(args.cpp, seed, pairs[seed % len(pairs)], args.fuzz, workdir)
                ends[end] += 1
                total += phases
        print(f"{args.games} games, {total} phases: every message and winner equal the C++ engine's; ends {dict(ends)}")
        return
    for bot, against in ((Baseline1, RandomPlayer), (Baseline2, RandomPlayer), (Baseline2, Baseline1),
                         (Baseline1, Baseline1)):
        rate, ends, seconds = matchup(bot, against, args.games)
        print(f"{bot.name:9s} vs {against.name:9s}: wins {rate:6.1%} over {args.games} games, "
              f"ends {dict(ends)}, {seconds * 1000:.1f} ms per game")


if __name__ == "__main__":
    main()
