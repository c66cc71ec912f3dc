"""The RCI policy (AgentTuning's MiniWoB++ agent) end to end with the embedded SmolLM2 on a real page."""

import gymnasium as gym
import pytest

import agent_gym
from agent_gym.testing import need_data

pytest.importorskip("miniwob")
from agent_gym.policies import make_policy  # noqa: E402
from agent_gym.policies.rci import _plan_steps  # noqa: E402

gym.register_envs(agent_gym)


def test_plan_steps_count_upstreams_way():
    assert _plan_steps("1. click\n2. type\n3. press") == 4
    assert _plan_steps("no plan") == 1
    assert _plan_steps("1. a 3. c") == 2  # stops at the first missing number


@pytest.mark.slow
def test_rci_plays_a_miniwob_episode_with_the_embedded_model(local_backend):
    need_data("miniwob")
    env = gym.make("AgentTuning/MiniWoB-v0").unwrapped
    try:
        # few tokens, one step, no few-shot turns keep it short on a CPU: this checks the plumbing, not quality
        policy = make_policy("rci", env, max_new_tokens=8, max_steps=1, few_shot=False, irci=1)
        obs, info = env.reset(options={"task": "click-test/0"})
        policy.reset(info)
        turns = 0
        while True:
            reply = policy.act(obs, info)
            obs, reward, terminated, truncated, info = env.step(reply)
            turns += 1
            if terminated or truncated:
                break
        assert turns == 1  # max_steps=1 went to the env as its step limit
        prompts = [c["prompt"] for c in policy.calls]
        assert len(prompts) >= 3 + 1  # plan, critique, revision; action (+ state grounding, a correction)
        assert "Current task: Click the button." in prompts[0] and 'id="subbtn"' in prompts[0]
        assert "Find problems with this plan" in prompts[1]
        assert info["end_reason"] in ("round_limit", "goal_reached", "task_failed", "invalid_action")
        assert policy.provenance["policy"] == "rci" and policy.provenance["irci"] == 1
    finally:
        env.close()
