"""A bar chart of run scores beside the paper's AgentLM numbers (:mod:`agent_gym.paper`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent_gym import paper


def plot_scores(rows: list[dict[str, Any]], out: str | Path, reference: tuple[str, ...] = paper.AGENTLM) -> Path:
    """Draw :func:`figure` of ``rows`` (from :func:`agent_gym.metrics.report_rows`) into a PNG at ``out``."""
    import matplotlib.pyplot as plt

    fig = figure(rows, reference)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return Path(out)


def figure(rows: list[dict[str, Any]], reference: tuple[str, ...] = paper.AGENTLM) -> Any:
    """One group of bars per env: each agent of the run files (policy, and model if any), then the
    paper's ``reference`` models. Every bar carries its value (a zero is drawn as a 0 label on an
    outlined bar, so it is seen), and the legend sits outside the axes, where it covers no bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from agent_gym.rollout import env_class

    envs = list(dict.fromkeys(r["env"] for r in rows))
    agents = list(dict.fromkeys(r["policy"] for r in rows))
    ours = {(r["env"], r["policy"]): 100 * r.get("score", 0.0) for r in rows}
    refs = {env: paper.scores(getattr(env_class(env), "task_name", ""), reference) for env in envs}
    models = [m for m in reference if any(m in ref for ref in refs.values())]
    names = paper.model_names()
    series = [(f"{a} (this run)", {env: ours.get((env, a)) for env in envs}) for a in agents]
    series += [(f"{names.get(m, m)} (paper)", {env: refs[env].get(m) for env in envs}) for m in models]

    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(envs) * len(series) ** 0.5 + 3.5), 3.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    top = 0.0
    for k, (label, values) in enumerate(series):
        xs = [i - 0.4 + width * (k + 0.5) for i, env in enumerate(envs) if values[env] is not None]
        ys = [values[env] for env in envs if values[env] is not None]
        color = colors[k % len(colors)]
        bars = ax.bar(xs, ys, width, label=label, color=color, edgecolor=color, linewidth=1.0,
                      hatch="//" if "(paper)" in label else None, alpha=0.6 if "(paper)" in label else 1.0)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
        top = max([top, *ys])
    ax.set_xticks(range(len(envs)), [e.split("/")[-1].removesuffix("-v0") for e in envs])
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, max(10.0, top * 1.15))
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.set_title(f"this run vs {paper.PAPER}", fontsize="small")
    fig.tight_layout()
    return fig
