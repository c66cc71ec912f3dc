"""WebArena's 812 task configs and the 2-shot CoT prompt AgentTuning played them with.

The files live in the data directory's ``webarena`` folder:

- ``agenttuning_test.raw.json``: the configs as AgentTuning ran them (its copy in
  ``eval_heldout/webarena/config_files/test.raw.json``): the ``test`` split, the paper's;
- ``test.raw.json`` (optional): web-arena-x/webarena's current configs (later fixes to 531 of the
  812 tasks; ``program_html`` checks written as ``{"exact_match" | "must_include": ...}``): the
  ``latest`` split;
- ``prompts/p_cot_id_actree_2s.json``: the prompt module AgentTuning used
  (``agent/prompts/raw/p_cot_id_actree_2s.py``), its assignments as JSON (``{"prompt": {"intro",
  "examples", "template", "meta_data"}}``); ``agent-gym data fetch webarena`` derives it from the
  module with :func:`prompt_from_module` (Python's ``ast``: nothing of the module runs).

A config names its sites by placeholder (``__SHOPPING__/admin``); they are filled with the user's
own deployment's URLs at reset (see :mod:`.env`), so the configs load without any URL. This module
reads data only: no browser, no prompt logic.
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

AGENTTUNING_COMMIT = "e33a45d7eab2b63cac4d1956da1e6377fca9fcc7"
WEBARENA_COMMIT = "bb6e4c623e73b5b5ce3caeef82e00d3853de8189"  # the last change of config_files/test.raw.json
_AT = f"https://raw.githubusercontent.com/THUDM/AgentTuning/{AGENTTUNING_COMMIT}/eval_heldout/webarena"

#: Split -> file in the dataset folder.
SPLIT_FILES = {"test": "agenttuning_test.raw.json", "latest": "test.raw.json"}
PROMPT_FILE = "prompts/p_cot_id_actree_2s.json"

DATASET = Dataset(
    name="webarena",
    root="webarena",
    files=(
        DataFile(
            SPLIT_FILES["test"],
            url=f"{_AT}/config_files/test.raw.json",
            sha256="4ea85923dd3d5425913cf655f04803c75b7c8ce7a5de7088a7782d5313efabf3",
        ),
        DataFile(
            PROMPT_FILE,
            url=f"{_AT}/agent/prompts/raw/p_cot_id_actree_2s.py",
            sha256="50766c5cc959806a3e800a809ab0731945a709b92897a5f7fc56fdd9c4bb090b",  # of the module
            derive="agent_gym.envs.webarena.data:prompt_from_module",
            derived_sha256="d81ecb2a44578362fd185e8821b6ac8a04eb938ca0253f3261794b11632091df",  # of the JSON
        ),
        DataFile(
            SPLIT_FILES["latest"],
            url=f"https://raw.githubusercontent.com/web-arena-x/webarena/{WEBARENA_COMMIT}/config_files/test.raw.json",
            sha256="7b50386fd69163dbc05d615d834df4c6ed2c35596e97a1b10d17451c02537652",
            optional=True,
        ),
    ),
    description="WebArena: 812 web tasks on six self-hosted sites (AgentTuning's copy of the configs, and "
                "web-arena-x/webarena's current one, optional) and the 2-shot CoT accessibility-tree prompt",
    license="Apache-2.0",
    homepage="https://github.com/web-arena-x/webarena",
)

#: The site settings, as WebArena's ``browser_env/env_config.py`` reads them from the environment.
SITES = ("SHOPPING", "SHOPPING_ADMIN", "REDDIT", "GITLAB", "MAP", "WIKIPEDIA", "HOMEPAGE")
#: The evaluator types WebArena's ``evaluator_router`` knows.
EVAL_TYPES = ("string_match", "url_match", "program_html")


@dataclasses.dataclass(frozen=True)
class WebTask:
    """One WebArena config.

    ``start_url``: with site placeholders (``__GITLAB__``), several URLs joined by ``" |AND| "``
    (one tab each); ``storage_state``: upstream's login-state file name (``./.auth/gitlab_state.json``)
    or ``None``; ``eval``: the config's ``eval`` object as it is (see :mod:`.evaluators`).
    """

    id: str
    task_id: int
    intent: str
    sites: tuple[str, ...]
    start_url: str
    storage_state: str | None
    require_login: bool
    geolocation: dict[str, Any] | None
    eval: dict[str, Any]

    @property
    def eval_types(self) -> tuple[str, ...]:
        return tuple(self.eval.get("eval_types") or ())


def task_from_config(config: dict[str, Any], where: str = "config") -> WebTask:
    """A :class:`WebTask` from one config object; ``ValueError`` naming ``where`` when a field the
    env needs is missing or an evaluator type is unknown."""
    if not isinstance(config, dict):
        raise ValueError(f"{where}: a WebArena config is a JSON object, not {type(config).__name__}")
    missing = [k for k in ("task_id", "intent", "start_url", "eval") if k not in config]
    if missing:
        raise ValueError(f"{where}: a WebArena config needs {', '.join(missing)}")
    evaluation = config["eval"]
    types = evaluation.get("eval_types") if isinstance(evaluation, dict) else None
    if not isinstance(types, list) or not types:
        raise ValueError(f"{where}: eval.eval_types must be a non-empty list")
    unknown = [t for t in types if t not in EVAL_TYPES]
    if unknown:
        raise ValueError(f"{where}: eval_type {unknown[0]!r} is not supported (WebArena's: {', '.join(EVAL_TYPES)})")
    return WebTask(
        id=str(config["task_id"]),
        task_id=int(config["task_id"]),
        intent=str(config["intent"]),
        sites=tuple(config.get("sites") or ()),
        start_url=str(config["start_url"] or ""),
        storage_state=config.get("storage_state") or None,
        require_login=bool(config.get("require_login")),
        geolocation=config.get("geolocation") or None,
        eval=evaluation,
    )


def load_file(path: str | Path) -> list[WebTask]:
    """Tasks of a file in WebArena's format: one config object (``config_files/<n>.json``) or a
    list of them (``test.raw.json``), in file order. Placeholders stay unfilled."""
    path = Path(path)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc}); a WebArena tasks file is a config object or a list of them")
    configs = content if isinstance(content, list) else [content]
    tasks = [task_from_config(c, f"{path} item {i}") for i, c in enumerate(configs)]
    ids = [t.id for t in tasks]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: task_id values repeat; each config needs its own")
    return tasks


@lru_cache(maxsize=2)
def load(split: str = "test") -> list[WebTask]:
    """``test``: AgentTuning's 812 configs (the paper's); ``latest``: web-arena-x/webarena's current ones."""
    name = SPLIT_FILES[split]
    return load_file(require("webarena", name) / name)


@lru_cache(maxsize=1)
def instruction() -> dict[str, Any]:
    """The prompt: ``intro``, ``examples`` (pairs), ``template`` and ``meta_data`` (``answer_phrase``,
    ``action_splitter``, ...), as AgentTuning's run.py read it from its JSON."""
    return json.loads((require("webarena", PROMPT_FILE) / PROMPT_FILE).read_text(encoding="utf-8"))["prompt"]


def prompt_from_module(source: bytes) -> bytes:
    """Derive ``p_cot_id_actree_2s.json`` from the text of WebArena's prompt module: every
    top-level ``name = <literal>`` assignment, as ``json.dumps(..., indent=1)`` (what the shared
    copy holds). ``ValueError`` when the module has no ``prompt`` literal."""
    tree = pysource.parse(source.decode("utf-8"))
    values: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            values[node.targets[0].id] = ast.literal_eval(node.value)
    if not isinstance(values.get("prompt"), dict):
        raise ValueError("the prompt module has no `prompt = {...}` literal")
    return json.dumps(values, indent=1).encode("utf-8")
