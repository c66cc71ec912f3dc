"""The text-env protocol, checked with gymnasium's own tools on every registered env."""

from __future__ import annotations

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.wrappers import RecordEpisodeStatistics, TimeLimit

import agent_gym
from agent_gym import STATUSES, AnyText
from agent_gym.core import END_REASONS, LLAMA2_SYSTEM
from agent_gym.registration import entries
from agent_gym.rollout import env_class
from agent_gym.testing import need_data

gym.register_envs(agent_gym)
ALL_IDS = [e.id for e in entries()]
STANDARD_KEYS = {"task_id", "prompt", "action_valid", "success", "score", "progress", "status", "end_reason", "turn",
                 "max_new_tokens", "temperature", "system_prompt", "provenance"}


# envs whose engine is an LLM: a short judgment keeps check_env's whole episode cheap (the paper's 2048 took 9 min)
ENV_KWARGS = {"AgentTuning/MTBench-v0": {"judge_max_new_tokens": 8}}


def make(env_id: str, **kw) -> gym.Env:
    entry = next(e for e in entries() if e.id == env_id)
    if entry.dataset:
        need_data(entry.dataset)
    return gym.make(env_id, **{**ENV_KWARGS.get(env_id, {}), **kw})


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_check_env_passes(env_id):
    env = make(env_id)
    try:
        check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_reset_and_step_carry_the_standard_info(env_id):
    env = make(env_id)
    try:
        obs, info = env.reset(seed=3)
        assert isinstance(obs, str) and obs
        assert STANDARD_KEYS <= info.keys()
        assert info["status"] == "running" and info["score"] == 0.0 and info["end_reason"] is None
        assert all(set(m) == {"role", "content"} for m in info["prompt"])
        assert isinstance(info["max_new_tokens"], int) and info["max_new_tokens"] > 0
        assert isinstance(info["temperature"], float)
        assert info["system_prompt"] is None or isinstance(info["system_prompt"], str)
        prov = info["provenance"]
        assert {"agent_gym", "engine", "options", "paper_options", "split"} <= prov.keys()
        assert prov["split"] == "test" and "dataset" in prov
        obs2, info2 = env.reset(seed=3)
        assert (obs2, info2["task_id"]) == (obs, info["task_id"]), "the seed must pick the task reproducibly"
        obs, reward, terminated, truncated, info = env.step("")
        assert isinstance(obs, str) and STANDARD_KEYS <= info.keys()
        assert info["status"] in STATUSES
        assert isinstance(reward, float)
        if terminated or truncated:
            assert info["end_reason"] in END_REASONS
        else:
            assert info["end_reason"] is None
    finally:
        env.close()


def test_ids_resolve_without_importing_agent_gym_first():
    import subprocess
    import sys

    code = ("import gymnasium as gym, sys; env = gym.make('agent_gym:AgentTuning/GSM8K-v0'); "
            "print(type(env.unwrapped).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "GSM8KEnv"


def test_import_is_cheap():
    import subprocess
    import sys

    code = ("import sys, agent_gym; heavy = [m for m in ('torch', 'transformers', 'scienceworld', 'textworld', "
            "'pymysql', 'selenium', 'agent_gym.envs.gsm8k.env') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_text_space_accepts_any_str_and_samples_str():
    space = AnyText()
    assert space.contains("") and space.contains("\u00e9\U0001F600" * 1000) and not space.contains(b"x")
    space.seed(0)
    samples = [space.sample() for _ in range(20)]
    assert all(isinstance(s, str) and len(s) <= space.max_sample_length for s in samples)
    assert AnyText() == AnyText() and AnyText() != AnyText(max_sample_length=3)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_gymnasium_vector_envs_run_our_envs_unchanged(mode):
    need_data("gsm8k")
    kw = {"vector_kwargs": {"shared_memory": False}} if mode == "async" else {}
    envs = gym.make_vec("AgentTuning/GSM8K-v0", num_envs=3, vectorization_mode=mode, **kw)
    try:
        obs, info = envs.reset(seed=7)
        assert len(obs) == 3 and all(isinstance(o, str) for o in obs)
        obs, rewards, terminated, truncated, info = envs.step(("The answer is 1",) * 3)
        assert list(terminated) == [True] * 3
        assert set(rewards.tolist()) <= {0.0, 1.0}
    finally:
        envs.close()


def test_standard_wrappers_apply():
    need_data("mmlu")
    env = RecordEpisodeStatistics(TimeLimit(gym.make("AgentTuning/MMLU-v0").unwrapped, max_episode_steps=1))
    env.reset(options={"task": "anatomy/0"})
    gold = env.unwrapped.task.answer
    _, reward, terminated, truncated, info = env.step(gold)
    assert reward == 1.0 and terminated
    assert info["episode"]["r"] == 1.0 and info["episode"]["l"] == 1


def test_the_env_enforces_the_papers_round_limit_not_gymnasiums_time_limit():
    """gymnasium's TimeLimit would mark an answer on the last allowed turn as truncated too."""
    for e in entries():
        assert gym.spec(e.id).max_episode_steps is None
        assert env_class(e.id).max_turns == e.max_episode_steps


def test_a_single_turn_answer_is_terminated_not_truncated():
    need_data("gsm8k")
    env = gym.make("AgentTuning/GSM8K-v0")
    env.reset(options={"task": 0})
    _, _, terminated, truncated, info = env.step("The answer is 18")
    assert (terminated, truncated) == (True, False)
    assert info["status"] == "completed" and info["end_reason"] == "answered"
    env.close()


def test_render_ansi_prints_the_transcript():
    need_data("gsm8k")
    env = gym.make("AgentTuning/GSM8K-v0", render_mode="ansi")
    obs, _ = env.reset(options={"task": 0})
    env.step("The answer is 18")
    text = env.render()
    assert obs in text and "The answer is 18" in text and "Correct." in text


# The paper's decoding per task (../shared/UPSTREAM_SCORING.md: AgentBench.old eval/single-task/*.sh for the
# held-in tasks; AgentTuning's eval_general and eval_heldout scripts for the others) and its system message.
PAPER_DECODING = {
    "AgentTuning/GSM8K-v0": ({"max_new_tokens": 512, "temperature": 0.0}, LLAMA2_SYSTEM),
    "AgentTuning/MMLU-v0": ({"max_new_tokens": 1, "temperature": 0.0}, None),  # scored by next-token log-probs
    "AgentTuning/Alfworld-v0": ({"max_new_tokens": 128, "temperature": 0.0}, ""),
    "AgentTuning/DB-v0": ({"max_new_tokens": 128, "temperature": 0.0}, ""),
    "AgentTuning/OS-v0": ({"max_new_tokens": 128, "temperature": 0.0}, ""),
    "AgentTuning/SciWorld-v0": ({"max_new_tokens": 256, "temperature": 0.0, "stop": ["[INST]", "<|end_of_turn|>"]},
                                LLAMA2_SYSTEM),
    "AgentTuning/WebShop-v0": ({"max_new_tokens": 128, "temperature": 0.0}, ""),
    "AgentTuning/Mind2Web-v0": ({"max_new_tokens": 128, "temperature": 0.0}, ""),
    "AgentTuning/KnowledgeGraph-v0": ({"max_new_tokens": 128, "temperature": 0.0}, ""),
    "AgentTuning/WebArena-v0": ({"max_new_tokens": 384, "temperature": 1.0, "top_p": 0.9}, LLAMA2_SYSTEM),
    "AgentTuning/MiniWoB-v0": ({"max_new_tokens": 512, "temperature": 0.0, "stop": ["[INST]"]}, LLAMA2_SYSTEM),
    "AgentTuning/HotpotQA-v0": ({"max_new_tokens": 256, "temperature": 0.0, "stop": ["\nObservation"]}, ""),
    "AgentTuning/ReWOO-v0": ({"max_new_tokens": 256, "temperature": 0.0}, LLAMA2_SYSTEM),
    "AgentTuning/CardGame-v0": ({"max_new_tokens": 512, "temperature": 0.0}, ""),
    "AgentTuning/MTBench-v0": ({"max_new_tokens": 4096, "temperature": 0.0}, LLAMA2_SYSTEM),  # per category in info
    "AgentTuning/HumanEval-v0": ({"max_new_tokens": 512, "temperature": 0.0}, LLAMA2_SYSTEM),
}


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_every_env_gives_the_papers_decoding_and_system_message(env_id):
    decoding, system = PAPER_DECODING[env_id]  # a new env must add its row
    cls = env_class(env_id)
    assert cls.decoding == decoding
    assert cls.system_prompt == system


@pytest.mark.parametrize("env_id, stripped", [
    ("AgentTuning/GSM8K-v0", False), ("AgentTuning/MMLU-v0", False), ("AgentTuning/SciWorld-v0", False),
    ("AgentTuning/Alfworld-v0", True), ("AgentTuning/DB-v0", True), ("AgentTuning/OS-v0", True),
    ("AgentTuning/WebShop-v0", True), ("AgentTuning/Mind2Web-v0", True), ("AgentTuning/KnowledgeGraph-v0", True),
    ("AgentTuning/WebArena-v0", True), ("AgentTuning/CardGame-v0", True),
    ("AgentTuning/MiniWoB-v0", False), ("AgentTuning/HotpotQA-v0", False), ("AgentTuning/ReWOO-v0", False),
    ("AgentTuning/MTBench-v0", False), ("AgentTuning/HumanEval-v0", False),
])
def test_strip_messages_says_whether_the_papers_harness_stripped_each_message(env_id, stripped):
    """AgentBench.old's TGI client strip()-ed every message; AgentTuning's general and held-out scripts did not."""
    assert env_class(env_id).strip_messages is stripped
