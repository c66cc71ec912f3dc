"""Metrics over trajectories: each env's own summary, and the per-env report table.

Scores are stored on the 0..1 scale; reports show the paper's percent.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from agent_gym.trajectory import Trajectory, read_jsonl


def default_summary(trajs: Sequence[Trajectory]) -> dict[str, float]:
    """Mean score (the paper's metric for most tasks), success rate, turns and end statuses."""
    n = len(trajs)
    if n == 0:
        return {"episodes": 0}
    out: dict[str, float] = {
        "episodes": n,
        "score": sum(t.score for t in trajs) / n,
        "success_rate": sum(bool(t.success) for t in trajs) / n,
        "avg_turns": sum(t.turns for t in trajs) / n,
    }
    for status, count in Counter(t.status for t in trajs).items():
        out[f"status/{status}"] = count / n
    return out


def group_means(trajs: Iterable[Trajectory], key: Callable[[Trajectory], str]) -> dict[str, float]:
    """Mean score per group (per subject, per task type)."""
    groups: dict[str, list[float]] = defaultdict(list)
    for t in trajs:
        groups[key(t)].append(t.score)
    return {k: sum(v) / len(v) for k, v in groups.items()}


def load_runs(paths: Iterable[str | Path]) -> dict[tuple[str, str], list[Trajectory]]:
    """Trajectories of run files by (env id, agent), where the agent is "policy" or
    "policy:model"; an episode recorded twice for the same agent counts once (the last)."""
    by_key: dict[tuple[str, str, str], Trajectory] = {}
    for p in paths:
        for t in read_jsonl(p):
            by_key[(t.env_id, agent_name(t), t.episode_id)] = t
    out: dict[tuple[str, str], list[Trajectory]] = defaultdict(list)
    for (env_id, agent, _), t in by_key.items():
        out[(env_id, agent)].append(t)
    return dict(out)


def agent_name(t: Trajectory) -> str:
    return f"{t.policy}:{t.model}" if t.model else t.policy


def summarize(env_id: str, trajs: Sequence[Trajectory]) -> dict[str, float]:
    """The env's own summary (its class's ``summarize``), falling back to the default."""
    import gymnasium as gym

    import agent_gym  # noqa: F401  (registers the ids)

    try:
        entry = gym.spec(env_id).entry_point
        cls = gym.envs.registration.load_env_creator(entry) if isinstance(entry, str) else entry
        return cls.summarize(trajs)
    except Exception:
        return default_summary(trajs)


def report_rows(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    rows = []
    for (env_id, agent), trajs in sorted(load_runs(paths).items()):
        summary = summarize(env_id, trajs)
        errors = sum(t.status == "error" for t in trajs)
        rows.append({"env": env_id, "policy": agent, "errors": errors, **summary})
    return rows


def format_table(rows: list[dict[str, Any]], details: bool = False) -> str:
    """A plain-text table: env, episodes, score % (the paper's scale), success %, turns, errors."""
    header = ["env", "policy", "episodes", "score %", "success %", "avg turns", "errors"]
    lines = [header]
    for r in rows:
        lines.append([
            r["env"], r["policy"], str(int(r.get("episodes", 0))),
            f"{100 * r.get('score', 0):.1f}", f"{100 * r.get('success_rate', 0):.1f}",
            f"{r.get('avg_turns', 0):.2f}", str(r["errors"]),
        ])
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in lines)
    if details:
        for r in rows:
            extra = {k: v for k, v in r.items() if "/" in k}
            if extra:
                text += f"\n\n{r['env']} ({r['policy']})\n" + "\n".join(f"  {k}: {100 * v:.1f}" for k, v in extra.items())
    return text


def to_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2)
