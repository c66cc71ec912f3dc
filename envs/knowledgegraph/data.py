"""AgentBench's Knowledge Graph questions (the ``std`` split, 150 items; ``dev``, 20), its Freebase
ontology and its prompt strings.

The files live in the data directory's ``agentbench`` folder, byte-identical to AgentTuning's
``AgentBench.old``: ``data/knowledgegraph/std.json`` and ``dev.json`` (the dev file is optional:
``agent-gym data fetch agentbench_kg`` gets it), ``kg_ontology/vocab.json`` (the relations and
numeric attributes the tools may show) and ``kg_ontology/fb_roles`` (``domain relation range`` per
line: the type a ``get_neighbors`` variable gets), both from ``src/tasks/knowledgegraph/ontology/``,
and ``agentbench_old_prompts.json`` (the prompt strings of AgentBench.old, extracted verbatim;
upstream has them only inside Python sources, so that file comes with ``agent-gym data import``).

A question file is one JSON list of objects with ``question``, ``qid``, ``entities`` (name -> mid),
``answer`` (objects with ``answer_argument``: a mid or a literal such as a count), and optionally
``source``, ``s_expression`` and ``actions`` (the gold tool calls, ``get_relations(m.0km5c)``). A
user's own file in that format loads with :func:`load_file`. No engine, no prompt logic here.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

from agent_gym.data import DataFile, Dataset, require

_UPSTREAM = "https://raw.githubusercontent.com/THUDM/AgentTuning/main/AgentBench.old"
#: Split -> file in the dataset folder (AgentBench.old's ``configs/tasks/knowledgegraph/{std,dev}.yaml``).
SPLIT_FILES = {"test": "data/knowledgegraph/std.json", "dev": "data/knowledgegraph/dev.json"}
PROMPTS_FILE = "agentbench_old_prompts.json"
VOCAB_FILE = "kg_ontology/vocab.json"
ROLES_FILE = "kg_ontology/fb_roles"

DATASET = Dataset(
    name="agentbench_kg",
    root="agentbench",
    files=(
        DataFile(SPLIT_FILES["test"], url=f"{_UPSTREAM}/data/knowledgegraph/std.json",
                 sha256="1265d4e35602b126d2bd947fcb1c17722e08ff5076c5282508e3530ede18109c"),
        DataFile(VOCAB_FILE, url=f"{_UPSTREAM}/src/tasks/knowledgegraph/ontology/vocab.json",
                 sha256="6a178fa7f348631d816e37a384a89039b6ef1903c8797c4a20fbe97074ba6453"),
        DataFile(ROLES_FILE, url=f"{_UPSTREAM}/src/tasks/knowledgegraph/ontology/fb_roles",
                 sha256="052ec0a1083b5cf83cfbf7f56f5d864e363382e3210e9a482da6e52ca37392ba"),
        DataFile(PROMPTS_FILE, sha256="352784b5a358e483ab0fc501fc92d8bd6ee94337dd0edac957d949f0146ff2de"),
        DataFile(SPLIT_FILES["dev"], url=f"{_UPSTREAM}/data/knowledgegraph/dev.json",
                 sha256="5e28f8504ef98c513fa90090fc9543dbad54990723cc28854e2ba3ce1536d994", optional=True),
    ),
    description="AgentBench Knowledge Graph: std split (test), 150 Freebase questions (GrailQA 91, CWQ 41, "
                "GraphQuestions 17, WebQSP 1); dev split, 20; the Freebase ontology its tools filter by. "
                "The knowledge base itself is the user's Freebase SPARQL endpoint (see docs/knowledgegraph.md)",
    license="Apache-2.0 (AgentBench v0.2 ships the same files)",
    homepage="https://github.com/THUDM/AgentTuning/tree/main/AgentBench.old",
)


@dataclasses.dataclass(frozen=True)
class Question:
    """One KG item. ``entities``: (name, mid) pairs in the file's order (the prompt lists the names
    in that order); ``answers``: the gold set of ``answer_argument`` values (AgentBench's target)."""

    id: str
    index: int
    question: str
    entities: tuple[tuple[str, str], ...]
    answers: frozenset[str]
    source: str = ""
    s_expression: str = ""
    actions: tuple[str, ...] = ()

    @property
    def entity_mids(self) -> dict[str, str]:
        """Entity name -> mid, as upstream's ``entities`` dict."""
        return dict(self.entities)


@dataclasses.dataclass(frozen=True)
class Ontology:
    """What AgentBench's tools know of Freebase's schema: ``relations`` and ``attributes`` (the
    lists ``get_relations`` / ``get_attributes`` results are cut to, from ``vocab.json``) and
    ``range_info`` (relation -> the type of its objects, from ``fb_roles``)."""

    relations: frozenset[str]
    attributes: frozenset[str]
    range_info: dict[str, str]


def _question(index: int, item: dict[str, Any]) -> Question:
    entities = item["entities"]
    if not isinstance(entities, dict):
        raise TypeError("entities must be an object of name -> mid")
    return Question(
        id=str(item["qid"]),
        index=index,
        question=str(item["question"]),
        entities=tuple((str(k), str(v)) for k, v in entities.items()),
        answers=frozenset(str(a["answer_argument"]) for a in item["answer"]),
        source=str(item.get("source", "")),
        s_expression=str(item.get("s_expression", "")),
        actions=tuple(item.get("actions") or ()),
    )


def load_file(path: str | Path) -> list[Question]:
    """Questions from a JSON file in AgentBench's KG format (see the module docstring), in file
    order. An item missing a field raises ``ValueError`` naming the file and the item's index;
    repeated ``qid`` values too (ids must be unique)."""
    path = Path(path).resolve()
    stat = path.stat()
    return list(_load(str(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int, size: int) -> tuple[Question, ...]:  # keyed by the file's state
    with open(path, encoding="utf-8") as fh:
        try:
            items = json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not JSON ({exc}); a KG question file is one JSON list of questions") from exc
    if not isinstance(items, list):
        raise ValueError(f"{path}: a KG question file is one JSON list of questions")
    questions = []
    for index, item in enumerate(items):
        try:
            questions.append(_question(index, item))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}: item {index} is not a KG question ({type(exc).__name__}: {exc})") from exc
    ids = [q.id for q in questions]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"{path}: qid {dup!r} appears more than once")
    return tuple(questions)


def load(split: str = "test") -> list[Question]:
    """The questions of a split in AgentBench's order: ``test`` is its ``std`` file (the paper's
    150), ``dev`` its 20-question dev file."""
    if split not in SPLIT_FILES:
        raise ValueError(f"KnowledgeGraph has splits {sorted(SPLIT_FILES)}, not {split!r}")
    return load_file(require("agentbench_kg", SPLIT_FILES[split]) / SPLIT_FILES[split])


@functools.lru_cache(maxsize=1)
def prompts() -> tuple[str, tuple[str, ...]]:
    """AgentBench.old's KG ``INSTRUCTIONS`` and ``ONE_SHOT`` (16 alternating user / agent turns), verbatim."""
    with open(require("agentbench_kg", PROMPTS_FILE) / PROMPTS_FILE, encoding="utf-8") as fh:
        kg = json.load(fh)["knowledgegraph"]
    return kg["INSTRUCTIONS"], tuple(kg["ONE_SHOT"])


def load_ontology(folder: str | Path | None = None) -> Ontology:
    """The ontology in ``folder`` (holding ``vocab.json`` and ``fb_roles``), by default the data
    directory's ``kg_ontology`` (AgentBench's own). Loaded once per folder."""
    if folder is None:
        folder = require("agentbench_kg", VOCAB_FILE, ROLES_FILE) / "kg_ontology"
    return _ontology(str(Path(folder).expanduser().resolve()))


@functools.lru_cache(maxsize=4)
def _ontology(folder: str) -> Ontology:
    root = Path(folder)
    missing = [n for n in ("vocab.json", "fb_roles") if not (root / n).is_file()]
    if missing:
        raise FileNotFoundError(f"ontology folder {folder} lacks {', '.join(missing)} (AgentBench's kg_ontology files)")
    with open(root / "vocab.json", encoding="utf-8") as fh:
        vocab = json.load(fh)
    range_info = {}
    with open(root / "fb_roles", encoding="utf-8") as fh:
        for line in fh:
            # as upstream's logic_form_util: split on single spaces, field 1 the relation, 2 its range
            fields = line.rstrip("\n").split(" ")
            if len(fields) >= 3:
                range_info[fields[1]] = fields[2]
    return Ontology(relations=frozenset(vocab["relations"]), attributes=frozenset(vocab["attributes"]),
                    range_info=range_info)
