"""The AgentTuning tasks, one package each (data / engine / prompt / env).

This module is only a table: the ids to register and the datasets they read. It imports no
env, so listing and registering stay cheap. Add a task by adding one entry to each table.
"""

from agent_gym.data import register_dataset
from agent_gym.registration import EnvEntry

ENVS: list[EnvEntry] = [
    # general capabilities (the paper's side table)
    EnvEntry("AgentTuning/GSM8K-v0", "agent_gym.envs.gsm8k.env:GSM8KEnv", 1, "general", "gsm8k"),
    EnvEntry("AgentTuning/MMLU-v0", "agent_gym.envs.mmlu.env:MMLUEnv", 1, "general", "mmlu"),
    # held-in (AgentBench)
    EnvEntry("AgentTuning/Alfworld-v0", "agent_gym.envs.alfworld.env:AlfworldEnv", 35, "held-in", "alfworld"),
    EnvEntry("AgentTuning/DB-v0", "agent_gym.envs.db.env:DBEnv", 16, "held-in", "dbbench"),  # 15 SQL rounds + answer
    EnvEntry("AgentTuning/OS-v0", "agent_gym.envs.os_interaction.env:OSEnv", 8, "held-in", "agentbench_os"),
    # held-out
    EnvEntry("AgentTuning/SciWorld-v0", "agent_gym.envs.sciworld.env:SciWorldEnv", 200, "held-out", "scienceworld"),
]

DATASETS: dict[str, str] = {
    "gsm8k": "agent_gym.envs.gsm8k.data:DATASET",
    "mmlu": "agent_gym.envs.mmlu.data:DATASET",
    "scienceworld": "agent_gym.envs.sciworld.data:DATASET",
    "alfworld": "agent_gym.envs.alfworld.data:DATASET",
    "alfworld-agentbench": "agent_gym.envs.alfworld.data:AGENTBENCH_DATASET",
    "dbbench": "agent_gym.envs.db.data:DATASET",
    "agentbench_os": "agent_gym.envs.os_interaction.data:DATASET",
}

for _name, _entry in DATASETS.items():
    register_dataset(_name, _entry)
