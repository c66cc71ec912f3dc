"""Rollouts: concurrent, written as they end, resumable after SIGKILL with nothing lost or doubled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path


from agent_gym.policy import ContextLimitExceeded
from agent_gym.policies.simple import ReplayPolicy
from agent_gym.rollout import finished_ids, plan, rollout
from agent_gym.trajectory import read_jsonl
from agent_gym.testing import need_data

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


def test_a_broken_env_setup_is_an_error_episode(tmp_path):
    need_data("gsm8k")
    result = rollout(plan(["AgentTuning/GSM8K-v0"], episodes=2), "expert", env_kwargs={"no_such_kwarg": 1},
                     progress=False)
    assert [t.status for t in result.trajectories] == ["error"] * 2
    assert "no_such_kwarg" in result.trajectories[0].error


def test_many_episodes_stay_in_flight(tmp_path):
    need_data("gsm8k")

    def sleepy(env, **_):
        def replies(info):
            time.sleep(0.2)
            return ["0"]
        return ReplayPolicy(replies)

    t0 = time.perf_counter()
    rollout(plan(["AgentTuning/GSM8K-v0"], episodes=32), sleepy, concurrency=32, progress=False)
    assert time.perf_counter() - t0 < 32 * 0.2 / 4, "32 sleeping episodes must overlap"


def test_plan_is_reproducible_and_samples_with_the_seed():
    need_data("gsm8k")
    a = plan(["AgentTuning/GSM8K-v0"], episodes=10, sample=True, seed=1)
    b = plan(["AgentTuning/GSM8K-v0"], episodes=10, sample=True, seed=1)
    c = plan(["AgentTuning/GSM8K-v0"], episodes=10, sample=True, seed=2)
    assert a == b and a != c
    assert [e.task for e in plan(["AgentTuning/GSM8K-v0"], episodes=3)] == ["0", "1", "2"]
    assert len({e.episode_id for e in plan(["AgentTuning/GSM8K-v0"], episodes=3, repeats=2)}) == 6
