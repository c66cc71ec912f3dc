"""Metrics over trajectories: each env's own summary, and the per-env report table.

Scores are stored on the 0..1 scale; reports show the paper's percent.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from agent_gym import paper
from agent_gym.trajectory import DamagedLine, Trajectory, newest, read_jsonl


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


def load_runs(paths: Iterable[str | Path], stats: dict[str, int] | None = None) -> dict[tuple[str, str], list[Trajectory]]:
    """Trajectories of run files by (env id, agent), where the agent is "policy" or
    "policy:model". Files are append-only: an episode recorded more than once for the same agent
    (an error played again on resume) counts once, by its newest record; ``stats["superseded"]``
    gets how many older records were left out, and ``stats["damaged"]`` the lines that are no
    trajectory record (:class:`agent_gym.trajectory.DamagedLine`: file, line number, why), skipped.
    Without ``stats`` a damaged line is warned (:class:`agent_gym.trajectory.DamagedRecordWarning`)."""
    damaged: list[DamagedLine] | None = [] if stats is not None else None
    latest, superseded = newest(t for p in paths for t in read_jsonl(p, damaged))
    out: dict[tuple[str, str], list[Trajectory]] = defaultdict(list)
    for t in latest:
        out[(t.env_id, t.agent)].append(t)
    if stats is not None:
        stats["superseded"] = superseded
        stats["damaged"] = damaged  # type: ignore[assignment]
    return dict(out)


def agent_name(t: Trajectory) -> str:
    return t.agent


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


def report_rows(paths: Iterable[str | Path], damaged: list[DamagedLine] | None = None) -> list[dict[str, Any]]:
    """One row per (env, agent): the env's summary (``score`` 0..1, ...), ``errors``, the paper's
    AgentLM scores for the task (``paper``, percent), the protocol options the episodes ran with
    (``options``) and those that differ from the paper's (``options_differ``: ``{key: [ours,
    paper]}``), the dataset's checksum state (``data``), and ``superseded`` (older records of
    episodes played again, left out; the same number on every row) and ``damaged`` (the lines of
    the files that are no trajectory record, skipped, as ``"FILE line N: why"``; on every row).
    ``damaged``: a list that also gets those lines (:class:`agent_gym.trajectory.DamagedLine`)."""
    from agent_gym.rollout import env_class

    stats: dict[str, Any] = {}
    groups = load_runs(paths, stats)
    if damaged is not None:
        damaged.extend(stats["damaged"])
    rows = []
    for (env_id, agent), trajs in sorted(groups.items()):
        summary = summarize(env_id, trajs)
        try:
            task = getattr(env_class(env_id), "task_name", "")
        except Exception:  # noqa: BLE001 - an env this install lacks still gets its row
            task = ""
        options, differ = _options(trajs)
        rows.append({"env": env_id, "policy": agent, "errors": sum(t.status == "error" for t in trajs), **summary,
                     "paper": paper.scores(task, paper.AGENTLM), "options": options, "options_differ": differ,
                     "data": _data_states(trajs), "superseded": stats.get("superseded", 0),
                     "damaged": [str(d) for d in stats["damaged"]]})
    return rows


def _options(trajs: Sequence[Trajectory]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """The env options of the episodes (a list where episodes differ) and those unlike the paper's."""
    seen: dict[str, list[Any]] = defaultdict(list)
    paper_opts: dict[str, Any] = {}
    for t in trajs:
        env_prov = (t.provenance or {}).get("env") or {}
        for k, v in (env_prov.get("options") or {}).items():
            if v not in seen[k]:
                seen[k].append(v)
        paper_opts.update(env_prov.get("paper_options") or {})
    options = {k: v[0] if len(v) == 1 else v for k, v in seen.items()}
    differ = {k: [options[k], paper_opts[k]] for k in options if k in paper_opts and seen[k] != [paper_opts[k]]}
    return options, differ


def _data_states(trajs: Sequence[Trajectory]) -> list[str]:
    """``name: state`` of the datasets (or ``tasks_file: path``) the episodes read."""
    out: list[str] = []
    for t in trajs:
        env_prov = (t.provenance or {}).get("env") or {}
        ds, tf = env_prov.get("dataset"), env_prov.get("tasks_file")
        label = (f"tasks_file {tf.get('path')} (sha256 {str(tf.get('sha256'))[:12]})" if isinstance(tf, dict)
                 else f"{ds.get('name')}: {ds.get('state')}" if isinstance(ds, dict) else None)
        if label and label not in out:
            out.append(label)
    return out


def format_table(rows: list[dict[str, Any]], details: bool = False) -> str:
    """A plain-text table: env, agent, episodes, score (the paper's scale: percent, MT-Bench 1-10) beside the paper's
    AgentLM-7B/13B/70B, success %, turns, errors; then the options that differ from the
    paper's, data that is not upstream's, and superseded records."""
    names = paper.model_names()
    ref_header = "paper % (" + "/".join(names[m].removeprefix("AgentLM-") for m in paper.AGENTLM) + " AgentLM)"
    header = ["env", "policy", "episodes", "score", ref_header, "success %", "avg turns", "errors"]
    lines = [header]
    for r in rows:
        ref = r.get("paper") or {}
        lines.append([
            r["env"], r["policy"], str(int(r.get("episodes", 0))),
            _paper_scale(r), "/".join(f"{ref[m]:g}" if m in ref else "-" for m in paper.AGENTLM),
            f"{100 * r.get('success_rate', 0):.1f}", f"{r.get('avg_turns', 0):.2f}", str(r["errors"]),
        ])
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in lines)
    notes = []
    for r in rows:
        opts = r.get("options") or {}
        differ = r.get("options_differ") or {}
        if opts:
            unlike = ", ".join(f"{k}={v} (paper: {differ[k][1]})" for k, v in opts.items() if k in differ)
            same = ", ".join(f"{k}={v}" for k, v in opts.items() if k not in differ)
            parts = ([f"unlike the paper: {unlike}"] if unlike else []) + ([f"as the paper or not set by it: {same}"] if same else [])
            notes.append(f"options of {r['env']} ({r['policy']}): {'; '.join(parts)}")
        # an edited dataset or the user's own tasks: the scores are not on the paper's data
        unusual = [d for d in r.get("data") or [] if d.endswith(": modified") or d.startswith("tasks_file")]
        if unusual:
            notes.append(f"data of {r['env']}: {'; '.join(unusual)}")
    superseded = rows[0].get("superseded", 0) if rows else 0
    if superseded:
        notes.append(f"{superseded} older records superseded by newer ones (episodes played again): "
                     "each episode counts once, by its newest record")
    damaged = rows[0].get("damaged") or [] if rows else []
    if damaged:
        notes.append(f"{len(damaged)} damaged lines skipped (not trajectory records; a resume plays their episodes "
                     f"again): {'; '.join(damaged[:5])}{' ...' if len(damaged) > 5 else ''}")
    if notes:
        text += "\n\n" + "\n".join(notes)
    if details:
        for r in rows:
            extra = {k: v for k, v in r.items() if "/" in k}
            if extra:
                text += f"\n\n{r['env']} ({r['policy']})\n" + "\n".join(f"  {k}: {100 * v:.1f}" for k, v in extra.items())
    return text


def _paper_scale(row: dict[str, Any]) -> str:
    """The score as the paper's table prints it: percent, or a 1-10 rating (MT-Bench)."""
    from agent_gym.rollout import env_class

    try:
        unit = paper.unit(getattr(env_class(row["env"]), "task_name", "")) or ""
    except Exception:  # noqa: BLE001 - an env this install lacks
        unit = ""
    score = row.get("score", 0) or 0
    return f"{10 * score:.2f} /10" if unit.startswith("score 1-10") else f"{100 * score:.1f}"


def to_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2)
