"""MT-Bench's questions, GPT-4 reference answers and judge prompts (FastChat ``fastchat/llm_judge/data``).

The three files are read from the data directory's ``mt_bench`` folder exactly as FastChat ships
them (at tag v0.2.31, the version AgentBench.old pins): ``question.jsonl`` (80 questions, ids
81-160, two turns each, 8 categories of 10), ``reference_answer_gpt-4.jsonl`` (upstream's
``reference_answer/gpt-4.jsonl``: GPT-4's answers to the 30 math, reasoning and coding questions)
and ``judge_prompts.jsonl`` (the judges' system messages and templates, read at run time). This
module reads data only: no judge, no prompt logic.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from pathlib import Path
from typing import Any

from agent_gym.data import DataFile, Dataset, jsonl_rows, require

#: FastChat tag v0.2.31 (``ABO:requirements.txt`` pins fschat 0.2.31).
FASTCHAT_COMMIT = "9db21434b30a5355eb4723acc6562709f5ccc2c1"
_UPSTREAM = f"https://raw.githubusercontent.com/lm-sys/FastChat/{FASTCHAT_COMMIT}/fastchat/llm_judge/data"
QUESTIONS, REFERENCES, JUDGE_PROMPTS = "question.jsonl", "reference_answer_gpt-4.jsonl", "judge_prompts.jsonl"

#: Categories whose questions are judged against a reference answer (FastChat ``common.py`` NEED_REF_CATS).
NEED_REF_CATEGORIES = ("math", "reasoning", "coding", "arena-hard-200")

DATASET = Dataset(
    name="mt_bench",
    root="mt_bench",
    files=(
        DataFile(QUESTIONS, url=f"{_UPSTREAM}/mt_bench/question.jsonl",
                 sha256="119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7"),
        DataFile(REFERENCES, url=f"{_UPSTREAM}/mt_bench/reference_answer/gpt-4.jsonl",
                 sha256="f957a5bc977badb66885ec970e6cd08527845780313f0995764260e5777b9b3f"),
        DataFile(JUDGE_PROMPTS, url=f"{_UPSTREAM}/judge_prompts.jsonl",
                 sha256="fd283293406d024f44c174b094ef48031d0687a4682fd3a56b29b138f80281b6"),
    ),
    description="MT-Bench (Zheng et al. 2023): 80 two-turn questions in 8 categories, GPT-4's reference answers "
                "for math / reasoning / coding, FastChat's judge prompts",
    license="Apache-2.0",
    homepage="https://github.com/lm-sys/FastChat/tree/main/fastchat/llm_judge",
)


@dataclasses.dataclass(frozen=True)
class Question:
    """One MT-Bench question: ``turns`` are the user's two messages, the second asked after the
    model's first answer; ``reference`` the reference answers to both turns (GPT-4's), present
    for the categories judged against one (:data:`NEED_REF_CATEGORIES`), else ``None``."""

    id: str  # FastChat's question_id as text: "81" .. "160"
    category: str
    turns: tuple[str, ...]
    reference: tuple[str, ...] | None = None

    @property
    def needs_reference(self) -> bool:
        return self.category in NEED_REF_CATEGORIES


def _rows(path: Path) -> list[dict[str, Any]]:
    return [row for _, row in jsonl_rows(path)]


def _questions(path: Path, references: dict[int, list[str]]) -> list[Question]:
    out = []
    for n, row in enumerate(_rows(path), 1):
        turns = row.get("turns")
        if ("question_id" not in row or not isinstance(row.get("category"), str) or not isinstance(turns, list)
                or len(turns) != 2 or not all(isinstance(t, str) for t in turns)):
            raise ValueError(f"{path}: question {n} is not of MT-Bench's form "
                             '{"question_id": N, "category": "...", "turns": ["first", "second"]}')
        qid = row["question_id"]
        ref = references.get(qid) if row["category"] in NEED_REF_CATEGORIES else None
        if row["category"] in NEED_REF_CATEGORIES and ref is None:
            raise ValueError(f"{path}: question {qid} ({row['category']}) is judged against a reference answer: give "
                             f'it a "reference": ["answer to turn 1", "answer to turn 2"]')
        out.append(Question(str(qid), row["category"], tuple(turns), tuple(ref) if ref else None))
    return out


def load() -> list[Question]:
    """The 80 questions in FastChat's order, with GPT-4's reference answers where the judge uses them."""
    folder = require("mt_bench", QUESTIONS, REFERENCES)
    references = {r["question_id"]: list(r["choices"][0]["turns"]) for r in _rows(folder / REFERENCES)}
    return _questions(folder / QUESTIONS, references)


def load_file(path: str | Path) -> list[Question]:
    """Questions of a file in MT-Bench's ``question.jsonl`` format. A math, reasoning or coding
    question carries its own reference answers as ``"reference": [turn 1, turn 2]`` (FastChat's
    question rows have that key). Raises ``ValueError`` naming the row that is not of that form."""
    path = Path(path)
    own = {r.get("question_id"): r["reference"] for r in _rows(path)
           if isinstance(r.get("reference"), list) and len(r["reference"]) == 2}
    return _questions(path, own)


@lru_cache(maxsize=1)
def judge_prompts() -> dict[str, dict[str, Any]]:
    """FastChat's judge prompts by name (``single-v1``, ``single-math-v1``, ``single-v1-multi-turn``,
    ``single-math-v1-multi-turn``, and the pairwise ones): ``system_prompt``, ``prompt_template``,
    ``output_format``, ``type``."""
    folder = require("mt_bench", JUDGE_PROMPTS)
    return {row["name"]: row for row in _rows(folder / JUDGE_PROMPTS)}
