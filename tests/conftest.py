"""Test-suite setup: task data comes through the data layer.

When ``AGENT_GYM_DATA`` is not set, the suite imports ``../shared/data`` (the developers'
read-only copy of the upstream data) into a private data directory, exactly as a user runs
``agent-gym data import``. Tests that need data a machine lacks are skipped, unless
``AGENT_GYM_REQUIRE_DATA=1`` (set by CI), where they fail (``agent_gym.testing.need_data``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from agent_gym.testing import need_data

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

if not os.environ.get("AGENT_GYM_DATA"):
    _tmp = Path(tempfile.mkdtemp(prefix="agent-gym-test-data-"))
    os.environ["AGENT_GYM_DATA"] = str(_tmp)
    if SHARED_DATA.is_dir():
        import agent_gym  # noqa: F401  (registers the datasets)
        from agent_gym.data import import_local

        import_local(SHARED_DATA, data_dir=_tmp, link=True, verify=False)


# WebShop's catalogue could not be had (../shared/data/README.md): envs made without catalogue= play our
# fixture catalogue, written in WebShop's scraped format and read by the same loader
if not (Path(os.environ["AGENT_GYM_DATA"]) / "webshop" / "items_shuffle_1000.json").is_file():
    os.environ.setdefault("AGENT_GYM_WEBSHOP_CATALOGUE", str(ROOT / "tests/fixtures/webshop/items_shuffle_fixture.json"))


@pytest.fixture
def require_data():
    """``need_data`` as a fixture: ``require_data("gsm8k")``."""
    return need_data


# ------------------------------------------------------------------ running in several processes (pytest-xdist)
# ``pytest -n 2``: a test marked ``exclusive`` runs while no other worker runs a test. Those are the tests
# that look at the whole machine (processes by uid, pids in /proc, stale engine folders another start sweeps)
# or bound a wall-clock time another worker's load would stretch. Every other test holds a shared lock
# (fcntl.flock on one file per run) from its fixtures' setup to their teardown; an exclusive one the
# exclusive lock. ``--dist loadfile`` keeps each module on one worker: its module-scoped engines and servers
# start once, and tests that share an order (the AgentTuning README's commands) keep it. (``xdist_group``
# does nothing under pytest 9.2 with pytest-xdist 3.8: xdist renames ``item._nodeid``, which pytest no longer reads.)
_RUN_LOCKS = None


def _run_locks():
    """(gate, lock): two open files shared by this run's workers; None in one process."""
    global _RUN_LOCKS
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None:  # one process: nothing to share
        return None
    if _RUN_LOCKS is None:
        base = Path(tempfile.gettempdir()) / f"agent-gym-pytest-{run}"
        _RUN_LOCKS = tuple(open(f"{base}.{name}", "a+b") for name in ("gate", "lock"))  # noqa: SIM115
    return _RUN_LOCKS


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    import fcntl

    locks = _run_locks()
    if locks is None:
        yield
        return
    gate, lock = locks
    # through the gate first: an exclusive test waiting for the lock holds the gate, so the other worker
    # cannot take the shared lock again between its tests (flock itself lets new shared holders pass a waiter)
    fcntl.flock(gate, fcntl.LOCK_EX)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX if item.get_closest_marker("exclusive") else fcntl.LOCK_SH)
    finally:
        fcntl.flock(gate, fcntl.LOCK_UN)
    try:
        yield
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)


#: Modules by their time in CI (pytest's --durations), heaviest first. Under ``-n 2 --dist loadfile`` the workers
#: take modules in this order, so a run does not end on one long module while the other worker idles. A stale list
#: only costs time: modules not named keep their collection order, after these.
HEAVY_FIRST = (
    "tests/envs/test_sciworld.py", "tests/test_agenttuning_readme.py", "tests/envs/test_os.py",
    "tests/test_train_grpo.py", "tests/envs/test_alfworld.py", "tests/test_protocol.py",
    "tests/policies/test_react.py", "tests/policies/test_local_cache.py", "tests/envs/test_miniwob.py",
    "tests/policies/test_serve.py", "tests/envs/test_mt_bench.py", "tests/envs/test_db.py",
)


def pytest_configure(config):
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist's controller: our order, not by test count
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    if os.environ.get("PYTEST_XDIST_WORKER"):  # every worker sorts alike: xdist checks they collected the same
        rank = {module: i for i, module in enumerate(HEAVY_FIRST)}
        items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(HEAVY_FIRST)))
