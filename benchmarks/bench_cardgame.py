"""Card game measurements (printed, not asserted): the baselines against each other and a random player, and
how fast the engine plays.

    python benchmarks/bench_cardgame.py [--games 1000]

Sides alternate with the seed (even seeds: the first-named player moves first); seeds 0..N-1.
"""

from __future__ import annotations

import argparse
import random
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--games", type=int, default=1000)
    args = parser.parse_args()
    for bot, against in ((Baseline1, RandomPlayer), (Baseline2, RandomPlayer), (Baseline2, Baseline1),
                         (Baseline1, Baseline1)):
        rate, ends, seconds = matchup(bot, against, args.games)
        print(f"{bot.name:9s} vs {against.name:9s}: wins {rate:6.1%} over {args.games} games, "
              f"ends {dict(ends)}, {seconds * 1000:.1f} ms per game")


if __name__ == "__main__":
    main()
