"""``agent-gym eval``: every env of a suite under the paper's protocol, and a report beside the paper's table.

An evaluation is one rollout per env (its default split, protocol options and decoding: what
reproduces the paper), each recorded in its own resumable run file under the output folder, then a
report of per-task scores in the paper's units, the held-in and held-out overall scores computed as
the paper computes them, the paper's rows for AgentLM-7B/13B/70B, GPT-3.5 and GPT-4, and the end
statuses per task (the paper's error analysis). A task that cannot run here (its data, a site URL or
an endpoint missing) is listed as "not run" with the message that names what to set; the rest is
still reported.

The overall scores. The paper's "Overall" rows are "a weighted average of all tasks within the same
category" (AgentTuning's project page, ``docs/index.html``); the weights are not published. Written
as ``overall = (1/6) * sum_t score_t / W_t`` (scores in percent), the six divisors ``W_t`` of a
category are the least-squares solution over the paper's eight models (:func:`overall_divisors`),
which reproduces all 16 printed overall values to their two printed decimals (largest residual
0.004). They are derived at run time from the shipped per-task numbers
(``agent_gym/paper_results.json``), so the derivation is checked, not copied.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent_gym import paper
from agent_gym.registration import entries

#: The paper's models shown in the report, in the paper's order.
REFERENCE_MODELS = ("gpt-3.5-turbo", "gpt-4", "agentlm-7b", "agentlm-13b", "agentlm-70b")
#: The categories that have an overall score in the paper.
OVERALL_SUITES = ("held-in", "held-out")
#: Our end statuses under the names of the paper's error analysis (AgentBench's outcome classes).
STATUS_LABELS = {
    "completed": "Completed",
    "task_limit_reached": "Task Limit Exceeded",
    "invalid_action": "Invalid Action / Format",
    "agent_context_limit": "Context Limit Exceeded",
    "error": "Error (env or backend)",
}


@functools.lru_cache(maxsize=None)
def overall_divisors(suite: str) -> dict[str, float]:
    """The divisor ``W_t`` of each task of ``suite`` ("held-in" or "held-out") in the paper's overall
    score, fitted by least squares to the paper's eight models (see the module docstring).

    Returns ``{task_name: W_t}`` in the paper's task order. Raises ``KeyError`` for a suite the
    paper gives no overall score."""
    import numpy as np

    table = paper.table()
    overall = table["overall"][suite]
    tasks = [t for t, v in table["tasks"].items() if v["suite"] == suite]
    models = [m["key"] for m in table["models"] if m["key"] in overall]
    scores = np.array([[table["tasks"][t]["scores"][m] for t in tasks] for m in models]) / len(tasks)
    weights, *_ = np.linalg.lstsq(scores, np.array([overall[m] for m in models]), rcond=None)
    return {t: float(1.0 / w) for t, w in zip(tasks, weights)}


def overall_score(suite: str, scores: dict[str, float]) -> float | None:
    """The paper's overall score of ``suite`` from per-task scores in percent (``{task_name: pct}``);
    ``None`` unless every task of the suite has a score (the paper's average needs all six)."""
    divisors = overall_divisors(suite)
    if any(t not in scores for t in divisors):
        return None
    return sum(scores[t] / w for t, w in divisors.items()) / len(divisors)


@dataclasses.dataclass
class TaskResult:
    """One env's line of the report. ``score`` in the paper's unit (percent, MT-Bench 1-10);
    ``not_run`` the reason when the task could not run (``None`` when it ran)."""

    env_id: str
    task: str
    suite: str
    run_file: str | None = None
    not_run: str | None = None
    episodes: int = 0
    split_size: int | None = None
    score: float | None = None
    errors: int = 0
    statuses: dict[str, int] = dataclasses.field(default_factory=dict)
    end_reasons: dict[str, int] = dataclasses.field(default_factory=dict)
    options_differ: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    #: settings of this run unlike the paper's that are not env options (decoding forced on the policy, a TimeLimit)
    protocol_differ: list[str] = dataclasses.field(default_factory=list)
    data: list[str] = dataclasses.field(default_factory=list)
    agent: str | None = None
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
    paper: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def flags(self) -> list[str]:
        """Why this score is not the paper's protocol (empty when it is)."""
        out = []
        if self.split_size is not None and self.episodes < self.split_size:
            out.append(f"{self.episodes} of {self.split_size} episodes")
        out += [f"{k}={v[0]} (paper: {v[1]})" for k, v in self.options_differ.items()]
        out += self.protocol_differ
        out += [d for d in self.data if d.endswith(": modified") or d.startswith("tasks_file")]
        if self.errors:
            out.append(f"{self.errors} episodes ended in error")
        return out


def _in_paper_units(task: str, score01: float) -> float:
    """Our 0..1 score in the unit of the paper's table (MT-Bench's 1-10 rating; percent otherwise)."""
    unit = paper.unit(task) or ""
    return 10.0 * score01 if unit.startswith("score 1-10") else 100.0 * score01


def suite_ids(suite: str | Sequence[str]) -> list[str]:
    """Env ids of a suite name (``held-in``, ``held-out``, ``general``, ``all``) or of a list of names."""
    from agent_gym.registration import resolve_ids

    return resolve_ids([suite] if isinstance(suite, str) else list(suite))


def _label(r: "TaskResult") -> str:
    return r.task or r.env_id.split("/")[-1].removesuffix("-v0")


def _file_name(env_id: str) -> str:
    return env_id.replace("/", "_") + ".jsonl"


def evaluate(suite: str | Sequence[str], policy: Any = "react", *, output: str | Path,
             policy_options: dict[str, Any] | None = None, episodes: int | None = None, concurrency: int = 1,
             env_kwargs: dict[str, dict[str, Any]] | None = None, seed: int = 0, progress: bool = True,
             log: Any = None, workers: str | None = None, ray_address: str | None = None,
             env_server: str | None = None) -> list[TaskResult]:
    """Play every env of ``suite`` with ``policy`` under the paper's protocol and return one
    :class:`TaskResult` per env (the report is :func:`write_report`).

    ``output``: a folder; each env's trajectories go to ``<output>/runs/<Namespace_Env-v0>.jsonl``,
    so a rerun resumes every task (errors played again). ``episodes``: the first N tasks of each
    test split (``None``: the whole split, the paper's protocol). ``env_kwargs``: per env id, the
    env's options (``{"AgentTuning/WebArena-v0": {"shopping": "http://..."}}``). ``log``: called
    with one line per task as it starts and ends (default: nothing). ``workers``, ``ray_address``,
    ``env_server``: where episodes run, as :func:`agent_gym.rollout.rollout` takes them.

    A task whose data is missing or whose env cannot start (:meth:`TextEnv.preflight`) is not
    played and gets ``not_run``; a policy that cannot be built gives every task ``not_run``.
    Raises ``ValueError`` when ``output`` (or a folder above it) is a file.
    """
    from agent_gym.data import DataMissingError
    from agent_gym.metrics import report_rows
    from agent_gym.rollout import RunSetupError, env_class, plan, rollout

    say = log or (lambda line: None)
    runs = Path(output) / "runs"
    blocker = next((p for p in (runs, *runs.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():  # checked first: nothing is played into a path that cannot hold it
        raise ValueError(f"the output {output} must be a folder (it holds runs/ and the report), but {blocker} "
                         f"is a file: pass another --output")
    runs.mkdir(parents=True, exist_ok=True)
    suites_by_id = {e.id: e.suite for e in entries()}
    results = []
    for env_id in suite_ids(suite):
        try:
            cls = env_class(env_id)
        except ImportError as exc:  # an extra not installed (the env's module imports its engine)
            res = TaskResult(env_id, "", suites_by_id.get(env_id, ""), not_run=f"cannot import the env: {exc}")
            results.append(res)
            say(f"{env_id}: not run: {res.not_run}")
            continue
        res = TaskResult(env_id, getattr(cls, "task_name", ""), suites_by_id.get(env_id, ""))
        res.paper = paper.scores(res.task, REFERENCE_MODELS)
        results.append(res)
        kwargs = dict((env_kwargs or {}).get(env_id, {}))
        for key in ("max_new_tokens", "temperature", "top_p", "stop"):  # decoding forced on every task's policy
            forced = (policy_options or {}).get(key)
            if forced is not None and forced != cls.decoding.get(key):
                res.protocol_differ.append(f"{key}={forced} (paper: {cls.decoding.get(key)})")
        if kwargs.get("max_episode_steps") is not None:
            res.protocol_differ.append(f"max_episode_steps={kwargs['max_episode_steps']} (a TimeLimit; "
                                       f"the paper's limit: {cls.max_turns})")
        try:
            specs = plan([env_id], episodes=episodes, seed=seed)
            res.split_size = len(cls.load_tasks(cls.splits[0]))
        except (DataMissingError, FileNotFoundError, OSError, ValueError) as exc:
            res.not_run = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            say(f"{env_id}: not run: {res.not_run}")
            continue
        out = runs / _file_name(env_id)
        say(f"{env_id}: {len(specs)} episodes -> {out}")
        try:
            result = rollout(specs, policy, output=out, concurrency=concurrency, policy_options=policy_options,
                             env_kwargs=kwargs, progress=progress, workers=workers, ray_address=ray_address,
                             env_server=env_server)
        except RunSetupError as exc:
            res.not_run = str(exc)
            say(f"{env_id}: not run: {res.not_run}")
            continue
        res.run_file = str(out)
        if result.interrupted:
            raise KeyboardInterrupt
        rows = report_rows([out])
        if rows:
            row = rows[0]
            res.agent = row["policy"]
            res.episodes = int(row.get("episodes", 0))
            res.score = _in_paper_units(res.task, row.get("score", 0.0))
            res.errors = int(row["errors"])
            res.options_differ = row.get("options_differ") or {}
            res.data = row.get("data") or []
        _count_ends(res, out)
        say(f"{env_id}: {res.episodes} episodes, score {res.score:.1f}" if res.score is not None else f"{env_id}: done")
    return results


def _count_ends(res: TaskResult, run_file: Path) -> None:
    from agent_gym.metrics import load_runs

    for trajs in load_runs([run_file], {}).values():
        res.statuses = dict(Counter(t.status for t in trajs))
        res.end_reasons = dict(Counter(t.end_reason or "-" for t in trajs))
        if trajs:
            prov = trajs[-1].provenance or {}
            env_prov = prov.get("env") or {}
            res.provenance = {k: env_prov.get(k) for k in ("agent_gym", "git", "dataset", "engine", "options")
                              if k in env_prov}
            res.provenance["policy"] = prov.get("policy")
            res.provenance["seeds"] = sorted({t.seed for t in trajs if getattr(t, "seed", None) is not None})[:5]


def overall_rows(results: Sequence[TaskResult]) -> dict[str, dict[str, Any]]:
    """Per category: our overall score (``None`` unless all its tasks ran), the paper's per model,
    and the divisors used."""
    ours = {r.task: r.score for r in results if r.score is not None}
    out = {}
    for suite in OVERALL_SUITES:
        divisors = overall_divisors(suite)
        if not any(r.suite == suite for r in results):
            continue
        missing = [t for t in divisors if t not in ours]
        out[suite] = {
            "ours": overall_score(suite, ours),
            "missing": missing,
            "paper": {m: v for m, v in paper.table()["overall"][suite].items() if m in REFERENCE_MODELS},
            "divisors": {t: round(w, 2) for t, w in divisors.items()},
        }
    return out


def report_json(results: Sequence[TaskResult]) -> dict[str, Any]:
    return {
        "paper": paper.table()["source"]["paper"],
        "models": {m: paper.model_names().get(m, m) for m in REFERENCE_MODELS},
        "tasks": [{**dataclasses.asdict(r), "flags": r.flags} for r in results],
        "overall": overall_rows(results),
        "overall_method": "overall = mean over the category's 6 tasks of score/W_t; W_t fitted by least squares "
                          "to the paper's 8 models (reproduces its 16 overall values to 2 decimals)",
    }


def report_markdown(results: Sequence[TaskResult]) -> str:
    """The report as Markdown: the score table beside the paper's models, the overall scores, end
    statuses per task, the tasks not run and every score not produced under the paper's protocol."""
    names = paper.model_names()
    agents = sorted({r.agent for r in results if r.agent})
    lines = [f"# Evaluation: {', '.join(agents) or 'no episodes'}", "",
             f"Scores in the paper's units (percent; MT-Bench 1-10) beside {paper.PAPER}.", "",
             "| task | suite | episodes | ours | " + " | ".join(names.get(m, m) for m in REFERENCE_MODELS) + " |",
             "|" + " --- |" * (4 + len(REFERENCE_MODELS))]
    for r in results:
        ours = "not run" if r.not_run else (f"{r.score:.1f}{' *' if r.flags else ''}" if r.score is not None else "-")
        refs = " | ".join(f"{r.paper[m]:g}" if m in r.paper else "-" for m in REFERENCE_MODELS)
        lines.append(f"| {_label(r)} | {r.suite} | {r.episodes} | {ours} | {refs} |")
    overall = overall_rows(results)
    for suite, row in overall.items():
        ours = f"{row['ours']:.2f}" if row["ours"] is not None else f"- (needs {', '.join(row['missing'])})"
        refs = " | ".join(f"{row['paper'][m]:.2f}" if m in row["paper"] else "-" for m in REFERENCE_MODELS)
        lines.append(f"| **{suite} overall** | {suite} | | {ours} | {refs} |")
    if overall:
        lines += ["", "Overall: the mean of score / W over the category's six tasks, the paper's weighting; the "
                  "divisors W are fitted by least squares to the paper's eight models (they reproduce its 16 "
                  "overall values to two decimals): " + "; ".join(
                      f"{s}: " + ", ".join(f"{t} {w:g}" for t, w in row["divisors"].items())
                      for s, row in overall.items())]
    lines += ["", "## End statuses (the paper's error analysis)", "",
              "| task | " + " | ".join(STATUS_LABELS.values()) + " |", "|" + " --- |" * (1 + len(STATUS_LABELS))]
    for r in results:
        if r.not_run:
            continue
        n = max(1, sum(r.statuses.values()))
        lines.append(f"| {_label(r)} | " + " | ".join(
            f"{100 * r.statuses.get(s, 0) / n:.0f}%" for s in STATUS_LABELS) + " |")
    not_run = [r for r in results if r.not_run]
    if not_run:
        lines += ["", "## Not run", ""] + [f"- {r.env_id}: not run: {r.not_run}" for r in not_run]
    flagged = [r for r in results if r.flags and not r.not_run]
    if flagged:
        lines += ["", "## Not under the paper's protocol (marked *)", ""] + [
            f"- {r.env_id}: {'; '.join(r.flags)}" for r in flagged]
    return "\n".join(lines) + "\n"


def plot_statuses(results: Sequence[TaskResult], out: str | Path) -> Path:
    """A stacked bar per task: the share of episodes ending in each status (PNG at ``out``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ran = [r for r in results if not r.not_run and r.statuses]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(ran) + 3.5), 3.8))
    bottom = [0.0] * len(ran)
    for status, label in STATUS_LABELS.items():
        shares = [100 * r.statuses.get(status, 0) / max(1, sum(r.statuses.values())) for r in ran]
        ax.bar(range(len(ran)), shares, 0.7, bottom=bottom, label=label)
        bottom = [b + s for b, s in zip(bottom, shares)]
    ax.set_xticks(range(len(ran)), [_label(r) for r in ran], rotation=30, ha="right")
    ax.set_ylabel("episodes (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.set_title("how episodes ended", fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return Path(out)


def plot_task_scores(results: Sequence[TaskResult], out: str | Path) -> Path:
    """Per task, our score beside the paper's models (PNG at ``out``; percent tasks only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in results if not (paper.unit(r.task) or "").startswith("score 1-10")]
    names = paper.model_names()
    series = [("this run", [r.score for r in shown])]
    series += [(f"{names.get(m, m)} (paper)", [r.paper.get(m) for r in shown]) for m in REFERENCE_MODELS]
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(shown) + 3.5), 4.0))
    for k, (label, values) in enumerate(series):
        xs = [i - 0.4 + width * (k + 0.5) for i, v in enumerate(values) if v is not None]
        ys = [v for v in values if v is not None]
        bars = ax.bar(xs, ys, width, label=label, hatch="//" if "(paper)" in label else None,
                      alpha=0.6 if "(paper)" in label else 1.0)
        if k == 0:
            ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
    for i, r in enumerate(shown):
        if r.not_run:
            ax.text(i, 1, "not run", rotation=90, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(shown)), [_label(r) for r in shown], rotation=30, ha="right")
    ax.set_ylabel("score (%)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.set_title(f"this run vs {paper.PAPER}", fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return Path(out)


def write_report(results: Sequence[TaskResult], output: str | Path, plots: bool = True) -> dict[str, Path]:
    """Write ``report.md``, ``report.json`` and (with matplotlib) ``scores.png`` and ``statuses.png``
    into the folder ``output``; returns the paths by kind."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": output / "report.md", "json": output / "report.json"}
    paths["markdown"].write_text(report_markdown(results), encoding="utf-8")
    paths["json"].write_text(json.dumps(report_json(results), indent=2, default=str), encoding="utf-8")
    if plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return paths
        paths["scores"] = plot_task_scores(results, output / "scores.png")
        paths["statuses"] = plot_statuses(results, output / "statuses.png")
    return paths
