"""Trajectories: JSONL round trip, the conversation, AgentInstruct export and the paper's filter."""

from __future__ import annotations

import json

import pytest

from agent_gym.episode import run_episode
from agent_gym.export import keep, write_agentinstruct
from agent_gym.policies.simple import ReplayPolicy
from agent_gym.trajectory import DamagedLine, Step, Trajectory, read_jsonl, repair_tail, write_jsonl
from agent_gym.testing import need_data


def _traj(score=1.0, status="completed", steps=2) -> Trajectory:
    return Trajectory(
        env_id="AgentTuning/OS-v0", task_id="7", episode_id="e7",
        prompt=[{"role": "user", "content": "instruction"}, {"role": "assistant", "content": "OK"}],
        first_observation="task text",
        steps=[Step(action=f"reply {i}", observation=f"obs {i}", reward=score if i == steps - 1 else 0.0,
                    terminated=i == steps - 1, truncated=False, prompt_tokens=10, completion_tokens=3)
               for i in range(steps)],
        score=score, success=score == 1.0, status=status, policy="react", model="m")


def test_jsonl_round_trip(tmp_path):
    path = tmp_path / "t.jsonl"
    write_jsonl([_traj(), _traj(0.0)], path)
    back = list(read_jsonl(path))
    assert [t.to_dict() for t in back] == [_traj().to_dict(), _traj(0.0).to_dict()]
    assert back[0].prompt_tokens == 20 and back[0].completion_tokens == 6 and back[0].total_reward == 1.0


def test_agentinstruct_marks_loss_on_the_agents_replies_only():
    record = _traj().to_agentinstruct()
    convs = record["conversations"]
    assert [(c["from"], c["loss"]) for c in convs] == [
        ("human", False), ("gpt", False),  # the prompt (instruction + one-shot reply)
        ("human", False), ("gpt", True),   # task, first reply
        ("human", False), ("gpt", True),   # observation, last reply
    ]
    assert [c["value"] for c in convs][2:] == ["task text", "reply 0", "obs 0", "reply 1"]
    assert record["id"] == "os_7"


def test_paper_filter_keeps_full_reward_only(tmp_path):
    trajs = [_traj(1.0), _traj(0.5), _traj(1.0, status="error"), _traj(1.0, status="agent_context_limit")]
    assert [keep(t) for t in trajs] == [True, False, False, False]
    assert keep(_traj(0.5), min_score=0.5)
    n = write_agentinstruct([t for t in trajs if keep(t)] * 2, tmp_path / "ai.jsonl")
    ids = [json.loads(l)["id"] for l in (tmp_path / "ai.jsonl").read_text().splitlines()]
    assert n == 2 and ids == ["os_7", "os_7_1"]


def test_repair_tail_cuts_a_partial_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"a": 1}\n{"b": 2}\n{"c": ')
    repair_tail(path)
    assert path.read_text() == '{"a": 1}\n{"b": 2}\n'
    path.write_text('{"c": ')
    repair_tail(path)
    assert path.read_text() == ""


def test_a_played_episode_records_what_happened():
    import gymnasium as gym

    import agent_gym  # noqa: F401

    need_data("gsm8k")
    env = gym.make("AgentTuning/GSM8K-v0")
    traj = run_episode(env, ReplayPolicy(["so 18"]), task=0, seed=5)
    assert (traj.task_id, traj.score, traj.status, traj.turns, traj.seed) == ("0", 1.0, "completed", 1, 5)
    assert traj.messages()[-1] == {"role": "assistant", "content": "so 18"}
    assert traj.steps[0].info["predicted"] == "18" and traj.seconds > 0


def test_newest_record_of_each_episode_wins_and_the_superseded_are_counted():
    from agent_gym.trajectory import Trajectory, newest

    def rec(episode, status, policy="react", model="m"):
        return Trajectory(env_id="E", task_id=episode, episode_id=episode, prompt=[], first_observation="",
                          status=status, policy=policy, model=model)

    records = [rec("a", "error"), rec("b", "completed"), rec("a", "completed"), rec("a", "completed", model="other")]
    latest, superseded = newest(records)
    assert [(t.episode_id, t.status, t.agent) for t in latest] == [
        ("b", "completed", "react:m"), ("a", "completed", "react:m"), ("a", "completed", "react:other")]
    assert superseded == 1
    assert newest(records, key=lambda t: t.episode_id)[1] == 2


def test_a_damaged_line_is_skipped_and_reported_with_its_file_and_line_and_the_rest_is_read(tmp_path):
    import pytest

    from agent_gym.trajectory import DamagedRecordWarning

    path = tmp_path / "run.jsonl"
    write_jsonl([_traj(), _traj(0.0), _traj(0.5)], path)
    lines = path.read_bytes().splitlines(keepends=True)
    # line 2 overwritten by a disk fault, a stray line 4 and a non-UTF-8 line 5 inserted, a torn last line
    path.write_bytes(lines[0] + b'{"env_id": "AgentTuning/OS-v0", "task_' + b"\x00" * 20 + b"\n" + lines[2]
                     + b'{"not": "a trajectory"}\n' + b"\xff\xfe garbage\n" + b'{"env_id": "AgentTuning/OS')
    damaged: list[DamagedLine] = []
    back = list(read_jsonl(path, damaged))
    assert [t.score for t in back] == [1.0, 0.5]
    assert [(d.path, d.line) for d in damaged] == [(str(path), 2), (str(path), 4), (str(path), 5)]
    assert damaged[0].reason.startswith("skipped, not JSON")
    assert "not a trajectory record" in damaged[1].reason and "not UTF-8" in damaged[2].reason
    assert str(damaged[0]).startswith(f"{path} line 2: skipped, not JSON")
    with pytest.warns(DamagedRecordWarning) as caught:  # nobody collects them: each is a warning
        assert len(list(read_jsonl(path))) == 2
    assert [str(w.message).split(": ")[0] for w in caught] == [f"{path} line {n}" for n in (2, 4, 5)]


@pytest.mark.parametrize("field, value", [("score", "1.0"), ("success", "yes"), ("score", True), ("steps", "none")])
def test_a_record_with_a_field_of_the_wrong_type_is_damaged_not_read(tmp_path, field, value):
    good = Trajectory(env_id="AgentTuning/GSM8K-v0", task_id="0", episode_id="e0", prompt=[], first_observation="q",
                      steps=[Step("a", "o", 1.0, True, False)], score=1.0, success=True, status="completed")
    record = good.to_dict()
    record[field] = value
    path = tmp_path / "run.jsonl"
    path.write_text(json.dumps(good.to_dict()) + "\n" + json.dumps(record) + "\n")
    damaged: list[DamagedLine] = []
    assert [t.score for t in read_jsonl(path, damaged)] == [1.0]
    assert len(damaged) == 1 and field in damaged[0].reason and damaged[0].line == 2
