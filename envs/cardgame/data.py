"""The card game's schedule of games: no external data, the games are generated and seeded.

Upstream (AgentBench.old ``src/tasks/card_game/task.py:get_data``): stage 2 x opponent in
{baseline1, baseline2} x the LLM's side in {0 (moves first), 1} x ``test_time`` repeats. AgentTuning ran
``configs/tasks/card_game/ext.yaml`` (``test_time: 50``, the "extend" split): 200 games, our ``test``
split (alias ``ext``). ``dev.yaml`` (3 repeats, 12 games) is our ``dev``. Upstream's games were not
seeded (the baselines' choices came from Python's and the SDK's clock-seeded generators); here each game
has a seed, so a game replays exactly for the same replies.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

from agent_gym.envs.cardgame.baselines import OPPONENTS, make_opponent

STAGE = 2                      # the stage with guessing (stage 1 had none); the only one the paper ran
REPEATS = {"test": 50, "dev": 3}
_SEED_BASE = {"test": 0, "dev": 10_000}  # dev games are other games than test's


@dataclasses.dataclass(frozen=True)
class CardGameTask:
    """One game: the opponent AI, the agent's side (0 moves first) and the seed of the opponent's
    choices. The id says all three: ``baseline2/side1/seed37``."""

    id: str
    opponent: str
    side: int
    seed: int


def make_task(opponent: str, side: int, seed: int) -> CardGameTask:
    """A game of your own; errors name the allowed values."""
    make_opponent(opponent, rng=None)  # validates the name
    if side not in (0, 1):
        raise ValueError(f"side must be 0 (the agent moves first) or 1, got {side!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return CardGameTask(id=f"{opponent}/side{side}/seed{seed}", opponent=opponent, side=side, seed=seed)


def schedule(split: str) -> list[CardGameTask]:
    """Upstream's order: opponent, then side, then repeat."""
    n, base = REPEATS[split], _SEED_BASE[split]
    return [make_task(opp, side, base + i) for opp in OPPONENTS for side in (0, 1) for i in range(n)]


def load_file(path: Path) -> Sequence[CardGameTask]:
    """``tasks_file=``: JSON lines ``{"opponent": "baseline2", "side": 1, "seed": 7}``."""
    tasks = []
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            tasks.append(make_task(row["opponent"], row["side"], row["seed"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{lineno}: a game is {{\"opponent\": \"baseline1\"|\"baseline2\", "
                             f"\"side\": 0|1, \"seed\": int}} ({exc})") from None
    return tasks
