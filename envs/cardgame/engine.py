"""Aquawar, the Digital Card Game's rules engine, reimplemented in Python from AgentBench's C++ logic.

Upstream (AgentBench.old ``src/tasks/card_game``): ``logic/src/fish.cpp`` (damage, skills, passives),
``fishset.cpp`` (counter, state bookkeeping), ``aqua_sdk.cpp`` (phases, message checks, the 128-phase
limit, winners) and the player SDK ``AI_SDK/Python/sdk/ai_client.hpp`` (what a player sees, how its
choices become messages). Where the prompt text and the engine disagree, the engine wins, as it did for
the paper: spray's AOE is a flat 70 (the prompt says 35 % of attack), deflect keeps 70 % and spreads 30 %
(the prompt says the reverse), and counter is a team-level rule in ``FishSet::on_damaged``.

Only the four fish AgentBench's card game used exist here: 1 spray, 2 flame, 3 eel, 4 sunfish.

Three layers, as upstream has them:

* :class:`Aquawar` -- the judge-side engine. It takes the players' messages (``{"Action": "Assert",
  "Pos": 2, "ID": 3}``, ``{"Action": "Action", "Type": 1, "MyPos": 0, "MyList": [], "EnemyList": [...]}``),
  checks them as ``aqua_sdk.cpp`` did (a malformed or illegal one loses the game at once), resolves them
  and records each action as upstream's action JSON (``skill``, ``hit``, ``passive``, ``ActionFish``).
* :class:`PlayerView` and :class:`SdkAction` -- the player SDK: the game as one player sees it (hidden
  enemy identities, the last actions parsed into fixed-size arrays that are overwritten in place, so
  slots past the newest entries keep older values, as the C++ ``ActionInfo`` arrays did), and the
  ``Action`` builder whose ``set_*`` methods refuse what the SDK refused.
* :class:`Match` -- two sides, each a bot (``pick`` / ``guess`` / ``act`` on its view) or the external
  agent (``None``), played phase by phase: :meth:`Match.advance` runs bots until the agent must decide.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from typing import Any, Protocol

SPRAY, FLAME, EEL, SUNFISH = 1, 2, 3, 4
FISH_NAMES = {SPRAY: "spray", FLAME: "flame", EEL: "eel", SUNFISH: "sunfish"}
FISH_IDS = {name: kind for kind, name in FISH_NAMES.items()}
AOE_FISH = (SPRAY, EEL)          # active: hit every living enemy
INFIGHT_FISH = (FLAME, SUNFISH)  # active: hurt a teammate, gain attack
COUNTER_FISH = (SPRAY, FLAME)    # passive counter
DEFLECT_FISH = (EEL, SUNFISH)    # passive deflect

MAX_HP = 400
BASE_ATK = 200
SPRAY_AOE_DAMAGE = 70      # fish.cpp Spray::special: a constant, not 35 % of attack
EEL_AOE_RATE = 0.35        # fish.cpp Eel::special: int(atk * 0.35)
INFIGHT_DAMAGE = 75
INFIGHT_ATK_GAIN = 140
COUNTER_DAMAGE = 30
COUNTER_HP_RATE = 0.3      # counter fires when the hit fish has hp < 30 % of max
DEFLECT_KEEP, DEFLECT_SPREAD = 0.7, 0.3
WOUND_STEP, WOUND_ATK_GAIN = 200, 40
GUESS_DAMAGE = 50
STATE_LIMIT = 128          # game.h Game::STATE_LIMIT: phases (picks included) in the round

# aqua_sdk.cpp's phases
PICK, ASSERT, ACTION, OVER = "pick", "assert", "action", "over"
# why a game ended
ALL_DEAD, STATE_LIMIT_EXCEEDED, INVALID_OPERATION = "all_dead", "state_limit", "invalid_operation"

# ai_client.hpp enums: skill_type and passive_type as they print in Python (str(enum) in AI_En.py)
SKILL_TYPES = ("skill_type.aoe", "skill_type.infight", "skill_type.crit", "skill_type.subtle",
               "skill_type.normalattack")
SKILL_TYPE_INDEX = {"aoe": 0, "infight": 1, "crit": 2, "subtle": 3, "normalattack": 4}
PASSIVE_TYPES = ("passive_type.counter", "passive_type.deflect", "passive_type.reduce", "passive_type.heal",
                 "passive_type.explode")
PASSIVE_TYPE_INDEX = {"counter": 0, "deflect": 1, "reduce": 2, "heal": 3, "explode": 4}

# ai_client.hpp err_type: what the SDK's Action.set_* return
ERR_TARGET, ERR_TARGET_OUT_OF_RANGE, ERR_ACTION_TYPE, ERR_ACTION_FISH, ERR_ACTION_NOT_CHOOSE, \
    ERR_FISH_NOT_CHOOSE, SUCCESS = range(7)


@dataclasses.dataclass
class Fish:
    """One fish in play. ``dead`` is the engine's DEAD state, set only after a whole action or guess
    (``FishSet::update_state``): within an action a fish at hp <= 0 still counts as alive."""

    kind: int
    pos: int
    player: int
    hp: int = MAX_HP
    atk: int = BASE_ATK
    wound: int = 0        # damage taken since the last attack gain (deflect fish turn it into attack)
    dead: bool = False
    exposed: bool = False

    @property
    def name(self) -> str:
        return FISH_NAMES[self.kind]


class _Record:
    """Upstream's action JSON being built: ``hit`` and ``passive`` lists in the order things happened."""

    def __init__(self) -> None:
        self.hits: list[dict[str, Any]] = []
        self.passives: list[dict[str, Any]] = []

    def to_json(self, skill: dict[str, Any], actor_pos: int) -> dict[str, Any]:
        out: dict[str, Any] = {"skill": skill, "ActionFish": actor_pos}
        if self.hits:
            out["hit"] = self.hits
        if self.passives:
            out["passive"] = self.passives
        return out


class Aquawar:
    """The engine of one game (one round, as AgentBench played it). Player 0 always moves first.

    Use :meth:`pick` for both players, then alternate :meth:`assert_` and :meth:`action` for
    :attr:`cur_turn` until :attr:`over`. A message that breaks a rule ends the game: the other player
    wins (``end == "invalid_operation"``, ``error`` says why).
    """

    def __init__(self) -> None:
        self.teams: list[list[Fish]] = [[], []]
        self.state = 1                 # game.state: +1 per phase; the limit is state > 128
        self.phase = PICK
        self.cur_turn = 0
        self.first_mover = 0
        self.winner: int | None = None
        self.end: str | None = None
        self.error: str | None = None
        self.last_assert: dict[str, Any] = {}
        self.last_action: list[dict[str, Any]] = [{}, {}]
        self.log: list[dict[str, Any]] = []   # every phase: who, what, and the resulting action JSON

    @property
    def over(self) -> bool:
        return self.phase == OVER

    # ------------------------------------------------------------------ phases
    def pick(self, player: int, kinds: Sequence[int]) -> None:
        """Pick phase: the four fish types in position order 0..3."""
        self._expect(player, PICK)
        if sorted(kinds) != [SPRAY, FLAME, EEL, SUNFISH]:
            return self._invalid(player, f"pick must be a permutation of 1..4, got {list(kinds)}")
        self.teams[player] = [Fish(kind=k, pos=i, player=player) for i, k in enumerate(kinds)]
        self.log.append({"player": player, "phase": PICK, "message": list(kinds)})
        self._next_phase()

    def assert_(self, player: int, message: Any) -> None:
        """Assert (guess) phase: ``{"Action": "Null"}`` or ``{"Action": "Assert", "Pos": p, "ID": t}``.
        A right guess reveals the fish and takes 50 hp from every fish of its team (floored at 0);
        guessing a dead or already revealed fish is an engine error (aqua_sdk.cpp ``read_json``)."""
        self._expect(player, ASSERT)
        problem = _check_assert(message)
        if problem:
            return self._invalid(player, problem)
        entry: dict[str, Any] = {"player": player, "phase": ASSERT, "message": dict(message)}
        if message["Action"] == "Null":
            self.last_assert = {"AssertPos": None, "AssertContent": None, "AssertResult": None}
        else:
            pos, kind = message["Pos"], message["ID"]
            target = self.teams[player ^ 1][pos]
            if target.dead or target.exposed:
                return self._invalid(player, f"assert on a {'dead' if target.dead else 'revealed'} fish (position {pos})")
            right = target.kind == kind
            if right:
                target.exposed = True
                for fish in self.teams[player ^ 1]:
                    fish.hp = fish.hp - GUESS_DAMAGE if fish.hp >= GUESS_DAMAGE else 0
            else:  # upstream calls hp_debuff(0) on the guesser's own team: only a negative hp changes (to 0)
                for fish in self.teams[player]:
                    fish.hp = fish.hp if fish.hp >= 0 else 0
            self.last_assert = {"AssertPos": pos, "AssertContent": kind, "AssertResult": right}
            entry["result"] = right
        self._update_state()
        self.log.append(entry)
        self._next_phase()

    def action(self, player: int, message: Any) -> None:
        """Action phase: ``Type`` 0 is a normal attack (``MyPos``, ``EnemyPos``), ``Type`` 1 the acting
        fish's active skill (``MyPos``, ``MyList`` of teammates, ``EnemyList`` of enemies)."""
        self._expect(player, ACTION)
        problem = _check_action(message)
        if problem:
            return self._invalid(player, problem)
        mine, theirs = self.teams[player], self.teams[player ^ 1]
        actor = mine[message["MyPos"]]
        record = _Record()
        if message["Type"] == 0:
            target = theirs[message["EnemyPos"]]
            if actor.dead or target.dead:
                return self._invalid(player, "action with a dead fish")
            dmg = actor.atk // 2
            self._on_damaged(actor, target, dmg, record)
            skill = _skill("normalattack", False, [target], dmg)
        else:
            my_list = [mine[p] for p in sorted(message.get("MyList") or [])]
            enemy_list = [theirs[p] for p in sorted(message.get("EnemyList") or [])]
            if actor.dead or any(f.dead for f in my_list + enemy_list):
                return self._invalid(player, "action with a dead fish")
            skill, problem = self._skill(actor, my_list, enemy_list, record)
            if problem:
                self._update_state()
                return self._invalid(player, problem)
        self._update_state()
        self.last_action[player] = record.to_json(skill, actor.pos)
        self.log.append({"player": player, "phase": ACTION, "message": dict(message),
                         "result": self.last_action[player]})
        self._next_phase()

    # ---------------------------------------------------------------- messages
    def game_info(self, viewer: int) -> dict[str, list[int]]:
        """``GameInfo`` as aqua_sdk.cpp sent it: enemy ids hidden (-1) until revealed, own ids negated
        once revealed, dead fish at hp 0, own attack."""
        enemy, mine = self.teams[viewer ^ 1], self.teams[viewer]
        return {
            "EnemyFish": [f.kind if f.exposed else -1 for f in enemy],
            "EnemyHP": [0 if f.dead else f.hp for f in enemy],
            "MyFish": [-f.kind if f.exposed else f.kind for f in mine],
            "MyHP": [0 if f.dead else f.hp for f in mine],
            "MyATK": [f.atk for f in mine],
        }

    def assert_message(self, viewer: int) -> dict[str, Any]:
        """What the player whose assert phase begins receives."""
        return {"Action": "Assert", "GameInfo": self.game_info(viewer), "EnemyAssert": dict(self.last_assert),
                "EnemyAction": self.last_action[viewer ^ 1], "MyAction": self.last_action[viewer]}

    def action_message(self, viewer: int) -> dict[str, Any]:
        """What the player whose action phase begins receives (its own guess's result included)."""
        return {"Action": "Action", "GameInfo": self.game_info(viewer), "AssertReply": dict(self.last_assert)}

    # ------------------------------------------------------------------ rules
    def _take_damage(self, fish: Fish, src: Fish | None, dmg: int, record: _Record) -> None:
        """``take_damage``: deflect for eel and sunfish on sourced damage while a teammate lives, then
        the attack gain from accumulated damage (after any damage, sourced or not)."""
        if fish.kind in DEFLECT_FISH:
            team = self.teams[fish.player]
            if src is not None and sum(not f.dead for f in team) > 1:
                keep, spread = int(dmg * DEFLECT_KEEP), int(dmg * DEFLECT_SPREAD)
                others = [f for f in team if f is not fish and not f.dead]
                if others:
                    spread //= len(others)
                record.passives.append({"type": "deflect", "source": fish.pos, "player": fish.player, "value": keep})
                for other in others:
                    self._take_damage(other, None, spread, record)
                self._hit(fish, src, keep, record)
            else:
                self._hit(fish, src, dmg, record)
            if fish.wound >= WOUND_STEP:
                fish.atk += WOUND_ATK_GAIN * (fish.wound // WOUND_STEP)
                fish.wound %= WOUND_STEP
        else:
            self._hit(fish, src, dmg, record)

    @staticmethod
    def _hit(fish: Fish, src: Fish | None, dmg: int, record: _Record) -> None:
        record.hits.append({"target": fish.pos, "player": fish.player, "value": dmg, "traceable": src is not None})
        fish.hp -= dmg
        fish.wound += dmg

    def _on_damaged(self, src: Fish, target: Fish, dmg: int, record: _Record) -> None:
        """``FishSet::on_damaged``: sourced damage, then counter: if the hit fish is under 30 % hp, every
        OTHER spray or flame of its team still in play deals 30 unsourced damage to the attacker."""
        self._take_damage(target, src, dmg, record)
        if target.hp < MAX_HP * COUNTER_HP_RATE:
            for fish in self.teams[target.player]:
                if fish.kind in COUNTER_FISH and not fish.dead and fish.pos != target.pos:
                    record.passives.append({"type": "counter", "source": target.pos, "player": target.player,
                                            "value": COUNTER_DAMAGE})
                    self._take_damage(src, None, COUNTER_DAMAGE, record)

    def _skill(self, actor: Fish, my_list: list[Fish], enemy_list: list[Fish],
               record: _Record) -> tuple[dict[str, Any], str | None]:
        if actor.kind in AOE_FISH:
            if my_list:
                return {}, "an AOE skill takes no teammate (friend_target_not_empty)"
            living = sum(not f.dead for f in self.teams[actor.player ^ 1])
            if not enemy_list or len(enemy_list) != living:
                return {}, "an AOE skill must target every living enemy (enemy_target_not_all)"
            dmg = SPRAY_AOE_DAMAGE if actor.kind == SPRAY else int(actor.atk * EEL_AOE_RATE)
            for enemy in enemy_list:
                self._on_damaged(actor, enemy, dmg, record)
            return _skill("aoe", True, enemy_list, dmg), None
        if len(my_list) != 1:
            return {}, "infight needs exactly one teammate (friend_target_empty / too_much)"
        if enemy_list:
            return {}, "infight takes no enemy (enemy_target_not_empty)"
        if my_list[0] is actor:
            return {}, "infight on itself (infight_myself)"
        self._take_damage(my_list[0], None, INFIGHT_DAMAGE, record)
        actor.atk += INFIGHT_ATK_GAIN
        return _skill("infight", True, my_list, INFIGHT_DAMAGE), None

    def _update_state(self) -> None:
        for team in self.teams:
            for fish in team:
                if fish.hp <= 0:
                    fish.dead = True

    # ------------------------------------------------------------- game flow
    def _expect(self, player: int, phase: str) -> None:
        if self.phase != phase or self.cur_turn != player:
            raise RuntimeError(f"it is player {self.cur_turn}'s {self.phase} phase, not player {player}'s {phase}")

    def _next_phase(self) -> None:
        """aqua_sdk.cpp ``run``: count the phase, check the limit, then whether a team is all dead."""
        self.state += 1
        if self.state > STATE_LIMIT:
            return self._finish(self._limit_winner(), STATE_LIMIT_EXCEEDED)
        if self.phase == PICK:
            if self.cur_turn != self.first_mover:
                self.phase = ASSERT
            self.cur_turn ^= 1
            return
        for i in (0, 1):
            if all(f.dead for f in self.teams[i]):
                both = all(f.dead for f in self.teams[i ^ 1])
                return self._finish(self.cur_turn if both else i ^ 1, ALL_DEAD)
        if self.phase == ASSERT:
            self.phase = ACTION
        else:
            self.phase = ASSERT
            self.cur_turn ^= 1

    def _limit_winner(self) -> int:
        """More living fish; then more total positive hp; then the larger single hp; then player 1
        (the second mover)."""
        for measure in (lambda t: sum(f.hp > 0 for f in t), lambda t: sum(f.hp for f in t if f.hp > 0),
                        lambda t: max([0] + [f.hp for f in t])):
            x0, x1 = measure(self.teams[0]), measure(self.teams[1])
            if x0 != x1:
                return int(x1 > x0)
        return self.first_mover ^ 1

    def _invalid(self, player: int, why: str) -> None:
        self.error = f"player {player}: {why}"
        self.log.append({"player": player, "phase": self.phase, "error": why})
        self._finish(player ^ 1, INVALID_OPERATION)

    def _finish(self, winner: int, end: str) -> None:
        self.winner, self.end, self.phase = winner, end, OVER


def _skill(kind: str, is_skill: bool, targets: Sequence[Fish], value: int) -> dict[str, Any]:
    return {"type": kind, "isSkill": is_skill,
            "targets": [{"pos": f.pos, "player": f.player, "value": value} for f in targets]}


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_assert(msg: Any) -> str | None:
    """aqua_sdk.cpp ``assert_msg_checker``."""
    if not isinstance(msg, dict) or msg.get("Action") not in ("Null", "Assert"):
        return f"malformed assert message {msg!r}"
    if msg["Action"] == "Null":
        return None
    if not (_is_int(msg.get("Pos")) and _is_int(msg.get("ID"))):
        return f"assert needs integer Pos and ID: {msg!r}"
    if not (0 <= msg["Pos"] <= 3 and 1 <= msg["ID"] <= 12):
        return f"assert out of range: {msg!r}"
    return None


def _check_action(msg: Any) -> str | None:
    """aqua_sdk.cpp ``action_msg_checker``."""
    if not isinstance(msg, dict) or msg.get("Action") != "Action" or not _is_int(msg.get("Type")):
        return f"malformed action message {msg!r}"
    if not _is_int(msg.get("MyPos")) or not 0 <= msg["MyPos"] <= 3:
        return f"action fish out of range: {msg!r}"
    if msg["Type"] == 0:
        if not _is_int(msg.get("EnemyPos")) or not 0 <= msg["EnemyPos"] <= 3:
            return f"attack target out of range: {msg!r}"
        return None
    if msg["Type"] != 1:
        return f"action type must be 0 or 1: {msg!r}"
    for key in ("MyList", "EnemyList"):
        items = msg.get(key) or []
        if not isinstance(items, list) or not all(_is_int(p) and 0 <= p <= 3 for p in items):
            return f"{key} must list positions 0..3: {msg!r}"
        if len(set(items)) != len(items):
            return f"{key} repeats a position: {msg!r}"
    return None


# ---------------------------------------------------------------------------- the player SDK
class ActionView:
    """ai_client.hpp ``ActionInfo``: one action as a player's SDK parsed it, relative to the fish that
    acted (``enemy_*`` are that fish's enemies). The arrays are fixed-size and never cleared; each
    parse overwrites the first slots only (upstream behaviour that AI_En.py and baseline2 read)."""

    def __init__(self) -> None:
        self.is_skill = False
        self.action_fish = -1
        self.type = 0  # skill_type index (aoe); upstream left it as it was when an action had none
        self.enemy_targets = [0] * 12
        self.friend_targets = [0] * 12
        self.enemy_expected_injury = [0] * 12
        self.friend_expected_injury = [0] * 12
        self.num_enemy_targets = self.num_friend_targets = 0
        self.enemy_injury_id = [0] * 24
        self.friend_injury_id = [0] * 24
        self.enemy_injury = [0] * 24
        self.friend_injury = [0] * 24
        self.num_enemy_injury = self.num_friend_injury = 0
        self.enemy_passives_id = [0] * 24
        self.friend_passives_id = [0] * 24
        self.enemy_types = [0] * 24     # passive_type index (0: counter)
        self.friend_types = [0] * 24
        self.num_enemy_passives = self.num_friend_passives = 0

    @property
    def type_name(self) -> str:
        return SKILL_TYPES[self.type]

    def parse(self, info: dict[str, Any] | None, actor: int) -> None:
        """``parseEnemyActionInfo`` / ``parseMyActionInfo``; ``actor`` is the player who acted."""
        if not info:
            self.is_skill, self.action_fish = False, -1
            self.num_friend_targets = self.num_enemy_targets = 0
            self.num_friend_injury = self.num_enemy_injury = 0
            self.num_friend_passives = self.num_enemy_passives = 0
            return
        self.action_fish = info.get("ActionFish", self.action_fish)
        ne = nf = 0
        skill = info["skill"]
        self.type = SKILL_TYPE_INDEX[skill["type"]]
        self.is_skill = bool(skill["isSkill"])
        if skill["type"] != "subtle":
            for target in skill["targets"]:
                if target["player"] != actor:
                    self.enemy_targets[ne] = target["pos"]
                    self.enemy_expected_injury[ne] = target["value"]
                    ne += 1
                else:  # upstream stored the value at the enemy count's index
                    self.friend_targets[nf] = target["pos"]
                    self.friend_expected_injury[ne] = target["value"]
                    nf += 1
        self.num_enemy_targets, self.num_friend_targets = ne, nf
        ne = nf = 0
        for hit in info.get("hit", []):
            if hit["player"] != actor:
                self.enemy_injury_id[ne], self.enemy_injury[ne] = hit["target"], hit["value"]
                ne += 1
            else:
                self.friend_injury_id[nf], self.friend_injury[nf] = hit["target"], hit["value"]
                nf += 1
        self.num_enemy_injury, self.num_friend_injury = ne, nf
        ne = nf = 0
        for passive in info.get("passive", []):
            kind = PASSIVE_TYPE_INDEX[passive["type"]]
            if passive["player"] != actor:
                self.enemy_passives_id[ne], self.enemy_types[ne] = passive["source"], kind
                ne += 1
            else:
                self.friend_passives_id[nf], self.friend_types[nf] = passive["source"], kind
                nf += 1
        self.num_enemy_passives, self.num_friend_passives = ne, nf


@dataclasses.dataclass
class AssertView:
    """ai_client.hpp ``AssertInfo`` (a missing or null field reads as 0 / False)."""

    pos: int = 0
    content: int = 0
    result: bool = False

    def parse(self, info: dict[str, Any] | None) -> None:
        info = info or {}
        self.pos = info.get("AssertPos") or 0
        self.content = info.get("AssertContent") or 0
        self.result = bool(info.get("AssertResult"))


class PlayerView:
    """The game as one player's SDK holds it (``AIClient``): ids, hp and own attack from ``GameInfo``,
    the last actions and guesses parsed. The ``get_*`` helpers are the SDK's; where the SDK shuffled a
    list (it seeded a generator with the wall clock) the caller passes its own ``rng``, ``None`` for
    position order."""

    def __init__(self, player: int):
        self.player = player
        self.my_ids = [0] * 4       # negative once revealed to the enemy
        self.my_hp = [MAX_HP] * 4
        self.my_atk = [BASE_ATK] * 4
        self.enemy_ids = [-1] * 4   # -1 while hidden
        self.enemy_hp = [MAX_HP] * 4
        self.enemy_action = ActionView()
        self.my_action = ActionView()
        self.enemy_assert = AssertView()
        self.my_assert = AssertView()

    def receive(self, message: dict[str, Any]) -> None:
        """``Action_Assert`` / ``Action_Action``: parse what the engine sent at the start of a phase."""
        info = message["GameInfo"]
        self.enemy_ids, self.enemy_hp = list(info["EnemyFish"]), list(info["EnemyHP"])
        self.my_ids, self.my_hp, self.my_atk = list(info["MyFish"]), list(info["MyHP"]), list(info["MyATK"])
        if message["Action"] == "Assert":
            self.enemy_action.parse(message["EnemyAction"], self.player ^ 1)
            self.my_action.parse(message["MyAction"], self.player)
            self.enemy_assert.parse(message["EnemyAssert"])
        else:
            self.my_assert.parse(message["AssertReply"])

    def get_enemy_id(self, pos: int) -> int:
        return self.enemy_ids[pos] if 0 <= pos < 4 else -2

    def get_my_id(self, pos: int) -> int:
        return self.my_ids[pos] if 0 <= pos < 4 else -2

    def get_enemy_hp(self, pos: int) -> int:
        return self.enemy_hp[pos] if 0 <= pos < 4 else -2

    def get_my_hp(self, pos: int) -> int:
        return self.my_hp[pos] if 0 <= pos < 4 else -2

    def get_my_atk(self, pos: int) -> int:
        return self.my_atk[pos] if 0 <= pos < 4 else -2

    def get_enemy_living_fishes(self, rng: random.Random | None = None) -> list[int]:
        return _shuffled([i for i in range(4) if self.enemy_hp[i] > 0], rng)

    def get_my_living_fishes(self, rng: random.Random | None = None) -> list[int]:
        return _shuffled([i for i in range(4) if self.my_hp[i] > 0], rng)

    def get_my_living_ally(self, pos: int, rng: random.Random | None = None) -> list[int]:
        return _shuffled([i for i in range(4) if i != pos and self.my_hp[i] > 0], rng)

    def get_lowest_health_enemy(self) -> int:
        best = -1
        for i in range(4):
            if self.enemy_hp[i] > 0 and (best == -1 or self.enemy_hp[i] < self.enemy_hp[best]):
                best = i
        return best


def _shuffled(items: list[int], rng: random.Random | None) -> list[int]:
    if rng is not None:
        rng.shuffle(items)
    return items


class SdkAction:
    """ai_client.hpp ``Action``: -1 is unset, -2 an AOE's "every living enemy". The ``set_*``
    methods return :data:`SUCCESS` or the SDK's error code and refuse what the SDK refused."""

    def __init__(self, view: PlayerView):
        self.view = view
        self.action_type = -1
        self.action_fish = -1
        self.enemy_target = -1
        self.friend_target = -1

    def _kind(self) -> int:
        return abs(self.view.get_my_id(self.action_fish))

    def set_action_type(self, action_type: int) -> int:
        if action_type not in (0, 1):
            return ERR_ACTION_TYPE
        self.action_type = action_type
        return SUCCESS

    def set_action_fish(self, pos: int) -> int:
        if not 0 <= pos <= 3:
            return ERR_ACTION_FISH
        self.action_fish = pos
        return SUCCESS

    def set_enemy_target(self, pos: int) -> int:
        if self.action_type == -1:
            return ERR_ACTION_NOT_CHOOSE
        if self.action_fish == -1:
            return ERR_FISH_NOT_CHOOSE
        self.enemy_target = pos  # upstream stores it before checking
        if self.action_type == 0:
            return SUCCESS if 0 <= pos <= 3 else ERR_TARGET_OUT_OF_RANGE
        if self._kind() in AOE_FISH:
            self.enemy_target = -2
            return SUCCESS
        return ERR_TARGET  # flame / sunfish take a teammate

    def set_friend_target(self, pos: int) -> int:
        if self.action_type == -1:
            return ERR_ACTION_NOT_CHOOSE
        if self.action_fish == -1:
            return ERR_FISH_NOT_CHOOSE
        if self.action_type == 0:
            return ERR_TARGET
        self.friend_target = pos
        if self._kind() in AOE_FISH:
            return ERR_TARGET
        if pos == self.action_fish:
            return ERR_TARGET
        return SUCCESS if 0 <= pos <= 3 else ERR_TARGET_OUT_OF_RANGE

    def to_message(self) -> dict[str, Any]:
        """``Action_Action``: the message the SDK sends for this action."""
        msg: dict[str, Any] = {"Action": "Action", "Type": self.action_type, "MyPos": self.action_fish}
        if self.action_type == 0:
            msg["EnemyPos"] = self.enemy_target
        elif self.action_type == 1:
            if self.enemy_target == -2:
                msg["EnemyList"] = [i for i in range(4) if self.view.get_enemy_hp(i) > 0]
            else:
                msg["EnemyList"] = [self.enemy_target] if self.enemy_target != -1 else []
            msg["MyList"] = [self.friend_target] if self.friend_target != -1 else []
        return msg


def assert_message(view: PlayerView, guess: tuple[int, int]) -> dict[str, Any]:
    """``Action_Assert``: a guess on a position out of range or already revealed becomes no guess."""
    pos, kind = guess
    if pos < 0 or pos >= 4 or view.get_enemy_id(pos) != -1:
        return {"Action": "Null"}
    return {"Action": "Assert", "Pos": pos, "ID": kind}


#: What an action the SDK could not build sends (AI_En.py returned no Action after 5 failed
#: attempts): the engine refuses it and the player loses.
INVALID_ACTION_MESSAGE: dict[str, Any] = {"Action": "Action", "Type": -1, "MyPos": -1}


# ---------------------------------------------------------------------------- a match
class Player(Protocol):
    """A bot side of a :class:`Match` (the baselines): it decides on its :class:`PlayerView`."""

    def pick(self, view: PlayerView) -> list[int]: ...

    def guess(self, view: PlayerView) -> tuple[int, int]: ...

    def act(self, view: PlayerView) -> SdkAction | None: ...


#: The LLM player's pick (AI_En.py ``Pick``): spray, flame, eel, sunfish at positions 0..3.
AGENT_PICK = [SPRAY, FLAME, EEL, SUNFISH]


class Match:
    """One game between two sides; ``players[i]`` is a :class:`Player` or ``None`` for the external
    agent, who picks :data:`AGENT_PICK` and decides through :meth:`agent_guess` / :meth:`agent_act`."""

    def __init__(self, players: Sequence[Player | None]):
        self.players = list(players)
        self.game = Aquawar()
        self.views = [PlayerView(0), PlayerView(1)]
        for side in (0, 1):
            bot = self.players[side]
            self.game.pick(side, AGENT_PICK if bot is None else bot.pick(self.views[side]))
        self._delivered = False

    def advance(self) -> tuple[str, int] | None:
        """Play bot phases until the agent must decide: returns ``(phase, side)``, or ``None`` when
        the game is over. The deciding side's view has received the phase's message."""
        game = self.game
        while not game.over:
            side, phase = game.cur_turn, game.phase
            if not self._delivered:
                view = self.views[side]
                view.receive(game.assert_message(side) if phase == ASSERT else game.action_message(side))
                self._delivered = True
            bot = self.players[side]
            if bot is None:
                return phase, side
            if phase == ASSERT:
                self._submit_guess(side, bot.guess(self.views[side]))
            else:
                self._submit_act(side, bot.act(self.views[side]))
        return None

    def agent_guess(self, guess: tuple[int, int]) -> None:
        """The agent's guess, ``(-1, -1)`` for none (what AI_En.py returns after 5 failed attempts)."""
        self._submit_guess(self.game.cur_turn, guess)

    def agent_act(self, action: SdkAction | None) -> None:
        """The agent's action; ``None`` is the invalid action object of 5 failed attempts (a loss)."""
        self._submit_act(self.game.cur_turn, action)

    def _submit_guess(self, side: int, guess: tuple[int, int]) -> None:
        self._delivered = False
        self.game.assert_(side, assert_message(self.views[side], guess))

    def _submit_act(self, side: int, action: SdkAction | None) -> None:
        self._delivered = False
        self.game.action(side, action.to_message() if action is not None else dict(INVALID_ACTION_MESSAGE))


def play(players: Sequence[Player]) -> Aquawar:
    """Play a whole game between two bots; returns the finished engine (``winner``, ``end``, ``log``)."""
    match = Match(players)
    if match.advance() is not None:
        raise ValueError("play() needs two bots; use Match for an agent side")
    return match.game
