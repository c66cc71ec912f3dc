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
    EnvEntry("AgentTuning/WebShop-v0", "agent_gym.envs.webshop.env:WebShopEnv", 10, "held-in", "webshop"),
    EnvEntry("AgentTuning/KnowledgeGraph-v0", "agent_gym.envs.knowledgegraph.env:KnowledgeGraphEnv", 15, "held-in",
             "agentbench_kg"),
    EnvEntry("AgentTuning/Mind2Web-v0", "agent_gym.envs.mind2web.env:Mind2WebEnv", None, "held-in", "mind2web"),
    # held-out
    EnvEntry("AgentTuning/SciWorld-v0", "agent_gym.envs.sciworld.env:SciWorldEnv", 200, "held-out", "scienceworld"),
    EnvEntry("AgentTuning/MiniWoB-v0", "agent_gym.envs.miniwob.env:MiniWoBEnv", None, "held-out", "miniwob"),
    EnvEntry("AgentTuning/WebArena-v0", "agent_gym.envs.webarena.env:WebArenaEnv", 30, "held-out", "webarena"),
    EnvEntry("AgentTuning/HotpotQA-v0", "agent_gym.envs.hotpotqa.env:HotpotQAEnv", 10, "held-out", "hotpotqa"),
    EnvEntry("AgentTuning/ReWOO-v0", "agent_gym.envs.rewoo.env:ReWOOEnv", None, "held-out", "rewoo"),
    EnvEntry("AgentTuning/CardGame-v0", "agent_gym.envs.cardgame.env:CardGameEnv", None, "held-out", None),
    # general capabilities
    EnvEntry("AgentTuning/MTBench-v0", "agent_gym.envs.mt_bench.env:MTBenchEnv", 2, "general", "mt_bench"),
    EnvEntry("AgentTuning/HumanEval-v0", "agent_gym.envs.humaneval.env:HumanEvalEnv", 1, "general", None),
]

DATASETS: dict[str, str] = {
    "gsm8k": "agent_gym.envs.gsm8k.data:DATASET",
    "mmlu": "agent_gym.envs.mmlu.data:DATASET",
    "scienceworld": "agent_gym.envs.sciworld.data:DATASET",
    "alfworld": "agent_gym.envs.alfworld.data:DATASET",
    "alfworld-agentbench": "agent_gym.envs.alfworld.data:AGENTBENCH_DATASET",
    "dbbench": "agent_gym.envs.db.data:DATASET",
    "agentbench_os": "agent_gym.envs.os_interaction.data:DATASET",
    "webshop": "agent_gym.envs.webshop.data:DATASET",
    "agentbench_kg": "agent_gym.envs.knowledgegraph.data:DATASET",
    "mind2web": "agent_gym.envs.mind2web.data:DATASET",
    "miniwob": "agent_gym.envs.miniwob.data:DATASET",
    "webarena": "agent_gym.envs.webarena.data:DATASET",
    "hotpotqa": "agent_gym.envs.hotpotqa.data:DATASET",
    "rewoo": "agent_gym.envs.rewoo.data:DATASET",
    "mt_bench": "agent_gym.envs.mt_bench.data:DATASET",
    "cardgame": "agent_gym.envs.cardgame.data:DATASET",  # AgentBench's rules texts, derived at fetch (optional)
}

for _name, _entry in DATASETS.items():
    register_dataset(_name, _entry)
