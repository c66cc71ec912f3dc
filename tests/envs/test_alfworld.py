"""ALFWorld: AgentBench's protocol on the real TextWorld engine, equal to upstream, expert wins all games."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import agent_gym
from agent_gym.data import DataMissingError
from agent_gym.envs.alfworld import data, prompt
from agent_gym.testing import need_data

pytest.importorskip("textworld", reason="the alfworld extra is not installed: pip install 'agent-gym[alfworld]'")
gym.register_envs(agent_gym)
ENV_ID = "AgentTuning/Alfworld-v0"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "alfworld"
TEST_GAME_0 = "pick_and_place_simple-Pencil-None-Shelf-308/trial_T20190908_121952_610012"


def make(**kwargs):
    need_data("alfworld")
    need_data("alfworld-agentbench")
    return gym.make(ENV_ID, **kwargs)


@pytest.fixture
def alf():
    env = make()
    yield env
    env.close()


@pytest.fixture
def alf04():
    """The release's own wording (alfworld 0.4), as ALFWorld's env plays the games."""
    env = make(wording="alfworld-0.4")
    yield env
    env.close()


def play(env, replies):
    steps = [env.step(r) for r in replies]
    return steps[-1]


# ----------------------------------------------------------------- prompt (pure)
def test_action_is_the_text_after_action_lowercased_first_line():
    assert prompt.parse_action("THOUGHT: find it.\n ACTION: Go To Desk 1\n") == "go to desk 1"
    assert prompt.parse_action("ACTION: open drawer 2") == "open drawer 2"
    assert prompt.parse_action("go to shelf 1\nmore") == "go to shelf 1"  # no ACTION: -> the whole reply
    assert prompt.parse_action("") == ""


def test_inadmissible_actions_map_to_the_closest_command_by_bleu_else_pass_through():
    admissible = ["go to desk 1", "go to shelf 2", "open drawer 1", "look"]
    assert prompt.to_command("go to desk 1", admissible) == "go to desk 1"
    assert prompt.to_command("go to the shelf 2", admissible) == "go to shelf 2"
    assert prompt.to_command("xyzzy plugh", admissible) == "xyzzy plugh"
    assert prompt.to_command("anything", []) == "anything"
    assert prompt.to_command("", admissible) == ""


def test_loop_check_needs_more_than_three_replies_with_the_last_three_identical():
    assert not prompt.repeated(["a", "a", "a"])
    assert prompt.repeated(["b", "a", "a", "a"])
    assert not prompt.repeated(["a", "a", "b", "a"])


def test_observations_as_agentbench_shows_them():
    intro = "-= Welcome to TextWorld, ALFRED! =-\n\nYou are in a room.\n\nYour task is to: x."
    assert prompt.first_observation(intro) == "Here is your task. You are in a room.\nYour task is to: x."
    assert prompt.observation("You arrive at loc 3. On the desk 1, you see a pen 1.") == "On the desk 1, you see a pen 1."
    assert prompt.observation("Nothing happens.") == "Nothing happens."


def test_one_shot_example_is_chosen_by_task_type_prefix():
    examples = {k: [f"{k} room\n", f"ACTION: {k}\n", "done\n", "ACTION: Task succeeded.\n"]
                for k in ("put", "clean", "heat", "cool", "examine", "puttwo")}
    chat = prompt.messages(examples, "pick_two_obj_and_place-Pen-None-Desk-1/trial_1")
    assert [m["role"] for m in chat] == ["user", "assistant"] + ["user", "assistant"] * 2
    assert chat[0]["content"] == prompt.INSTRUCTION and chat[2]["content"] == "Here is one example.\nputtwo room\n"
    assert examples["puttwo"][0] == "puttwo room\n", "the examples must not be modified in place"
    assert prompt.messages(examples, "look_at_obj_in_light-X/t")[3]["content"] == "ACTION: examine\n"
    with pytest.raises(ValueError, match="no AgentBench example"):
        prompt.example_key("slice_and_serve-X/t")


# ----------------------------------------------------------------- data
def test_test_split_is_agentbenchs_fifty_games_and_valid_unseen_has_134():
    need_data("alfworld")
    need_data("alfworld-agentbench")
    test = data.load("test")
    assert len(test) == 50 and len({g.id for g in test}) == 50
    counts = {t: sum(g.task_type == t for g in test) for t in {g.task_type for g in test}}
    assert counts == {"pick_and_place_simple": 9, "pick_clean_then_place_in_recep": 9, "pick_heat_then_place_in_recep": 8,
                      "pick_cool_then_place_in_recep": 8, "look_at_obj_in_light": 8, "pick_two_obj_and_place": 8}
    assert len(data.load("valid_unseen")) == 134
    assert test[0].id == "pick_and_place_simple-Pencil-None-Shelf-308/trial_T20190908_121952_610012"
    assert test[0].targets == {"object": "Pencil", "mrecep": "None", "parent": "Shelf", "scene": "308"}


def test_missing_split_and_unknown_ids_give_errors_that_name_the_fix(alf):
    need_data("alfworld")
    if not (data.require("alfworld") / "json_2.1.1" / "valid_seen").exists():
        with pytest.raises(DataMissingError, match="agent-gym data fetch alfworld"):
            data.load("valid_seen")
    with pytest.raises(ValueError, match="splits"):
        data.load("nope")
    with pytest.raises(KeyError, match="unknown task id"):
        alf.reset(options={"task": "pick_and_place_simple-Nope/trial"})


# ----------------------------------------------------------------- env
def test_check_env_passes(alf):
    check_env(alf.unwrapped, skip_render_check=True)


def test_reset_gives_agentbenchs_chat_and_the_admissible_commands(alf):
    obs, info = alf.reset(options={"task": 0})
    assert obs.startswith("Here is your task. You are in the middle of a room.")
    assert "Your task is to: put a pencil in shelf." in obs and "Welcome to TextWorld" not in obs
    chat = info["prompt"]
    assert chat[1]["content"] == prompt.AGENT_OK and chat[2]["content"].startswith("Here is one example.\nYou are in")
    assert chat[-1]["content"] == "ACTION: Task succeeded.\n" and chat[-1]["role"] == "assistant"
    assert "go to shelf 1" in info["admissible_actions"] and info["task_type"] == "pick_and_place_simple"


def test_expert_wins_with_rising_progress_and_one_reward(alf):
    game = next(g for g in alf.unwrapped.tasks() if g.task_type == "pick_heat_then_place_in_recep")
    alf.reset(options={"task": game.id})
    progress, total = [], 0.0
    for reply in alf.unwrapped.expert_replies(game):
        obs, reward, terminated, truncated, info = alf.step(reply)
        progress.append(info["progress"])
        total += reward
    assert terminated and not truncated and info["success"] and info["status"] == "completed" and total == 1.0
    assert info["end_reason"] == "goal_reached"
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert {0.5, 0.75} <= set(progress), f"picked (2/4) and heated (3/4) sub-goals should show: {progress}"


def test_invalid_and_hostile_replies_get_nothing_happens_and_the_episode_goes_on(alf):
    alf.reset(options={"task": 0})
    for reply in ["xyzzy plugh", "\x00\udc80" + "q" * 10, b"\xff\xfe qqq", "ACTION: " + "zz " * 30000]:
        obs, reward, terminated, truncated, info = alf.step(reply)
        assert obs == "Nothing happens." and reward == 0.0 and not (terminated or truncated)
        assert info["action_valid"] is False
    obs, _, _, _, info = alf.step("THOUGHT: go.\n ACTION: go to the shelf 1")  # mapped by BLEU
    assert info["command"] == "go to shelf 1" and info["action_valid"] and "On the shelf 1" in obs


def test_a_reply_too_long_for_any_command_is_sent_as_it_is_without_scoring():
    """A reply of c words scores at most max(r, 4, ln c / 10) / (c - 3) BLEU against any command of
    r words, so from about 100 r words on none can pass 0.01 and it is sent as it is, as upstream
    would after scoring it. Checked with NLTK on the longest replies below the bound that score best:
    the command itself repeated, its words shuffled, and no match at all."""
    admissible = ["take alarmclock 1 from desk 2", "put pencil 2 in/on shelf 5", "go to desk 1", "look",
                  "use desklamp 1"]
    longest = max(len(c.split()) for c in admissible)
    cutoff = next(c for c in range(4, 10_000) if prompt.bleu_cannot_pass(c, longest))
    assert 100 * longest < cutoff < 100 * longest + 10 and not prompt.bleu_cannot_pass(cutoff - 1, longest)
    rng = random.Random(15)
    for n in (cutoff, cutoff + 1, 3 * cutoff):
        for command in admissible:
            words = command.split()
            for reply in ((words * n)[:n], rng.choices(words + ["zz"], k=n), ["zz"] * n):
                assert prompt.bleu(command, " ".join(reply)) <= prompt.BLEU_THRESHOLD
                assert prompt.to_command(" ".join(reply), admissible) == " ".join(reply)


@pytest.mark.exclusive
def test_a_64_kib_reply_takes_a_step_of_milliseconds_not_seconds(alf):
    """Issue 15 (stalled engines): the engine runs in this process and a step's work is bounded by
    the game, except the BLEU mapping, which counted every n-gram of a reply against every command:
    32000 words took 5 s on the dev machine."""
    import time

    alf.reset(options={"task": 0})
    for reply in ("ACTION: " + "a " * 32_000, "ACTION: " + "go to desk 1 " * 5_000):
        start = time.perf_counter()
        obs, _, terminated, truncated, info = alf.step(reply[: 64 * 1024 - 1])
        elapsed = time.perf_counter() - start
        assert elapsed < 1.0, f"a {len(reply)}-character reply held the step {elapsed:.2f} s"
        assert obs == "Nothing happens." and not (terminated or truncated) and info["action_valid"] is False


def test_the_same_reply_four_times_ends_the_episode_as_a_failure(alf):
    alf.reset(options={"task": 0})
    results = [alf.step("ACTION: look") for _ in range(4)]
    assert not any(r[2] for r in results[:3])
    obs, reward, terminated, truncated, info = results[3]
    assert terminated and not info["success"] and info["end_reason"] == "repeated_action" and reward == 0.0


def test_35_replies_without_winning_truncate(alf):
    alf.reset(options={"task": 0})
    for i in range(35):
        obs, reward, terminated, truncated, info = alf.step(f"ACTION: examine thing {i % 2}")
    assert truncated and not terminated and info["status"] == "task_limit_reached" and info["turn"] == 35
    assert info["end_reason"] == "round_limit"


def test_summary_is_the_success_rate_without_errored_games():
    from agent_gym.envs.alfworld.env import AlfworldEnv
    from agent_gym.trajectory import Trajectory

    def traj(task, success, status="completed"):
        return Trajectory(env_id=ENV_ID, task_id=task, episode_id=task, prompt=[], first_observation="",
                          success=success, score=float(success), status=status)

    trajs = [traj("pick_and_place_simple-A/t1", True), traj("pick_and_place_simple-A/t2", False),
             traj("look_at_obj_in_light-B/t", True), traj("look_at_obj_in_light-B/t2", False, "error")]
    out = AlfworldEnv.summarize(trajs)
    assert out["success_rate"] == pytest.approx(2 / 3)
    assert out["success_rate/pick_and_place_simple"] == 0.5 and out["success_rate/look_at_obj_in_light"] == 1.0


def test_concurrent_episodes_in_threads_play_correctly(tmp_path):
    """Rollouts run episodes in threads: TextWorld's parsers and the compiled-game caches are shared."""
    from agent_gym.envs.alfworld import engine
    from agent_gym.rollout import plan, rollout

    need_data("alfworld")
    need_data("alfworld-agentbench")
    engine._MEMORY.clear()  # fresh grammars: every episode parses while the others do
    result = rollout(plan([ENV_ID], episodes=8), "expert", concurrency=4, progress=False)
    assert [(t.status, t.success) for t in result.trajectories] == [("completed", True)] * 8, \
        [t.error for t in result.trajectories if t.error]


# ----------------------------------------------------------------- the paper's wording (alfworld 0.3.x)
def test_paper_wording_go_to_feedback_loses_the_arrival_sentence_on_test_game_0(alf):
    obs, info = alf.reset(options={"task": 0})
    assert info["task_id"] == TEST_GAME_0 and "help" not in info["admissible_actions"]
    obs, *_ = alf.step("ACTION: go to drawer 2")
    assert obs == "On the drawer 2, you see nothing."


def test_paper_wording_place_command_and_its_feedback_on_test_game_0(alf):
    alf.reset(options={"task": 0})
    for reply in ["ACTION: go to desk 2", "ACTION: take pencil 2 from desk 2", "ACTION: go to shelf 5"]:
        obs, reward, terminated, truncated, info = alf.step(reply)
    assert "put pencil 2 in/on shelf 5" in info["admissible_actions"]
    assert not any(c.startswith("move ") for c in info["admissible_actions"])
    obs, reward, terminated, truncated, info = alf.step("THOUGHT: done.\n ACTION: put pencil 2 in/on shelf 5\n")
    assert obs == "You put the pencil 2 in/on the shelf 5."
    assert terminated and reward == 1.0 and info["success"] and info["end_reason"] == "goal_reached"


def test_release_wording_is_an_option(alf04):
    obs, info = alf04.reset(options={"task": 0})
    assert "help" in info["admissible_actions"]
    obs, *_ = alf04.step("ACTION: go to drawer 2")
    assert obs == "You arrive at drawer 2. On the drawer 2, you see nothing."
    for reply in ["ACTION: go to desk 2", "ACTION: take pencil 2 from desk 2", "ACTION: go to shelf 5"]:
        obs, reward, terminated, truncated, info = alf04.step(reply)
    assert "move pencil 2 to shelf 5" in info["admissible_actions"]
    obs, reward, terminated, truncated, info = alf04.step("ACTION: move pencil 2 to shelf 5")
    assert obs == "You move the pencil 2 to the shelf 5." and info["success"]
    assert info["provenance"]["options"] == {"wording": "alfworld-0.4"}
    assert info["provenance"]["paper_options"] == {"wording": "alfworld-0.3"}


def test_reword_rewrites_the_few_templates_and_the_walkthrough_and_nothing_else():
    from agent_gym.envs.alfworld import engine

    need_data("alfworld-agentbench")
    need_data("alfworld")
    game = json.loads(data.load("test")[0].path.read_text())
    old = engine.reword(game, "alfworld-0.3")
    assert engine.reword(game, "alfworld-0.4") is game
    assert old["walkthrough"] == ["go to desk 2", "take pencil 2 from desk 2", "go to shelf 5", "put pencil 2 in/on shelf 5"]
    assert old["grammar"].count('template :: "put {o} in/on {r}";') == 2 and "move {o} to {r}" not in old["grammar"]
    assert '"You arrive at {lend.name}. #examineReceptacle.feedback#"' in old["grammar"]
    assert '"You put the {o.name} in/on the {r.name}."' in old["grammar"]
    assert "action help" not in old["grammar"] and "(:action help" not in old["pddl_domain"]
    assert ";(receptacleType ?r SinkType)" in old["pddl_domain"]
    assert old["pddl_problem"] == game["pddl_problem"]
    assert engine.reword(old, "alfworld-0.3") == old, "a game already in 0.3's wording is left as it is"
    with pytest.raises(ValueError, match="wording"):
        engine.reword({**game, "grammar": game["grammar"].replace("move {o} to {r}", "drop {o} on {r}")}, "alfworld-0.3")
    with pytest.raises(ValueError, match="alfworld-0.3"):
        make(wording="alfworld-0.2")
    assert engine.command_in("move potato 1 to countertop 2", "alfworld-0.3") == "put potato 1 in/on countertop 2"
    assert engine.command_in("move potato 1 to countertop 2", "alfworld-0.4") == "move potato 1 to countertop 2"
    assert engine.command_in("go to toaster 1", "alfworld-0.3") == "go to toaster 1"


def test_held_in_protocol_hints_and_provenance(alf):
    obs, info = alf.reset(options={"task": 0})
    assert info["system_prompt"] == "" and info["max_new_tokens"] == 128 and info["temperature"] == 0.0
    assert info["end_reason"] is None
    prov = info["provenance"]
    assert prov["options"] == prov["paper_options"] == {"wording": "alfworld-0.3"}
    from importlib.metadata import version

    assert prov["engine"]["textworld"] == version("textworld") and prov["engine"]["alfworld"] == version("alfworld")
    assert alf.unwrapped.splits == ("test", "dev", "train", "valid_unseen", "valid_seen")
    assert alf.unwrapped.resolve_split("std") == "test"  # AgentBench.old's name for it


def fastchat_llama2_prompt(messages: list[str]) -> str:
    """FastChat 0.2.31's ``llama-2`` conversation (``Conversation.get_prompt``, LLAMA2 branch) with
    no system message, as AgentBench.old's TGI agent built it: re-derived here, not imported."""
    prompt = "[INST] "  # an empty system message: no <<SYS>> block
    for i, message in enumerate(messages):
        if i == 0:
            prompt += message + " "
        elif i % 2 == 0:
            prompt += "[INST] " + message + " "
        else:
            prompt += "[/INST] " + message + " </s><s>"
    return prompt + "[/INST]"  # the agent's turn, left open


def test_first_prompt_sent_to_agentlm_is_the_papers_harness_string(alf):
    """The first call of test game 0 through the ReAct policy's llama2 rendering equals what
    AgentBench.old sent AgentLM: its messages, each ``.strip()``-ed, in FastChat's llama-2 form."""
    from agent_gym.policies.backend import Generation
    from agent_gym.policies.react import ReActPolicy

    class Recorder:
        model_name, context_length = "THUDM/agentlm-7b", 4096

        def __init__(self):
            self.prompts, self.calls = [], []

        def chat_template(self):
            return None

        def generate(self, prompt, **kwargs):
            self.prompts.append(prompt)
            self.calls.append(kwargs)
            return Generation(text="ACTION: go to drawer 2")

    obs, info = alf.reset(options={"task": 0})
    backend = Recorder()
    policy = ReActPolicy(backend, chat_template="llama2")
    policy.reset(info)
    assert policy.act(obs, info).strip() == "ACTION: go to drawer 2"
    expected = fastchat_llama2_prompt([m["content"].strip() for m in info["prompt"]] + [obs.strip()])
    assert backend.prompts[0] == expected
    assert expected.startswith("[INST] Interact with a household to solve a task.") and "<<SYS>>" not in expected
    assert expected.endswith("Your task is to: put a pencil in shelf. [/INST]")
    assert backend.calls[0]["max_new_tokens"] == 128 and backend.calls[0]["temperature"] == 0.0


# ----------------------------------------------------------------- splits and your own game lists
@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A data directory with the real valid_unseen games and AgentBench files, and the fixture lists
    as AgentBench's dev list and training pool (the upstream files are not in the test data)."""
    need_data("alfworld")
    need_data("alfworld-agentbench")
    real_alf, real_ab = data.DATASET.path(), data.AGENTBENCH_DATASET.path()
    alf, ab = tmp_path / "alfworld", tmp_path / "agentbench"
    (alf / "json_2.1.1").mkdir(parents=True)
    (alf / "json_2.1.1" / "valid_unseen").symlink_to(real_alf / "json_2.1.1" / "valid_unseen")
    (alf / "logic").symlink_to(real_alf / "logic")
    (ab / "data" / "alfworld").mkdir(parents=True)
    (ab / data.TEST_LIST).symlink_to(real_ab / data.TEST_LIST)
    (ab / "alfworld_prompts").symlink_to(real_ab / "alfworld_prompts")
    monkeypatch.setenv("AGENT_GYM_DATA", str(tmp_path))
    return tmp_path


def test_dev_split_reads_agentbenchs_dev_list_and_names_the_fetch_command_when_absent(data_dir):
    with pytest.raises(DataMissingError, match="agent-gym data fetch alfworld-agentbench"):
        data.load("dev")
    shutil.copy(FIXTURES / "dev.json", data_dir / "agentbench" / data.DEV_LIST)
    games = data.load("dev")
    assert [g.id for g in games] == [
        "pick_and_place_simple-Mug-None-Desk-308/trial_T20190908_125200_737896",
        "look_at_obj_in_light-AlarmClock-None-DeskLamp-308/trial_T20190908_222917_366542",
        "pick_two_obj_and_place-CD-None-Safe-308/trial_T20190907_051013_060265",
    ]
    env = gym.make(ENV_ID, split="dev")
    try:
        obs, info = env.reset(options={"task": 2})
        assert obs.endswith("Your task is to: find two cd and put them in safe.") and info["provenance"]["split"] == "dev"
        for reply in env.unwrapped.expert_replies(games[2]):
            obs, reward, terminated, truncated, info = env.step(reply)
        assert info["success"] and info["end_reason"] == "goal_reached"
    finally:
        env.close()


def test_train_split_is_agentbenchs_training_pool_and_says_no_data_without_the_train_games(data_dir):
    with pytest.raises(DataMissingError, match="agent-gym data fetch alfworld-agentbench"):
        data.load("train")
    (data_dir / "agentbench" / data.TRAIN_LIST).parent.mkdir()
    shutil.copy(FIXTURES / "train_valid.json", data_dir / "agentbench" / data.TRAIN_LIST)
    with pytest.raises(DataMissingError, match="agent-gym data fetch alfworld"):
        data.load("train")
    out = subprocess.run([sys.executable, "-m", "agent_gym.cli", "list", "--json"], capture_output=True, text=True,
                         env=dict(os.environ))
    assert out.returncode == 0, out.stderr  # the listing says so too
    (row,) = [r for r in json.loads(out.stdout) if r["id"] == ENV_ID]
    assert row["tasks"]["train"] == "no data" and row["tasks"]["test"] == 50 and row["tasks"]["dev"] == "no data"
    listing = json.loads((data_dir / "agentbench" / data.TRAIN_LIST).read_text())
    for rel in (r for rels in listing.values() for r in rels):  # the release's train games, played from copies
        target = data_dir / "alfworld" / rel
        target.parent.mkdir(parents=True)
        shutil.copy(data.DATASET.path().parent / "alfworld" / rel.replace("/train/", "/valid_unseen/"), target)
    games = data.load("train")
    assert [g.task_type for g in games] == ["pick_and_place_simple", "pick_heat_then_place_in_recep"]
    assert all("/json_2.1.1/train/" in str(g.path) for g in games)
    env = gym.make(ENV_ID, split="train")
    try:
        env.reset(options={"task": 1})
        for reply in env.unwrapped.expert_replies(games[1]):
            obs, reward, terminated, truncated, info = env.step(reply)
        assert info["success"]
    finally:
        env.close()


def test_a_users_game_list_in_agentbenchs_format_is_a_tasks_file(tmp_path):
    need_data("alfworld")
    need_data("alfworld-agentbench")
    listing = json.loads((FIXTURES / "dev.json").read_text())
    listing["look_at_obj"] = [str(data.DATASET.path() / listing["look_at_obj"][0])]  # absolute paths stay as they are
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(listing))
    env = make(tasks_file=path)
    try:
        assert [g.task_type for g in env.unwrapped.tasks()] == [
            "pick_and_place_simple", "look_at_obj_in_light", "pick_two_obj_and_place"]
        obs, info = env.reset(options={"task": 1})
        assert info["task_id"] == "look_at_obj_in_light-AlarmClock-None-DeskLamp-308/trial_T20190908_222917_366542"
        assert info["provenance"]["split"] == "custom"
        assert info["provenance"]["tasks_file"] == {"path": str(path.resolve()),
                                                   "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    finally:
        env.close()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"put": "not a list of paths", "x": [3]}))
    with pytest.raises(ValueError, match="AgentBench's format"):
        data.load_file(bad)
    gone = tmp_path / "gone.json"
    gone.write_text(json.dumps({"put": ["json_2.1.1/valid_unseen/nope/trial_x/game.tw-pddl"]}))
    with pytest.raises(DataMissingError, match="1 of the 1 ALFWorld games listed"):
        data.load_file(gone)


def test_dev_list_of_agentbench_when_present_is_its_20_valid_unseen_games():
    need_data("alfworld")
    if not (data.AGENTBENCH_DATASET.path() / data.DEV_LIST).exists():
        pytest.skip("AgentBench's dev list is not in the data directory: `agent-gym data fetch alfworld-agentbench`")
    games = data.load("dev")
    assert len(games) == 20 and all("/valid_unseen/" in str(g.path) for g in games)


# ----------------------------------------------------------------- the compiled-game cache
def test_a_game_compiled_in_one_process_plays_the_same_in_another_and_the_cache_is_keyed_by_wording(tmp_path):
    from agent_gym.envs.alfworld import engine

    need_data("alfworld")
    game = data.load("valid_unseen")[7]
    code = (
        "import sys, json; from agent_gym.envs.alfworld import engine\n"
        "w = sys.argv[3]; g = engine.AlfredGame(); g.load(sys.argv[1], wording=w); s = g.reset()\n"
        "out = [s.feedback, s['admissible_commands']]\n"
        "for c in json.loads(sys.argv[2]):\n"
        "    s, r, d = g.step(engine.command_in(c, w)); out.append([s.feedback, r, d, s['admissible_commands']])\n"
        "print(json.dumps(out))\n"
    )
    commands = json.dumps(data.walkthrough(game) + ["look"])
    env = dict(os.environ, AGENT_GYM_ALFWORLD_CACHE=str(tmp_path))

    def run(wording):
        out = subprocess.run([sys.executable, "-c", code, str(game.path), commands, wording], env=env,
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    cold = {w: run(w) for w in engine.WORDINGS}
    sha = hashlib.sha256(game.path.read_bytes()).hexdigest()
    cached = {w: next(tmp_path.glob(f"{sha}-*-{w}.pkl.z")) for w in engine.WORDINGS}
    assert len(set(tmp_path.glob("*.pkl.z"))) == 2, "one compiled game per wording"
    for wording in engine.WORDINGS:
        assert run(wording) == cold[wording], "a warm (unpickled) game must play exactly like a freshly compiled one"
        cached[wording].write_bytes(b"corrupt")
        assert run(wording) == cold[wording], "a corrupt cache file is recompiled"
        assert any(step[2] for step in cold[wording][2:]), "the walkthrough wins"
    commands_seen = {w: {c for step in cold[w] for c in step[-1]} for w in engine.WORDINGS}
    assert not any(c.startswith("move ") for c in commands_seen["alfworld-0.3"])
    assert any(" in/on " in c for c in commands_seen["alfworld-0.3"])
    assert not any(" in/on " in c for c in commands_seen["alfworld-0.4"])


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_memory_stays_bounded_over_many_distinct_games(monkeypatch):
    """Issue 15: the process grew about 1.1 MB per distinct game (102 -> 250 MB over 134 games) while
    only 32 compiled games were kept: TextWorld's memo of every Proposition ever made never shrank.
    With small bounds (2 compiled games, 2000 memo entries) the memo stays under its bound plus a few
    games' facts (a game adds 400-1800), and 30 more distinct games after a warm-up of 10 grow the
    process by less than 8 MB (before: about 0.75 MB a game, 22 MB)."""
    import mementos.core

    from agent_gym.envs.alfworld import engine

    monkeypatch.setattr(engine, "MEMORY_GAMES", 2)
    monkeypatch.setattr(engine, "_MEMORY", OrderedDict())  # what earlier tests compiled stays theirs
    monkeypatch.setattr(engine, "TEXTWORLD_MEMO_ENTRIES", 2000, raising=False)
    env = make(split="valid_unseen")
    try:
        games = env.unwrapped.tasks()[:40]
        assert len({g.id for g in games}) == 40
        memo_sizes, rss = [], {}
        for i, game in enumerate(games):
            _, info = env.reset(options={"task": game.id})
            env.step("ACTION: look")
            memo_sizes.append(len(mementos.core._memento_cache))
            assert len(engine._MEMORY) <= 2
            if i in (9, 39):
                gc.collect()
                rss[i] = _rss_mb()
    finally:
        env.close()
    assert rss[39] - rss[9] < 8, f"30 distinct games grew the process by {rss[39] - rss[9]:.1f} MB"
    assert max(memo_sizes) < 2000 + 4000, f"TextWorld's memo is not bounded: {memo_sizes}"


# ----------------------------------------------------------------- side by side with upstream
def _upstream_env(game_file: str):
    """ALFWorld's own env on one game, built as AgentBench's SingleAlfredTWEnv builds it."""
    import yaml
    from alfworld.agents.environment.alfred_tw_env import AlfredTWEnv

    config = yaml.safe_load((data.require("alfworld-agentbench") / "alfworld_prompts" / "base_config.yaml").read_text())
    tw_env = AlfredTWEnv.__new__(AlfredTWEnv)  # AgentBench skips the folder scan (it needs traj_data.json)
    tw_env.config, tw_env.train_eval = config, "eval_out_of_distribution"
    tw_env.game_files, tw_env.num_games = [game_file], 1
    return tw_env.init_env(batch_size=1)


@pytest.mark.parametrize("task_type", sorted({k for k, _ in prompt.EXAMPLE_KEYS}))
def test_observations_and_rewards_equal_alfworlds_own_env(alf04, task_type):
    """The same replies through our env (the release's wording) and through ALFWorld's env with
    AgentBench's loop give the same observations, admissible commands, rewards and ends."""
    alf = alf04
    game = next(g for g in alf.unwrapped.tasks() if g.id.startswith(task_type))
    upstream = _upstream_env(str(game.path))
    try:
        ob, info_up = upstream.reset()
        obs, info = alf.reset(options={"task": game.id})
        assert obs == prompt.first_observation(ob[0])
        assert info["admissible_actions"] == info_up["admissible_commands"][0]
        rng = random.Random(task_type)
        harmless = ("go to", "open", "examine", "look", "inventory")
        replies = [f"ACTION: {c}" for c in rng.sample([c for c in info["admissible_actions"] if c.startswith(harmless)], 3)]
        walkthrough = data.walkthrough(game)
        for i, command in enumerate(walkthrough):  # blunder, look around, then do the next right thing
            replies += ["ACTION: jump around", "THOUGHT: where am I?\n ACTION: look\n",
                        f"ACTION: {command}\n" if i < len(walkthrough) - 1 else f"ACTION: {command} now"]
        for reply in replies:
            obs, reward, terminated, truncated, info = alf.step(reply)
            command = prompt.to_command(prompt.parse_action(reply), info_up["admissible_commands"][0])
            ob, _, done, info_up = upstream.step([command])
            assert obs == prompt.observation(ob[0]), reply
            assert info["admissible_actions"] == info_up["admissible_commands"][0]
            assert terminated == done[0] and reward == (1.0 if done[0] and info_up["won"][0] else 0.0)
            if done[0]:
                break
        assert info["success"] and info_up["won"][0], "the walkthrough, detours and all, wins on both"
    finally:
        upstream.close()


# ----------------------------------------------------------------- the expert on every game
@pytest.mark.slow
@pytest.mark.parametrize("wording", ["alfworld-0.3", "alfworld-0.4"])
def test_expert_wins_all_134_valid_unseen_games_through_gym_make(tmp_path, wording):
    """The expert through the rollout pipeline (gym.make, two threads), then the task's metric."""
    from agent_gym.metrics import report_rows
    from agent_gym.rollout import plan, rollout

    need_data("alfworld")
    need_data("alfworld-agentbench")
    out = tmp_path / "expert.jsonl"
    result = rollout(plan([ENV_ID], split="valid_unseen"), "expert", output=out, concurrency=2, progress=False,
                     env_kwargs={"wording": wording})
    assert len(result.trajectories) == 134
    failures = [(t.task_id, t.status, t.error or (t.steps[-1].observation if t.steps else ""))
                for t in result.trajectories
                if not (t.success and t.total_reward == 1.0 and t.steps[-1].info["progress"] == 1.0)]
    assert not failures, failures
    (row,) = report_rows([out])
    assert row["success_rate"] == 1.0 and row["errors"] == 0
    assert all(row[f"success_rate/{t}"] == 1.0 for t in engine_subgoal_types())


def engine_subgoal_types():
    from agent_gym.envs.alfworld.engine import SUBGOALS

    return list(SUBGOALS)
