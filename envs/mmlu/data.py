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
    """``"high_school_us_history"`` -> ``"high school us history"`` (upstream's ``format_subject``)."""
    return " ".join(subject.split("_")).strip()


def subject_of(path: Path) -> str:
    """``.../anatomy_test.csv`` -> ``"anatomy"`` (the subject names the file, as in ``data.tar``)."""
    stem = path.name[:-4] if path.name.endswith(".csv") else path.name
    for split in ("_test", "_dev", "_val"):
        if stem.endswith(split):
            return stem[: -len(split)]
    return stem


def load_file(path: str | Path) -> list[Question]:
    """The questions of one subject file in MMLU's format, ``<subject>_test.csv``: rows
    ``question,A,B,C,D,answer`` with no header and the answer a letter (Hendrycks' ``data.tar``),
    or the HF dump's header ``question,choice0..choice3,answer`` and an index 0-3.
    Ids are ``"<subject>/<row>"``. Raises ``ValueError`` naming the row that is not of that shape."""
    path = Path(path)
    subject = subject_of(path)
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    if rows and rows[0][:2] == ["question", "choice0"]:
        rows = rows[1:]
    out = []
    for i, row in enumerate(rows):
        if len(row) != 6:
            raise ValueError(f"{path}: row {i} has {len(row)} fields, expected 6 (question, 4 choices, answer)")
        q, *choices, ans = row
        ans = ans.strip()
        letter = LETTERS[int(ans)] if ans in ("0", "1", "2", "3") else ans.upper()
        if letter not in LETTERS:
            raise ValueError(f"{path}: row {i} has answer {ans!r}, expected A-D or 0-3")
        out.append(Question(f"{subject}/{i}", subject, q, tuple(choices), letter))
    return out


@lru_cache(maxsize=4)
def load(split: str) -> tuple[Question, ...]:
    """All questions of ``split`` (``dev`` or ``test``), subjects in alphabetical order."""
    folder = require("mmlu", f"{split}/abstract_algebra_{split}.csv") / split
    questions: list[Question] = []
    for path in sorted(folder.glob(f"*_{split}.csv")):
        questions.extend(load_file(path))
    return tuple(questions)


@lru_cache(maxsize=1)
def shots_by_subject() -> dict[str, tuple[Question, ...]]:
    """The 5 dev questions of each subject, the standard few-shot examples."""
    shots: dict[str, list[Question]] = {}
    for q in load("dev"):
        shots.setdefault(q.subject, []).append(q)
    return {s: tuple(qs[:5]) for s, qs in shots.items()}


def shots_near(tasks_file: Path, subject: str) -> tuple[Question, ...] | None:
    """Few-shot examples for a user's ``<subject>_test.csv``: a ``<subject>_dev.csv`` beside it or in
    ``../dev/`` (``data.tar``'s layout); ``None`` when there is none."""
    name = f"{subject}_dev.csv"
    for candidate in (tasks_file.parent / name, tasks_file.parent.parent / "dev" / name):
        if candidate.is_file():
            return tuple(load_file(candidate)[:5])
    return None


#: The paper's subject -> category table (AgentTuning eval_general/eval_mmlu_hf.py ``TASK_NAME_MAPPING``;
#: category means are micro accuracies over the category's questions, as its ``cal_mmlu``). It is
#: Hendrycks et al.'s grouping (hendrycks/test ``categories.py``) except one subject: the paper counts
#: ``anatomy`` as STEM, Hendrycks as other (health).
CATEGORIES: dict[str, tuple[str, ...]] = {
    "STEM": (
        "abstract_algebra", "anatomy", "astronomy", "college_biology", "college_chemistry", "college_computer_science",
        "college_mathematics", "college_physics", "computer_security", "conceptual_physics",
        "electrical_engineering", "elementary_mathematics", "high_school_biology", "high_school_chemistry",
        "high_school_computer_science", "high_school_mathematics", "high_school_physics",
        "high_school_statistics", "machine_learning",
    ),
    "humanities": (
        "formal_logic", "high_school_european_history", "high_school_us_history", "high_school_world_history",
        "international_law", "jurisprudence", "logical_fallacies", "moral_disputes", "moral_scenarios",
        "philosophy", "prehistory", "professional_law", "world_religions",
    ),
    "social sciences": (
        "econometrics", "high_school_geography", "high_school_government_and_politics",
        "high_school_macroeconomics", "high_school_microeconomics", "high_school_psychology", "human_sexuality",
        "professional_psychology", "public_relations", "security_studies", "sociology", "us_foreign_policy",
    ),
    "other": (
        "business_ethics", "clinical_knowledge", "college_medicine", "global_facts", "human_aging",
        "management", "marketing", "medical_genetics", "miscellaneous", "nutrition", "professional_accounting",
        "professional_medicine", "virology",
    ),
}
CATEGORY_OF: dict[str, str] = {s: c for c, subjects in CATEGORIES.items() for s in subjects}
