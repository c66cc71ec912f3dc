"""Mind2Web's released test tasks, its candidate ranker's scores and AgentBench's 3-shot prompt.

The files live in the data directory's ``agentbench`` folder, under ``data/mind2web/``:

- ``prompt/llm_prompt_cot.json``: AgentBench.old's 3-shot chain-of-thought prompt (user/agent
  messages, the last one an empty placeholder for the question), byte-identical to
  ``AgentTuning/AgentBench.old/data/mind2web/prompt/llm_prompt_cot.json``.
- ``test.zip``: Mind2Web's released test sets (``osunlp/Mind2Web`` on the Hugging Face hub), a zip
  locked with the password ``mind2web`` that its authors publish (to keep the test set out of
  crawled training corpora). The first load of a split unpacks that split's JSON files into
  ``data/mind2web/<split folder>/`` (once; ``unzip -P mind2web test.zip`` there does the same,
  faster). A copy that already has those folders needs no zip.
- ``scores_all_data.pkl``: Mind2Web's candidate ranker (the fine-tuned DeBERTa cross-encoder) scores,
  ``{"scores": {sample_id: {backend_node_id: float}}, "ranks": {sample_id: {backend_node_id: int}}}``
  with ``sample_id = f"{annotation_id}_{action_uid}"``, read with a pickle loader that builds
  only plain containers and numbers (no code from the file runs).

AgentBench's own ``std`` files (``/root/work/data/data_std/*.json`` in its config, inside its
docker image) were never released: the ``test`` split here is Mind2Web's Cross-Domain test set
(``test_domain``, the key AgentBench's config gave those files); ``test_task`` and
``test_website`` are Mind2Web's other two. Each file is a JSON list of tasks in Mind2Web's
format (``annotation_id``, ``confirmed_task``, ``action_reprs``, ``actions[].{action_uid,
cleaned_html, operation.{op, value}, pos_candidates, neg_candidates}``, ...); a user's own file in
that format loads with :func:`load_file`. This module reads data only: no DOM work, no prompt.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pickle
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from agent_gym.data import DataFile, Dataset, DataMissingError, data_dir_path, require

FOLDER = "data/mind2web"
PROMPT_FILE = f"{FOLDER}/prompt/llm_prompt_cot.json"
TEST_ZIP = f"{FOLDER}/test.zip"
SCORES_FILE = f"{FOLDER}/scores_all_data.pkl"
#: The zip's password, as Mind2Web's README publishes it.
ZIP_PASSWORD = b"mind2web"
#: Split -> Mind2Web's test folder (``test`` is the Cross-Domain set; see the module docstring).
SPLIT_FOLDERS = {"test": "test_domain", "test_task": "test_task", "test_website": "test_website"}

HF = "https://huggingface.co/datasets/osunlp/Mind2Web/resolve/main"


class _Mind2WebDataset(Dataset):
    """The dataset is usable when the prompt, the ranker scores and the ``test`` split's files
    (the zip, or the folder unpacked from it) are all there. The zip and the score file are
    ``optional`` DataFiles only because an unpacked copy needs no zip; :meth:`missing` says what
    is really missing, so ``agent-gym data list`` and the tests' ``need_data`` tell the truth."""

    def missing(self, data_dir: Path | None = None) -> list[str]:
        base = self.path(data_dir)
        out = super().missing(data_dir)
        if not (base / SCORES_FILE).is_file():
            out.append(SCORES_FILE)
        if not (base / TEST_ZIP).is_file() and not _json_files(base / FOLDER / SPLIT_FOLDERS["test"]):
            out.append(TEST_ZIP)
        return out


DATASET = _Mind2WebDataset(
    name="mind2web",
    root="agentbench",
    files=(
        DataFile(
            PROMPT_FILE,
            url="https://raw.githubusercontent.com/THUDM/AgentTuning/main/AgentBench.old/data/mind2web/prompt/"
                "llm_prompt_cot.json",
            sha256="c2ae04794d0d6841d4e727c9bacc081b53db9d9a73a8cc4241d9885bf47826c4",
        ),
        # no sha256 pins: the two files could not be downloaded where this was written
        DataFile(TEST_ZIP, url=f"{HF}/test.zip", optional=True),
        DataFile(SCORES_FILE, url=f"{HF}/scores_all_data.pkl", optional=True),
    ),
    description="Mind2Web (Deng et al. 2023) released test sets: test_domain (the `test` split), test_task, "
                "test_website; the candidate ranker's scores; AgentBench.old's 3-shot CoT prompt",
    license="CC BY 4.0 (Mind2Web); Apache-2.0 (AgentBench prompt)",
    homepage="https://huggingface.co/datasets/osunlp/Mind2Web",
)


@dataclasses.dataclass(frozen=True)
class Step:
    """One annotated action of a task (a "sample" in Mind2Web's code).

    ``pos_ids`` / ``neg_ids``: the ``backend_node_id`` of the positive (gold) and negative
    candidate elements, in the file's order; ``op`` is ``CLICK`` / ``TYPE`` / ``SELECT`` and
    ``value`` the text typed or option selected (``""`` for a click).
    """

    action_uid: str
    cleaned_html: str
    op: str
    value: str
    pos_ids: tuple[str, ...]
    neg_ids: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Task:
    """One annotated Mind2Web task: an episode. ``id`` is its ``annotation_id``."""

    id: str
    website: str
    domain: str
    confirmed_task: str
    action_reprs: tuple[str, ...]
    steps: tuple[Step, ...]

    def sample_id(self, step: Step) -> str:
        """The key of ``step`` in the ranker's score file (Mind2Web's ``annotation_id_action_uid``)."""
        return f"{self.id}_{step.action_uid}"


def _ids(candidates: Any) -> tuple[str, ...]:
    return tuple(str(c["backend_node_id"]) for c in candidates)


def _step(k: int, a: dict[str, Any]) -> Step:
    # the types are checked here, when the file is read, so that a bad record is named with its file and
    # item rather than failing as a bare TypeError deep inside an episode
    html, op, value = a["cleaned_html"], a["operation"]["op"], a["operation"].get("value") or ""
    for name, v in (("cleaned_html", html), ("operation.op", op), ("operation.value", value)):
        if not isinstance(v, str):
            raise TypeError(f"action {k}: {name} must be a string, got {type(v).__name__}")
    return Step(action_uid=str(a["action_uid"]), cleaned_html=html, op=op, value=value,
                pos_ids=_ids(a["pos_candidates"]), neg_ids=_ids(a["neg_candidates"]))


def _task(item: dict[str, Any]) -> Task:
    actions = item["actions"]
    if not actions:
        raise ValueError("a task needs at least one action")
    reprs = tuple(item["action_reprs"])
    if len(reprs) != len(actions):
        raise ValueError(f"{len(actions)} actions but {len(reprs)} action_reprs")
    steps = tuple(_step(k, a) for k, a in enumerate(actions))
    if not isinstance(item["confirmed_task"], str):
        raise TypeError(f"confirmed_task must be a string, got {type(item['confirmed_task']).__name__}")
    return Task(id=str(item["annotation_id"]), website=item.get("website", ""), domain=item.get("domain", ""),
                confirmed_task=item["confirmed_task"], action_reprs=tuple(str(r) for r in reprs), steps=steps)


def load_file(path: str | Path) -> list[Task]:
    """The tasks of one file in Mind2Web's test-file format (a JSON list of tasks), in file order.

    Only what the protocol reads is kept (``raw_html`` and the candidates' attributes are
    dropped). A task missing a field raises ``ValueError`` naming the file and the item.
    """
    path = Path(path).resolve()
    stat = path.stat()
    return list(_load(str(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=2)  # a released file holds hundreds of pages: keep few in memory
def _load(path: str, mtime_ns: int, size: int) -> tuple[Task, ...]:  # keyed by the file's state
    with open(path, encoding="utf-8") as fh:
        try:
            items = json.load(fh)
        except ValueError as exc:
            raise ValueError(f"{path}: not a Mind2Web test file (not JSON: {exc})") from exc
    if not isinstance(items, list):
        raise ValueError(f"{path}: not a Mind2Web test file (a JSON list of tasks), got {type(items).__name__}")
    tasks = []
    for number, item in enumerate(items):
        try:
            tasks.append(_task(item))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"{path}: item {number} is not a Mind2Web task ({type(exc).__name__}: {exc})") from exc
    return tuple(tasks)


def _json_files(folder: Path) -> list[Path]:
    # test_domain_10.json after test_domain_9.json: the numeric order the release uses
    def key(p: Path) -> tuple:
        stem = p.stem.rsplit("_", 1)
        return (stem[0], int(stem[1])) if len(stem) == 2 and stem[1].isdigit() else (p.stem, -1)

    return sorted((p for p in folder.glob("*.json") if not p.name.startswith(".")), key=key) if folder.is_dir() else []


def split_files(split: str) -> list[Path]:
    """The JSON files of ``split``, unpacking them from ``test.zip`` on first use.

    Raises :class:`DataMissingError` naming ``agent-gym data fetch mind2web`` when neither the
    unpacked folder nor the zip is in the data directory.
    """
    if split not in SPLIT_FOLDERS:
        raise ValueError(f"Mind2Web has splits {sorted(SPLIT_FOLDERS)}, not {split!r}")
    base = DATASET.path()
    folder = base / FOLDER / SPLIT_FOLDERS[split]
    files = _json_files(folder)
    if files:
        return files
    if not (base / TEST_ZIP).is_file():
        raise DataMissingError(
            f"Mind2Web's test files are not in the data directory {data_dir_path()} (no {folder} and no "
            f"{base / TEST_ZIP}). Run `agent-gym data fetch mind2web` to download them (test.zip, 568 MB, and the "
            f"ranker scores, 245 MB, from {HF}), or put the unpacked {SPLIT_FOLDERS[split]}/*.json files there.")
    print(f"agent-gym: unpacking Mind2Web's {SPLIT_FOLDERS[split]} files from {base / TEST_ZIP} (once; a few minutes)",
          file=sys.stderr, flush=True)
    unpack_split(base / TEST_ZIP, SPLIT_FOLDERS[split], folder)
    return _json_files(folder)


def unpack_split(zip_path: Path, split_folder: str, dest: Path) -> None:
    """Unpack the ``*.json`` members under a folder named ``split_folder`` of Mind2Web's
    ``test.zip`` into ``dest`` (flat), all or nothing: a cut run leaves no half folder."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as zf:
        members = [m for m in zf.infolist() if not m.is_dir() and m.filename.endswith(".json")
                   and split_folder in PurePosixPath(m.filename).parts[:-1]]
        if not members:
            raise DataMissingError(f"{zip_path} has no {split_folder}/*.json member: not Mind2Web's test.zip? "
                                   "Run `agent-gym data fetch --force mind2web`")
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{split_folder}-") as tmp:
            staging = Path(tmp) / split_folder
            staging.mkdir()
            for m in members:
                name = PurePosixPath(m.filename).name
                with zf.open(m, pwd=ZIP_PASSWORD) as src, open(staging / name, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            try:
                os.rename(staging, dest)
            except OSError:
                if not _json_files(dest):  # another process unpacked it at the same time: keep theirs
                    raise


@dataclasses.dataclass(frozen=True)
class TaskRef:
    """A task of a released split, by id and place: the split's files are too large to hold at
    once, so a task is read (:meth:`load`) when its episode starts."""

    id: str
    path: str
    position: int

    def load(self) -> Task:
        task = load_file(self.path)[self.position]
        if task.id != self.id:
            raise ValueError(f"{self.path} changed since it was indexed: item {self.position} is {task.id}, "
                             f"not {self.id}")
        return task


INDEX_FILE = ".agent-gym-index"  # no .json suffix: never taken for a test file


def _task_ids(path: Path) -> list[str]:
    """The annotation ids of a file, from an index kept beside it (by size and mtime), so that
    listing a split does not parse its files again."""
    index_path = path.parent / INDEX_FILE
    stat = path.stat()
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    entry = index.get(path.name)
    if entry and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
        return list(entry["ids"])
    ids = [t.id for t in load_file(path)]
    index[path.name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ids": ids}
    try:
        tmp = index_path.with_name(f"{INDEX_FILE}.{os.getpid()}.part")
        tmp.write_text(json.dumps(index))
        os.replace(tmp, index_path)
    except OSError:
        pass  # a read-only data directory: the ids are read from the files each time
    return ids


def load(split: str = "test") -> list[TaskRef]:
    """The tasks of a split (Mind2Web's test files in file order), as references read on demand."""
    return [TaskRef(task_id, str(path), i) for path in split_files(split) for i, task_id in enumerate(_task_ids(path))]


def resolve(task: Task | TaskRef) -> Task:
    """The task itself, read from its file if ``task`` is a reference."""
    return task.load() if isinstance(task, TaskRef) else task


# ------------------------------------------------------------------------------- ranker scores
class _PlainUnpickler(pickle.Unpickler):
    """Builds containers, strings and numbers only: a score file cannot run code on load.
    NumPy scalars (the ranker wrote some) are rebuilt from their bytes without importing code
    paths beyond NumPy's scalar constructor."""

    _ALLOWED = {("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"), ("builtins", "set"),
                ("builtins", "frozenset"), ("builtins", "float"), ("builtins", "int"), ("builtins", "str"),
                ("collections", "OrderedDict"), ("collections", "defaultdict"),
                ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"the score file asks for {module}.{name}; only plain data is read")
        return super().find_class(module, name)


def load_ranks(path: str | Path) -> dict[str, dict[str, int]]:
    """``{sample_id: {backend_node_id: rank}}`` from a ranker score file (rank 0 = best), as the
    file holds it (read once per file state; :func:`step_ranks` reads one step's).

    Raises ``ValueError`` naming the file when it is not Mind2Web's ``{"scores", "ranks"}`` pickle.
    """
    path = Path(path).resolve()
    stat = path.stat()
    return _load_ranks(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=2)
def _load_ranks(path: str, mtime_ns: int, size: int) -> dict[str, dict[str, int]]:
    try:
        with open(path, "rb") as fh:
            results = _PlainUnpickler(fh).load()
        ranks = results["ranks"]
        if not isinstance(ranks, dict):
            raise TypeError(f"'ranks' is a {type(ranks).__name__}, not a dict")
        return ranks  # not copied: the full file holds every Mind2Web split's candidates
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"{path}: not a Mind2Web ranker score file ({{'scores', 'ranks'}} pickle): "
                         f"{type(exc).__name__}: {exc}") from exc


def step_ranks(path: str | Path, sample_id: str) -> dict[str, int] | None:
    """One step's ``{backend_node_id: rank}`` (``None`` if the file has no such step)."""
    per = load_ranks(path).get(sample_id)
    if per is None:
        return None
    try:
        return {str(node): int(rank) for node, rank in per.items()}
    except (AttributeError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: ranks of {sample_id} are not {{backend_node_id: rank}}: {exc}") from exc


def scores_path() -> Path:
    """The ranker score file in the data directory (raises :class:`DataMissingError` naming the fetch)."""
    return require("mind2web", SCORES_FILE) / SCORES_FILE


# ------------------------------------------------------------------------------------- prompt
@functools.lru_cache(maxsize=1)
def prompt_template() -> tuple[dict[str, str], ...]:
    """AgentBench's 3-shot CoT messages (roles ``user`` / ``agent``), without the trailing
    empty user message that upstream fills with each question."""
    path = require("mind2web", PROMPT_FILE) / PROMPT_FILE
    messages = json.loads(path.read_text(encoding="utf-8"))
    if messages and messages[-1]["role"] == "user" and not messages[-1]["content"]:
        messages = messages[:-1]
    return tuple({"role": m["role"], "content": m["content"]} for m in messages)
