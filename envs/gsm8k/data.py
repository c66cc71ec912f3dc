"""GSM8K test problems (openai/grade-school-math, MIT)."""

from __future__ import annotations

import dataclasses
import json

from agent_gym.data import DataFile, Dataset, require

DATASET = Dataset(
    name="gsm8k",
    root="gsm8k",
    files=(
        DataFile(
            "test.jsonl",
            url="https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/test.jsonl",
            sha256="3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",
        ),
    ),
    description="GSM8K test set, 1319 problems",
    license="MIT",
    homepage="https://github.com/openai/grade-school-math",
)


@dataclasses.dataclass(frozen=True)
class Problem:
    id: str
    question: str
    solution: str  # the reference solution; its last line is "#### <answer>"

    @property
    def answer(self) -> str:
        return self.solution.rsplit("####", 1)[-1].strip()


def load(split: str = "test") -> list[Problem]:
    path = require("gsm8k") / f"{split}.jsonl"
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [Problem(id=str(i), question=r["question"], solution=r["answer"]) for i, r in enumerate(rows)]
