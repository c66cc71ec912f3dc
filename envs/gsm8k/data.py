"""GSM8K test problems (openai/grade-school-math, MIT) and the paper's prompt strings.

The prompt strings (instruction turn, the agent's "Ok.", 8 worked examples) live in the data
directory as ``gsm8k/agenttuning_prompt.json``; ``agent-gym data fetch gsm8k`` derives that file
from AgentTuning's ``eval_general/eval_gsm8k_tgi.py`` with :func:`prompt_from_script`.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from agent_gym import pysource
from agent_gym.data import DataFile, Dataset, require

#: The AgentTuning commit whose GSM8K script the prompt strings are taken from.
AGENTTUNING_COMMIT = "e33a45d7eab2b63cac4d1956da1e6377fca9fcc7"
PROMPT_FILE = "agenttuning_prompt.json"

DATASET = Dataset(
    name="gsm8k",
    root="gsm8k",
    files=(
        DataFile(
            "test.jsonl",
            url="https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/test.jsonl",
            sha256="3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",
        ),
        DataFile(  # the training pool (7473 problems); not needed for the test split
            "train.jsonl",
            url="https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/train.jsonl",
            sha256="17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465",
            optional=True,
        ),
        DataFile(
            PROMPT_FILE,
            url=(f"https://raw.githubusercontent.com/THUDM/AgentTuning/{AGENTTUNING_COMMIT}"
                 "/eval_general/eval_gsm8k_tgi.py"),
            sha256="76e15add25881525a301aa75c792afaacfef06a765cef556e34e3d5a8d241e6d",  # of the script
            derive="agent_gym.envs.gsm8k.data:prompt_from_script",
            derived_sha256="4d26c702c00ee1288c4eae236b1ad3db82c4433be4e6de0f8bb4c2dd50f87944",  # of the derived file
        ),
    ),
    description="GSM8K test set (1319 problems), train set (7473, optional) and AgentTuning's 8-shot chat prompt",
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
        """The gold answer as the data writes it (``"2,125"``, ``"-3"``)."""
        return self.solution.rsplit("####", 1)[-1].strip()


def load_file(path: str | Path) -> list[Problem]:
    """Problems of a file in GSM8K's own format: JSON lines ``{"question": ..., "answer": ...}``,
    the answer ending in ``#### <number>``. Ids are the line indices (``"0"``, ``"1"``, ...)."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row, dict) or "question" not in row or "####" not in str(row.get("answer", "")):
                raise ValueError(f"{path}:{n}: a GSM8K row is {{\"question\": ..., \"answer\": \"... #### N\"}}")
            rows.append(row)
    return [Problem(id=str(i), question=r["question"], solution=r["answer"]) for i, r in enumerate(rows)]


def load(split: str = "test") -> list[Problem]:
    """``test`` (1319, the paper's) or ``train`` (7473; ``agent-gym data fetch gsm8k`` gets it)."""
    return load_file(require("gsm8k", f"{split}.jsonl") / f"{split}.jsonl")


@lru_cache(maxsize=1)
def paper_prompt() -> dict[str, Any]:
    """The paper's prompt strings: ``system_message``, ``instruction``, ``agent_ack``,
    ``final_user_turn_format`` (with ``{question}``), ``max_new_tokens`` and ``shots``
    (8 ``{"question", "answer"}`` pairs)."""
    return json.loads((require("gsm8k", PROMPT_FILE) / PROMPT_FILE).read_text(encoding="utf-8"))


# ------------------------------------------------------------ derive at fetch time
_SOURCE_NOTE = ("THUDM/AgentTuning eval_general/eval_gsm8k_tgi.py (extracted with Python's ast: string constants "
                "Q1..Q8, A1..A8, the instruction turn and the system message)")


def _string(node: ast.AST, constants: dict[str, str]) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    raise ValueError(f"line {getattr(node, 'lineno', '?')}: expected a string, found {ast.dump(node)[:80]}")


def _fstring_format(node: ast.AST) -> str:
    """``f"\\nQuestion: {doc['question']}"`` -> ``"\\nQuestion: {question}"``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.replace("{", "{{").replace("}", "}}")
    if not isinstance(node, ast.JoinedStr):
        raise ValueError(f"line {getattr(node, 'lineno', '?')}: the question turn is not an f-string")
    out = []
    for part in node.values:
        if isinstance(part, ast.Constant):
            out.append(str(part.value).replace("{", "{{").replace("}", "}}"))
        elif isinstance(part, ast.FormattedValue):
            out.append("{question}")
        else:
            raise ValueError("unexpected f-string part")
    return "".join(out)


def _function(tree: ast.Module, name: str) -> ast.FunctionDef:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise ValueError(f"the script has no function {name}()")


def _method_calls(fn: ast.AST, method: str) -> list[ast.Call]:
    calls = [n for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr == method]
    return sorted(calls, key=lambda c: (c.lineno, c.col_offset))


def prompt_from_script(source: bytes) -> bytes:
    """Derive ``agenttuning_prompt.json`` from the text of AgentTuning's ``eval_gsm8k_tgi.py``.

    Reads, with :mod:`ast` (nothing of the script runs): the module's string constants; the
    ``shots`` list of ``(Qn, An)`` pairs; in ``doc_to_text`` the ``set_system_message`` string, the
    first two ``append_message`` strings (instruction and the agent's "Ok.") and the f-string of
    the final user turn; and the ``max_new_tokens`` that ``generate_sample`` passes to
    ``request_answer``. Raises ``ValueError`` when the script is not of that shape.
    """
    tree = pysource.parse(source.decode("utf-8"))
    constants: dict[str, str] = {}
    shot_names: list[tuple[str, str]] = []
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        target, value = node.targets[0].id, node.value
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            constants[target] = value.value
        elif target == "shots" and isinstance(value, ast.List):
            for pair in value.elts:
                if not (isinstance(pair, ast.Tuple) and len(pair.elts) == 2
                        and all(isinstance(e, ast.Name) for e in pair.elts)):
                    raise ValueError(f"line {pair.lineno}: shots holds (question, answer) name pairs")
                shot_names.append((pair.elts[0].id, pair.elts[1].id))
    if not shot_names:
        raise ValueError("the script has no `shots = [(Q1, A1), ...]` list")

    doc_to_text = _function(tree, "doc_to_text")
    (system_call,) = _method_calls(doc_to_text, "set_system_message")
    appends = _method_calls(doc_to_text, "append_message")
    if len(appends) < 4:
        raise ValueError("doc_to_text() has fewer append_message calls than instruction, ack, shot, question")
    instruction, ack = (_string(c.args[1], constants) for c in appends[:2])
    # the question turn is the last append with a value (the very last appends None for the reply)
    final = [c for c in appends if not (isinstance(c.args[1], ast.Constant) and c.args[1].value is None)][-1]

    max_new_tokens = None
    for call in ast.walk(_function(tree, "generate_sample")):
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "request_answer"
                and call.args and isinstance(call.args[0], ast.Constant)):
            max_new_tokens = call.args[0].value
    if not isinstance(max_new_tokens, int):
        raise ValueError("generate_sample() does not call request_answer(<max_new_tokens>)")

    prompt = {
        "source": _SOURCE_NOTE,
        "system_message": _string(system_call.args[0], constants),
        "instruction": instruction,
        "agent_ack": ack,
        "final_user_turn_format": _fstring_format(final.args[1]),
        "max_new_tokens": max_new_tokens,
        "shots": [{"question": constants[q], "answer": constants[a]} for q, a in shot_names],
    }
    return json.dumps(prompt, indent=1).encode("utf-8")
