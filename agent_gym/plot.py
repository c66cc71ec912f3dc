"""A bar chart of a run's scores beside the paper's AgentLM numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent_gym.data import data_dir_path


def paper_scores(task_name: str) -> dict[str, float]:
    """The paper's percent scores for a task, by model (empty when the data dir lacks them)."""
    path = data_dir_path() / "paper_results.json"
    if not path.exists():
        return {}
    table = json.loads(path.read_text())
    for group in ("held_in", "held_out"):
        if task_name in table.get(group, {}):
            return dict(zip(table["models"], table[group][task_name]))
    general = table.get("general_agentlm_70b", {})
    return {"agentlm-70b": general[task_name]} if task_name in general else {}


def plot_scores(rows: list[dict[str, Any]], out: str | Path) -> Path:
    """Our score per env (percent) with the paper's AgentLM scores as reference bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from agent_gym.rollout import env_class

    names = [r["env"].split("/")[-1].removesuffix("-v0") for r in rows]
    ours = [100 * r.get("score", 0.0) for r in rows]
    refs = [paper_scores(getattr(env_class(r["env"]), "task_name", "")) for r in rows]
    models = sorted({m for ref in refs for m in ref if m.startswith("agentlm")})
    width = 0.8 / (1 + len(models))
    fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(rows)), 3.5))
    xs = range(len(rows))
    ax.bar([x - 0.4 + width / 2 for x in xs], ours, width, label="this run")
    for k, m in enumerate(models, start=1):
        ax.bar([x - 0.4 + width / 2 + k * width for x in xs], [ref.get(m, 0) for ref in refs], width, label=f"paper {m}")
    ax.set_xticks(list(xs), names)
    ax.set_ylabel("score (%)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return Path(out)
