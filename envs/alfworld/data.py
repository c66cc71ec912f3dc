"""ALFWorld games (TextWorld ``game.tw-pddl`` files) and AgentBench's test list and prompts.

Two datasets: ``alfworld`` is ALFWorld's own release (the games, one folder per ALFRED trial,
laid out ``json_2.1.1/<split>/<task dir>/<trial dir>/game.tw-pddl``, and the PDDL domain and
grammar used to generate more); ``alfworld-agentbench`` is AgentBench's 50-game test list and
its one-shot ReAct prompts (read at run time, never copied into the project).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from agent_gym.data import DataFile, DataMissingError, Dataset, require

# ALFWorld's release archive of TextWorld games (what `alfworld-download` fetches); it unpacks to
# json_2.1.1/{train,valid_seen,valid_unseen}/... No published checksum could be found for it.
TW_PDDL_ARCHIVE = "https://github.com/alfworld/alfworld/releases/download/0.4.0/json_2.1.2_tw-pddl.zip"
_ALFWORLD_RAW = "https://raw.githubusercontent.com/alfworld/alfworld/master/alfworld/data"
_AGENTBENCH_RAW = "https://raw.githubusercontent.com/THUDM/AgentBench/v0.2"

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
            "data/alfworld/standard.json",
            url=f"{_AGENTBENCH_RAW}/data/alfworld/standard.json",
            sha256="4c576333113019a65fef8e0648031a54dd5f75165686e7f3d4e3cfe98e0781df",
        ),
        DataFile(
            "alfworld_prompts/alfworld_multiturn_react.json",
            url=f"{_AGENTBENCH_RAW}/src/server/tasks/alfworld/prompts/alfworld_multiturn_react.json",
            sha256="79a92edddd49691cde9d7a05beda354658355882911fcf5c5a7b38a4777bc3b2",
        ),
    ),
    description="AgentBench's ALFWorld test list (50 valid_unseen games) and one-shot ReAct prompts",
    license="Apache-2.0",
    homepage="https://github.com/THUDM/AgentBench",
)

TEST_LIST = "data/alfworld/standard.json"
REACT_PROMPTS = "alfworld_prompts/alfworld_multiturn_react.json"
GAME_FILE = "game.tw-pddl"
#: Folders of json_2.1.1 a split reads; "test" is AgentBench's list (the paper's protocol).
FOLDER_SPLITS = ("valid_unseen", "valid_seen", "train")
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
    """The games of ``split``: AgentBench's 50-game list in its order, or a json_2.1.1 folder.

    Like ALFWorld's ``AlfredTWEnv``, folder splits leave out "movable" and "Sliced" trials, which
    ALFWorld's TextWorld games do not support, and games its generator marked unsolvable.
    """
    if split == "test":
        root = require("alfworld")
        listing = json.loads((require("alfworld-agentbench") / TEST_LIST).read_text(encoding="utf-8"))
        games = [_game(root / rel) for rels in listing.values() for rel in rels]
        missing = [g.path for g in games if not g.path.exists()]
        if missing:
            raise DataMissingError(
                f"{len(missing)} games of AgentBench's ALFWorld list are missing (first: {missing[0]}); "
                "run `agent-gym data fetch alfworld`"
            )
        return games
    if split not in FOLDER_SPLITS:
        raise ValueError(f"ALFWorld splits are 'test' and {list(FOLDER_SPLITS)}, not {split!r}")
    folder = require("alfworld") / "json_2.1.1" / split
    if not folder.is_dir():
        raise DataMissingError(
            f"ALFWorld split {split!r} is not in the data directory ({folder}); "
            "`agent-gym data fetch alfworld` downloads ALFWorld's full release (train, valid_seen, valid_unseen)"
        )
    paths = sorted(folder.glob(f"*/*/{GAME_FILE}"))
    paths = [p for p in paths if "movable" not in str(p.parent) and "Sliced" not in str(p.parent)]
    return [_game(p) for p in paths if _UNSOLVABLE not in p.read_bytes()]


def walkthrough(game: Game) -> list[str]:
    """The game's own solution (the commands ALFWorld's expert found when generating it)."""
    data = json.loads(game.path.read_text(encoding="utf-8"))
    return list(data.get("walkthrough") or [])


def react_examples() -> dict[str, list[str]]:
    """AgentBench's one-shot ReAct examples by task key (``put``, ``clean``, ...)."""
    return json.loads((require("alfworld-agentbench") / REACT_PROMPTS).read_text(encoding="utf-8"))
