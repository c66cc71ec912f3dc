"""ALFWorld games (TextWorld ``game.tw-pddl`` files) and AgentBench's game lists and prompts.

Two datasets: ``alfworld`` is ALFWorld's own release (the games, one folder per ALFRED trial,
laid out ``json_2.1.1/<split>/<task dir>/<trial dir>/game.tw-pddl``, and the PDDL domain and
grammar used to generate more); ``alfworld-agentbench`` is AgentBench's game lists (the paper's
50-game test list, the 20-game dev list, the 3150-game training pool) and its one-shot ReAct
prompts (read at run time, never copied into the project).

A game list is AgentBench's format: a JSON object of task-type key -> game paths relative to
ALFWorld's data folder (``"json_2.1.1/valid_unseen/<task dir>/<trial dir>/game.tw-pddl"``);
:func:`load_file` reads one (a user's ``tasks_file`` too).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from agent_gym.data import DataFile, DataMissingError, Dataset, require

# ALFWorld's release archive of TextWorld games (what `alfworld-download` fetches); it unpacks to
# json_2.1.1/{train,valid_seen,valid_unseen}/... No published checksum could be found for it.
TW_PDDL_ARCHIVE = "https://github.com/alfworld/alfworld/releases/download/0.4.0/json_2.1.2_tw-pddl.zip"
_ALFWORLD_RAW = "https://raw.githubusercontent.com/alfworld/alfworld/master/alfworld/data"
_AGENTBENCH_RAW = "https://raw.githubusercontent.com/THUDM/AgentBench/v0.2"
# AgentBench.old as the AgentTuning paper ran it, and AgentBench's main branch (2025, "AgentBench FC"),
# pinned to the commits these files were read at.
_AGENTBENCH_OLD_RAW = ("https://raw.githubusercontent.com/THUDM/AgentTuning/"
                       "e33a45d7eab2b63cac4d1956da1e6377fca9fcc7/AgentBench.old")
_AGENTBENCH_MAIN_RAW = "https://raw.githubusercontent.com/THUDM/AgentBench/5bf4eb27f05bc50ca97dce45f0693c6018875c25"

TEST_LIST = "data/alfworld/standard.json"
DEV_LIST = "data/alfworld/dev.json"
TRAIN_LIST = "extra_main_branch/alfworld_train_valid.json"
REACT_PROMPTS = "alfworld_prompts/alfworld_multiturn_react.json"
#: The first game of the training pool: in ALFWorld's release archive, not in the valid_unseen-only copy.
TRAIN_GAME = "json_2.1.1/train/pick_and_place_simple-Candle-None-Cabinet-418/trial_T20190908_060717_673544/game.tw-pddl"

DATASET = Dataset(
    name="alfworld",
    root="alfworld",
    files=(
        DataFile(
            "json_2.1.1/valid_unseen/look_at_obj_in_light-AlarmClock-None-DeskLamp-308/"
            "trial_T20190908_222917_366542/game.tw-pddl",
            url=TW_PDDL_ARCHIVE,
            extract=True,
        ),
        DataFile(TRAIN_GAME, url=TW_PDDL_ARCHIVE, extract=True, optional=True),  # the train split's games
        DataFile(
            "logic/alfred.pddl",
            url=f"{_ALFWORLD_RAW}/alfred.pddl",
            sha256="f1473041ed01da514de1f87adfd7ef0804862361f83ccf63c75e43633b0eb280",
        ),
        DataFile(
            "logic/alfred.twl2",
            url=f"{_ALFWORLD_RAW}/alfred.twl2",
            sha256="c5b22f0f73309a7fd7c8e5b71de42ad4803b60766ab4a51cc2feb34162be036b",
        ),
    ),
    description="ALFWorld TextWorld games (134 valid_unseen; train/valid_seen in the full release), PDDL domain, grammar",
    license="MIT",
    homepage="https://github.com/alfworld/alfworld",
)

AGENTBENCH_DATASET = Dataset(
    name="alfworld-agentbench",
    root="agentbench",
    files=(
        DataFile(
            TEST_LIST,
            url=f"{_AGENTBENCH_RAW}/data/alfworld/standard.json",
            sha256="4c576333113019a65fef8e0648031a54dd5f75165686e7f3d4e3cfe98e0781df",
        ),
        DataFile(  # AgentBench.old's dev list (20 valid_unseen games; v0.2's copy lacks its final newline)
            DEV_LIST,
            url=f"{_AGENTBENCH_OLD_RAW}/data/alfworld/dev.json",
            sha256="fb3f86be42a97f32cd54f512c687cb095b7951fb644427e840b6dfaade85e319",
            optional=True,
        ),
        DataFile(  # AgentBench main's training pool (3150 games of ALFWorld's train folder)
            TRAIN_LIST,
            url=f"{_AGENTBENCH_MAIN_RAW}/data/alfworld/train_valid.json",
            sha256="504c5725346d7588b1b1a5afe4b1a18c2d5cf5f9520a212c9fd45cc6c42f5bf8",
            optional=True,
        ),
        DataFile(
            "alfworld_prompts/alfworld_multiturn_react.json",
            url=f"{_AGENTBENCH_RAW}/src/server/tasks/alfworld/prompts/alfworld_multiturn_react.json",
            sha256="79a92edddd49691cde9d7a05beda354658355882911fcf5c5a7b38a4777bc3b2",
        ),
    ),
    description="AgentBench's ALFWorld game lists (test: 50 valid_unseen games; dev: 20; train: 3150) "
                "and one-shot ReAct prompts",
    license="Apache-2.0",
    homepage="https://github.com/THUDM/AgentBench",
)

GAME_FILE = "game.tw-pddl"
#: Splits that are AgentBench's game lists: "test" is the paper's protocol.
LIST_SPLITS = {"test": TEST_LIST, "dev": DEV_LIST, "train": TRAIN_LIST}
#: Splits that are every playable game of a json_2.1.1 folder.
FOLDER_SPLITS = ("valid_unseen", "valid_seen")
SPLITS = tuple(LIST_SPLITS) + FOLDER_SPLITS
_FETCH_GAMES = "`agent-gym data fetch alfworld` downloads ALFWorld's release (train, valid_seen, valid_unseen)"
_UNSOLVABLE = b'"solvable": false'  # as alfworld-generate writes it (json.dump)


@dataclasses.dataclass(frozen=True)
class Game:
    """One ALFWorld game: an ALFRED trial turned into a TextWorld game."""

    id: str  # "<task dir>/<trial dir>": the name AgentBench picks the one-shot example by
    path: Path

    @property
    def task_dir(self) -> str:
        return self.id.split("/", 1)[0]

    @property
    def task_type(self) -> str:
        """ALFRED's task type, e.g. ``pick_heat_then_place_in_recep``."""
        return self.task_dir.split("-", 1)[0]

    @property
    def targets(self) -> dict[str, str]:
        """The task's object, movable receptacle, parent (receptacle or lamp) and scene, from the
        ALFRED folder name ``<type>-<object>-<mrecep>-<parent>-<scene>``; empty if it is not one."""
        parts = self.task_dir.split("-")
        if len(parts) != 5:
            return {}
        return dict(zip(("object", "mrecep", "parent", "scene"), parts[1:]))


def _game(path: Path) -> Game:
    return Game(id=f"{path.parent.parent.name}/{path.parent.name}", path=path)


def load(split: str = "test") -> list[Game]:
    """The games of ``split``: one of AgentBench's lists in its order (``test``, ``dev``,
    ``train``), or a json_2.1.1 folder (``valid_unseen``, ``valid_seen``).

    Like ALFWorld's ``AlfredTWEnv``, folder splits leave out "movable" and "Sliced" trials, which
    ALFWorld's TextWorld games do not support, and games its generator marked unsolvable.
    Raises :class:`DataMissingError` (naming the fetch command) when the list or its games are absent.
    """
    if split in LIST_SPLITS:
        listing = require("alfworld-agentbench", LIST_SPLITS[split]) / LIST_SPLITS[split]
        if split == "train" and not (DATASET.path() / "json_2.1.1" / "train").is_dir():
            raise DataMissingError(
                f"ALFWorld's train games (json_2.1.1/train) are not in the data directory; {_FETCH_GAMES}")
        return load_file(listing)
    if split not in FOLDER_SPLITS:
        raise ValueError(f"ALFWorld splits are {list(SPLITS)}, not {split!r}")
    folder = require("alfworld") / "json_2.1.1" / split
    if not folder.is_dir():
        raise DataMissingError(f"ALFWorld split {split!r} is not in the data directory ({folder}); {_FETCH_GAMES}")
    paths = sorted(folder.glob(f"*/*/{GAME_FILE}"))
    paths = [p for p in paths if "movable" not in str(p.parent) and "Sliced" not in str(p.parent)]
    return [_game(p) for p in paths if _UNSOLVABLE not in p.read_bytes()]


def load_file(path: str | Path) -> list[Game]:
    """The games of a list in AgentBench's format, in its order (keys in file order, then each list).

    Paths are joined to ALFWorld's data folder as AgentBench joins them (``os.path.join``: an
    absolute path stays as it is). A plain JSON list of paths is read the same way. Raises
    ``ValueError`` for another shape and :class:`DataMissingError` when a listed game is absent.
    """
    path = Path(path)
    listing = json.loads(path.read_text(encoding="utf-8"))
    groups = listing.values() if isinstance(listing, dict) else [listing]
    rels = [rel for group in groups for rel in (group if isinstance(group, list) else [group])]
    if not isinstance(listing, (dict, list)) or not all(isinstance(r, str) for r in rels):
        raise ValueError(f"{path}: an ALFWorld game list is a JSON object of task type -> list of game paths "
                         '(AgentBench\'s format: {"pick_and_place": '
                         '["json_2.1.1/valid_unseen/<task>/<trial>/game.tw-pddl"]})')
    root = DATASET.path()
    games = [_game(Path(os.path.join(root, rel))) for rel in rels]
    missing = [g.path for g in games if not g.path.is_file()]
    if missing:
        raise DataMissingError(f"{len(missing)} of the {len(games)} ALFWorld games listed in {path} are missing "
                               f"(first: {missing[0]}); {_FETCH_GAMES}")
    return games


def walkthrough(game: Game) -> list[str]:
    """The game's own solution (the commands ALFWorld's expert found when generating it)."""
    data = json.loads(game.path.read_text(encoding="utf-8"))
    return list(data.get("walkthrough") or [])


def react_examples() -> dict[str, list[str]]:
    """AgentBench's one-shot ReAct examples by task key (``put``, ``clean``, ...)."""
    return json.loads((require("alfworld-agentbench") / REACT_PROMPTS).read_text(encoding="utf-8"))
