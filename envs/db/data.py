"""DBBench questions (AgentBench's ``std`` split, 300 items, and its ``dev`` split, 60) and
AgentBench's DB instruction.

The files live in the data directory's ``agentbench`` folder: ``data/dbbench/standard.jsonl``
and ``data/dbbench/dev.jsonl`` (byte-identical to AgentTuning's ``AgentBench.old/data/dbbench/``;
the dev file is optional: ``agent-gym data fetch dbbench`` gets it) and
``agentbench_old_prompts.json`` (the prompt strings of AgentBench.old, extracted verbatim;
upstream has them only inside Python sources, so that file has no download URL and comes
with ``agent-gym data import``). A user's own questions in the same JSON-lines format load
with :func:`load_file`. This module reads data only: no engine, no prompt logic.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

from agent_gym.data import DataFile, Dataset, require

#: Split -> file in the dataset folder (AgentBench.old's ``configs/tasks/dbbench/{std,dev}.yaml``).
SPLIT_FILES = {"test": "data/dbbench/standard.jsonl", "dev": "data/dbbench/dev.jsonl"}
PROMPTS_FILE = "agentbench_old_prompts.json"

DATASET = Dataset(
    name="dbbench",
    root="agentbench",
    files=(
        DataFile(
            "data/dbbench/standard.jsonl",
            url="https://raw.githubusercontent.com/THUDM/AgentTuning/main/AgentBench.old/data/dbbench/standard.jsonl",
            sha256="d1ac4d67ec39fad083c38944972e392ff100257c755361ee63eaef608ddafcb3",
        ),
        DataFile(
            PROMPTS_FILE,
            sha256="352784b5a358e483ab0fc501fc92d8bd6ee94337dd0edac957d949f0146ff2de",
        ),
        DataFile(
            "data/dbbench/dev.jsonl",
            url="https://raw.githubusercontent.com/THUDM/AgentTuning/main/AgentBench.old/data/dbbench/dev.jsonl",
            sha256="eb941c58a7a5651357b19e46aa05070f6cd5a7d83ce70cefd24aa3581e1e1130",
            optional=True,
        ),
    ),
    description="AgentBench DBBench: std split (test), 300 questions on one table each (100 INSERT, 100 UPDATE, "
                "100 SELECT); dev split, 60 questions (20 INSERT, 20 UPDATE, 20 SELECT)",
    license="Apache-2.0",
    homepage="https://github.com/THUDM/AgentTuning/tree/main/AgentBench.old",
)

#: Question types whose answer is the table's final state (AgentBench checks its md5).
WRITE_TYPES = ("INSERT", "DELETE", "UPDATE")


@dataclasses.dataclass(frozen=True)
class Table:
    """The question's table as AgentBench creates it: every column TEXT, every value a string."""

    name: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


@dataclasses.dataclass(frozen=True)
class Question:
    """One DBBench item.

    ``label``: the answer list for query questions; for write questions the gold SQL
    statement(s) that produce the expected table. ``answer_md5``: for write questions, the
    table hash AgentBench computed on MySQL, in its ``str(fetchall())`` form.
    """

    id: str
    index: int
    type: str
    description: str
    add_description: str
    table: Table
    label: tuple[str, ...]
    answer_md5: str | None
    gold_sql: str | None  # the source dataset's SQL for query questions (often not MySQL-valid)

    @property
    def is_write(self) -> bool:
        return self.type in WRITE_TYPES


def _question(index: int, row: dict[str, Any]) -> Question:
    info = row["table"]["table_info"]
    kind = row["type"][0]
    return Question(
        id=f"{kind}/{index}",
        index=index,
        type=kind,
        description=row["description"],
        add_description=row["add_description"],
        table=Table(
            name=row["table"]["table_name"],
            columns=tuple(c["name"] for c in info["columns"]),
            rows=tuple(tuple(r) for r in info["rows"]),
        ),
        label=tuple(row.get("label") or ()),
        answer_md5=row.get("answer_md5"),
        gold_sql=(row.get("sql") or {}).get("query"),
    )


def load_file(path: str | Path) -> list[Question]:
    """Questions from a file in AgentBench's DBBench format, in file order: JSON lines, or (a
    name ending in ``json``, as upstream's ``DBBench.get_data`` tells them apart) one JSON list.

    Each line (item) is one object with ``description``, ``add_description``, ``type`` (a list whose
    first item is the type), ``table`` (``table_name``, ``table_info.columns[].name``,
    ``table_info.rows``), and ``label`` (query questions: the answers; write questions: the gold
    SQL) or ``answer_md5`` (write questions: upstream's table hash). A line missing a field
    raises ``ValueError`` naming the line (item).
    """
    path = Path(path).resolve()
    stat = path.stat()
    return list(_load(str(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int, size: int) -> tuple[Question, ...]:  # keyed by the file's state
    with open(path, encoding="utf-8") as fh:
        if path.endswith("json"):
            items = list(enumerate(json.load(fh), 1))
        else:
            items = [(number, line) for number, line in enumerate(fh, 1) if line.strip()]
    questions = []
    for number, item in items:
        try:
            questions.append(_question(len(questions), json.loads(item) if isinstance(item, str) else item))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}:{number}: not a DBBench question ({type(exc).__name__}: {exc})") from exc
    return tuple(questions)


def load(split: str = "test") -> list[Question]:
    """The questions of a split in AgentBench's order: ``test`` is its ``std`` file (the
    paper's), ``dev`` its 60-question ``dev`` file."""
    if split not in SPLIT_FILES:
        raise ValueError(f"DBBench has splits {sorted(SPLIT_FILES)}, not {split!r}")
    return load_file(require("dbbench", SPLIT_FILES[split]) / SPLIT_FILES[split])


@functools.lru_cache(maxsize=1)
def instruction() -> str:
    """AgentBench's DB instruction (``big_prompt``), verbatim."""
    with open(require("dbbench", PROMPTS_FILE) / PROMPTS_FILE, encoding="utf-8") as fh:
        return json.load(fh)["dbbench"]["big_prompt"]
