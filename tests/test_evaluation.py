"""`agent-gym eval`: the paper's overall scores, the report, tasks that cannot run, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from agent_gym import paper
from agent_gym.evaluation import overall_divisors, overall_score
from agent_gym.testing import need_data


@pytest.mark.parametrize("suite", ["held-in", "held-out"])
def test_overall_scores_reproduce_the_papers_from_its_per_task_numbers(suite):
    table = paper.table()
    tasks = list(overall_divisors(suite))
    assert len(tasks) == 6 and all(table["tasks"][t]["suite"] == suite for t in tasks)
    for model, printed in table["overall"][suite].items():
        ours = overall_score(suite, {t: table["tasks"][t]["scores"][model] for t in tasks})
        assert ours == pytest.approx(printed, abs=0.01), model  # the issue asks 0.1; the fit holds to rounding


def test_overall_needs_every_task_of_its_category():
    scores = {t: 50.0 for t in overall_divisors("held-in")}
    assert overall_score("held-in", scores) is not None
    del scores["kg"]
    assert overall_score("held-in", scores) is None


def _eval(tmp_path, *args, env=None):
    return subprocess.run([sys.executable, "-m", "agent_gym.cli", "eval", *args, "--no-progress"],
                          capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})},
                          cwd=tmp_path)


def test_eval_reports_scores_flags_and_resumes(tmp_path):
    need_data("gsm8k")
    need_data("mmlu")
    out = tmp_path / "ev"
    done = _eval(tmp_path, "--suite", "gsm8k,mmlu", "--policy", "expert", "-n", "2", "-o", str(out))
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    rows = {t["task"]: t for t in report["tasks"]}
    assert rows["gsm8k"]["score"] == 100.0 and rows["gsm8k"]["episodes"] == 2
    assert rows["gsm8k"]["statuses"] == {"completed": 2}
    assert "2 of 1319 episodes" in rows["gsm8k"]["flags"]  # a sample is not the paper's protocol: said so
    assert rows["gsm8k"]["paper"]["agentlm-70b"] == paper.scores("gsm8k")["agentlm-70b"]
    assert rows["gsm8k"]["provenance"]["policy"]["policy"] == "expert" and rows["gsm8k"]["provenance"]["seeds"] == [0, 1]
    md = (out / "report.md").read_text()
    assert "| gsm8k | general | 2 | 100.0 * |" in md and "Not under the paper's protocol" in md
    assert (out / "scores.png").stat().st_size > 1000 and (out / "statuses.png").stat().st_size > 1000
    lines = (out / "runs" / "AgentTuning_GSM8K-v0.jsonl").read_text().count("\n")
    again = _eval(tmp_path, "--suite", "gsm8k,mmlu", "--policy", "expert", "-n", "2", "-o", str(out))
    assert again.returncode == 0, again.stderr
    assert (out / "runs" / "AgentTuning_GSM8K-v0.jsonl").read_text().count("\n") == lines  # resumed: nothing replayed


def test_a_task_without_its_data_is_listed_as_not_run_and_the_rest_is_reported(tmp_path):
    need_data("gsm8k")
    empty = tmp_path / "empty-data"
    empty.mkdir()
    out = tmp_path / "ev"
    # GSM8K's data imported alone: MMLU's is missing
    from agent_gym.data import dataset

    gsm8k = dataset("gsm8k")
    for f in gsm8k.files:
        source, target = gsm8k.path() / f.path, gsm8k.path(empty) / f.path
        if source.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    done = _eval(tmp_path, "--suite", "gsm8k,mmlu", "--policy", "expert", "-n", "1", "-o", str(out),
                 env={"AGENT_GYM_DATA": str(empty), "AGENT_GYM_REQUIRE_DATA": "0"})
    assert done.returncode == 0, done.stderr
    rows = {t["env_id"]: t for t in json.loads((out / "report.json").read_text())["tasks"]}
    assert rows["AgentTuning/GSM8K-v0"]["score"] == 100.0
    assert "agent-gym data fetch mmlu" in rows["AgentTuning/MMLU-v0"]["not_run"]
    assert "not run: " in (out / "report.md").read_text()


def test_eval_exits_2_when_no_task_can_run(tmp_path):
    empty = tmp_path / "empty-data"
    empty.mkdir()
    done = _eval(tmp_path, "--suite", "mmlu", "--policy", "expert", "-n", "1", "-o", str(tmp_path / "ev"),
                 env={"AGENT_GYM_DATA": str(empty)})
    assert done.returncode == 2
    assert "no task could run" in done.stderr


def test_env_args_go_to_the_envs_that_have_them(tmp_path):
    done = _eval(tmp_path, "--suite", "gsm8k", "--env-arg", "no_such_option=1", "-o", str(tmp_path / "ev"))
    assert done.returncode == 2 and "has the option 'no_such_option'" in done.stderr


def test_an_output_that_is_a_file_is_refused_in_one_line(tmp_path, capsys):
    from agent_gym.cli import main

    blocker = tmp_path / "report-file"
    blocker.write_text("not a folder")
    for out in (blocker, blocker / "sub"):  # was: NotADirectoryError traceback from runs.mkdir
        assert main(["eval", "--suite", "gsm8k", "--policy", "expert", "-n", "1", "-o", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert "must be a folder" in err and "pass another --output" in err and "Traceback" not in err
    assert blocker.read_text() == "not a folder"


def test_the_report_table_prints_each_score_on_the_papers_scale():
    from agent_gym.metrics import format_table

    rows = [{"env": "AgentTuning/MTBench-v0", "policy": "p", "episodes": 2, "score": 0.726, "errors": 0,
             "paper": paper.scores("mt_bench", paper.AGENTLM)},
            {"env": "AgentTuning/GSM8K-v0", "policy": "p", "episodes": 2, "score": 0.5, "errors": 0, "paper": {}}]
    lines = format_table(rows).splitlines()
    assert "7.26 /10" in lines[1] and "7.26" in lines[1].split("7.26 /10")[1]  # ours beside the paper's 7.26
    assert " 50.0 " in lines[2]


def test_decoding_forced_on_the_policy_and_a_time_limit_are_flagged(tmp_path):
    need_data("gsm8k")
    out = tmp_path / "ev"
    done = _eval(tmp_path, "--suite", "gsm8k", "--policy", "expert", "-n", "1", "-o", str(out),
                 "--max-new-tokens", "24", "--env-arg", "max_episode_steps=4")
    assert done.returncode == 0, done.stderr
    flags = json.loads((out / "report.json").read_text())["tasks"][0]["flags"]
    assert "max_new_tokens=24 (paper: 512)" in flags and "max_episode_steps=4 (a TimeLimit; the paper's limit: 1)" in flags
