"""A first look: make an env, read its prompt, play a reply, then run a small batch and filter it.

    python examples/quickstart.py
"""

import gymnasium as gym

import agent_gym
from agent_gym.export import select, write_agentinstruct
from agent_gym.rollout import plan, rollout

gym.register_envs(agent_gym)

# One episode by hand.
env = gym.make("AgentTuning/MMLU-v0")
obs, info = env.reset(seed=0)
print(f"task {info['task_id']}: {len(info['prompt'])} prompt turns, then:\n{obs}\n")
obs, reward, terminated, truncated, info = env.step("The answer is B")
print(f"-> {obs!r} reward={reward} status={info['status']}\n")
env.close()

# A small batch with the gold-answer policy, written to a resumable JSONL file.
result = rollout(plan(["AgentTuning/GSM8K-v0", "AgentTuning/MMLU-v0"], episodes=10), "expert",
                 output="runs/quickstart.jsonl", concurrency=4, progress=False)
print(f"{len(result.trajectories)} new episodes, {result.skipped} already done, mean score {result.mean_score:.2f}")

# Keep what the paper would keep (reward 1) as AgentInstruct fine-tuning data.
kept = write_agentinstruct(select(result.trajectories), "runs/quickstart-agentinstruct.jsonl")
print(f"kept {kept} trajectories for fine-tuning")
