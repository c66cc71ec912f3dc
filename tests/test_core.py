"""The core's own rules on a task env written for the test: splits and their aliases, your own
tasks file, the round limit and end reasons, the decoding hints and provenance in ``info``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from agent_gym.core import (ANSWERED, CUSTOM_SPLIT, END_REASONS, ENV_ERROR, ROUND_LIMIT, Begin, Outcome,
                            TextEnv)


@dataclasses.dataclass(frozen=True)
class Item:
    id: str
    answer: str


class EchoEnv(TextEnv):
    """Guess the word: ``answer X`` ends the episode; ``boom`` makes the engine fail."""

    task_name = "echo"
    splits = ("test", "dev")
    split_aliases = {"std": "test"}
    max_turns = 3
    decoding = {"max_new_tokens": 64, "temperature": 1.0, "top_p": 0.9}
    system_prompt = ""
    paper_options = {"strict": True}

    def __init__(self, split=None, render_mode=None, tasks_file=None, strict: bool = True):
        super().__init__(split, render_mode, tasks_file)
        self.strict = strict

    @classmethod
    def load_tasks(cls, split):
        return [Item(f"{split}/{i}", w) for i, w in enumerate(["apple", "pear"])]

    @classmethod
    def load_tasks_file(cls, path: Path):
        return [Item(r["id"], r["answer"]) for r in map(json.loads, path.read_text().splitlines())]

    def engine_info(self):
        return {"echo": "1.0"}

    def options(self):
        return {"strict": self.strict}

    def _begin(self, task):
        return Begin(observation="Guess the word.")

    def _act(self, action):
        if action == "boom":
            raise RuntimeError("engine died")
        if action.startswith("answer "):
            ok = action[7:] == self.task.answer
            return Outcome("Right." if ok else "Wrong.", score=float(ok), success=ok, done=True)
        return Outcome("Go on.")


def test_split_aliases_name_the_same_split():
    env = EchoEnv(split="std")
    assert env.split == "test"
    _, info = env.reset(options={"task": "test/1", "split": "std"})
    assert info["task_id"] == "test/1"
    with pytest.raises(ValueError, match=r"splits \['test', 'dev'\] \(aliases: std=test\), not 'train'"):
        EchoEnv(split="train")


def test_tasks_file_plays_the_users_tasks_and_records_the_file(tmp_path):
    f = tmp_path / "mine.jsonl"
    f.write_text('{"id": "a", "answer": "kiwi"}\n{"id": "b", "answer": "fig"}\n')
    env = EchoEnv(tasks_file=f)
    assert env.split == CUSTOM_SPLIT and [t.id for t in env.tasks()] == ["a", "b"]
    _, info = env.reset(options={"task": "b"})
    prov = info["provenance"]
    assert prov["split"] == "custom" and prov["tasks_file"]["path"] == str(f.resolve())
    import hashlib

    assert prov["tasks_file"]["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    _, reward, terminated, _, _ = env.step("answer fig")
    assert reward == 1.0 and terminated
    with pytest.raises(FileNotFoundError, match="does not exist"):
        EchoEnv(tasks_file=tmp_path / "nope.jsonl")


def test_info_carries_decoding_system_prompt_and_provenance():
    env = EchoEnv(strict=False)
    _, info = env.reset(options={"task": 0})
    assert (info["max_new_tokens"], info["temperature"], info["top_p"]) == (64, 1.0, 0.9)
    assert info["system_prompt"] == ""
    prov = info["provenance"]
    assert prov["engine"] == {"echo": "1.0"}
    assert prov["options"] == {"strict": False} and prov["paper_options"] == {"strict": True}
    assert prov["split"] == "test" and prov["agent_gym"]


@pytest.mark.parametrize("replies, status, end_reason, truncated", [
    (["answer apple"], "completed", ANSWERED, False),
    (["hm", "hm", "answer apple"], "completed", ANSWERED, False),  # an answer on the last turn is not truncated
    (["hm", "hm", "hm"], "task_limit_reached", ROUND_LIMIT, True),
    (["boom"], "error", ENV_ERROR, True),
])
def test_end_reason_names_why_the_episode_ended(replies, status, end_reason, truncated):
    env = EchoEnv()
    env.reset(options={"task": 0})
    for i, reply in enumerate(replies):
        _, _, term, trunc, info = env.step(reply)
        if i < len(replies) - 1:
            assert info["end_reason"] is None and not (term or trunc)
    assert (info["status"], info["end_reason"], trunc) == (status, end_reason, truncated)
    assert end_reason in END_REASONS


class _Scripted:
    name = "scripted"
    model_name = "m-1"

    def __init__(self, replies, fail_at=None):
        self.replies, self.fail_at = list(replies), fail_at
        self.provenance = {"backend": "none", "max_new_tokens": 7}

    def reset(self, info):
        self.seen_info = info

    def act(self, observation, info):
        from agent_gym.policy import ContextLimitExceeded

        if self.fail_at is not None and len(self.replies) == self.fail_at:
            raise ContextLimitExceeded("too long")
        return self.replies.pop(0)


def test_a_trajectory_records_end_reason_and_provenance_of_env_and_policy():
    from agent_gym.episode import run_episode

    traj = run_episode(EchoEnv(strict=False), _Scripted(["hm", "answer apple"]), env_id="Echo", task=0)
    assert (traj.status, traj.end_reason, traj.score) == ("completed", "answered", 1.0)
    assert traj.provenance["env"]["options"] == {"strict": False}
    assert traj.provenance["env"]["engine"] == {"echo": "1.0"}
    assert traj.provenance["policy"] == {"backend": "none", "max_new_tokens": 7, "policy": "scripted", "model": "m-1"}
    assert "provenance" not in traj.steps[0].info and "provenance" not in traj.meta

    traj = run_episode(EchoEnv(), _Scripted(["hm", "x"], fail_at=1), env_id="Echo", task=0)
    assert (traj.status, traj.end_reason) == ("agent_context_limit", "context_limit")



def test_a_reset_to_a_split_that_cannot_load_leaves_the_env_on_its_split():
    """A failed reset to another split (its data missing) once left the env on that split: every later
    reset failed too (over the env server, the whole session)."""
    class NoDevData(EchoEnv):
        @classmethod
        def load_tasks(cls, split):
            if split == "dev":
                raise FileNotFoundError("dataset 'echo' dev is missing: agent-gym data fetch echo")
            return super().load_tasks(split)

    env = NoDevData()
    with pytest.raises(FileNotFoundError):
        env.reset(options={"split": "dev"})
    with pytest.raises(KeyError):
        env.reset(options={"split": "std", "task": "nope"})
    _, info = env.reset(options={"task": 1})
    assert env.split == "test" and info["task_id"] == "test/1"


def test_a_tasks_file_in_another_format_is_named(tmp_path):
    f = tmp_path / "tasks.toml"
    f.write_text("x = 1\n")
    with pytest.raises(ValueError, match=r"tasks_file .*tasks.toml is not in the task's upstream format"):
        EchoEnv(tasks_file=f).reset()
