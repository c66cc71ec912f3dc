"""The AgentInstruct pipeline after the rollouts: filter, decontaminate, count, convert, mix.

How the paper built AgentInstruct (AgentTuning, Zeng et al. 2023, section 2): a teacher model plays
the tasks' training instructions; a trajectory is kept when its reward is 1 (Mind2Web: at least
2/3); the agent is trained on the conversations with loss on its own turns, mixed with general
chat data (ShareGPT) at an agent share eta (0.2 was best). Here:

- :func:`filter_trajectories` keeps the trajectories that meet their task's threshold, drops
  duplicates (the same env, task and conversation) and drops every trajectory whose task is in the
  test split of a registered env: by task id (same env), by normalised task text (any env), and
  optionally by n-gram overlap of the task texts (``ngram=13``: a 13-word overlap with any test
  task; the usual decontamination rule since GPT-3's).
- :func:`counts_table` prints counts per task in the layout of the paper's AgentInstruct table
  (instructions played, trajectories kept, kept share, average turns).
- :func:`write_records` converts trajectories to AgentInstruct records, chat ``messages`` (what
  TRL's ``SFTTrainer`` reads) or Parquet (``datasets.load_dataset("parquet", ...)``).
- :func:`mix` mixes agent records with a user's general chat set (ShareGPT-style JSONL).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from agent_gym.export import PAPER_THRESHOLD, PAPER_THRESHOLDS, keep
from agent_gym.trajectory import Trajectory

FORMATS = ("agentinstruct", "messages", "parquet")
#: The task attributes read as a task's text (its instruction), in order; envs override ``task_text``.
_TEXT_FIELDS = ("instruction", "question", "description", "goal", "intent", "query", "prompt", "text")


def normalize_text(text: str) -> str:
    """Lower case, accents and punctuation removed, whitespace collapsed: the form texts are compared in."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def task_text(cls: type, task: Any) -> str | None:
    """A task's instruction text: the env's own ``task_text`` hook, else its first str field of
    :data:`_TEXT_FIELDS`; ``None`` when it has none (then only its id decontaminates)."""
    hook = getattr(cls, "task_text", None)
    if callable(hook):
        return hook(task)
    for name in _TEXT_FIELDS:
        value = getattr(task, name, None)
        if isinstance(value, str) and value.strip():
            return value
    return None


def _ngrams(words: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


@dataclasses.dataclass
class TestIndex:
    """What the test splits hold: task ids per env, normalised task texts, and their n-grams."""

    ids: dict[str, set[str]]
    texts: set[str]
    ngrams: set[tuple[str, ...]]
    ngram: int | None
    skipped: list[str]  # envs whose test split could not be read here (data missing), named in the output


def test_index(ngram: int | None = None) -> TestIndex:
    """Read the test split of every registered env (data only, no engine)."""
    from agent_gym.registration import entries
    from agent_gym.rollout import env_class

    index = TestIndex({}, set(), set(), ngram, [])
    for entry in entries():
        try:
            cls = env_class(entry.id)
            tasks = cls.load_tasks(cls.splits[0])
        except Exception as exc:  # noqa: BLE001 - an env whose data or extra is absent here
            index.skipped.append(f"{entry.id} ({type(exc).__name__})")
            continue
        index.ids[entry.id] = {t.id for t in tasks}
        for t in tasks:
            text = task_text(cls, t)
            if text:
                norm = normalize_text(text)
                index.texts.add(norm)
                if ngram:
                    index.ngrams |= _ngrams(norm.split(), ngram)
    return index


@functools.lru_cache(maxsize=None)
def _tasks_by_id(env_id: str, split: str) -> dict[str, Any]:
    from agent_gym.rollout import env_class

    cls = env_class(env_id)
    return {t.id: t for t in cls.load_tasks(split)}


def contamination(traj: Trajectory, index: TestIndex) -> str | None:
    """Why ``traj`` overlaps a test split (``None`` when it does not): its task id is in its env's
    test split, or its task text equals a test task's text, or shares an n-gram with one."""
    if traj.split in (None, "test") or traj.task_id in index.ids.get(traj.env_id, set()):
        return f"task {traj.task_id} is in the test split of {traj.env_id}"
    from agent_gym.rollout import env_class

    text = None
    try:
        task = _tasks_by_id(traj.env_id, traj.split).get(traj.task_id)
        text = task_text(env_class(traj.env_id), task) if task is not None else None
    except Exception:  # noqa: BLE001 - a custom split or absent data: the first observation stands in
        pass
    norm = normalize_text(text or traj.first_observation)
    if text and norm in index.texts:
        return "its task text is a test task's"
    if index.ngram and index.ngrams and _ngrams(norm.split(), index.ngram) & index.ngrams:
        return f"it shares a {index.ngram}-gram with a test task"
    return None


def _conversation_key(traj: Trajectory) -> str:
    return json.dumps([traj.env_id, traj.task_id, traj.messages()], ensure_ascii=False)


@dataclasses.dataclass
class FilterResult:
    kept: list[Trajectory]
    played: dict[str, int]  # env id -> trajectories read (distinct episodes)
    instructions: dict[str, int]  # env id -> distinct tasks played
    below_threshold: dict[str, int]
    duplicates: dict[str, int]
    contaminated: dict[str, int]
    reasons: list[str]  # the first contamination reasons, for the log
    skipped_envs: list[str]


def filter_trajectories(trajs: Iterable[Trajectory], min_score: float | None = None,
                        thresholds: dict[str, float] | None = None, decontaminate: bool = True,
                        ngram: int | None = None) -> FilterResult:
    """The paper's filter: reward at least the task's threshold (``min_score`` for every task, else
    ``thresholds`` per env id, else the paper's: 1, Mind2Web 2/3), no duplicates, no test task.

    Returns a :class:`FilterResult` whose ``kept`` keeps the input order."""
    table = {**PAPER_THRESHOLDS, **(thresholds or {})}
    index = test_index(ngram) if decontaminate else TestIndex({}, set(), set(), None, [])
    res = FilterResult([], defaultdict(int), {}, defaultdict(int), defaultdict(int), defaultdict(int), [],
                       index.skipped)
    seen: set[str] = set()
    tasks: dict[str, set[str]] = defaultdict(set)
    for t in trajs:
        res.played[t.env_id] += 1
        tasks[t.env_id].add(t.task_id)
        threshold = min_score if min_score is not None else table.get(t.env_id, PAPER_THRESHOLD)
        if not keep(t, threshold):
            res.below_threshold[t.env_id] += 1
            continue
        why = contamination(t, index) if decontaminate else None
        if why:
            res.contaminated[t.env_id] += 1
            if len(res.reasons) < 10:
                res.reasons.append(f"{t.episode_id}: {why}")
            continue
        key = _conversation_key(t)
        if key in seen:
            res.duplicates[t.env_id] += 1
            continue
        seen.add(key)
        res.kept.append(t)
    res.instructions = {e: len(ids) for e, ids in tasks.items()}
    return res


def counts_table(res: FilterResult) -> str:
    """Counts per task in the layout of the paper's AgentInstruct table: instructions (tasks
    played), trajectories (kept), their ratio and the average turns of the kept, then what was
    dropped and why."""
    kept: dict[str, list[Trajectory]] = defaultdict(list)
    for t in res.kept:
        kept[t.env_id].append(t)
    rows = [["task", "instructions", "trajectories", "ratio", "avg turns", "below threshold", "duplicates",
             "in a test split"]]
    for env in sorted(res.played):
        k = kept.get(env, [])
        n_inst = res.instructions.get(env, 0)
        rows.append([env.split("/")[-1].removesuffix("-v0"), str(n_inst), str(len(k)),
                     f"{len(k) / n_inst:.1%}" if n_inst else "-",
                     f"{sum(t.turns for t in k) / len(k):.2f}" if k else "-",
                     str(res.below_threshold.get(env, 0)), str(res.duplicates.get(env, 0)),
                     str(res.contaminated.get(env, 0))])
    total_inst = sum(res.instructions.values())
    rows.append(["total", str(total_inst), str(len(res.kept)),
                 f"{len(res.kept) / total_inst:.1%}" if total_inst else "-",
                 f"{sum(t.turns for t in res.kept) / len(res.kept):.2f}" if res.kept else "-",
                 str(sum(res.below_threshold.values())), str(sum(res.duplicates.values())),
                 str(sum(res.contaminated.values()))])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
    if res.skipped_envs:
        text += "\n\ntest splits not read (their data is absent here, so not decontaminated against): " + \
                ", ".join(res.skipped_envs)
    return text


# ------------------------------------------------------------------------------------ formats
def to_messages(traj: Trajectory) -> list[dict[str, Any]]:
    """Chat records TRL's ``SFTTrainer`` reads, one per conversation (``Trajectory.conversations``):
    ``{"messages": [{"role", "content"}], ...}``; the ids ride along (``id``, ``env_id``, ``task_id``). Train on the assistant turns after the prompt
    (TRL: ``assistant_only_loss``); the few-shot turns of the prompt are assistant turns too, which
    AgentInstruct's ``loss: false`` marks and this format cannot: use ``agentinstruct`` to keep that."""
    return [{"id": record["id"], "env_id": traj.env_id, "task_id": traj.task_id, "messages": conv}
            for record, conv in zip(traj.to_agentinstruct_records(), traj.conversations())]


def _unique_ids(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, int] = {}
    for r in records:
        k = seen.get(r["id"], 0)  # the same task played twice gets distinct ids
        seen[r["id"]] = k + 1
        if k:
            r["id"] = f"{r['id']}_{k}"
    return records


def records_of(trajs: Iterable[Trajectory], fmt: str) -> list[dict[str, Any]]:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if fmt == "messages":
        return _unique_ids([r for t in trajs for r in to_messages(t)])
    return _unique_ids([r for t in trajs for r in t.to_agentinstruct_records()])


def write_records(records: list[dict[str, Any]], path: str | Path, fmt: str) -> int:
    """Write ``records`` as JSONL (``agentinstruct``, ``messages``) or Parquet (``parquet``: the
    AgentInstruct columns ``id`` and ``conversations``, plus ``messages`` where records have them)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise RuntimeError("Parquet needs pyarrow: pip install pyarrow (or the 'instruct' extra)") from exc
        # from_pylist takes its columns from the first record alone: a mix whose first record is a
        # general one would silently drop env_id / task_id from every agent record. Use every key.
        columns = list(dict.fromkeys(k for r in records for k in r))
        pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in columns} for r in records]), path)
        return len(records)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return len(records)


# ---------------------------------------------------------------------------------- the mix
def _turns(record: Any) -> list[tuple[str, str]]:
    """``(speaker, text)`` turns of a general record: ShareGPT ``conversations: [{"from", "value"}]``
    or chat ``messages: [{"role", "content"}]``; ``ValueError`` saying what is wrong otherwise."""
    if not isinstance(record, dict):
        raise ValueError(f"a general record is a JSON object, got {type(record).__name__}")
    for key, who, what in (("conversations", "from", "value"), ("messages", "role", "content")):
        turns = record.get(key)
        if turns is None:
            continue
        if not isinstance(turns, list) or not turns:
            raise ValueError(f"'{key}' must be a non-empty list of turns")
        out = []
        for k, turn in enumerate(turns):
            if not (isinstance(turn, dict) and isinstance(turn.get(who), str) and isinstance(turn.get(what), str)):
                raise ValueError(f"turn {k} of '{key}' needs string fields '{who}' and '{what}', got {str(turn)[:80]!r}")
            out.append((turn[who], turn[what]))
        return out
    raise ValueError("a general record needs 'conversations' (ShareGPT) or 'messages'")


def _sharegpt_to(record: dict[str, Any], fmt: str) -> dict[str, Any]:
    """A ShareGPT record (``conversations: [{"from": "human"|"gpt"|"system", "value"}]``) or chat
    record (``messages: [{"role", "content"}]``) in ``fmt``."""
    turns = _turns(record)
    rid = str(record.get("id", ""))
    if fmt == "messages":
        roles = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
        return {"id": rid, "messages": [{"role": roles.get(who, "user"), "content": text} for who, text in turns]}
    names = {"user": "human", "assistant": "gpt"}
    return {"id": rid, "conversations": [{"from": names.get(who, who), "value": text, "loss": who in ("gpt", "assistant")}
                                         for who, text in turns]}


def mix(agent_records: list[dict[str, Any]], general_records: list[dict[str, Any]], eta: float, fmt: str,
        seed: int = 0) -> tuple[list[dict[str, Any]], int]:
    """All agent records plus general ones drawn (seeded, without replacement) so that agent
    records are a share ``eta`` of the mix (the paper: 0.2), shuffled. Returns the mix and the
    number of general records used; fewer general records than the share asks takes them all."""
    if not 0 < eta <= 1:
        raise ValueError(f"eta is the agent share of the mix, in (0, 1], got {eta}")
    if not agent_records:
        raise ValueError("no agent records to mix (is the agent file an `agent-gym export` output?)")
    if eta < 1 and not general_records:
        raise ValueError(f"no general records to mix at eta={eta}: the general file is empty (pass a ShareGPT-style "
                         "JSONL, or --eta 1 for agent records only)")
    for name, records in (("agent", agent_records), ("general", general_records)):
        for i, record in enumerate(records):  # every record checked, not only the ones drawn
            try:
                _turns(record)
            except ValueError as exc:
                raise ValueError(f"{name} record {i + 1}: {exc}") from None
    rng = random.Random(seed)
    want = round(len(agent_records) * (1 - eta) / eta)
    general = rng.sample(general_records, min(want, len(general_records)))
    mixed = list(agent_records) + [_sharegpt_to(r, fmt) for r in general]
    rng.shuffle(mixed)
    return mixed, len(general)


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Records of a JSONL file (a JSON list file and a Parquet file, as :func:`write_records` writes,
    work too); a bad line names its number, a file that is not text says so."""
    path = Path(path)
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic == b"PAR1":
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise RuntimeError("reading Parquet needs pyarrow: pip install pyarrow") from exc
        return pq.read_table(path).to_pylist()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text (JSONL records expected): {exc}") from None
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not a JSON list: {exc}") from None
        return records
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path} line {i} is not JSON: {exc}") from None
    return out
