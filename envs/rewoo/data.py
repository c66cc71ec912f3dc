"""ReWOO's evaluation questions as AgentTuning sampled them, its planner / solver prompts, the State of the Union
speech, and the offline Wikipedia pages (read from the HotpotQA data files).

AgentTuning ``eval_heldout/rewoo/eval-tgi.sh`` ran 7 datasets, 50 questions each, sampled by
``utils/DataLoader.py`` with pandas' ``df.sample(50, random_state=2024)``; :func:`sample_rows` draws the
same rows (pandas takes ``RandomState(seed).choice(len(df), n, replace=False)``). Datasets here:

- ``strategy_qa``, ``physics_question``, ``sports_understanding`` (BIG-bench CSVs) and ``sotu_qa`` (ReWOO's CSV):
  upstream's files, so upstream's very rows;
- ``hotpot_qa``: upstream sampled HF ``hotpot_qa/fullwiki`` train, which is not here: 50 of AgentTuning's 300
  HotpotQA questions (dataset ``hotpotqa``), same seed;
- ``gsm8k``: upstream sampled the train split: ``gsm8k/train.jsonl`` when the data directory has it, else test;
- ``trivia_qa`` (HF ``trivia_qa/rc.nocontext``) has no copy and is left out.

Prompt strings (``agenttuning_prompts/*.json``) are AgentTuning's ``prompts/*.py`` module strings. The tool
descriptions and the LLM tool's instruction live in upstream's ``nodes/Worker.py`` code: ``agent-gym data fetch
rewoo`` derives ``agenttuning_prompts/workers.json`` from it (:func:`workers_from_source`); without that file the env
uses descriptions of our own (``info["tool_prompts"]`` says which).
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

from agent_gym import pysource
from agent_gym.data import DataFile, Dataset, dataset, jsonl_rows, require
from agent_gym.textsearch import Document

REWOO_COMMIT = "9cd0283043ff4be0c9d614fda2789d143ca6ffd1"
AGENTTUNING_COMMIT = "e33a45d7eab2b63cac4d1956da1e6377fca9fcc7"
_REWOO = f"https://raw.githubusercontent.com/billxbf/ReWOO/{REWOO_COMMIT}/"
SEED, SAMPLE_SIZE = 2024, 50
SPEECH_FILE = "data/docs/state_of_the_union.txt"
WORKERS_FILE = "agenttuning_prompts/workers.json"

DATASET = Dataset(
    name="rewoo",
    root="rewoo",
    files=(
        DataFile("data/SOTU/SOTU_QA.csv", url=_REWOO + "data/SOTU/SOTU_QA.csv",
                 sha256="ae392b7f6c03dccd8672cb65c89508d461eb8d32b1444bf15ef9a54646599bd0"),
        DataFile(SPEECH_FILE, url=_REWOO + SPEECH_FILE,
                 sha256="c8083f84e6c7dd518c0e84f1cf210f93f501ac69ef64f91c79694bbf699c9d91"),
        DataFile("data/bigbench/physics_question.csv", url=_REWOO + "data/bigbench/physics_question.csv",
                 sha256="7747cf185111aaa58493b5d804ba7b496cb152a6ae89a69a66a0c443adfd34aa"),
        DataFile("data/bigbench/sports_understanding.csv", url=_REWOO + "data/bigbench/sports_understanding.csv",
                 sha256="5cfc24702b7a809409f42634f0b958f0d61c4d5aec8d732fd89889281c63d45e"),
        DataFile("data/bigbench/strategy_qa.csv", url=_REWOO + "data/bigbench/strategy_qa.csv",
                 sha256="c1fd0c271bf98741b68ac1ea3d167c5ccf2ed46da66645d5fc0ed6222e45f055"),
        DataFile("agenttuning_prompts/planner.json",
                 sha256="bc894308a05fd87b8da1c094964674a42268722f5559eb9150adda94d4a1ac1d"),
        DataFile("agenttuning_prompts/solver.json",
                 sha256="4f3ee2f2cb190adbce99eff3a09577e65162f280a2fe2ef43982fd59db222bc7"),
        DataFile("agenttuning_prompts/fewshots.json",
                 sha256="2583962c21fc5fdf6420e20ddc226611ee37e11bb5ad6222ac9a926d32516175"),
        DataFile(WORKERS_FILE, optional=True,
                 url=(f"https://raw.githubusercontent.com/THUDM/AgentTuning/{AGENTTUNING_COMMIT}"
                      "/eval_heldout/rewoo/nodes/Worker.py"),
                 sha256="38c0fa21e6ab9a6ac036ac242ed5c303b27db1a03542fbcbb66235b8cb707e06",
                 derive="agent_gym.envs.rewoo.data:workers_from_source",
                 derived_sha256="c51599a1c5b47f1f922c56d991765cc74fb1eddccb33cbbedf452094c55215e3"),
    ),
    description="ReWOO's SOTU QA and speech, BIG-bench physics / sports understanding / StrategyQA, AgentTuning's "
                "ReWOO planner and solver prompts (HotpotQA and GSM8K questions come from those datasets)",
    license="MIT (billxbf/ReWOO); BIG-bench tasks Apache-2.0",
    homepage="https://github.com/THUDM/AgentTuning/tree/main/eval_heldout/rewoo",
)

#: eval-tgi.sh's datasets in its order, with the tool array each was meant to get (the script's
#: ``$TOOL[@]`` passed the literal "Wikipedia[@]"; see docs/rewoo.md) and the planner's few-shot key.
DATASETS: dict[str, tuple[tuple[str, ...], str]] = {
    "hotpot_qa": (("Wikipedia", "LLM"), "HOTPOTQA_PWS_BASE"),
    "gsm8k": (("LLM", "WolframAlpha", "Calculator"), "GSM8K_PWS"),
    "strategy_qa": (("Wikipedia", "LLM", "WolframAlpha", "Calculator", "Google"), "GSM8K_PWS"),
    "physics_question": (("Wikipedia", "LLM", "WolframAlpha", "Calculator", "Google"), "GSM8K_PWS"),
    "sports_understanding": (("Wikipedia", "LLM", "WolframAlpha", "Calculator", "Google"), "GSM8K_PWS"),
    "sotu_qa": (("LLM", "Calculator", "Google", "SearchSOTU"), "GSM8K_PWS"),
}
KNOWN_TOOLS = {tool for tools, _ in DATASETS.values() for tool in tools}
LEFT_OUT = {"trivia_qa": "HF trivia_qa/rc.nocontext has no copy here"}
_CSV = {"strategy_qa": ("data/bigbench/strategy_qa.csv", "input", "target"),
        "physics_question": ("data/bigbench/physics_question.csv", "input", "target"),
        "sports_understanding": ("data/bigbench/sports_understanding.csv", "input", "target"),
        "sotu_qa": ("data/SOTU/SOTU_QA.csv", "question", "answer")}


@dataclasses.dataclass(frozen=True)
class Question:
    """One question: ``id`` is ``"<dataset>/<row in the source file>"``; ``tools`` the planner's tool list."""

    id: str
    dataset: str
    question: str
    label: str
    tools: tuple[str, ...]
    fewshot: str  # the key of the planner's few-shot examples in fewshots.json


def sample_rows(n_rows: int, n: int = SAMPLE_SIZE, seed: int = SEED) -> list[int]:
    """The row positions pandas' ``df.sample(n, random_state=seed)`` picks, in its order."""
    return [int(i) for i in np.random.RandomState(seed).choice(n_rows, size=min(n, n_rows), replace=False)]


def _read_csv(path: Path, question: str, label: str) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return [(row[question], row[label]) for row in csv.DictReader(fh)]


def _rows(name: str) -> list[tuple[str, str]]:
    """All (question, label) rows of a dataset, in file order."""
    if name in _CSV:
        path, q, a = _CSV[name]
        return _read_csv(require("rewoo") / path, q, a)
    if name == "hotpot_qa":
        base = require("hotpotqa")
        rows = []
        for level in ("easy", "medium", "hard"):
            rows += [(r["question"], r["answer"]) for _, r in jsonl_rows(base / "agenttuning_bolaa" / f"{level}.jsonl")]
        return rows
    if name == "gsm8k":
        base = require("gsm8k", "test.jsonl")
        path = base / "train.jsonl" if (base / "train.jsonl").is_file() else base / "test.jsonl"
        return [(r["question"], r["answer"].split("#### ")[1]) for _, r in jsonl_rows(path)]
    raise KeyError(name)


def gsm8k_split() -> str:
    """Which GSM8K file the questions come from (upstream: train)."""
    return "train" if (dataset("gsm8k").path() / "train.jsonl").is_file() else "test"


@functools.lru_cache(maxsize=1)
def load(split: str = "test") -> tuple[Question, ...]:
    """The 300 questions: 50 per dataset in :data:`DATASETS` order, each in the sample's order."""
    if split != "test":
        raise ValueError(f"ReWOO has the split 'test' only, not {split!r}")
    out: list[Question] = []
    for name, (tools, fewshot) in DATASETS.items():
        rows = _rows(name)
        for i in sample_rows(len(rows)):
            out.append(Question(f"{name}/{i}", name, rows[i][0], rows[i][1], tools, fewshot))
    return tuple(out)


def load_file(path: str | Path) -> list[Question]:
    """A user's questions: JSON lines ``{"question", "answer", "tools": [...]?, "dataset"?}``; without
    ``tools`` a question gets the strategy_qa tool set. Ids are ``"<dataset>/<n>"``, counted per dataset."""
    out: list[Question] = []
    counts: dict[str, int] = {}
    for n, row in jsonl_rows(path):
        try:
            name = str(row.get("dataset", "custom"))
            tools = tuple(row.get("tools") or DATASETS["strategy_qa"][0])
            # a null question or a tools string ("Wikipedia" -> its letters) was taken as it came
            if not all(isinstance(row[k], (str, int, float)) and not isinstance(row[k], bool)
                       for k in ("question", "answer")):
                raise TypeError("question and answer must be text (or a number)")
            if not isinstance(row.get("tools") or [], list) or not set(tools) <= KNOWN_TOOLS:
                raise TypeError(f"tools must be a list of {sorted(KNOWN_TOOLS)}, got {row.get('tools')!r}")
            fewshot = "HOTPOTQA_PWS_BASE" if name == "hotpot_qa" else "GSM8K_PWS"
            out.append(Question(f"{name}/{counts.get(name, 0)}", name, str(row["question"]), str(row["answer"]),
                                tools, fewshot))
            counts[name] = counts.get(name, 0) + 1
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}:{n}: a ReWOO question is {{\"question\": ..., \"answer\": ...}} "
                             f"({type(exc).__name__}: {exc})") from None
    return out


@functools.lru_cache(maxsize=1)
def prompts() -> dict[str, Any]:
    """``{"planner": {...}, "solver": {...}, "fewshots": {...}, "workers": {...} | None}`` from the data directory."""
    base = require("rewoo")
    out: dict[str, Any] = {name: json.loads((base / f"agenttuning_prompts/{name}.json").read_text(encoding="utf-8"))
                           for name in ("planner", "solver", "fewshots")}
    workers = base / WORKERS_FILE
    out["workers"] = json.loads(workers.read_text(encoding="utf-8")) if workers.is_file() else None
    return out


def speech() -> str:
    """The 2023 State of the Union transcript SearchSOTU searches."""
    return (require("rewoo") / SPEECH_FILE).read_text(encoding="utf-8")


def wikipedia_pages() -> list[Document]:
    """The offline Wikipedia: every paragraph of AgentTuning's 300 HotpotQA questions, one page per title."""
    base = require("hotpotqa")
    seen: set[str] = set()
    pages: list[Document] = []
    for level in ("easy", "medium", "hard"):
        for _, row in jsonl_rows(base / "agenttuning_bolaa" / f"{level}.jsonl"):
            for title, sentences in row.get("context") or ():
                if title not in seen:
                    seen.add(title)
                    pages.append(Document(title, "".join(sentences)))
    return pages


# ------------------------------------------------------------ derived at fetch time
def workers_from_source(source: bytes) -> bytes:
    """``workers.json`` from upstream's ``nodes/Worker.py`` (read with :mod:`ast`, nothing runs): each worker
    class's default ``name`` and its ``self.description`` string, and the LLM worker's instruction (the
    f-string it sends to a Llama model, ``{input}`` where the request goes). Raises ``ValueError`` when the
    source is not of that shape."""
    tree = pysource.parse(source.decode("utf-8"))
    descriptions: dict[str, str] = {}
    templates: dict[str, str] = {}  # class name -> an f-string description, "{doc_name}" where a value goes
    llm_instruction = None
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        init = next((f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None)
        if init is None:
            continue
        args = init.args.args[len(init.args.args) - len(init.args.defaults):]
        names = [d.value for a, d in zip(args, init.args.defaults)
                 if a.arg == "name" and isinstance(d, ast.Constant) and isinstance(d.value, str)]
        for node in ast.walk(init):
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Attribute) \
                    and node.targets[0].attr == "description":
                if isinstance(node.value, ast.Constant) and names:
                    descriptions[names[-1]] = node.value.value
                elif isinstance(node.value, ast.JoinedStr):
                    templates[cls.name] = _fstring(node.value, "{%s}")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "__init__"
                    and names and cls.bases and isinstance(cls.bases[0], ast.Name)
                    and cls.bases[0].id in templates):
                values = {k.arg: k.value.value for k in node.keywords if isinstance(k.value, ast.Constant)}
                descriptions[names[-1]] = templates[cls.bases[0].id].format(**values)
        if names and names[-1] == "LLM":
            for node in ast.walk(cls):
                if isinstance(node, ast.JoinedStr):
                    llm_instruction = _fstring(node, "{input}")
    if not descriptions or llm_instruction is None:
        raise ValueError("Worker.py has no worker descriptions or no LLM instruction f-string")
    out = {"source": f"THUDM/AgentTuning {AGENTTUNING_COMMIT} eval_heldout/rewoo/nodes/Worker.py",
           "descriptions": descriptions, "llm_instruction": llm_instruction}
    return (json.dumps(out, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def _fstring(node: ast.JoinedStr, hole: str) -> str:
    """An f-string's text with each ``{expr}`` written as ``hole`` (``"%s"`` in it takes the name)."""
    out = []
    for part in node.values:
        if isinstance(part, ast.Constant):
            out.append(str(part.value).replace("{", "{{").replace("}", "}}") if "%s" in hole else str(part.value))
        else:
            name = part.value.id if isinstance(part.value, ast.Name) else "input"
            out.append(hole % name if "%s" in hole else hole)
    return "".join(out)
