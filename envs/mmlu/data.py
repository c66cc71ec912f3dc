"""MMLU dev (few-shot) and test questions.

Reads both layouts in circulation: Hendrycks' ``data.tar`` (no header, answer letter) and the
HF ``cais/mmlu`` dump (header ``question,choice0..choice3,answer``, answer index 0-3).
"""

from __future__ import annotations

import csv
import dataclasses
from functools import lru_cache
from pathlib import Path

from agent_gym.data import DataFile, Dataset, require

LETTERS = "ABCD"

DATASET = Dataset(
    name="mmlu",
    root="mmlu",
    files=(
        # Hendrycks' release archive; it unpacks to data/{dev,val,test}/<subject>_<split>.csv
        DataFile("test/abstract_algebra_test.csv", url="https://people.eecs.berkeley.edu/~hendrycks/data.tar",
                 extract=True, strip="data"),
        DataFile("dev/abstract_algebra_dev.csv"),
    ),
    description="MMLU (Hendrycks et al.), 57 subjects: 285 dev (5-shot) and 14042 test questions",
    license="MIT",
    homepage="https://github.com/hendrycks/test",
)


@dataclasses.dataclass(frozen=True)
class Question:
    id: str  # "<subject>/<index>"
    subject: str
    question: str
    choices: tuple[str, str, str, str]
    answer: str  # "A".."D"


def subject_title(subject: str) -> str:
    return subject.replace("_", " ")


def _read_csv(path: Path, subject: str) -> list[Question]:
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    if rows and rows[0][:2] == ["question", "choice0"]:
        rows = rows[1:]
    out = []
    for i, row in enumerate(rows):
        q, *choices, ans = row
        if len(choices) != 4:
            raise ValueError(f"{path}: row {i} has {len(choices)} choices, expected 4")
        letter = LETTERS[int(ans)] if ans.strip().isdigit() else ans.strip().upper()
        out.append(Question(f"{subject}/{i}", subject, q, tuple(choices), letter))
    return out


@lru_cache(maxsize=4)
def load(split: str) -> tuple[Question, ...]:
    """All questions of ``split`` (``dev`` or ``test``), subjects in alphabetical order."""
    folder = require("mmlu", f"{split}/abstract_algebra_{split}.csv") / split
    questions: list[Question] = []
    for path in sorted(folder.glob(f"*_{split}.csv")):
        questions.extend(_read_csv(path, path.name[: -len(f"_{split}.csv")]))
    return tuple(questions)


@lru_cache(maxsize=1)
def shots_by_subject() -> dict[str, tuple[Question, ...]]:
    """The 5 dev questions of each subject, the standard few-shot examples."""
    shots: dict[str, list[Question]] = {}
    for q in load("dev"):
        shots.setdefault(q.subject, []).append(q)
    return {s: tuple(qs[:5]) for s, qs in shots.items()}
