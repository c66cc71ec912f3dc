"""Rollouts: concurrent, written as they end, resumable after SIGKILL with nothing lost or doubled;
errors played again on resume, setups that cannot work refused before the first episode, Ctrl-C."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import gymnasium as gym
import pytest

from agent_gym.core import Begin, Outcome, TextEnv
from agent_gym.policy import ContextLimitExceeded
from agent_gym.policies.simple import ReplayPolicy
from agent_gym.rollout import RunSetupError, finished_ids, plan, rollout
from agent_gym.trajectory import read_jsonl
from agent_gym.testing import need_data


@dataclasses.dataclass(frozen=True)
class Item:
    id: str


class ToyEnv(TextEnv):
    """Ten one-turn tasks with no data and no engine: the reply "ok" scores 1 on even task ids."""

    task_name = "toy"
    max_turns = 1

    @classmethod
    def load_tasks(cls, split):
        return [Item(str(i)) for i in range(10)]

    def _begin(self, task):
        return Begin(observation=f"Task {task.id}: say ok.")

    def _act(self, action):
        ok = action == "ok" and int(self.task.id) % 2 == 0
        return Outcome("Done.", score=float(ok), success=ok, done=True)


TOY = "Toy/Toy-v0"
if TOY not in gym.registry:
    gym.register(TOY, entry_point=ToyEnv)


class Say:
    """A policy that always replies ``text``; ``fail`` makes it raise (a backend fault)."""

    def __init__(self, text="ok", name="say", fail=None):
        self.text, self.name, self.fail = text, name, fail

    def reset(self, info):
        pass

    def act(self, observation, info):
        if self.fail and self.fail(info):
            raise RuntimeError("backend fault injected")
        return self.text

RUNNER = textwrap.dedent("""
    import sys, time
    from agent_gym.policies.simple import ReplayPolicy
    from agent_gym.rollout import plan, rollout

    def slow_expert(env, **_):
        def replies(info):
            time.sleep(0.05)
            return env.unwrapped.expert_replies(env.unwrapped.task)
        return ReplayPolicy(replies)

    rollout(plan(["AgentTuning/GSM8K-v0"], episodes=200), slow_expert, output=sys.argv[1], concurrency=8,
            progress=False)
""")


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_sigkill_midway_then_resume_gives_exactly_200_distinct_episodes(tmp_path):
    need_data("gsm8k")
    out = tmp_path / "run.jsonl"
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    proc = subprocess.Popen([sys.executable, str(script), str(out)], env=os.environ.copy())
    deadline = time.time() + 60
    while _lines(out) < 60 and time.time() < deadline:  # let it get well into the run
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _lines(out)
    assert 0 < killed_at < 200, "the kill must land midway"

    subprocess.run([sys.executable, str(script), str(out)], check=True, env=os.environ.copy())
    trajs = list(read_jsonl(out))
    ids = [t.episode_id for t in trajs]
    assert len(ids) == 200 and len(set(ids)) == 200
    assert {t.task_id for t in trajs} == {str(i) for i in range(200)}
    assert all(t.score == 1.0 for t in trajs)


def test_torn_last_line_is_cut_and_the_episode_rerun(tmp_path):
    need_data("gsm8k")
    out = tmp_path / "run.jsonl"
    rollout(plan(["AgentTuning/GSM8K-v0"], episodes=5), "expert", output=out, progress=False)
    data = out.read_bytes()
    out.write_bytes(data[: len(data) - 40])  # a write cut short by a crash
    assert len(finished_ids(out)) == 4
    result = rollout(plan(["AgentTuning/GSM8K-v0"], episodes=5), "expert", output=out, progress=False)
    assert result.skipped == 4 and len(result.trajectories) == 1
    assert len([json.loads(l) for l in out.read_text().splitlines()]) == 5


def test_a_failing_episode_is_recorded_as_error_and_the_run_goes_on(tmp_path):
    need_data("gsm8k")

    class Flaky(ReplayPolicy):
        def act(self, observation, info):
            if info["task_id"] in ("1", "3"):
                raise RuntimeError("backend exploded")
            return super().act(observation, info)

    result = rollout(plan(["AgentTuning/GSM8K-v0"], episodes=6),
                     lambda env, **_: Flaky(lambda info: env.unwrapped.expert_replies(env.unwrapped.task)),
                     output=tmp_path / "r.jsonl", concurrency=3, progress=False)
    by_task = {t.task_id: t for t in result.trajectories}
    assert len(by_task) == 6
    assert by_task["1"].status == "error" and "backend exploded" in by_task["1"].error
    assert by_task["0"].status == "completed" and by_task["0"].score == 1.0


def test_context_overflow_ends_the_episode_with_its_status(tmp_path):
    need_data("gsm8k")

    class TooLong:
        name = "too-long"

        def reset(self, info):
            pass

        def act(self, observation, info):
            raise ContextLimitExceeded("prompt of 5000 tokens > 4096")

    result = rollout(plan(["AgentTuning/GSM8K-v0"], episodes=2), lambda env, **_: TooLong(), progress=False)
    assert [t.status for t in result.trajectories] == ["agent_context_limit"] * 2


def test_many_episodes_stay_in_flight(tmp_path):
    """32 episodes whose policy waits (as on a server) overlap: counted, not timed (a busy CI machine)."""
    need_data("gsm8k")
    lock = threading.Lock()
    active, most = [0], [0]

    def sleepy(env, **_):
        def replies(info):
            with lock:
                active[0] += 1
                most[0] = max(most[0], active[0])
            time.sleep(0.5)
            with lock:
                active[0] -= 1
            return ["0"]
        return ReplayPolicy(replies)

    result = rollout(plan(["AgentTuning/GSM8K-v0"], episodes=32), sleepy, concurrency=32, progress=False)
    assert len(result.trajectories) == 32
    assert most[0] >= 8, f"at most {most[0]} episodes were in flight at once"


def test_plan_is_reproducible_and_samples_with_the_seed():
    need_data("gsm8k")
    a = plan(["AgentTuning/GSM8K-v0"], episodes=10, sample=True, seed=1)
    b = plan(["AgentTuning/GSM8K-v0"], episodes=10, sample=True, seed=1)
    c = plan(["AgentTuning/GSM8K-v0"], episodes=10, sample=True, seed=2)
    assert a == b and a != c
    assert [e.task for e in plan(["AgentTuning/GSM8K-v0"], episodes=3)] == ["0", "1", "2"]
    assert len({e.episode_id for e in plan(["AgentTuning/GSM8K-v0"], episodes=3, repeats=2)}) == 6


def test_a_broken_env_setup_stops_the_run_before_the_first_episode(tmp_path):
    out = tmp_path / "r.jsonl"
    with pytest.raises(ValueError, match="has no option 'no_such_kwarg'; its options: split, render_mode, tasks_file"):
        rollout(plan([TOY], episodes=2), lambda env, **_: Say(), env_kwargs={"no_such_kwarg": 1}, output=out,
                progress=False)
    assert not out.exists()


class UnconfiguredEnv(ToyEnv):
    """ToyEnv that needs a setting (as WebArena needs its site URLs): ``preflight`` says which."""

    def __init__(self, site_url=None, **kwargs):
        super().__init__(**kwargs)
        self.site_url = site_url

    def preflight(self):
        if not self.site_url:
            raise RuntimeError("no site URL: pass site_url=... or set TOY_SITE")


UNCONFIGURED = "Toy/Unconfigured-v0"
if UNCONFIGURED not in gym.registry:
    gym.register(UNCONFIGURED, entry_point=UnconfiguredEnv)


def test_an_env_whose_preflight_fails_stops_the_run_before_the_first_episode(tmp_path):
    out = tmp_path / "r.jsonl"
    with pytest.raises(RunSetupError, match="TOY_SITE"):
        rollout(plan([UNCONFIGURED], episodes=2), lambda env, **_: Say(), output=out, progress=False)
    assert not out.exists()
    result = rollout(plan([UNCONFIGURED], episodes=2), lambda env, **_: Say(), output=out, progress=False,
                     env_kwargs={"site_url": "http://localhost:1"})
    assert len(result.trajectories) == 2


def test_a_policy_that_cannot_be_built_stops_the_run_with_nothing_recorded(tmp_path):
    from agent_gym.policies.backend import PolicySetupError

    def no_model(env, **_):
        raise PolicySetupError("model folder /models/x not found: pass an existing folder")

    out = tmp_path / "r.jsonl"
    with pytest.raises(RunSetupError, match="^model folder /models/x not found: pass an existing folder$"):
        rollout(plan([TOY], episodes=3), no_model, output=out, progress=False)
    assert not out.exists()


def test_errors_are_played_again_on_resume_and_only_the_newest_record_counts(tmp_path):
    from agent_gym.metrics import load_runs

    out = tmp_path / "r.jsonl"
    first = rollout(plan([TOY], episodes=6), lambda env, **_: Say(fail=lambda info: info["task_id"] in "135"),
                    output=out, concurrency=3, progress=False)
    assert sorted(t.task_id for t in first.errors) == ["1", "3", "5"]
    kept = rollout(plan([TOY], episodes=6), lambda env, **_: Say(), output=out, progress=False, retry_errors=False)
    assert kept.trajectories == [] and len(kept.errors) == 3  # --no-retry-errors: kept, still counted
    again = rollout(plan([TOY], episodes=6), lambda env, **_: Say(), output=out, progress=False)
    assert sorted(t.task_id for t in again.trajectories) == ["1", "3", "5"] and again.retried == 3
    assert again.skipped == 3 and again.errors == []
    assert len(out.read_text().splitlines()) == 9  # append-only: the old error records stay
    stats = {}
    (trajs,) = load_runs([out], stats).values()
    assert len(trajs) == 6 and stats["superseded"] == 3
    assert all(t.status == "completed" for t in trajs)
    nothing = rollout(plan([TOY], episodes=6), lambda env, **_: Say(), output=out, progress=False)
    assert nothing.trajectories == [] and nothing.skipped == 6


def test_resuming_a_file_of_another_agent_is_refused(tmp_path):
    out = tmp_path / "r.jsonl"
    rollout(plan([TOY], episodes=2), lambda env, **_: Say(name="alpha"), output=out, progress=False)
    with pytest.raises(RunSetupError, match=r"holds episodes of alpha, not beta: pass another --output"):
        rollout(plan([TOY], episodes=4), lambda env, **_: Say(name="beta"), output=out, progress=False)
    assert len(out.read_text().splitlines()) == 2


def test_progress_bar_score_counts_resumed_episodes_and_the_one_just_finished(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    rollout(plan([TOY], episodes=2), lambda env, **_: Say(), output=out, progress=False)  # scores 1, 0
    capsys.readouterr()
    rollout(plan([TOY], episodes=3), lambda env, **_: Say(), output=out, progress=True)  # task 2 scores 1
    shown = re.findall(r"score=([\d.]+)%", capsys.readouterr().err)
    assert shown[0] == "50.0" and shown[-1] == "66.7", shown


RUNNER_SIGINT = textwrap.dedent("""
    import dataclasses, os, sys, time
    import gymnasium as gym
    from agent_gym.core import Begin, Outcome, TextEnv
    from agent_gym.rollout import plan, rollout

    @dataclasses.dataclass(frozen=True)
    class Item:
        id: str

    class SlowEnv(TextEnv):
        task_name = "slow"
        max_turns = 1

        @classmethod
        def load_tasks(cls, split):
            return [Item(str(i)) for i in range(40)]

        def _begin(self, task):
            return Begin(observation="Say done.")

        def _act(self, action):
            time.sleep(0.4)
            return Outcome("ok", score=1.0, success=True, done=True)

        def close(self):  # the engine's shutdown: leaves a mark, and hangs when asked to
            with open(os.environ["CLOSED_MARK"], "a") as fh:
                fh.write("closed\\n")
            if os.environ.get("HANG_ON_CLOSE"):
                time.sleep(60)

    gym.register("Toy/Slow-v0", entry_point=SlowEnv)

    class Say:
        name = "say"
        def reset(self, info): pass
        def act(self, observation, info): return "done"

    result = rollout(plan(["Toy/Slow-v0"]), lambda env, **_: Say(), output=sys.argv[1], concurrency=2, progress=False)
    print("interrupted" if result.interrupted else "finished", len(result.trajectories), result.abandoned, flush=True)
    sys.exit(130 if result.interrupted else 0)
""")


def _start_slow_run(tmp_path, hang_on_close=False):
    out, mark, script = tmp_path / "run.jsonl", tmp_path / "closed", tmp_path / "runner.py"
    script.write_text(RUNNER_SIGINT)
    env = {**os.environ, "CLOSED_MARK": str(mark), **({"HANG_ON_CLOSE": "1"} if hang_on_close else {})}
    proc = subprocess.Popen([sys.executable, str(script), str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while _lines(out) < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert _lines(out) >= 2, "the run did not get going"
    return proc, out, mark


def _valid_records(out: Path) -> list[dict]:
    text = out.read_text()
    assert text.endswith("\n")
    records = [json.loads(line) for line in text.splitlines()]
    assert len({r["episode_id"] for r in records}) == len(records)
    return records


def test_first_ctrl_c_keeps_the_finished_cancels_the_rest_closes_engines_and_exits_130(tmp_path):
    proc, out, mark = _start_slow_run(tmp_path)
    proc.send_signal(signal.SIGINT)
    t0 = time.time()
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130 and time.time() - t0 < 5, (proc.returncode, stderr)
    assert "stopping: keeping the finished episodes" in stderr and "Traceback" not in stderr
    kept = len(_valid_records(out))
    done, written, abandoned = stdout.split()
    assert done == "interrupted" and int(written) == kept and 2 <= kept < 40 and int(abandoned) == 40 - kept
    assert mark.read_text().count("closed") >= 1  # the engines were closed


def test_second_ctrl_c_stops_at_once_and_leaves_the_file_whole(tmp_path):
    proc, out, mark = _start_slow_run(tmp_path, hang_on_close=True)
    proc.send_signal(signal.SIGINT)
    deadline = time.time() + 20
    while not mark.exists() and time.time() < deadline:  # the first Ctrl-C got to closing an engine, which hangs
        time.sleep(0.05)
    assert mark.exists() and proc.poll() is None
    proc.send_signal(signal.SIGINT)
    t0 = time.time()
    proc.communicate(timeout=10)
    assert proc.returncode == 130 and time.time() - t0 < 3
    assert 2 <= len(_valid_records(out)) < 40


def test_a_damaged_line_mid_file_is_skipped_and_its_episode_played_again_on_resume(tmp_path, capsys):
    from agent_gym.trajectory import DamagedRecordWarning

    out = tmp_path / "r.jsonl"
    rollout(plan([TOY], episodes=5), lambda env, **_: Say(), output=out, progress=False)
    lines = out.read_bytes().splitlines(keepends=True)
    lost = json.loads(lines[2])["episode_id"]
    lines[2] = lines[2][: len(lines[2]) // 2] + b"\n"  # a record cut in the middle, more lines after it
    out.write_bytes(b"".join(lines))
    capsys.readouterr()
    result = rollout(plan([TOY], episodes=5), lambda env, **_: Say(), output=out, progress=False)
    assert [(d.path, d.line) for d in result.damaged] == [(str(out), 3)]
    assert result.skipped == 4 and [t.episode_id for t in result.trajectories] == [lost]
    assert f"agent-gym: warning: {out} line 3: skipped, not JSON" in capsys.readouterr().err
    with pytest.warns(DamagedRecordWarning, match=r"line 3: skipped"):  # the damaged line stays, and is named
        assert finished_ids(out) == {e.episode_id for e in plan([TOY], episodes=5)}


def test_a_second_rollout_on_an_output_in_use_is_refused_and_writes_nothing(tmp_path):
    import threading

    out = tmp_path / "r.jsonl"
    started, release = threading.Event(), threading.Event()

    class Waits(Say):
        def reset(self, info):
            started.set()
            release.wait(30)

    first = threading.Thread(target=rollout, args=(plan([TOY], episodes=3), lambda env, **_: Waits()),
                             kwargs={"output": out, "progress": False, "handle_sigint": False})
    first.start()
    try:
        assert started.wait(30)
        with pytest.raises(RunSetupError, match=r"is being written by another agent-gym run .*pass another --output"):
            rollout(plan([TOY], episodes=3), lambda env, **_: Say(), output=out, progress=False)
        assert out.exists() and out.read_bytes() == b""  # the refused run neither wrote nor removed the file
    finally:
        release.set()
        first.join(30)
    assert len(out.read_text().splitlines()) == 3
    assert rollout(plan([TOY], episodes=3), lambda env, **_: Say(), output=out, progress=False).skipped == 3


def test_tasks_files_are_keyed_by_their_digest_so_two_files_share_one_output(tmp_path):
    need_data("gsm8k")
    import hashlib

    out = tmp_path / "r.jsonl"
    files = []
    for name, (q, a) in {"a.jsonl": ("What is 2 + 3?", 5), "b.jsonl": ("What is 4 + 4?", 8)}.items():
        path = tmp_path / name
        path.write_text(json.dumps({"question": q, "answer": f"so\n#### {a}"}) + "\n")
        files.append(path)
    played = []
    for path in files:
        result = rollout(plan(["AgentTuning/GSM8K-v0"], tasks_file=path), "expert", output=out, progress=False,
                         env_kwargs={"tasks_file": str(path)})
        assert result.skipped == 0 and len(result.trajectories) == 1  # b's task "0" is not taken for a's
        played.append(result.trajectories[0])
    digests = [hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in files]
    assert [t.episode_id for t in played] == [f"AgentTuning/GSM8K-v0|custom:{d}|0|0" for d in digests]
    assert [t.score for t in played] == [1.0, 1.0]
    again = rollout(plan(["AgentTuning/GSM8K-v0"], tasks_file=files[0]), "expert", output=out, progress=False,
                    env_kwargs={"tasks_file": str(files[0])})
    assert again.skipped == 1 and again.trajectories == []  # the same file resumes
