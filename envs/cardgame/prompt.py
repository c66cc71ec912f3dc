"""The card game's prompts and reply parsing, as AgentBench's LLM player (``AI_En.py``) had them.

Upstream: AgentBench.old ``src/tasks/card_game/AI_SDK/Python/AI_En.py`` (state prompts, parsing,
validation, 5 attempts per decision), ``prompt/en.py`` (the rules texts), ``client.py`` (the message
list of each call). The env uses upstream's own rules texts when the data directory has them
(:func:`~agent_gym.envs.cardgame.data.upstream_rules`); :data:`ACTION_RULES` / :data:`GUESS_RULES` below
are the fallback, written in our own words, keeping upstream's content and layout (paragraph order, the
fish description and JSON format printed as Python dicts, the same rule statements, including the ones
the engine contradicts: see docs/cardgame.md). The state prompts and the JSON keys are upstream's
format strings, which the model must match.

Each model call sees (``client.py``): the last 2 (action) or 3 (guess) successful (prompt, reply) pairs
of that kind, then the rules as a user turn with the fixed agent answer :data:`RULES_ACK`, then the
state prompt: the rules come after the history.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agent_gym.envs.cardgame.engine import FISH_IDS, PASSIVE_TYPES, SUCCESS, PlayerView, SdkAction

ATTEMPTS = 5             # AI_En.py: ``for ix in range(5)`` per decision
ACTION_HISTORY = 2       # ``self.history[-2:]``
GUESS_HISTORY = 3        # ``self.assert_history[-3:]``
RULES_ACK = "Okay, I will play the game with you according to the rules."

ACTION_FORMAT = {
    "pick_fish": "pick an alive fish",
    "action": "choose from [normal, active]",
    "target_position": "target's position, you must choose from [0,3]",
}
GUESS_FORMAT = {
    "guess_type": "the enemy's fish type you may guess",
    "target_position": "guess target's position, you must choose from [0,3]",
}

_COUNTER = "Counter: when a teammate is left with less than 30% health, deals 30 damage to the attacker"
_DEFLECT = ("Deflect: when attacked, passes 70% of the damage on to its teammates and takes 30% itself. "
            "Every 200 damage it has taken adds 40 attack points.")
_INFIGHT = ("Infight: hits one living teammate for 75 damage and raises its own attack points by 140. "
            "Note: it can not hit itself or a dead teammate!")
FISH_DESCRIPTION = {
    "spray": {"passive": _COUNTER, "active": "AOE: hits every enemy for 35% of its attack points."},
    "flame": {"passive": _COUNTER, "active": _INFIGHT},
    "eel": {"passive": _DEFLECT, "active": "AOE: hits every enemy for 35% of its attack points."},
    "sunfish": {"passive": _DEFLECT, "active": _INFIGHT},
}

_ACTION_RULES = """This is a battle game for two players, each with a team of four pet fish.
Every fish starts with 400 health and 200 attack points, and has an active ability and a passive ability.
In each round you pick one living fish and make it use either its active ability or a normal attack on an enemy fish.
A passive ability fires by itself whenever its condition holds, whether or not its fish was picked.
{guess_rule}
You win by having more living fish than the enemy when the game ends.

These are the four kinds of pet fish:
{fish}

Let's play. In each round, write out your reasoning, then give your move in this json format:
{format}

Note! You must give a move in every round, or you lose the game."""

GUESS_RULE = ("The identities of your fish are hidden at first. Each round the enemy may guess the identity of "
              "one of your fish. A right guess reveals that fish, and every one of your fish takes 50 damage.")

_GUESS_RULES = """This is a battle game for two players, each with a team of four pet fish.
Every fish has its starting health, attack points, an active ability and a passive ability.
At first no fish's identity is known. In each round you should guess the identity of one enemy fish. A right guess reveals that enemy fish, and every enemy fish takes 50 damage. Only living fish can be guessed.
You win by having more living fish than the enemy when the game ends.

These are the four kinds of pet fish:
{fish}

Let's play. In each round, write out your reasoning, then give your guess in this json format:
{format}

Note! You must give a guess in every round, or you lose the game."""

#: The rules before each action decision (upstream's ``ACTION_DESCRIPTION[2]``; stage 1 had no guess rule).
ACTION_RULES = _ACTION_RULES.format(guess_rule=GUESS_RULE, fish=FISH_DESCRIPTION, format=ACTION_FORMAT)
#: The rules before each guess (upstream's ``GUESS_DESCRIPTION[2]``).
GUESS_RULES = _GUESS_RULES.format(fish=FISH_DESCRIPTION, format=GUESS_FORMAT)

_NAMES = ["", "spray", "flame", "eel", "sunfish", "unknown"]  # AI_En.py id_to_name; index -1 is "unknown"
_SKILL_NAMES = {"skill_type.aoe": "AOE", "skill_type.infight": "Infight", "skill_type.normalattack": "Normal"}
_PASSIVE_NAMES = {"passive_type.counter": "Counter", "passive_type.deflect": "Deflect"}
#: ``pick_fish`` may name the fish or its position (the agent always picks spray, flame, eel, sunfish).
NAME_TO_POS = {"spray": 0, "flame": 1, "eel": 2, "sunfish": 3, "0": 0, "1": 1, "2": 2, "3": 3}
_ACTION_TYPES = {"normal": 0, "active": 1}


def _non_zero_indexes(values: list[int]) -> list[int]:
    # AI_En.py lists the INDEXES of the non-zero slots of the SDK's target array, not the positions
    return [i for i, v in enumerate(values) if v != 0]


def _action_summary(action, with_skill: bool) -> dict[str, str]:
    if action.action_fish == -1:
        out = {"ACTION_FISH": "None", "ATK": "None", "TARGET": "None"}
        if with_skill:
            out["SKILL_TYPE"] = "None"
        return out
    out = {"ACTION_FISH": str(action.action_fish), "ATK": str(action.enemy_expected_injury[0]),
           "TARGET": str(_non_zero_indexes(action.enemy_targets))}
    if with_skill:
        out["SKILL_TYPE"] = _SKILL_NAMES[action.type_name]
    return out


def guess_prompt(view: PlayerView) -> str:
    """The state prompt of a guess (AI_En.py ``_guess``), from the agent's SDK view."""
    passives: dict[str, str] = {}
    for pos, kind in zip(view.my_action.enemy_passives_id, view.my_action.enemy_types):
        passives["Position: " + str(pos)] = _PASSIVE_NAMES[PASSIVE_TYPES[kind]]
    for pos, kind in zip(view.enemy_action.friend_passives_id, view.enemy_action.friend_types):
        passives["Position: " + str(pos)] = _PASSIVE_NAMES[PASSIVE_TYPES[kind]]
    live = [str(i) for i in view.get_enemy_living_fishes()]
    return (f"Previous Guess: {view.my_assert.result}\nLive Enemy Fish: {live}\n"
            f"Enemy's previous action: {_action_summary(view.enemy_action, True)}\n"
            f"Enemy's previous triggered passive ability: {json.dumps(passives, ensure_ascii=False)}\n\n"
            "Please output your guess.")


def action_prompt(view: PlayerView) -> str:
    """The state prompt of an action (AI_En.py ``_decide`` and ``_get_current_state``)."""
    state: dict[str, list[dict[str, str]]] = {"You": [], "Enemy": []}
    for pos in range(4):
        state["You"].append({"ID": _NAMES[abs(view.get_my_id(pos))], "POSITION": str(pos),
                             "HP": str(view.get_my_hp(pos)), "ATK": str(view.get_my_atk(pos))})
    for pos in range(4):
        state["Enemy"].append({"ID": _NAMES[view.get_enemy_id(pos)], "POSITION": str(pos),
                               "HP": str(view.get_enemy_hp(pos)), "ATK": "unknown"})
    return (f"Following is the current game state:\n{json.dumps(state, ensure_ascii=False)}\n\n"
            f"Your previous action: {_action_summary(view.my_action, False)}\n"
            f"Enemy's previous action: {_action_summary(view.enemy_action, False)}\n\nPlease Output your next action.")


def messages(history: list[tuple[str, str]], rules: str, prompt: str) -> list[dict[str, str]]:
    """One call's chat (client.py ``llm_call``): history pairs, the rules and their fixed answer, the prompt."""
    out: list[dict[str, str]] = []
    for user, agent in [*history, (rules, RULES_ACK)]:
        out += [{"role": "user", "content": user}, {"role": "assistant", "content": agent}]
    out.append({"role": "user", "content": prompt})
    return out


def _json_blocks(reply: str):
    """Every non-greedy ``{...}`` block with ``'`` turned into ``"``, parsed; unparsable ones skipped."""
    # no block can start after the last "}": cutting there keeps upstream's matches and makes the scan linear
    # (a reply of many "{" and no "}" made each "{" scan to the end)
    for block in re.findall(r"\{[\w\W]*?\}", reply[:reply.rfind("}") + 1]):
        try:
            yield json.loads(block.replace("'", '"'))
        except (ValueError, RecursionError):  # RecursionError: a block nested thousands deep
            continue


def decode_guess(reply: str, view: PlayerView) -> tuple[int, int] | None:
    """The first block that names a fish type and a living enemy position, as ``(position, type id)``
    (AI_En.py ``_decode_guess`` / ``_guess_verify``); ``None`` when no block does."""
    for move in _json_blocks(reply):
        try:
            position = str(move["target_position"])
            guess_type = move["guess_type"]
            if guess_type in FISH_IDS and position in ("0", "1", "2", "3") \
                    and int(position) in view.get_enemy_living_fishes():
                return int(position), FISH_IDS[guess_type]
        except (KeyError, TypeError, ValueError):
            continue
    return None


def _move_valid(move: Any, view: PlayerView) -> bool:
    """AI_En.py ``_move_verfiy``."""
    try:
        pick, action = move["pick_fish"], move["action"]
        if action not in _ACTION_TYPES:
            return False
        move["target_position"] = str(move["target_position"])
        if pick in ("spray", "eel") and action == "active":
            move["target_position"] = "0"  # an AOE: the SDK makes it every living enemy
        elif int(move["target_position"]) not in view.get_enemy_living_fishes():
            return False
        target = int(move["target_position"])
        living = view.get_my_living_fishes()
        if NAME_TO_POS[pick] not in living:
            return False
        dead = [i for i in range(4) if i not in living]
        if pick in ("flame", "sunfish") and action == "active" and target in [NAME_TO_POS[pick]] + dead:
            return False
        return True
    except (KeyError, TypeError, ValueError, AttributeError):
        return False


def decode_action(reply: str, view: PlayerView) -> tuple[SdkAction | None, dict[str, Any] | None]:
    """The first block that passes validation (AI_En.py ``_decode_move``), turned into an SDK action
    (``_decide``): ``(action, move)``. ``(None, move)`` when the block validated but the SDK refused the
    action (an infight named by position, say): that attempt fails as upstream's did; ``(None, None)``
    when no block validated."""
    for move in _json_blocks(reply):
        if not isinstance(move, dict) or not _move_valid(move, view):
            continue
        pick = move["pick_fish"]
        action = SdkAction(view)
        target = int(move["target_position"])
        action_type = _ACTION_TYPES[move["action"]]
        ok = action.set_action_fish(NAME_TO_POS[pick]) == SUCCESS and action.set_action_type(action_type) == SUCCESS
        if ok:
            # the infight's teammate comes from target_position too (upstream validated it as a living enemy position)
            if action_type == 1 and pick in ("flame", "sunfish"):
                ok = action.set_friend_target(target) == SUCCESS
            else:
                ok = action.set_enemy_target(target) == SUCCESS
        return (action if ok else None), move
    return None, None

