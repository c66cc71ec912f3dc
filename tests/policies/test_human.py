"""The human policy: a person types replies; here the 'person' is a scripted text stream."""

from __future__ import annotations

import io

import gymnasium as gym

import agent_gym
from agent_gym.episode import run_episode
from agent_gym.policies.human import HumanPolicy

gym.register_envs(agent_gym)


def test_a_person_plays_an_mmlu_question(require_data):
    require_data("mmlu")
    env = gym.make("AgentTuning/MMLU-v0")
    typed = io.StringIO("/actions\n/prompt\nI think it is\nthe answer B\n\n")
    shown = io.StringIO()
    traj = run_episode(env, HumanPolicy(typed, shown), task=0, seed=0)
    assert traj.steps[0].action == "I think it is\nthe answer B"  # multi-line, ended by the empty line
    screen = shown.getvalue()
    assert "A\nB\nC\nD" in screen  # /actions lists the admissible actions
    assert screen.count(traj.prompt[0]["content"][:40]) == 2  # the prompt at reset, again on /prompt
    assert traj.status in ("completed", "invalid_action")


def test_quitting_is_recorded_not_raised(require_data):
    require_data("gsm8k")
    env = gym.make("AgentTuning/GSM8K-v0")
    traj = run_episode(env, HumanPolicy(io.StringIO("/quit\n"), io.StringIO()), task=0, seed=0)
    assert traj.status == "error" and "quit" in traj.error
    traj = run_episode(env, HumanPolicy(io.StringIO(""), io.StringIO()), task=0, seed=0)
    assert traj.status == "error" and "end of input" in traj.error
