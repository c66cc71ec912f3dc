"""AgentTuning/CardGame-v0: Aquawar's rules on hand-computed positions (UPSTREAM_SCORING.md section 7.2, rule
by rule), the player SDK, the baselines, AgentBench's prompts and its 5 attempts, and the env's protocol."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import gymnasium as gym
import pytest

import agent_gym
from agent_gym.envs.cardgame import data, engine, prompt
from agent_gym.envs.cardgame.baselines import Baseline1, Baseline2, RandomPlayer, make_opponent
from agent_gym.envs.cardgame.engine import EEL, FLAME, SPRAY, SUNFISH, Aquawar
from agent_gym.trajectory import Trajectory

gym.register_envs(agent_gym)
FIXTURES = Path(__file__).parent.parent / "fixtures" / "cardgame"
ORDER = [SPRAY, FLAME, EEL, SUNFISH]


def started(order0=ORDER, order1=ORDER) -> Aquawar:
    """A game after both picks: player 0's assert phase."""
    game = Aquawar()
    game.pick(0, order0)
    game.pick(1, order1)
    return game


def hp(game: Aquawar, player: int) -> list[int]:
    return [f.hp for f in game.teams[player]]


def attack(game: Aquawar, me: int, target: int) -> None:
    game.action(game.cur_turn, {"Action": "Action", "Type": 0, "MyPos": me, "EnemyPos": target})


def skill(game: Aquawar, me: int, my_list=(), enemy_list=()) -> None:
    game.action(game.cur_turn, {"Action": "Action", "Type": 1, "MyPos": me, "MyList": list(my_list),
                                "EnemyList": list(enemy_list)})


def null_guess(game: Aquawar) -> None:
    game.assert_(game.cur_turn, {"Action": "Null"})


# --------------------------------------------------------------------------- rules (section 7.2)
def test_four_fish_a_side_at_400_hp_and_200_attack_player_0_guesses_first():
    game = started(ORDER, [EEL, SUNFISH, SPRAY, FLAME])
    assert [f.kind for f in game.teams[1]] == [EEL, SUNFISH, SPRAY, FLAME]
    assert all((f.hp, f.atk) == (400, 200) for team in game.teams for f in team)
    assert (game.phase, game.cur_turn, game.state) == (engine.ASSERT, 0, 3)


def test_a_turn_is_a_guess_then_an_action_by_the_same_player_then_the_other_player():
    game = started()
    null_guess(game)
    assert (game.phase, game.cur_turn) == (engine.ACTION, 0)
    attack(game, 0, 0)
    assert (game.phase, game.cur_turn) == (engine.ASSERT, 1)


def test_normal_attack_deals_half_the_attack_as_sourced_damage():
    game = started()
    null_guess(game)
    attack(game, 1, 0)  # flame hits the enemy spray: 200 // 2
    assert hp(game, 1) == [300, 400, 400, 400]
    assert game.last_action[0]["hit"] == [{"target": 0, "player": 1, "value": 100, "traceable": True}]
    assert game.last_action[0]["skill"]["type"] == "normalattack"


def test_spray_aoe_is_a_flat_70_and_the_deflect_fish_keep_70_percent_and_spread_30():
    """The prompt says spray hits for 35 % of its attack and deflect keeps 30 %: the engine does 70 flat and
    keeps 70 %. Spray (0) and flame (1) take 70 + two 7s (each deflect fish spreads int(70*0.3)=21 // 3)."""
    game = started()
    null_guess(game)
    skill(game, 0, enemy_list=[0, 1, 2, 3])
    assert hp(game, 1) == [400 - 70 - 7 - 7, 400 - 70 - 7 - 7, 400 - 49 - 7, 400 - 49 - 7]
    passives = game.last_action[0]["passive"]
    assert [(p["type"], p["source"], p["value"]) for p in passives] == [("deflect", 2, 49), ("deflect", 3, 49)]
    assert [f.wound for f in game.teams[1]] == [84, 84, 56, 56]
    assert [f.atk for f in game.teams[1]] == [200] * 4


def test_eel_aoe_is_35_percent_of_its_current_attack():
    game = started(ORDER, [FLAME, SPRAY, SUNFISH, EEL])
    game.teams[0][2].atk = 280  # an eel that has grown: int(280 * 0.35) = 98
    null_guess(game)
    skill(game, 2, enemy_list=[0, 1, 2, 3])
    # enemy: flame, spray take 98 + two deflect shares int(98*0.3)=29 // 3 = 9; sunfish/eel keep int(98*0.7)=68
    assert hp(game, 1) == [400 - 98 - 9 - 9, 400 - 98 - 9 - 9, 400 - 68 - 9, 400 - 68 - 9]
    assert game.last_action[0]["skill"]["targets"][0]["value"] == 98


def test_infight_hurts_a_teammate_75_unsourced_and_adds_140_attack_that_stacks():
    game = started()
    null_guess(game)
    skill(game, 1, my_list=[2])  # flame on its own eel: no deflect (unsourced), eel takes the whole 75
    assert hp(game, 0) == [400, 400, 325, 400] and game.teams[0][1].atk == 340
    assert "passive" not in game.last_action[0]
    assert game.last_action[0]["hit"] == [{"target": 2, "player": 0, "value": 75, "traceable": False}]
    null_guess(game)
    attack(game, 0, 0)
    null_guess(game)
    skill(game, 1, my_list=[0])
    assert game.teams[0][1].atk == 480
    null_guess(game)
    attack(game, 0, 1)
    null_guess(game)
    attack(game, 1, 3)  # the grown flame's normal attack: 480 // 2 = 240 on a sunfish (keeps 168)
    assert game.last_action[0]["skill"]["targets"][0]["value"] == 240


def test_counter_each_other_living_spray_or_flame_hits_the_attacker_for_30_when_the_target_drops_under_120():
    game = started()
    game.teams[1][3].hp = 100  # the enemy sunfish
    null_guess(game)
    attack(game, 0, 3)  # 100 sourced: sunfish keeps 70 (hp 30 < 120), spreads 30 // 3 = 10
    assert hp(game, 1) == [390, 390, 390, 30]
    assert hp(game, 0)[0] == 400 - 30 - 30  # both the enemy spray and flame counter
    counters = [p for p in game.last_action[0]["passive"] if p["type"] == "counter"]
    assert [(p["source"], p["player"]) for p in counters] == [(3, 1), (3, 1)]  # source: the fish that was hit


def test_counter_skips_the_hit_fish_itself_and_does_not_fire_at_120_or_above():
    game = started()
    game.teams[1][0].hp = 220
    null_guess(game)
    attack(game, 0, 0)  # the enemy spray to 120: not under 120
    assert hp(game, 0)[0] == 400 and "passive" not in game.last_action[0]
    null_guess(game)
    attack(game, 1, 1)  # player 1 hits our flame: 300
    null_guess(game)
    attack(game, 1, 0)  # our flame takes the enemy spray to 20: only the enemy flame counters, not the spray
    assert hp(game, 1)[0] == 20 and hp(game, 0)[1] == 300 - 30


def test_counter_also_fires_on_aoe_and_dead_counter_fish_stay_silent():
    game = started()
    for f in game.teams[1]:
        f.hp = 110
    game.teams[1][1].hp = 0
    game.teams[1][1].dead = True  # the flame is out
    null_guess(game)
    skill(game, 0, enemy_list=[0, 2, 3])
    # spray target (110 - 70 = 40): no other living counter fish. Deflect fish targets: 49 kept; each hit
    # leaves the hit fish under 120, so the living spray counters once per deflect fish
    assert hp(game, 0)[0] == 400 - 30 - 30
    assert [p["type"] for p in game.last_action[0]["passive"]].count("counter") == 2


def test_deflect_needs_a_living_teammate_and_its_damage_turns_into_attack():
    game = started()
    for i in (0, 1, 3):
        game.teams[1][i].hp, game.teams[1][i].dead = 0, True
    null_guess(game)
    attack(game, 0, 2)  # the lone eel takes it all
    assert hp(game, 1)[2] == 300 and "passive" not in game.last_action[0]
    eel = game.teams[1][2]
    assert (eel.wound, eel.atk) == (100, 200)
    eel.wound = 390
    null_guess(game)
    attack(game, 2, 0)  # player 1's turn: its eel hits our spray
    null_guess(game)
    attack(game, 1, 2)  # wound 490 -> atk + 40 * 2, wound 90
    assert (eel.wound, eel.atk) == (90, 280)


def test_unsourced_damage_triggers_neither_counter_nor_deflect_but_still_grows_a_deflect_fish():
    game = started()
    game.teams[0][0].hp = 100
    game.teams[0][2].wound = 150
    null_guess(game)
    skill(game, 3, my_list=[0])  # sunfish hits our spray to 25: no counter on our sunfish
    assert hp(game, 0) == [25, 400, 400, 400] and game.teams[0][3].atk == 340
    null_guess(game)
    attack(game, 0, 0)
    null_guess(game)
    skill(game, 1, my_list=[2])  # flame hits our eel (wound 150 + 75): no deflect, attack + 40
    assert hp(game, 0)[2] == 325 and game.teams[0][2].atk == 240


def test_hp_goes_negative_and_deaths_wait_for_the_end_of_the_action():
    """A fish killed early in an AOE still takes deflect shares later in it (it is not DEAD yet)."""
    game = started()
    game.teams[1][0].hp = 10
    null_guess(game)
    skill(game, 0, enemy_list=[0, 1, 2, 3])
    assert game.teams[1][0].hp == 10 - 70 - 7 - 7 and game.teams[1][0].dead
    assert game.game_info(0)["EnemyHP"][0] == 0


def test_a_right_guess_reveals_and_takes_50_from_every_fish_of_that_team_floored_at_0():
    game = started()
    game.teams[1][3].hp = 30
    game.assert_(0, {"Action": "Assert", "Pos": 2, "ID": EEL})
    assert hp(game, 1) == [350, 350, 350, 0] and game.teams[1][3].dead and game.teams[1][2].exposed
    assert game.last_assert == {"AssertPos": 2, "AssertContent": EEL, "AssertResult": True}
    assert game.game_info(0)["EnemyFish"] == [-1, -1, EEL, -1]
    assert game.game_info(1)["MyFish"] == [SPRAY, FLAME, -EEL, SUNFISH]


def test_a_wrong_guess_does_nothing_and_null_is_no_guess():
    game = started()
    game.assert_(0, {"Action": "Assert", "Pos": 2, "ID": SPRAY})
    assert hp(game, 1) == [400] * 4 and hp(game, 0) == [400] * 4 and not game.teams[1][2].exposed
    assert game.last_assert["AssertResult"] is False


def test_the_sdk_turns_a_guess_on_a_revealed_or_missing_position_into_no_guess():
    view = engine.PlayerView(0)
    view.enemy_ids = [-1, EEL, -1, -1]
    assert engine.assert_message(view, (1, EEL)) == {"Action": "Null"}
    assert engine.assert_message(view, (-1, -1)) == {"Action": "Null"}
    assert engine.assert_message(view, (2, FLAME)) == {"Action": "Assert", "Pos": 2, "ID": FLAME}


@pytest.mark.parametrize("move, why", [
    ({"Action": "Assert", "Pos": 1, "ID": FLAME}, "dead"),           # guessing a dead fish
    ({"Action": "Assert", "Pos": 2, "ID": 13}, "range"),
    ({"Action": "Hello"}, "malformed"),
])
def test_an_illegal_guess_loses_the_game(move, why):
    game = started()
    game.teams[1][1].hp, game.teams[1][1].dead = 0, True
    game.assert_(0, move)
    assert (game.over, game.winner, game.end) == (True, 1, engine.INVALID_OPERATION)
    assert why in game.error


@pytest.mark.parametrize("message", [
    {"Action": "Action", "Type": 0, "MyPos": 0, "EnemyPos": 1},                     # dead target
    {"Action": "Action", "Type": 0, "MyPos": 3, "EnemyPos": 0},                     # dead actor
    {"Action": "Action", "Type": 1, "MyPos": 0, "MyList": [], "EnemyList": [0, 2]},  # AOE not on every living enemy
    {"Action": "Action", "Type": 1, "MyPos": 1, "MyList": [1], "EnemyList": []},     # infight on itself
    {"Action": "Action", "Type": 1, "MyPos": 1, "MyList": [], "EnemyList": [0]},     # infight on an enemy
    {"Action": "Action", "Type": 1, "MyPos": 1, "MyList": [3], "EnemyList": []},     # infight on a dead teammate
    {"Action": "Action", "Type": -1, "MyPos": -1},                                   # the SDK's empty action
    "not json at all",
])
def test_an_illegal_action_loses_the_game(message):
    game = started()
    game.teams[1][1].hp, game.teams[1][1].dead = 0, True
    game.teams[0][3].hp, game.teams[0][3].dead = 0, True
    null_guess(game)
    game.action(0, message)
    assert (game.over, game.winner, game.end) == (True, 1, engine.INVALID_OPERATION)


def test_a_team_all_dead_loses_and_both_dead_goes_to_the_player_who_moved():
    game = started()
    for i in (2, 3):
        game.teams[1][i].hp, game.teams[1][i].dead = 0, True
    for i in (1, 2, 3):
        game.teams[0][i].hp, game.teams[0][i].dead = 0, True
    game.teams[1][0].hp = game.teams[1][1].hp = 60
    game.teams[0][0].hp = 40
    null_guess(game)
    skill(game, 0, enemy_list=[0, 1])  # both enemies die; each counters (still in play): our spray 40 - 60
    assert hp(game, 0)[0] == -20
    assert (game.over, game.winner, game.end) == (True, 0, engine.ALL_DEAD)
    game = started()
    for i in (1, 2, 3):
        game.teams[1][i].hp, game.teams[1][i].dead = 0, True
    game.teams[1][0].hp = 100
    null_guess(game)
    attack(game, 0, 0)
    assert (game.over, game.winner, game.end) == (True, 0, engine.ALL_DEAD)


def test_the_game_stops_after_128_phases_so_63_turns_in_all():
    """The picks are 2 of the 128 phases; the 126th guess-or-action phase (player 0's 32nd action) ends it."""
    game = started()
    for team in game.teams:
        for f in team:
            f.hp = 10 ** 6
    turns = 0
    while not game.over:
        null_guess(game)
        if not game.over:
            attack(game, 0, 0)
            turns += 1
    assert (turns, game.state, game.end) == (63, 129, engine.STATE_LIMIT_EXCEEDED)
    assert game.log[-1]["player"] == 0 and game.log[-1]["phase"] == engine.ACTION


@pytest.mark.parametrize("hp0, hp1, winner", [
    ([100, 0, 0, 0], [50, 50, 0, 0], 1),        # more living fish
    ([300, 50, 0, 0], [200, 100, 0, 0], 0),     # same count: more total hp
    ([300, 100, 0, 0], [200, 200, 0, 0], 0),    # same total: the larger single hp
    ([200, 200, 0, 0], [200, 200, 0, 0], 1),    # all equal: the second mover
])
def test_state_limit_tie_breaks(hp0, hp1, winner):
    game = started()
    for player, values in ((0, hp0), (1, hp1)):
        for f, v in zip(game.teams[player], values):
            f.hp, f.dead = v, v <= 0
    game.state = engine.STATE_LIMIT  # the next phase is the 129th
    null_guess(game)
    assert (game.end, game.winner) == (engine.STATE_LIMIT_EXCEEDED, winner)


# --------------------------------------------------------------------------- the SDK and the baselines
def test_the_sdk_action_refuses_what_upstreams_refused():
    view = engine.PlayerView(0)
    view.my_ids = [SPRAY, FLAME, -EEL, SUNFISH]
    act = engine.SdkAction(view)
    assert act.set_enemy_target(0) == engine.ERR_ACTION_NOT_CHOOSE
    assert act.set_action_fish(1) == engine.SUCCESS and act.set_action_type(1) == engine.SUCCESS
    assert act.set_enemy_target(0) == engine.ERR_TARGET       # flame's skill takes a teammate
    assert act.set_friend_target(1) == engine.ERR_TARGET      # not itself
    assert act.set_friend_target(3) == engine.SUCCESS
    assert act.to_message() == {"Action": "Action", "Type": 1, "MyPos": 1, "EnemyList": [0], "MyList": [3]}
    eel = engine.SdkAction(view)
    eel.set_action_fish(2), eel.set_action_type(1)
    view.enemy_hp = [0, 10, 10, 10]
    assert eel.set_enemy_target(0) == engine.SUCCESS  # a revealed eel (id -3) is still an AOE
    assert eel.to_message()["EnemyList"] == [1, 2, 3]


def test_the_views_action_arrays_keep_stale_slots_as_upstreams_did():
    view = engine.ActionView()
    view.parse({"skill": {"type": "aoe", "isSkill": True, "targets": [
        {"pos": p, "player": 1, "value": 70} for p in (0, 1, 2, 3)]}, "ActionFish": 0}, actor=0)
    view.parse({"skill": {"type": "normalattack", "isSkill": False, "targets": [
        {"pos": 2, "player": 1, "value": 100}]}, "ActionFish": 1}, actor=0)
    assert view.enemy_targets[:4] == [2, 1, 2, 3] and view.num_enemy_targets == 1
    assert prompt._non_zero_indexes(view.enemy_targets) == [0, 1, 2, 3]


def win_rate(bot, against, games=50):
    wins = 0
    for seed in range(games):
        rng = random.Random(seed)
        side = seed % 2
        players = [None, None]
        players[side], players[side ^ 1] = bot(rng), against(rng)
        wins += engine.play(players).winner == side
    return wins / games


@pytest.mark.parametrize("bot, floor", [(Baseline1, 0.55), (Baseline2, 0.9)])
def test_each_baseline_beats_a_random_player_most_of_the_time(bot, floor):
    rate = win_rate(bot, RandomPlayer, games=100)
    assert rate >= floor, rate


def test_baseline2_beats_baseline1():
    assert win_rate(Baseline2, Baseline1, games=50) > 0.8


def test_baseline1_uses_a_revealed_fish_only_for_normal_attacks():
    view = engine.PlayerView(0)
    view.my_ids, view.my_hp = [-SPRAY, FLAME, EEL, SUNFISH], [400, 0, 0, 0]
    kinds = set()
    for seed in range(20):
        kinds.add(Baseline1(random.Random(seed)).act(view).action_type)
    assert kinds == {0}


def test_baseline2_finishes_a_weak_fish_then_uses_aoe():
    view = engine.PlayerView(1)
    view.my_ids = [FLAME, SUNFISH, SPRAY, EEL]
    view.enemy_hp = [100, 400, 400, 400]
    act = Baseline2(random.Random(0)).act(view)
    assert (act.action_type, act.enemy_target) == (0, 0)
    view.enemy_hp = [300, 400, 400, 400]
    act = Baseline2(random.Random(0)).act(view)
    assert act.action_type == 1 and act.enemy_target == -2 and act.action_fish in (2, 3)


def test_opponent_names_are_checked():
    with pytest.raises(ValueError, match="baseline1"):
        make_opponent("baseline3", random.Random(0))


# --------------------------------------------------------------------------- prompts and parsing
def agent_view(game: Aquawar, side: int = 0) -> engine.PlayerView:
    view = engine.PlayerView(side)
    view.receive(game.action_message(side) if game.phase == engine.ACTION else game.assert_message(side))
    return view


def test_guess_replies_parse_as_upstream():
    game = started()
    game.teams[1][1].hp, game.teams[1][1].dead = 0, True
    view = agent_view(game)
    assert prompt.decode_guess("I think {'guess_type': 'eel', 'target_position': 2}", view) == (2, EEL)
    assert prompt.decode_guess('{"guess_type": "eel", "target_position": 1}', view) is None  # dead fish
    assert prompt.decode_guess('{"guess_type": "shark", "target_position": 0} {"guess_type": "flame", '
                               '"target_position": "3"}', view) == (3, FLAME)  # the first block that validates
    assert prompt.decode_guess('{"guess": {"guess_type": "eel", "target_position": 0}}', view) is None  # non-greedy


def test_action_replies_parse_as_upstream():
    game = started()
    game.teams[1][1].hp, game.teams[1][1].dead = 0, True
    game.teams[0][2].hp, game.teams[0][2].dead = 0, True
    null_guess(game)
    view = agent_view(game)
    act, _ = prompt.decode_action("{'pick_fish': 'spray', 'action': 'active', 'target_position': 1}", view)
    assert act.to_message() == {"Action": "Action", "Type": 1, "MyPos": 0, "EnemyList": [0, 2, 3], "MyList": []}
    act, _ = prompt.decode_action('{"pick_fish": "flame", "action": "normal", "target_position": 3}', view)
    assert act.to_message() == {"Action": "Action", "Type": 0, "MyPos": 1, "EnemyPos": 3}
    act, _ = prompt.decode_action('{"pick_fish": "sunfish", "action": "active", "target_position": 0}', view)
    assert act.to_message()["MyList"] == [0]  # infight's teammate from target_position
    # the infight target must also be a living ENEMY position, and not itself nor a dead teammate
    for target in (1, 2, 3):
        act, move = prompt.decode_action(
            f'{{"pick_fish": "sunfish", "action": "active", "target_position": {target}}}', view)
        assert act is None
    assert prompt.decode_action('{"pick_fish": "eel", "action": "normal", "target_position": 0}', view)[0] is None
    # a position instead of a name validates, but the SDK refuses flame's skill on an "enemy": the attempt fails
    act, move = prompt.decode_action('{"pick_fish": "1", "action": "active", "target_position": 0}', view)
    assert act is None and move is not None
    assert prompt.decode_action("attack!", view) == (None, None)


@pytest.mark.parametrize("reply", ["{" * 60_000, "{" + "[" * 30_000 + "}", "\udcff\x00{'pick_fish'", "}" * 60_000])
@pytest.mark.exclusive
def test_hostile_replies_are_failed_attempts_quickly(reply):
    view = agent_view(started())
    start = time.perf_counter()
    assert prompt.decode_guess(reply, view) is None and prompt.decode_action(reply, view) == (None, None)
    assert time.perf_counter() - start < 1.0


def test_state_prompts_have_upstreams_format():
    game = started()
    null_guess(game)
    attack(game, 1, 2)  # our flame on the enemy eel: it deflects
    null_guess(game)
    attack(game, 1, 2)  # their flame on our eel
    view = agent_view(game, 0)
    text = prompt.guess_prompt(view)
    assert text.startswith("Previous Guess: False\nLive Enemy Fish: ['0', '1', '2', '3']\n")
    # TARGET lists the indexes of the SDK array's non-zero slots (upstream's reading), not positions
    assert "Enemy's previous action: {'ACTION_FISH': '1', 'ATK': '100', 'TARGET': '[0]', 'SKILL_TYPE': 'Normal'}" in text
    # the enemy's passives during our last action, then the never-written slots (position 0, counter)
    assert 'passive ability: {"Position: 2": "Deflect", "Position: 0": "Counter"}' in text
    assert text.endswith("Please output your guess.")
    game.assert_(0, {"Action": "Assert", "Pos": 1, "ID": FLAME})
    view.receive(game.action_message(0))
    text = prompt.action_prompt(view)
    state = json.loads(text.split("\n")[1])
    assert state["Enemy"][1] == {"ID": "flame", "POSITION": "1", "HP": "340", "ATK": "unknown"}
    assert state["Enemy"][0]["ID"] == "unknown"
    assert state["You"][2] == {"ID": "eel", "POSITION": "2", "HP": "330", "ATK": "200"}
    assert "Your previous action: {'ACTION_FISH': '1', 'ATK': '100', 'TARGET': '[0]'}" in text
    assert prompt.guess_prompt(agent_view(started())).startswith("Previous Guess: False")


def test_each_call_is_history_then_rules_then_state():
    msgs = prompt.messages([("p1", "r1")], prompt.ACTION_RULES, "state")
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user"]
    assert msgs[3]["content"] == prompt.RULES_ACK and msgs[2]["content"] == prompt.ACTION_RULES
    for text in ("400", "200", "50 damage", "json", "more living fish"):
        assert text in prompt.ACTION_RULES
    assert "'pick_fish'" in prompt.ACTION_RULES and "'guess_type'" in prompt.GUESS_RULES


# --------------------------------------------------------------------------- upstream's rules texts (data)
def test_rules_texts_are_derived_from_upstreams_prompt_module_with_ast():
    derived = json.loads(data.derive_prompts((FIXTURES / "synthetic_prompt_en.py").read_bytes()))
    kinds = "{'spray': {'passive': 'Counter: hits back', 'active': 'AOE: hits all'}, " \
            "'eel': {'passive': 'Deflect: shares damage', 'active': 'AOE: hits all'}}"
    # stage 2 (with the guess rule), dicts formatted as Python's str, as the module's import did
    assert derived["action_rules"] == (
        "SYNTHETIC ACTION RULES for all fish.\nSYNTHETIC GUESS RULE: a right guess costs 50.\nKinds:\n"
        f"{kinds}\nAnswer as:\n"
        "{'pick_fish': 'which fish', 'action': 'normal or active', 'target_position': '0 to 3'}")
    assert derived["guess_rules"] == ("SYNTHETIC GUESS RULES, it's a guessing round.\nKinds:\n"
                                      f"{kinds}\nAnswer as:\n{{'guess_type': 'a fish kind', 'target_position': '0 to 3'}}")
    for bad, why in ((b"GUESS_DESCRIPTION = {2: 'x'}\n", "ACTION_DESCRIPTION"),
                     (b"A = '%s'\nACTION_DESCRIPTION = {1: A % ('',)}\nGUESS_DESCRIPTION = {2: A % ('',)}\n", "stage 2"),
                     (b"ACTION_DESCRIPTION = {2: A % (B,)}\nGUESS_DESCRIPTION = {}\n", "not a module-level literal"),
                     (b"A = '%d'\nACTION_DESCRIPTION = {2: A % ('x',)}\n", "line 2: %d format")):
        with pytest.raises(ValueError, match=why):
            data.derive_prompts(bad)


def test_rules_texts_are_declared_for_fetch_from_a_pinned_commit_and_optional():
    (entry,) = data.DATASET.files
    assert entry.optional and entry.path == "prompts.json" and data.DATASET.root == "cardgame"
    assert data.AGENTTUNING_COMMIT in entry.url
    assert entry.url.endswith("AgentBench.old/src/tasks/card_game/AI_SDK/Python/prompt/en.py")
    assert len(entry.sha256) == 64 and len(entry.derived_sha256) == 64
    module, _, fn = entry.derive.partition(":")
    assert module == "agent_gym.envs.cardgame.data" and getattr(data, fn) is data.derive_prompts
    assert data.DATASET.missing(Path("/nonexistent")) == []  # absent, the dataset still counts as present


def test_the_env_uses_upstreams_rules_texts_when_the_data_directory_has_them(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENT_GYM_DATA", str(tmp_path))
    (tmp_path / "cardgame").mkdir()
    (tmp_path / "cardgame" / "prompts.json").write_bytes(
        data.derive_prompts((FIXTURES / "synthetic_prompt_en.py").read_bytes()))
    env = make_env()
    assert env.options() == {"prompts": "agentbench"} == env.paper_options
    obs, info = env.reset(options={"task": "baseline1/side0/seed1"})
    assert obs.startswith("SYNTHETIC GUESS RULES") and info["messages"][-3]["content"].startswith("SYNTHETIC GUESS")
    obs, *_, info = env.step(scripted(obs, info))
    assert info["phase"] == "action" and obs.startswith("SYNTHETIC ACTION RULES for all fish.\nSYNTHETIC GUESS")
    assert info["messages"][-3]["content"] == env.rules["action"] and "Following is the current game state" in obs
    prov = env.provenance()
    assert prov["options"]["prompts"] == "agentbench" and prov["prompts_file"]["upstream"] is False  # a fixture


def test_without_the_file_the_env_falls_back_to_our_wording_and_records_it(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENT_GYM_DATA", str(tmp_path))
    env = make_env()
    assert env.options() == {"prompts": "ours"} and env.paper_options == {"prompts": "agentbench"}
    assert env.provenance()["prompts_file"]["state"] == "absent"
    obs, info = env.reset(options={"task": "baseline1/side0/seed1"})
    assert obs.startswith(prompt.GUESS_RULES) and env.rules == {"action": prompt.ACTION_RULES,
                                                                "guess": prompt.GUESS_RULES}
    (tmp_path / "cardgame").mkdir()
    (tmp_path / "cardgame" / "prompts.json").write_text('{"action_rules": 3}')
    with pytest.raises(ValueError, match="agent-gym data fetch cardgame"):
        make_env()


# --------------------------------------------------------------------------- the env
def make_env(**kw):
    return gym.make("AgentTuning/CardGame-v0", **kw).unwrapped


def living_enemy(obs: str) -> str:
    return json.loads(obs.split("Live Enemy Fish: ")[1].split("\n")[0].replace("'", '"'))[0]


def scripted(obs: str, info: dict) -> str:
    """A simple legal player: guess 'eel' on the first living enemy, then the first living fish's normal attack."""
    if info["phase"] == "guess":
        return json.dumps({"guess_type": "eel", "target_position": living_enemy(obs)})
    state = json.loads(obs.split("Following is the current game state:\n")[1].split("\n")[0])
    me = next(f["ID"] for f in state["You"] if f["HP"] != "0")
    enemy = next(f["POSITION"] for f in state["Enemy"] if f["HP"] != "0")
    return "Thought: attack.\n" + json.dumps({"pick_fish": me, "action": "normal", "target_position": enemy})


def play_episode(env, task, policy=scripted):
    obs, info = env.reset(options={"task": task})
    transcript, total = [obs], 0.0
    while True:
        obs, reward, terminated, truncated, info = env.step(policy(obs, info))
        transcript.append(obs)
        total += reward
        if terminated or truncated:
            return transcript, total, info


def test_the_schedule_is_the_papers_200_games():
    tasks = data.schedule("test")
    assert len(tasks) == 200 and len(data.schedule("dev")) == 12
    assert [(t.opponent, t.side) for t in tasks[::50]] == [("baseline1", 0), ("baseline1", 1), ("baseline2", 0),
                                                          ("baseline2", 1)]
    assert tasks[57].id == "baseline1/side1/seed7"
    assert make_env(split="ext").split == "test"


def test_seeded_games_replay_exactly_and_seeds_differ():
    env = make_env()
    first = play_episode(env, "baseline2/side1/seed3")
    assert play_episode(env, "baseline2/side1/seed3") == first
    assert play_episode(env, "baseline2/side1/seed4")[0] != first[0]
    assert first[2]["game_end"] in (engine.ALL_DEAD, engine.STATE_LIMIT_EXCEEDED)
    assert first[2]["end_reason"] in ("goal_reached", "task_failed", "env_step_limit")
    assert first[1] == (1.0 if first[2]["success"] else 0.0) == first[2]["score"]


def test_side_decides_who_moves_first():
    env = make_env()
    obs, info = env.reset(options={"task": "baseline1/side0/seed0"})
    assert (info["side"], info["phase"]) == (0, "guess") and "'ACTION_FISH': 'None'" in obs
    obs, info = env.reset(options={"task": "baseline1/side1/seed0"})
    assert info["side"] == 1 and "'ACTION_FISH': 'None'" not in obs  # the opponent has moved


def test_a_failed_guess_is_asked_again_and_after_five_the_game_goes_on_without_one():
    env = make_env()
    obs, info = env.reset(options={"task": "baseline1/side0/seed1"})
    assert info["messages"][-1]["content"] in obs and info["messages"][-3]["content"] == env.rules["guess"]
    for attempt in range(1, 5):
        obs2, reward, terminated, truncated, info = env.step("no idea")
        assert (obs2, info["action_valid"], info["attempt"], terminated) == (obs, False, attempt + 1, False)
    obs, reward, terminated, truncated, info = env.step("still no idea")
    assert info["phase"] == "action" and not terminated and info["action_valid"] is False
    assert env.match.game.last_assert["AssertResult"] is None  # no guess was made


def test_five_failed_actions_lose_the_game_as_an_invalid_action():
    env = make_env()
    obs, info = env.reset(options={"task": "baseline2/side0/seed1"})
    obs, *_, info = env.step(json.dumps({"guess_type": "spray", "target_position": 0}))
    assert info["phase"] == "action"
    for _ in range(4):
        obs, reward, terminated, truncated, info = env.step('{"pick_fish": "spray", "action": "dance"}')
        assert not terminated
    obs, reward, terminated, truncated, info = env.step("")
    assert terminated and reward == 0.0 and not info["success"]
    assert (info["status"], info["end_reason"], info["game_end"]) == ("invalid_action", "invalid_action",
                                                                     engine.INVALID_OPERATION)


def test_messages_keep_the_last_two_actions_and_three_guesses():
    env = make_env()
    obs, info = env.reset(options={"task": "baseline2/side0/seed2"})
    for _ in range(8):
        obs, _, terminated, _, info = env.step(scripted(obs, info))
        assert not terminated
    assert info["phase"] == "guess"
    assert len(info["messages"]) == 2 * 3 + 2 + 1 and info["messages"][-2]["content"] == prompt.RULES_ACK
    obs, _, _, _, info = env.step(scripted(obs, info))
    assert len(info["messages"]) == 2 * 2 + 2 + 1 and info["messages"][-3]["content"] == env.rules["action"]


def test_a_tasks_file_plays_your_own_games(tmp_path):
    path = tmp_path / "games.jsonl"
    path.write_text('{"opponent": "random", "side": 1, "seed": 99}\n')
    env = make_env(tasks_file=path)
    obs, info = env.reset(options={"task": 0})
    assert info["task_id"] == "random/side1/seed99" and info["opponent"] == "random"
    path.write_text('{"opponent": "baseline1", "side": 2, "seed": 1}\n')
    with pytest.raises(ValueError, match="side"):
        make_env(tasks_file=path).reset()


def test_summarize_is_the_win_rate_per_opponent_and_side():
    trajs = [Trajectory(env_id="AgentTuning/CardGame-v0", task_id=t, episode_id=t, prompt=[], first_observation="",
                        score=s, success=bool(s))
             for t, s in (("baseline1/side0/seed0", 1.0), ("baseline1/side1/seed0", 0.0),
                          ("baseline2/side0/seed0", 1.0), ("baseline2/side1/seed0", 1.0))]
    out = make_env().summarize(trajs)
    assert out["win_rate"] == 0.75 and out["win_rate/baseline1"] == 0.5 and out["win_rate/side1"] == 0.5
