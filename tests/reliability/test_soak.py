"""Soak (issue 16): many episodes of every env in one process, engines reused, with what the process
holds measured at intervals; and no engine process outlives it, whether it exits normally or is
SIGKILLed.

The soak runs in a child process (``python tests/reliability/_faults.py soak short|full``, the same
code ``benchmarks/bench_soak.py`` runs and prints): 184 episodes of the cheaper envs by default
(GSM8K, MMLU, ReWOO, HotpotQA, KG on its local store, DB on MariaDB, the card game, HumanEval and OS
in bwrap, MiniWoB in Chromium), the full 1000 over all envs (WebShop, ALFWorld, WebArena on a local
site, MT-Bench with the embedded judge and SciWorld's JVM too) with ``AGENT_GYM_FULL=1``.

Bounds, from the end of the first round (every engine up) to the end of the run: open descriptors
+8, threads +4, live child processes +2 short / +8 full (WebArena's Chromium keeps up to ~5 renderers
of earlier pages, then stays flat), resident memory +48 MiB short / +96 MiB full (the Python
process's own; the engines' memory is theirs, and benchmarks/bench_soak.py reports it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

psutil = pytest.importorskip("psutil", reason="the soak counts processes with psutil: pip install -e '.[test]'")
from ._faults import engine_descendants, wait_gone  # noqa: E402

FULL = os.environ.get("AGENT_GYM_FULL") == "1"
RUNNER = Path(__file__).with_name("_faults.py")
# the full run's WebArena Chromium keeps up to ~5 renderers of earlier episodes' pages (36 episodes: flat at +5)
BOUNDS = {"fds": 8, "threads": 4, "children": 8 if FULL else 2, "rss_mib": 96.0 if FULL else 48.0}


# with pytest-xdist (tests/conftest.py): its bounds on open files, threads, RSS and child processes
pytestmark = pytest.mark.exclusive


def _needs() -> None:
    from agent_gym.testing import need_data

    for name in ("gsm8k", "mmlu", "rewoo", "hotpotqa", "agentbench_kg", "dbbench", "agentbench_os", "miniwob"):
        need_data(name)


def _soak(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(RUNNER), "soak", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.mark.slow
def test_a_soak_holds_its_resources_and_leaves_no_engine_behind():
    _needs()
    proc = _soak("full" if FULL else "short")
    try:
        records = [json.loads(line) for line in proc.stdout]
    finally:
        proc.wait(60)
    assert proc.returncode == 0
    done = records[-1]["done"]
    errors = [r["episode"] for r in records if "episode" in r]
    assert not errors, errors
    samples = [r["usage"] for r in records if "usage" in r]
    envs = len(done["statuses"])
    assert sum(sum(s.values()) for s in done["statuses"].values()) == samples[-1]["episodes"]
    base = next(s for s in samples if s["episodes"] >= envs)  # every env has played once: engines up
    last = samples[-1]
    growth = {k: last[k] - base[k] for k in BOUNDS}
    assert all(growth[k] <= bound for k, bound in BOUNDS.items()), (growth, BOUNDS, samples)
    # closing the envs stopped every engine, and none is left once the process has exited
    assert done["engines_after_close"] == {} and done["after_close"]["children"] == 0, done
    seen = {int(p) for r in records if "engines" in r for p in r["engines"]}
    assert {"mariadbd", "chromium", "chromedriver"} <= {n for r in records for n in r.get("engines", {}).values()}
    assert not wait_gone(list(seen), 30)


def test_sigkill_of_the_python_process_leaves_no_engine_behind():
    """mariadbd, chromium, chromedriver, bwrap (and java, full run) all running, then SIGKILL: each dies with it
    (the JVM on its stdin's end, mariadbd by its parent-death signal, the browser by its guard, the
    sandbox by bwrap's --die-with-parent)."""
    _needs()
    need = {"mariadbd", "chromium", "chromedriver", "bwrap"}
    envs = ["AgentTuning/DB-v0", "AgentTuning/MiniWoB-v0", "AgentTuning/OS-v0"]
    if FULL:  # a JVM start is ~30 s more (tests/envs/test_sciworld.py SIGKILLs a process holding one)
        pytest.importorskip("scienceworld")
        need.add("java")
        envs.append("AgentTuning/SciWorld-v0")
    proc = _soak("short", *envs)
    seen: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            now = engine_descendants(proc.pid)
            seen.update(now)
            if need <= set(now.values()):
                break
            time.sleep(0.05)
        assert need <= set(now.values()), f"not every engine ran at once before the deadline: {now}"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert not wait_gone(list(seen), 30), {p: n for p, n in seen.items() if psutil.pid_exists(p)}
