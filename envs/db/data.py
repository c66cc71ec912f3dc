"""DBBench questions (AgentBench ``std`` split, 300 items) and AgentBench's DB instruction.

Both files live in the data directory's ``agentbench`` folder: ``data/dbbench/standard.jsonl``
(byte-identical to AgentTuning's ``AgentBench.old/data/dbbench/standard.jsonl``) and
``agentbench_old_prompts.json`` (the prompt strings of AgentBench.old, extracted verbatim;
upstream has them only inside Python sources, so that file has no download URL and comes
with ``agent-gym data import``). This module reads data only: no engine, no prompt logic.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any

from agent_gym.data import DataFile, Dataset, require

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
            "agentbench_old_prompts.json",
            sha256="352784b5a358e483ab0fc501fc92d8bd6ee94337dd0edac957d949f0146ff2de",
        ),
    ),
    description="AgentBench DBBench std split: 300 questions on one table each (100 INSERT, 100 UPDATE, 100 SELECT)",
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


@functools.lru_cache(maxsize=2)
def _load(path: str) -> tuple[Question, ...]:
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return tuple(_question(i, r) for i, r in enumerate(rows))


def load(split: str = "test") -> list[Question]:
    """The questions in AgentBench's order (``test`` is its ``std`` split, the paper's)."""
    if split != "test":
        raise ValueError(f"DBBench has only the std split here ('test'), not {split!r}")
    return list(_load(str(require("dbbench") / "data" / "dbbench" / "standard.jsonl")))


@functools.lru_cache(maxsize=1)
def instruction() -> str:
    """AgentBench's DB instruction (``big_prompt``), verbatim."""
    with open(require("dbbench") / "agentbench_old_prompts.json", encoding="utf-8") as fh:
        return json.load(fh)["dbbench"]["big_prompt"]
