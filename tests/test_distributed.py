"""Rollouts on worker processes and on Ray actors (issue 14): the same seeded episodes give the same
trajectories as in process, a partial run resumes, a worker killed with SIGKILL mid-episode has its
episode played again on another, and setups that cannot work stop before the first episode.

One local Ray cluster (2 CPUs) serves the module's Ray tests and is shut down after them; its
start takes about 20 s on a loaded 2-core machine.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from agent_gym.cli import main
from agent_gym.rollout import RunSetupError, plan, rollout
from agent_gym.testing import need_data
from agent_gym.trajectory import read_jsonl

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "distributed"
TIMING = ("started_at", "seconds")  # wall-clock fields: the only ones allowed to differ between workers


# with pytest-xdist (tests/conftest.py): a local Ray cluster's start and kills are timed
pytestmark = pytest.mark.exclusive


def comparable(traj) -> dict:
    """A trajectory's record without its timing fields."""
    d = json.loads(json.dumps(traj.to_dict(), default=str))
    for key in TIMING:
        d.pop(key)
    for step in d["steps"]:
        step.pop("seconds")
    return d


def by_episode(trajs) -> dict[str, dict]:
    return {t.episode_id: comparable(t) for t in trajs}


@pytest.fixture(scope="module")
def ray_cluster():
    """A private local Ray cluster; its workers import the test policies from FIXTURES."""
    ray = pytest.importorskip("ray")
    for attempt in (1, 2):
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": str(FIXTURES)}})
            break
        except Exception as exc:  # Ray waits 30 s (fixed) for its raylet: a machine under heavy load misses that
            ray.shutdown()
            if attempt == 2 or "timed out during startup" not in str(exc):
                raise
    yield ray
    ray.shutdown()


@pytest.fixture
def slow_policy(monkeypatch):
    """``slow_policies:slow_expert`` importable here and (sys.path travels) in worker processes."""
    monkeypatch.syspath_prepend(str(FIXTURES))
    return "slow_policies:slow_expert"


@pytest.fixture(scope="module")
def mixed():
    """Two GSM8K problems (no engine) and two ALFWorld games (TextWorld, many turns), and their
    trajectories played in process (threads): the reference."""
    need_data("gsm8k")
    need_data("alfworld")
    need_data("alfworld-agentbench")
    specs = plan(["AgentTuning/GSM8K-v0", "AgentTuning/Alfworld-v0"], episodes=2, seed=7)
    res = rollout(specs, "expert", concurrency=2, progress=False, workers="threads")
    reference = by_episode(res.trajectories)
    assert len(reference) == 4 and all(t["score"] == 1.0 for t in reference.values())
    assert sum(len(t["steps"]) for t in reference.values()) > 10  # ALFWorld's games are many turns
    return specs, reference


def test_same_trajectories_in_process_and_in_worker_processes(mixed, tmp_path):
    specs, reference = mixed
    out = tmp_path / "run.jsonl"
    res = rollout(specs, "expert", output=out, concurrency=2, progress=False, workers="processes")
    assert not res.errors, [t.error for t in res.errors]
    assert by_episode(read_jsonl(out)) == reference


@pytest.mark.slow  # a Ray cluster's start: about 20 s
def test_same_trajectories_in_process_and_on_ray(mixed, ray_cluster, tmp_path):
    specs, reference = mixed
    out = tmp_path / "run.jsonl"
    res = rollout(specs, "expert", output=out, concurrency=2, progress=False, workers="ray")
    assert not res.errors, [t.error for t in res.errors]
    assert by_episode(read_jsonl(out)) == reference
    # a seeded policy: each episode's seed reaches the actor (random replies differ per seed)
    gsm = plan(["AgentTuning/GSM8K-v0"], episodes=3, seed=11)
    here = by_episode(rollout(gsm, "random", progress=False).trajectories)
    there = by_episode(rollout(gsm, "random", concurrency=2, progress=False, workers="ray").trajectories)
    assert there == here
    assert len({t["steps"][0]["action"] for t in here.values()}) == 3


@pytest.mark.slow  # a Ray cluster's start: about 20 s
def test_partial_ray_run_resumes_each_episode_once_and_errors_are_played_again(ray_cluster, tmp_path):
    need_data("gsm8k")
    specs = plan(["AgentTuning/GSM8K-v0"], episodes=6, seed=3)
    out = tmp_path / "run.jsonl"

    def stop_after_two(traj, seen=[]):  # noqa: B006 - a counter for this one run
        seen.append(traj)
        if len(seen) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: the rollout stops, its actors are killed

    first = rollout(specs, "expert", output=out, concurrency=2, progress=False, workers="ray",
                    on_episode=stop_after_two)
    assert first.interrupted and 2 <= len(first.trajectories) < 6
    kept = len(first.trajectories)
    # an episode recorded as an error (a server that was down) is played again on resume
    victim = next(s for s in specs if s.episode_id not in {t.episode_id for t in first.trajectories})
    from agent_gym.rollout import _error_record

    with open(out, "a", encoding="utf-8") as fh:
        from agent_gym.trajectory import dumps

        fh.write(dumps(_error_record(victim, "RuntimeError: the server was down")))
    second = rollout(specs, "expert", output=out, concurrency=2, progress=False, workers="ray")
    assert second.skipped == kept and second.retried == 1 and not second.errors
    assert len(second.trajectories) == 6 - kept
    lines = list(read_jsonl(out))
    assert len(lines) == 6 + 1  # each episode once, plus the superseded error record
    newest = {t.episode_id: t for t in lines}
    assert sorted(newest) == sorted(s.episode_id for s in specs)
    assert all(t.status != "error" and t.score == 1.0 for t in newest.values())


def kill_first_player(pid_dir: Path, killed: list[int], stop: threading.Event) -> threading.Thread:
    """A thread that SIGKILLs the first process that announces an episode (mid-episode: the policy is slow)."""
    def watch() -> None:
        while not stop.is_set():
            pids = sorted(pid_dir.iterdir(), key=lambda p: p.stat().st_mtime)
            if pids:
                pid = int(pids[0].name)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("workers", ["processes", pytest.param("ray", marks=pytest.mark.slow)])
def test_a_worker_killed_mid_episode_has_its_episode_played_on_another(workers, request, slow_policy, tmp_path,
                                                                      capfd):
    if workers == "ray":
        request.getfixturevalue("ray_cluster")
    need_data("gsm8k")
    specs = plan(["AgentTuning/GSM8K-v0"], episodes=5, seed=1)
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    out = tmp_path / "run.jsonl"
    killed: list[int] = []
    stop = threading.Event()
    watcher = kill_first_player(pid_dir, killed, stop)
    try:
        res = rollout(specs, slow_policy, output=out, concurrency=2, progress=False, workers=workers,
                      policy_options={"pid_dir": str(pid_dir), "delay": 1.0})
    finally:
        stop.set()
        watcher.join()
    assert len(killed) == 1, "the watcher never saw an episode start"
    lines = list(read_jsonl(out))
    assert sorted(t.episode_id for t in lines) == sorted(s.episode_id for s in specs)  # each exactly once
    assert all(t.status == "completed" and t.score == 1.0 for t in lines), [t.error for t in lines]
    assert not res.errors and len(res.trajectories) == 5
    assert "playing it again on another" in capfd.readouterr().err


def test_a_ray_address_with_no_cluster_stops_before_the_first_episode(tmp_path, capsys):
    need_data("gsm8k")
    out = tmp_path / "run.jsonl"
    started = time.monotonic()
    code = main(["run", "gsm8k", "-n", "2", "--policy", "expert", "--ray", "127.0.0.1:9", "-o", str(out),
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "no Ray cluster at 127.0.0.1:9" in err and "ray start --head" in err and "--ray local" in err
    assert time.monotonic() - started < 30  # not Ray's minutes of retries
    assert not out.exists()
    assert main(["run", "gsm8k", "-n", "1", "--ray", "auto", "--workers", "threads", "-o", str(out)]) == 2
    assert "leave out --workers threads" in capsys.readouterr().err


def test_worker_setups_that_cannot_work_stop_before_the_first_episode(tmp_path):
    need_data("gsm8k")
    specs = plan(["AgentTuning/GSM8K-v0"], episodes=2)
    out = tmp_path / "run.jsonl"
    # a factory the workers cannot import by name: refused here, nothing started
    with pytest.raises(RunSetupError, match="module:factory"):
        rollout(specs, lambda env, **options: None, output=out, workers="processes", progress=False)
    # a policy whose server is down: the worker's own check, said as the threads say it
    options = {"backend": "tgi", "url": "http://127.0.0.1:9"}
    with pytest.raises(RunSetupError) as here:
        rollout(specs, "react", output=out, policy_options=options, progress=False)
    with pytest.raises(RunSetupError) as there:
        rollout(specs, "react", output=out, policy_options=options, workers="processes", progress=False)
    assert str(there.value) == str(here.value)
    assert not out.exists()


def test_eval_plays_on_the_workers_it_is_given(slow_policy, tmp_path):
    need_data("gsm8k")
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    code = main(["eval", "--suite", "gsm8k", "--policy", slow_policy, "-n", "3", "-c", "2", "--workers", "processes",
                 "--policy-arg", f"pid_dir={pid_dir}", "--policy-arg", "delay=0", "-o", str(tmp_path / "eval"),
                 "--no-plots", "--no-progress"])
    assert code == 0
    players = {int(p.name) for p in pid_dir.iterdir()}
    assert players and os.getpid() not in players  # played in worker processes, not here
    assert len(list(read_jsonl(tmp_path / "eval" / "runs" / "AgentTuning_GSM8K-v0.jsonl"))) == 3
