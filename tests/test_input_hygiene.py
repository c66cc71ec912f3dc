"""Bad input gets a clear error or an invalid-action observation, never a crash or a hang."""

from __future__ import annotations

import gymnasium as gym
import pytest
from gymnasium.error import ResetNeeded

import agent_gym
from agent_gym.data import DataMissingError
from agent_gym.testing import need_data

gym.register_envs(agent_gym)


@pytest.fixture
def gsm8k():
    need_data("gsm8k")
    env = gym.make("AgentTuning/GSM8K-v0")
    yield env
    env.close()


@pytest.mark.parametrize("reply", ["", " \n\t", "\x00\x01\x02", "\ud800 lone surrogate \udfff", "é" * 10])
def test_odd_text_is_an_invalid_action_not_a_crash(gsm8k, reply):
    gsm8k.reset(options={"task": 0})
    obs, reward, terminated, truncated, info = gsm8k.step(reply)
    assert terminated and reward == 0.0
    assert info["action_valid"] is False and info["status"] == "invalid_action"
    assert isinstance(obs, str)


def test_binary_reply_is_decoded(gsm8k):
    gsm8k.reset(options={"task": 0})
    _, reward, *_ = gsm8k.step(b"\xff\xfe The answer is 18")
    assert reward == 1.0


def test_one_megabyte_reply_is_refused_as_invalid(gsm8k):
    gsm8k.reset(options={"task": 0})
    obs, reward, terminated, _, info = gsm8k.step("18 " * 350_000)
    assert reward == 0.0 and terminated
    assert info["status"] == "invalid_action" and "too long" in obs


def test_non_text_action_is_a_type_error(gsm8k):
    gsm8k.reset(options={"task": 0})
    with pytest.raises(TypeError, match="reply as str"):
        gsm8k.step(42)


def test_unknown_task_id_names_the_id(gsm8k):
    with pytest.raises(KeyError, match="unknown task id 'no-such-task'"):
        gsm8k.reset(options={"task": "no-such-task"})
    with pytest.raises(IndexError, match="out of range"):
        gsm8k.reset(options={"task": 10_000})
    with pytest.raises(ValueError, match="splits"):
        gsm8k.reset(options={"split": "nope"})


def test_step_after_the_end_needs_a_reset(gsm8k):
    gsm8k.reset(options={"task": 0})
    gsm8k.step("18")
    with pytest.raises(ResetNeeded):
        gsm8k.unwrapped.step("18")


def test_missing_data_dir_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENT_GYM_DATA", str(tmp_path / "empty"))
    env = gym.make("AgentTuning/GSM8K-v0")
    with pytest.raises(DataMissingError, match="agent-gym data fetch gsm8k"):
        env.reset()
