"""AgentBench OS-interaction problems, read as upstream reads them: ``test`` (the paper's 144,
upstream's ``std``), ``dev`` (AgentBench.old's 26), ``train`` (AgentBench main's 1000), or a user's file.

Each problem has a description, optional ``init`` scripts (run in the fresh sandbox before the
agent starts), an optional ``start`` script (typed into the agent's shell first) and an
evaluation: ``match`` (the answer compared as a string) or ``check`` (scripts run in the same
sandbox after the episode; a ``None`` entry means "run the example solution"). Loading follows
``AgentBench.old/src/tasks/os_interaction/task.py:_load_configs``: files in groups 1..7, in each
file the match problems before the check problems; quirks kept (the ``local`` image key is
ignored, a ``create`` that is not an object means no init script, an ``example`` outside
``evaluation`` is not used).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from agent_gym.data import DataFile, Dataset, require

_BASE = "https://raw.githubusercontent.com/THUDM/AgentBench/v0.2/data/os_interaction/"
_FILES = (  # (path in the dataset folder, sha256); the checksums of ../shared/data/MANIFEST.tsv
    ("data/os_interaction/data/1/stock.json", "e52d47b06201d9cad170f446429cc384541a5344fbed1cf478d99cd357508040"),
    ("data/os_interaction/data/2/environment.json", "4aea8438c25429144b856acb2159aab16d773519f29890dab156f04f38fdf2d5"),
    ("data/os_interaction/data/3/ac.json", "bc80aa92e75142b18b8c8158a2e059a45f158b303bea7249eaec1d0325e81b81"),
    ("data/os_interaction/data/4/N11.json", "fd288d038814c5ded8943763f96e001a3e36d5d3c7e7cca52dcd64ffe7f7241a"),
    ("data/os_interaction/data/4/N225.json", "36e92aeb36140d2c751558d7a63fc8e6275574e213789465fabbcffad64e94a2"),
    ("data/os_interaction/data/4/N37.json", "7372923d614b249e560311c1e61b1ab12afa1d5cbd955e77465d6abd74e9ddaf"),
    ("data/os_interaction/data/4/N4.json", "9a81d1f035de9de4a1495abcc85f7cede6f2c53783162f280ea98c76869f4393"),
    ("data/os_interaction/data/4/N41.json", "eb179d6da5e905031a2fe3f2709ee5c3673f8066f484ba4d8e69952891ab165e"),
    ("data/os_interaction/data/4/Q09.json", "757d5be008acc9eaedb664b053f324ab7d80da985453f3cf9921b18c61c7da94"),
    ("data/os_interaction/data/4/Q19.json", "c80d9180a794f7c574cce319b23b335329e03caa553b51449cbda832589a932b"),
    ("data/os_interaction/data/4/Q30.json", "d63aae719a83d31b7d632848930ab8b8cba3cd0582b579cfdb7f0b579958bb0e"),
    ("data/os_interaction/data/4/Q47.json", "b79657df4e238eaa0c6d26f27649deef70207123291a5206edf3f0b98eb7856c"),
    ("data/os_interaction/data/4/Q49.json", "a5c32d5e0da858077913d7e5006f2d32ad1ea1aa69cc5b9f21ad1d74082e5114"),
    ("data/os_interaction/data/5/new.json", "735d0c0b3aa8fd1bef0d969470a2ac44c0af92542365c05c5f89ce3ddb47801e"),
    ("data/os_interaction/data/6/new.json", "0c3234d860953ece19bf07e1f89c1d18048b1c7095f419c6d1eeaec64f7bf433"),
    ("data/os_interaction/data/7/bootstrap.json", "8cd69d924fbd627d341458287b5eb3780e095f0f25459fb0d8c45ae9031ab986"),
    ("data/os_interaction/scripts/1/check/integer-match.py", "1f1fd1b34581794346c577bea54d50c87a547f483e552259cb66563c25f5fed8"),
    ("data/os_interaction/scripts/1/check/string-match.py", "c0afd9384f5c2e492b5c158731e5fefb000692c4ba6a6be89f168aca7e89faec"),
    ("data/os_interaction/scripts/1/init/stock-log.sh", "2fc591294f8db0333a95bb382f7e83776ccc6143cca122acc201e8d4222da9fc"),
    ("data/os_interaction/scripts/2/check/integer-match.py", "1f1fd1b34581794346c577bea54d50c87a547f483e552259cb66563c25f5fed8"),
    ("data/os_interaction/scripts/2/check/string-match.py", "c0afd9384f5c2e492b5c158731e5fefb000692c4ba6a6be89f168aca7e89faec"),
    ("data/os_interaction/scripts/2/init/nested_folders.sh", "541a2a42507855a5b9b2f01a6ef3d17345a5d27e53233276ecb5be495d7705f2"),
    ("data/os_interaction/scripts/3/check/integer-match.py", "1f1fd1b34581794346c577bea54d50c87a547f483e552259cb66563c25f5fed8"),
    ("data/os_interaction/scripts/3/check/string-match.py", "c0afd9384f5c2e492b5c158731e5fefb000692c4ba6a6be89f168aca7e89faec"),
    ("data/os_interaction/scripts/4/check/integer-match.py", "1f1fd1b34581794346c577bea54d50c87a547f483e552259cb66563c25f5fed8"),
    ("data/os_interaction/scripts/4/check/string-match.py", "c0afd9384f5c2e492b5c158731e5fefb000692c4ba6a6be89f168aca7e89faec"),
    ("data/os_interaction/scripts/5/check/integer-match.py", "1f1fd1b34581794346c577bea54d50c87a547f483e552259cb66563c25f5fed8"),
    ("data/os_interaction/scripts/5/check/size-match.py", "b0d6ed977b4802f01725edd90c96f056021a75fe09ebf890a1a3a01dfc934b29"),
    ("data/os_interaction/scripts/5/checking/0.sh", "8ddd84de17464a4b6a37e96f5d6ac937ce1dd5c5196eed78bd5a55487d5b67d1"),
    ("data/os_interaction/scripts/5/checking/1.sh", "65ee4f3754ec893af569af2a8d97c232e2952cb884238b3dbf94e34e4001835c"),
    ("data/os_interaction/scripts/5/checking/2.sh", "1c06c3f29f90b9dd728faf14540bd9602f077af6777baf2c1fe13ae0b5e23285"),
    ("data/os_interaction/scripts/5/example/0.sh", "23970a83ef56b0b17071f3408f5ac5e81fd9108df800ca2d33144c203eabd332"),
    ("data/os_interaction/scripts/5/example/1.sh", "099440ccb493c66235ed6ddbfd81d83bfb56240bb1f88ebe4b775582e53dc9f3"),
    ("data/os_interaction/scripts/5/example/2.sh", "d21b7deca845f6d815ae7bf6656952a4082046dab0a8c856f9e89d0bce396e86"),
    ("data/os_interaction/scripts/7/check/integer-match.py", "1f1fd1b34581794346c577bea54d50c87a547f483e552259cb66563c25f5fed8"),
)
# AgentBench.old's dev split (26 problems and the scripts they name), as the AgentTuning repository pins it
_OLD_BASE = ("https://raw.githubusercontent.com/THUDM/AgentTuning/e33a45d7eab2b63cac4d1956da1e6377fca9fcc7/"
             "AgentBench.old/data/os_interaction/")
DEV_FILE = "data/os_interaction/data/dev.json"
DEV_SCRIPTS = "data/os_interaction/scripts/dev"
_DEV_FILES = (
    (DEV_FILE, "c5554248e6c1cb606e27d2f81025b751a490c9a5ccd37aabf4c86879a52e9274"),
    (f"{DEV_SCRIPTS}/check/0.sh", "bc75b2778c644ec42abb46abec6eadf52812f10c02255a1c3b2b55c3ced0ae0c"),
    (f"{DEV_SCRIPTS}/check/integer-match.py", "1f1fd1b34581794346c577bea54d50c87a547f483e552259cb66563c25f5fed8"),
    (f"{DEV_SCRIPTS}/check/size-match.py", "b0d6ed977b4802f01725edd90c96f056021a75fe09ebf890a1a3a01dfc934b29"),
    (f"{DEV_SCRIPTS}/check/string-match.py", "c0afd9384f5c2e492b5c158731e5fefb000692c4ba6a6be89f168aca7e89faec"),
    (f"{DEV_SCRIPTS}/example/0.sh", "23970a83ef56b0b17071f3408f5ac5e81fd9108df800ca2d33144c203eabd332"),
    (f"{DEV_SCRIPTS}/init/stock-log.sh", "2fc591294f8db0333a95bb382f7e83776ccc6143cca122acc201e8d4222da9fc"),
)
# AgentBench main's training pool (1000 check problems, 2025): its entries name check/{integer,string,size}-match.py,
# which we resolve against group 1's script folder (the same bytes in every group of upstream's).
TRAIN_SCRIPTS = "data/os_interaction/scripts/1"
TRAIN_SIZE_MATCH = (f"{TRAIN_SCRIPTS}/check/size-match.py",
                    "b0d6ed977b4802f01725edd90c96f056021a75fe09ebf890a1a3a01dfc934b29")
TRAIN_FILE = "extra_main_branch/os_training_0317.json"
_TRAIN_URL = ("https://raw.githubusercontent.com/THUDM/AgentBench/5bf4eb27f05bc50ca97dce45f0693c6018875c25/"
              "data/os_interaction/train_0317/training.json")
_TRAIN_SHA256 = "35cbd6cc07646eab32161d64260bbcc4d0cab145a7caae69c236320a9d7c7685"
PROMPTS_FILE = "agentbench_old_prompts.json"

DATASET = Dataset(
    name="agentbench_os",
    root="agentbench",
    files=(
        # extracted verbatim from AgentBench.old's task code (see the data folder's PROVENANCE.md)
        DataFile(PROMPTS_FILE, sha256="352784b5a358e483ab0fc501fc92d8bd6ee94337dd0edac957d949f0146ff2de"),
        *(DataFile(path, url=_BASE + path.removeprefix("data/os_interaction/"), sha256=sha) for path, sha in _FILES),
        *(DataFile(path, url=_OLD_BASE + path.removeprefix("data/os_interaction/"), sha256=sha, optional=True)
          for path, sha in _DEV_FILES),
        DataFile(TRAIN_FILE, url=_TRAIN_URL, sha256=_TRAIN_SHA256, optional=True),
        DataFile(TRAIN_SIZE_MATCH[0], url=_BASE + TRAIN_SIZE_MATCH[0].removeprefix("data/os_interaction/"),
                 sha256=TRAIN_SIZE_MATCH[1], optional=True),
    ),
    description="AgentBench OS interaction: the test split (upstream's std: 144 problems), the dev split (26), "
                "AgentBench main's training pool (1000), their scripts, and the OS prompt",
    license="Apache-2.0",
    homepage="https://github.com/THUDM/AgentBench",
)

GROUPS = ("1", "2", "3", "4", "5", "6", "7")
SPLITS = ("test", "dev", "train")


@dataclasses.dataclass(frozen=True)
class Script:
    """A script in one of upstream's languages (``bash``, ``python``, ``c``, ``c++``)."""

    language: str
    code: str


@dataclasses.dataclass(frozen=True)
class Problem:
    id: str  # "<group>/<file stem>-<index in file>", e.g. "4/N41-2"
    description: str
    init: tuple[Script, ...] = ()
    start: Script | None = None
    match: dict[str, Any] | None = None  # {"answer": str} or {"regex": str}, and "strip" (bool)
    check: tuple[Script | None, ...] = ()  # None: run the example and pass its output on
    example: Script | None = None
    labels: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        """``match``, ``check`` (compared with the example's output) or ``state`` (a custom check)."""
        if self.match is not None:
            return "match"
        return "check" if self.check and self.check[0] is None else "state"


def _script(obj: Any, script_dir: Path) -> Script | None:
    if obj is None:
        return None
    if isinstance(obj, str):
        return Script("bash", obj)
    language = obj.get("language", "bash")
    if "file" in obj:
        return Script(language, (script_dir / obj["file"]).read_text(encoding="utf-8"))
    if "code" in obj:
        return Script(language, obj["code"])
    raise ValueError(f"script object without 'file' or 'code': {obj!r}")


def _problem(pid: str, item: dict[str, Any], script_dir: Path) -> Problem:
    create = item.get("create")
    init: tuple[Script, ...] = ()
    if isinstance(create, dict) and "init" in create:
        raw = create["init"] if isinstance(create["init"], list) else [create["init"]]
        init = tuple(s for s in (_script(o, script_dir) for o in raw) if s is not None)
    evaluation = item["evaluation"]
    match = check = None
    if "match" in evaluation:
        match = evaluation["match"]
        if isinstance(match, str):
            match = {"answer": match, "strip": True}
        elif isinstance(match, dict) and ("answer" in match or "regex" in match):
            # A dict without "strip" compares the answer as given (strip = False). Upstream reads
            # match["strip"] unconditionally: a KeyError that fails the problem for every answer.
            match = {"strip": False, **match}
        else:
            raise ValueError(f"problem {pid}: evaluation.match must be a string or an object with "
                             f"'answer' or 'regex' (and optional 'strip'), got {match!r}")
    elif "check" in evaluation:
        raw = evaluation["check"] if isinstance(evaluation["check"], list) else [evaluation["check"]]
        check = tuple(_script(o, script_dir) for o in raw)
    else:
        raise ValueError(f"problem {pid}: evaluation needs 'match' or 'check'")
    example = _script(evaluation["example"], script_dir) if "example" in evaluation else None
    return Problem(
        id=pid, description=item["description"], init=init,
        start=_script(item["start"], script_dir) if "start" in item else None,
        match=match, check=check or (), example=example, labels=tuple(item.get("labels", ())),
    )


def load_file(path: Path, script_dir: Path | None = None, prefix: str | None = None) -> list[Problem]:
    """The problems of one upstream problems file (``.json``: a list or one object; ``.jsonl``: one a
    line), as ``_load_configs`` reads it: match problems first, then check problems, each in file
    order. Script ``file`` paths resolve against ``script_dir`` (default: the file's folder); ids
    are ``"<prefix>-<index in file>"`` (default prefix: the file's stem)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        items = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        raw = json.loads(text)
        if not isinstance(raw, (list, dict)):
            raise ValueError(f"{path}: a problems file holds a list of problems or one problem, "
                             f"not {type(raw).__name__}")
        items = raw if isinstance(raw, list) else [raw]
    script_dir = path.parent if script_dir is None else Path(script_dir)
    prefix = path.stem if prefix is None else prefix
    parsed = [_problem(f"{prefix}-{i}", item, script_dir) for i, item in enumerate(items)]
    return [p for p in parsed if p.match is not None] + [p for p in parsed if p.match is None]


def load(split: str = "test") -> list[Problem]:
    """The problems of a split in upstream's order. ``test`` (upstream's ``std``): groups 1..7, files
    sorted, ids ``"<group>/<stem>-<index>"``; ``dev``: AgentBench.old's dev.json, ids ``"dev-<index>"``;
    ``train``: AgentBench main's training pool, ids ``"train-<index>"``."""
    if split == "dev":
        base = require("agentbench_os", *(p for p, _ in _DEV_FILES))
        return load_file(base / DEV_FILE, base / DEV_SCRIPTS, "dev")
    if split == "train":
        base = require("agentbench_os", TRAIN_FILE, TRAIN_SIZE_MATCH[0])
        return load_file(base / TRAIN_FILE, base / TRAIN_SCRIPTS, "train")
    if split != "test":
        raise ValueError(f"unknown split {split!r}; the OS task has {', '.join(SPLITS)}")
    base = require("agentbench_os") / "data" / "os_interaction"
    problems: list[Problem] = []
    for group in GROUPS:
        for path in sorted((base / "data" / group).glob("*.json")):
            problems += load_file(path, base / "scripts" / group, f"{group}/{path.stem}")
    return problems


def prompts() -> dict[str, Any]:
    """AgentBench's OS prompt strings: ``system_prompt`` (the instruction) and ``ONE_SHOT``."""
    path = require("agentbench_os") / PROMPTS_FILE
    return json.loads(path.read_text(encoding="utf-8"))["os_interaction"]
