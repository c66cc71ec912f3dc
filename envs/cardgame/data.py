"""The card game's schedule of games (generated and seeded) and AgentBench's rules texts (optional data).

Upstream (AgentBench.old ``src/tasks/card_game/task.py:get_data``): stage 2 x opponent in
{baseline1, baseline2} x the LLM's side in {0 (moves first), 1} x ``test_time`` repeats. AgentTuning ran
``configs/tasks/card_game/ext.yaml`` (``test_time: 50``, the "extend" split): 200 games, our ``test``
split (alias ``ext``). ``dev.yaml`` (3 repeats, 12 games) is our ``dev``. Upstream's games were not
seeded (the baselines' choices came from Python's and the SDK's clock-seeded generators); here each game
has a seed, so a game replays exactly for the same replies.

The rules texts the LLM player sees before each decision are upstream's when the data directory holds
``cardgame/prompts.json``: ``agent-gym data fetch cardgame`` derives it with :func:`derive_prompts` from
AgentBench.old's ``prompt/en.py`` in AgentTuning's repository (the copy the paper ran). Without it the
env uses our wording of the same rules (:mod:`~agent_gym.envs.cardgame.prompt`) and records that.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent_gym import pysource
from agent_gym.data import DataFile, Dataset, sha256_of
from agent_gym.envs.cardgame.baselines import OPPONENTS, make_opponent

#: The AgentTuning commit whose AgentBench.old card-game prompt module the rules texts are taken from.
AGENTTUNING_COMMIT = "e33a45d7eab2b63cac4d1956da1e6377fca9fcc7"
PROMPT_FILE = "prompts.json"
STAGE_KEY = "2"  # ACTION_DESCRIPTION[2] / GUESS_DESCRIPTION[2]: the stage with guessing, the one the paper ran

DATASET = Dataset(
    name="cardgame",
    root="cardgame",
    files=(
        DataFile(  # optional: without it the env plays with our wording of the rules (options()["prompts"])
            PROMPT_FILE,
            url=(f"https://raw.githubusercontent.com/THUDM/AgentTuning/{AGENTTUNING_COMMIT}"
                 "/AgentBench.old/src/tasks/card_game/AI_SDK/Python/prompt/en.py"),
            sha256="352f57ebc26f5e92f77d2a262d87107373e64c80b189dfe5559339fcfbfcb36f",  # of prompt/en.py
            derive="agent_gym.envs.cardgame.data:derive_prompts",
            derived_sha256="16a4214eefd80f1cfd14c8ea8cf314edfe9f3b5cc0622adb6df52a7cf687fa58",  # of the derived prompts.json
            optional=True,
        ),
    ),
    description="AgentBench's card-game (Aquawar) LLM-player rules texts, stage 2 (optional; the games are generated)",
    license="Apache-2.0",
    homepage="https://github.com/THUDM/AgentTuning/tree/main/AgentBench.old/src/tasks/card_game",
)

STAGE = 2                      # the stage with guessing (stage 1 had none); the only one the paper ran
REPEATS = {"test": 50, "dev": 3}
_SEED_BASE = {"test": 0, "dev": 10_000}  # dev games are other games than test's


@dataclasses.dataclass(frozen=True)
class CardGameTask:
    """One game: the opponent AI, the agent's side (0 moves first) and the seed of the opponent's
    choices. The id says all three: ``baseline2/side1/seed37``."""

    id: str
    opponent: str
    side: int
    seed: int


def make_task(opponent: str, side: int, seed: int) -> CardGameTask:
    """A game of your own; errors name the allowed values."""
    make_opponent(opponent, rng=None)  # validates the name
    if side not in (0, 1):
        raise ValueError(f"side must be 0 (the agent moves first) or 1, got {side!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return CardGameTask(id=f"{opponent}/side{side}/seed{seed}", opponent=opponent, side=side, seed=seed)


def schedule(split: str) -> list[CardGameTask]:
    """Upstream's order: opponent, then side, then repeat."""
    n, base = REPEATS[split], _SEED_BASE[split]
    return [make_task(opp, side, base + i) for opp in OPPONENTS for side in (0, 1) for i in range(n)]


def load_file(path: Path) -> Sequence[CardGameTask]:
    """``tasks_file=``: JSON lines ``{"opponent": "baseline2", "side": 1, "seed": 7}``."""
    tasks = []
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            tasks.append(make_task(row["opponent"], row["side"], row["seed"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{lineno}: a game is {{\"opponent\": \"baseline1\"|\"baseline2\", "
                             f"\"side\": 0|1, \"seed\": int}} ({exc})") from None
    return tasks


# ------------------------------------------------------------ upstream rules texts
_SOURCE_NOTE = ("THUDM/AgentTuning AgentBench.old/src/tasks/card_game/AI_SDK/Python/prompt/en.py "
                "(extracted with Python's ast: ACTION_DESCRIPTION[2] and GUESS_DESCRIPTION[2], each a "
                "`TEMPLATE % (...)` of the module's literals, formatted as Python formats them)")


def _resolve(node: ast.AST, values: dict[str, Any]) -> Any:
    if isinstance(node, ast.Name):
        if node.id not in values:
            raise ValueError(f"line {node.lineno}: {node.id} is not a module-level literal")
        return values[node.id]
    return ast.literal_eval(node)


def _described(node: ast.AST, values: dict[str, Any]) -> dict[str, str]:
    """``{2: TEMPLATE % (A, B, C)}`` -> ``{"2": TEMPLATE % (a, b, c)}``, evaluating only ``%`` of literals."""
    if not isinstance(node, ast.Dict):
        raise ValueError(f"line {node.lineno}: expected a dict of stage -> TEMPLATE % (...)")
    out: dict[str, str] = {}
    for key, value in zip(node.keys, node.values):
        if not (isinstance(value, ast.BinOp) and isinstance(value.op, ast.Mod)):
            raise ValueError(f"line {value.lineno}: expected TEMPLATE % (...)")
        template = _resolve(value.left, values)
        args = value.right.elts if isinstance(value.right, ast.Tuple) else [value.right]
        if not isinstance(template, str):
            raise ValueError(f"line {value.lineno}: the template is not a string")
        try:
            out[str(ast.literal_eval(key))] = template % tuple(_resolve(a, values) for a in args)
        except TypeError as exc:  # the template's %-fields and the arguments disagree
            raise ValueError(f"line {value.lineno}: {exc}") from None
    return out


def derive_prompts(source: bytes) -> bytes:
    """Derive ``prompts.json`` from the text of AgentBench.old's card-game ``prompt/en.py``.

    Reads with :mod:`ast` (nothing of the module runs) its top-level literal assignments (the format
    dicts, ``fish_description``, the ``ACTION_PROMPT`` / ``GUESS_RULE`` / ``GUESS_PROMPT`` strings) and
    evaluates the ``%`` formatting of ``ACTION_DESCRIPTION`` and ``GUESS_DESCRIPTION`` as the module's
    import does (a dict is formatted as its ``str``). Returns JSON ``{"source", "action_rules",
    "guess_rules"}`` (stage 2's texts). ``ValueError`` when the module is not of that shape.
    """
    tree = pysource.parse(source.decode("utf-8"))
    values: dict[str, Any] = {}
    described: dict[str, ast.AST] = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        name = node.targets[0].id
        if name in ("ACTION_DESCRIPTION", "GUESS_DESCRIPTION"):
            described[name] = node.value
            continue
        try:
            values[name] = ast.literal_eval(node.value)
        except ValueError:
            continue  # not a literal: nothing the descriptions may use
    texts = {}
    for name, field in (("ACTION_DESCRIPTION", "action_rules"), ("GUESS_DESCRIPTION", "guess_rules")):
        if name not in described:
            raise ValueError(f"the prompt module has no `{name} = {{...}}`")
        stages = _described(described[name], values)
        if STAGE_KEY not in stages:
            raise ValueError(f"{name} has no stage {STAGE_KEY} text")
        texts[field] = stages[STAGE_KEY]
    return json.dumps({"source": _SOURCE_NOTE, **texts}, indent=1).encode("utf-8")


def upstream_rules(data_dir: Path | None = None) -> dict[str, str] | None:
    """``{"action_rules", "guess_rules"}`` from ``<data dir>/cardgame/prompts.json``; ``None`` when the
    file is absent. ``ValueError`` naming the fix when it is there but not a derived prompts file."""
    path = DATASET.path(data_dir) / PROMPT_FILE
    if not path.is_file():
        return None
    try:
        texts = json.loads(path.read_text(encoding="utf-8"))
        if not all(isinstance(texts.get(k), str) and texts[k] for k in ("action_rules", "guess_rules")):
            raise ValueError("no action_rules / guess_rules strings")
    except (ValueError, AttributeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not a card-game prompts file ({exc}); run `agent-gym data fetch cardgame` "
                         "to derive it again, or delete it to play with our wording of the rules") from None
    return {"action_rules": texts["action_rules"], "guess_rules": texts["guess_rules"]}


def prompts_file_state(data_dir: Path | None = None) -> dict[str, Any]:
    """For provenance: ``{"path", "sha256", "upstream"}`` of ``prompts.json`` (``upstream``: its sha256 is
    the declared derived one), or ``{"path", "state": "absent"}``."""
    path = DATASET.path(data_dir) / PROMPT_FILE
    if not path.is_file():
        return {"path": str(path), "state": "absent"}
    digest = sha256_of(path)
    return {"path": str(path), "sha256": digest, "upstream": digest == DATASET.files[0].derived_sha256}
