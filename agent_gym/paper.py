"""The paper's own numbers, shipped with the library so reports can set ours beside them.

``paper_results.json`` (next to this module) holds the per-task scores of the AgentTuning
paper's main table: Zeng et al., "AgentTuning: Enabling Generalized Agent Abilities for LLMs",
arXiv:2310.12823 (2023), as published on the project page (github.com/THUDM/AgentTuning,
``docs/index.html``), for GPT-3.5/4, Llama-2-chat 7/13/70B and AgentLM 7/13/70B, and AgentLM-70B's
general-task scores. Facts, cited; scores in percent unless a task's ``unit`` says otherwise.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

PAPER = "AgentTuning (Zeng et al., arXiv:2310.12823)"
#: The models whose scores reports show by default: the paper's own agent models.
AGENTLM = ("agentlm-7b", "agentlm-13b", "agentlm-70b")


@functools.lru_cache(maxsize=1)
def table() -> dict[str, Any]:
    """The whole table: ``{"source", "models": [{"key", "name"}], "tasks": {task: {"suite", "unit", "scores"}}, "overall"}``."""
    return json.loads((Path(__file__).with_name("paper_results.json")).read_text(encoding="utf-8"))


def model_names() -> dict[str, str]:
    """Model key -> the paper's name for it (``agentlm-7b`` -> ``AgentLM-7B``)."""
    return {m["key"]: m["name"] for m in table()["models"]}


def scores(task_name: str, models: tuple[str, ...] | None = None) -> dict[str, float]:
    """The paper's scores for a task (an env's ``task_name``), by model key, in the paper's order;
    only ``models`` when given. Empty for a task the paper did not report."""
    found = table()["tasks"].get(task_name, {}).get("scores", {})
    return {m: v for m, v in found.items() if models is None or m in models}


def unit(task_name: str) -> str | None:
    return table()["tasks"].get(task_name, {}).get("unit")
