"""HotpotQA as AgentTuning evaluated it: BOLAA's easy, medium and hard sets (100 questions each), the
ReAct instruction and its two few-shot examples, and the offline Wikipedia corpus built from them.

Files (data directory ``hotpotqa/agenttuning_bolaa/``): ``{easy,medium,hard}.jsonl`` are AgentTuning's
``eval_heldout/hotpotQA/src/data/*.joblib`` (from salesforce/BOLAA) as JSON lines, fields unchanged:
HotpotQA records with ``question``, ``answer``, ``type``, ``level``, ``supporting_facts`` and
``context`` (the ten distractor-setting paragraphs, ``[[title, [sentences]], ...]``);
``pre_prompt.json`` and ``fewshots.json`` are BOLAA's ``pre_prompt.py`` / ``fewshots.py`` strings
(``REACT_INSTRUCTION``, ``REACT_EXAMPLE``). Upstream ships them only as pickles and Python modules,
so they have no download URL: ``agent-gym data import`` takes a local copy.

A user's own questions (``tasks_file=``) are JSON lines in the same HotpotQA record format
(``question`` and ``answer`` required; ``context`` adds pages to the corpus; ``level`` groups them).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

from agent_gym.data import DataFile, Dataset, jsonl_rows, require
from agent_gym.textsearch import Document

LEVELS = ("easy", "medium", "hard")
FOLDER = "agenttuning_bolaa"
PROMPT_FILE = f"{FOLDER}/pre_prompt.json"
FEWSHOT_FILE = f"{FOLDER}/fewshots.json"

_SHA256 = {
    "easy": "7a9c81e9470c92dd071a1af6a9c1dfa98f43245a9bb5716ac2ac2177c618db43",
    "medium": "6a7568c5a2d82abe177c43e844bebfc4051fd300950ec92956fd9c82059887da",
    "hard": "1eea89a364b40126f0d35d04a01522560d46370d0d99d011e41d1e16f8e98203",
}

DATASET = Dataset(
    name="hotpotqa",
    root="hotpotqa",
    files=(
        *(DataFile(f"{FOLDER}/{level}.jsonl", sha256=_SHA256[level]) for level in LEVELS),
        DataFile(PROMPT_FILE, sha256="4b441b2d52fdc5cab08de2a249499cf8d241ef9c2250df07e1110741364da27c"),
        DataFile(FEWSHOT_FILE, sha256="dd51a9450903fd3f2a2caa5da111eb5466bc5d084918da43b93c16fc82f70dff"),
    ),
    description="AgentTuning's HotpotQA held-out set (BOLAA): easy, medium and hard, 100 questions each with their "
                "10 paragraphs; BOLAA's ReAct instruction and few-shot examples",
    license="CC BY-SA 4.0 (HotpotQA); prompts Apache-2.0 (salesforce/BOLAA)",
    homepage="https://github.com/THUDM/AgentTuning/tree/main/eval_heldout/hotpotQA",
)


@dataclasses.dataclass(frozen=True)
class Question:
    """One HotpotQA question. ``id`` is ``"<level>/<index in its level file>"`` (``"hard/7"``)."""

    id: str
    level: str
    question: str
    answer: str
    type: str
    supporting_titles: tuple[str, ...]  # the gold paragraphs' titles, in supporting-fact order
    context: tuple[Document, ...]       # the question's own paragraphs (sentences joined)
    hotpot_id: str = ""


def _question(row: dict[str, Any], index: int, default_level: str) -> Question:
    level = str(row.get("level") or default_level)
    titles: list[str] = []
    for fact in row.get("supporting_facts") or ():
        if fact[0] not in titles:
            titles.append(fact[0])
    context = tuple(Document(str(title), "".join(sentences)) for title, sentences in row.get("context") or ())
    return Question(id=f"{level}/{index}", level=level, question=str(row["question"]), answer=str(row["answer"]),
                    type=str(row.get("type", "")), supporting_titles=tuple(titles), context=context,
                    hotpot_id=str(row.get("id", row.get("_id", ""))))


def load_file(path: str | Path, default_level: str = "custom") -> list[Question]:
    """Questions of a JSON-lines file of HotpotQA records, in file order (ids count per level).
    A line that is not a record with ``question`` and ``answer`` raises ``ValueError`` naming it."""
    path = Path(path)
    out: list[Question] = []
    counts: dict[str, int] = {}
    for n, row in jsonl_rows(path):
        try:
            level = str(row.get("level") or default_level)
            out.append(_question(row, counts.get(level, 0), level))
            counts[level] = counts.get(level, 0) + 1
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:  # ValueError: a bad context
            raise ValueError(f"{path}:{n}: not a HotpotQA record with 'question' and 'answer' "
                             f"({type(exc).__name__}: {exc})") from None
    return out


@functools.lru_cache(maxsize=1)
def load(split: str = "test") -> tuple[Question, ...]:
    """The paper's 300 questions: easy, medium, hard, each in its file's order."""
    if split != "test":
        raise ValueError(f"HotpotQA has the split 'test' only, not {split!r}")
    base = require("hotpotqa")
    out: list[Question] = []
    for level in LEVELS:
        out.extend(load_file(base / FOLDER / f"{level}.jsonl", level))
    return tuple(out)


def corpus(questions: tuple[Question, ...] | list[Question]) -> list[Document]:
    """The offline Wikipedia: every paragraph of every question, one page per title (first wins;
    the 300 questions have 2958 titles and no title with two texts)."""
    seen: set[str] = set()
    docs: list[Document] = []
    for q in questions:
        for doc in q.context:
            if doc.title not in seen:
                seen.add(doc.title)
                docs.append(doc)
    return docs


@functools.lru_cache(maxsize=1)
def react_prompt() -> dict[str, str]:
    """``{"instruction": REACT_INSTRUCTION, "examples": REACT_EXAMPLE}`` read from the data directory:
    the instruction has ``{examples}``, ``{question}`` and ``{scratchpad}`` fields."""
    base = require("hotpotqa")
    instruction = json.loads((base / PROMPT_FILE).read_text(encoding="utf-8"))["REACT_INSTRUCTION"]
    examples = json.loads((base / FEWSHOT_FILE).read_text(encoding="utf-8"))["REACT_EXAMPLE"]
    return {"instruction": instruction, "examples": examples}
