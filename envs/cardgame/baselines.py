"""The card game's opponents: AgentBench's two baseline AIs, and a random player to measure them by.

Upstream: AgentBench.old ``src/tasks/card_game/AI_SDK/Python/action1.py`` (baseline1) and ``action2.py``
(baseline2), on the SDK's ``auto_valid_action`` (``sdk/ai_client.hpp``). Their randomness (Python's
``random`` and the SDK's clock-seeded shuffles) comes from one seeded ``random.Random`` here, so a game
is reproducible from its seed. Quirks of upstream that change play are kept and marked: the SDK
reports a revealed own fish with a negative id, so neither baseline uses a revealed fish's skill by
id; baseline2 reads passives through the SDK's never-cleared arrays.
"""

from __future__ import annotations

import random

from agent_gym.envs.cardgame.engine import (AOE_FISH, INFIGHT_FISH, PASSIVE_TYPES, PlayerView, SdkAction)

OPPONENTS = ("baseline1", "baseline2")


class _Bot:
    """What every opponent shares: its seeded generator and upstream's random pick order."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def pick(self, view: PlayerView) -> list[int]:
        order = [1, 2, 3, 4]
        self.rng.shuffle(order)
        return order


class Baseline1(_Bot):
    """action1.py: random pick order; guess a random type on the first of the shuffled living enemies;
    act with a random living fish through ``auto_valid_action``."""

    name = "baseline1"

    def guess(self, view: PlayerView) -> tuple[int, int]:
        return view.get_enemy_living_fishes(self.rng)[0], self.rng.randint(1, 4)

    def act(self, view: PlayerView) -> SdkAction:
        action = SdkAction(view)
        pos = view.get_my_living_fishes(self.rng)[0]
        action.set_action_fish(pos)
        return auto_valid_action(view, pos, action, self.rng)


def auto_valid_action(view: PlayerView, pos: int, action: SdkAction, rng: random.Random) -> SdkAction:
    """ai_client.hpp ``auto_valid_action``: with probability 0.3 a normal attack on a random living
    enemy; else the fish's skill (AOE; infight on a random living teammate), a normal attack when it
    has none. The SDK switched on the id it saw, negative for a revealed fish: those only attack."""
    if rng.random() < 0.3:
        action.set_action_type(0)
        action.set_enemy_target(view.get_enemy_living_fishes(rng)[0])
        return action
    kind = view.get_my_id(pos)
    skilled = False
    if kind in AOE_FISH:
        skilled = True
        action.set_action_type(1)
        action.set_enemy_target(-2)
    elif kind in INFIGHT_FISH:
        allies = view.get_my_living_ally(pos, rng)
        if allies:
            skilled = True
            action.set_action_type(1)
            action.set_friend_target(allies[0])
    if not skilled:
        action.set_action_type(0)
        action.set_enemy_target(view.get_enemy_living_fishes(rng)[0])
    return action


class Baseline2(_Bot):
    """action2.py: a greedy attacker and a deducing guesser.

    Act: (1) if the own highest-attack fish's normal attack (atk * 0.5) kills the weakest living enemy
    and that enemy has more than 70 hp, attack it; (2) else, with two or more enemies alive, the AOE of
    an own spray or eel (a hidden one: the SDK's id test); (3) else a normal attack by the
    highest-attack fish on the enemy that acted last if it lives, else on a random living enemy.

    Guess: per hidden enemy fish, infer its skill (infight if its skill hurt its own team, else AOE)
    and passive (counter / deflect from the passives seen); type = skill + 2 * passive + 1. Guess fully
    known fish first, then untried types for half-known ones, else a random hidden position and a type
    not yet revealed. Remembers failed guesses.
    """

    name = "baseline2"

    def __init__(self, rng: random.Random):
        super().__init__(rng)
        self.has_failed = [[False] * 5 for _ in range(4)]
        self.last_fish = -1
        self.last_type = -1
        self.to_assert = {i: {"skill": -1, "passive": -1} for i in range(4)}

    def _add_possible(self, view: PlayerView, fish: int, kind: int, value: int) -> None:
        if view.get_enemy_id(fish) != -1:
            return
        self.to_assert[fish]["skill" if kind == 1 else "passive"] = value

    def _ass(self, fish: int, kind: int) -> tuple[int, int]:
        self.last_fish, self.last_type = fish, kind
        return fish, kind

    def guess(self, view: PlayerView) -> tuple[int, int]:
        enemy_action, my_action = view.enemy_action, view.my_action
        if not view.my_assert.result:
            # upstream indexes with the last guess even before the first one: [-1][-1] is [3][4]
            self.has_failed[self.last_fish][self.last_type] = True
        live = sorted(view.get_enemy_living_fishes())
        if view.get_enemy_id(enemy_action.action_fish) == -1:
            if enemy_action.is_skill:
                self._add_possible(view, enemy_action.action_fish, 1, 1 if enemy_action.num_friend_injury >= 1 else 0)
            # the whole fixed-size arrays, stale slots included (position 0 / counter where never written)
            for pos, kind in zip(enemy_action.friend_passives_id + my_action.enemy_passives_id,
                                 enemy_action.friend_types + my_action.enemy_types):
                name = PASSIVE_TYPES[kind]
                if name == "passive_type.counter":
                    self._add_possible(view, pos, 0, 0)
                elif name == "passive_type.deflect":
                    self._add_possible(view, pos, 0, 1)
        hidden = [i for i in range(4) if view.get_enemy_id(i) == -1 and i in live]
        for i in hidden:
            known = self.to_assert[i]
            if known["skill"] != -1 and known["passive"] != -1:
                return self._ass(i, known["skill"] + known["passive"] * 2 + 1)
        for i in hidden:
            for k in range(2):
                skill = self.to_assert[i]["skill"]
                if skill != -1 and not self.has_failed[i][skill + k * 2 + 1]:
                    return self._ass(i, skill + k * 2 + 1)
        for i in hidden:
            for k in range(2):
                passive = self.to_assert[i]["passive"]
                if passive != -1 and not self.has_failed[i][k + passive * 2 + 1]:
                    return self._ass(i, k + passive * 2 + 1)
        positions, kinds = [0, 1, 2, 3], [1, 2, 3, 4]
        for i in range(4):
            if view.get_enemy_id(i) != -1 or i not in live:
                positions.remove(i)
                if view.get_enemy_id(i) != -1:
                    kinds.remove(view.get_enemy_id(i))
        if not positions:
            return -1, -1
        return self._ass(self.rng.choice(positions), self.rng.choice(kinds))

    def act(self, view: PlayerView) -> SdkAction:
        action = SdkAction(view)
        enemy_fish = view.enemy_action.action_fish
        my_alive = view.get_my_living_fishes(self.rng)
        enemy_alive = view.get_enemy_living_fishes(self.rng)
        best, best_atk = -1, 0
        for pos in my_alive:
            if best_atk < view.get_my_atk(pos):
                best, best_atk = pos, view.get_my_atk(pos)
        weakest = view.get_lowest_health_enemy()
        if view.get_my_atk(best) * 0.5 >= view.get_enemy_hp(weakest) and view.get_enemy_hp(weakest) > 70:
            action.set_action_fish(best)
            action.set_action_type(0)
            action.set_enemy_target(weakest)
            return action
        if len(enemy_alive) >= 2:
            for pos in my_alive:
                if view.get_my_id(pos) in AOE_FISH:  # a revealed fish has a negative id here
                    action.set_action_fish(pos)
                    action.set_action_type(1)
                    action.set_enemy_target(0)
                    return action
        action.set_action_fish(best)
        action.set_action_type(0)
        action.set_enemy_target(enemy_fish if enemy_fish in enemy_alive else enemy_alive[0])
        return action


class RandomPlayer(_Bot):
    """Not upstream: the yardstick the baselines are measured against. It picks a random order and
    plays uniformly at random over the legal moves: a guess is one of (hidden living enemy, type) or
    no guess; an action one of every (living fish, normal attack, living enemy) and (living fish,
    skill, legal target) choice."""

    name = "random"

    def guess(self, view: PlayerView) -> tuple[int, int]:
        hidden = [i for i in view.get_enemy_living_fishes() if view.get_enemy_id(i) == -1]
        choices = [(-1, -1)] + [(pos, kind) for pos in hidden for kind in (1, 2, 3, 4)]
        return self.rng.choice(choices)

    def act(self, view: PlayerView) -> SdkAction:
        moves = []
        for pos in view.get_my_living_fishes():
            moves += [(pos, 0, enemy) for enemy in view.get_enemy_living_fishes()]
            kind = abs(view.get_my_id(pos))
            if kind in AOE_FISH:
                moves.append((pos, 1, -2))
            else:
                moves += [(pos, 1, ally) for ally in view.get_my_living_ally(pos)]
        pos, action_type, target = self.rng.choice(moves)
        action = SdkAction(view)
        action.set_action_fish(pos)
        action.set_action_type(action_type)
        if action_type == 1 and abs(view.get_my_id(pos)) not in AOE_FISH:
            action.set_friend_target(target)
        else:
            action.set_enemy_target(target)
        return action


def make_opponent(name: str, rng: random.Random):
    """``baseline1``, ``baseline2`` or ``random``, drawing on ``rng``."""
    players = {"baseline1": Baseline1, "baseline2": Baseline2, "random": RandomPlayer}
    if name not in players:
        raise ValueError(f"unknown card game opponent {name!r}: choose from {sorted(players)}")
    return players[name](rng)
