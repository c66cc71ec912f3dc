"""GSM8K and MMLU: gold replies score 100% on the whole test sets, wrong ones 0, and the
metric table agrees."""

from __future__ import annotations

import gymnasium as gym
import pytest

import agent_gym
from agent_gym.envs.gsm8k.prompt import last_number, same_number
from agent_gym.envs.mmlu.prompt import parse_letter
from agent_gym.metrics import format_table, report_rows
from agent_gym.policies.simple import ReplayPolicy
from agent_gym.rollout import plan, rollout
from agent_gym.testing import need_data

gym.register_envs(agent_gym)


@pytest.mark.parametrize("env_id,dataset,n", [("AgentTuning/GSM8K-v0", "gsm8k", 1319), ("AgentTuning/MMLU-v0", "mmlu", 14042)])
def test_gold_replay_scores_full_marks_on_the_whole_test_set(tmp_path, env_id, dataset, n):
    need_data(dataset)
    out = tmp_path / "gold.jsonl"
    result = rollout(plan([env_id]), "expert", output=out, concurrency=4, progress=False)
    assert len(result.trajectories) == n
    assert all(t.score == 1.0 and t.success and t.status == "completed" for t in result.trajectories)
    assert sum(t.total_reward for t in result.trajectories) == n
    (row,) = report_rows([out])
    assert row["episodes"] == n and row["score"] == 1.0 and row["errors"] == 0
    assert "100.0" in format_table([row])
    if dataset == "mmlu":
        subjects = [k for k in row if k.startswith("subject/")]
        assert len(subjects) == 57 and all(row[k] == 1.0 for k in subjects)


def _wrong_gsm8k(info):
    return ["The answer is 1234567.5"]


def _wrong_mmlu(env):
    letters = "ABCD"
    return lambda info: [letters[(letters.index(env.unwrapped.task.answer) + 1) % 4]]


def test_wrong_answers_score_zero(tmp_path):
    need_data("gsm8k")
    need_data("mmlu")
    out = tmp_path / "wrong.jsonl"
    rollout(plan(["AgentTuning/GSM8K-v0"], episodes=100), lambda env, **_: ReplayPolicy(_wrong_gsm8k),
            output=out, progress=False)
    rollout(plan(["AgentTuning/MMLU-v0"], episodes=300, sample=True),
            lambda env, **_: ReplayPolicy(_wrong_mmlu(env)), output=out, concurrency=3, progress=False)
    rows = {r["env"]: r for r in report_rows([out])}
    assert rows["AgentTuning/GSM8K-v0"]["episodes"] == 100 and rows["AgentTuning/GSM8K-v0"]["score"] == 0.0
    assert rows["AgentTuning/MMLU-v0"]["episodes"] == 300 and rows["AgentTuning/MMLU-v0"]["score"] == 0.0


def test_mmlu_metric_is_per_subject_and_overall(tmp_path):
    need_data("mmlu")
    # right on abstract_algebra (100 q), wrong on anatomy (135 q): overall 100/235, macro 50%
    tasks = [f"abstract_algebra/{i}" for i in range(100)] + [f"anatomy/{i}" for i in range(135)]

    def policy(env, **_):
        def replies(info):
            task = env.unwrapped.task
            return [task.answer if task.subject == "abstract_algebra" else _wrong_mmlu(env)(info)[0]]
        return ReplayPolicy(replies)

    out = tmp_path / "mix.jsonl"
    rollout(plan(["AgentTuning/MMLU-v0"], tasks=tasks), policy, output=out, progress=False)
    (row,) = report_rows([out])
    assert row["score"] == pytest.approx(100 / 235)
    assert row["subject_macro_avg"] == pytest.approx(0.5)
    assert row["subject/abstract_algebra"] == 1.0 and row["subject/anatomy"] == 0.0


@pytest.mark.parametrize("reply,expected", [
    ("She makes $18 every day.", "18"), ("1,250.50 dollars.", "1250.50"), ("The answer is -3.", "-3"),
    ("#### 72", "72"), ("no digits", None), ("", None), ("costs .5", ".5"),
])
def test_gsm8k_takes_the_last_number(reply, expected):
    assert last_number(reply) == expected


def test_gsm8k_compares_numbers_exactly():
    assert same_number("18.00", "18") and same_number("1250", "1,250")
    assert not same_number("18.5", "18") and not same_number(None, "18") and not same_number("-", "18")


@pytest.mark.parametrize("reply,expected", [
    ("B", "B"), ("(C) because ...", "C"), ("D. Spinal", "D"), ("The answer is A.", "A"),
    ("Answer: c", "C"), ("I think it is", None), ("a cat", None), ("", None),
])
def test_mmlu_parses_the_chosen_letter(reply, expected):
    assert parse_letter(reply) == expected
