"""Filtering trajectories into fine-tuning data, as AgentInstruct was built.

The paper keeps a trajectory when its reward is 1 (Mind2Web: at least 2/3) and trains on
the conversation with loss on the agent's turns only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from agent_gym.trajectory import Trajectory

PAPER_THRESHOLD = 1.0
PAPER_THRESHOLDS = {"AgentTuning/Mind2Web-v0": 2 / 3}


def keep(traj: Trajectory, min_score: float | None = None) -> bool:
    """The paper's rule: score at least the threshold (its env's, unless ``min_score`` is given),
    and an episode that ended normally (no engine error, no context overflow)."""
    threshold = min_score if min_score is not None else PAPER_THRESHOLDS.get(traj.env_id, PAPER_THRESHOLD)
    return traj.status not in ("error", "agent_context_limit") and traj.score >= threshold - 1e-9 and traj.steps != []


def select(trajs: Iterable[Trajectory], min_score: float | None = None) -> Iterator[Trajectory]:
    return (t for t in trajs if keep(t, min_score))


def write_agentinstruct(trajs: Iterable[Trajectory], path: str | Path) -> int:
    """Write AgentInstruct records (``{"id", "conversations": [{"from", "value", "loss"}]}``), one per line.

    Missing parent folders are made (as the other formats do); the file appears whole or not at all."""
    n = 0
    seen: dict[str, int] = {}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for t in trajs:
            for record in t.to_agentinstruct_records():
                k = seen.get(record["id"], 0)  # the same task played twice gets distinct ids
                seen[record["id"]] = k + 1
                if k:
                    record["id"] = f"{record['id']}_{k}"
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                n += 1
    tmp.replace(path)
    return n
