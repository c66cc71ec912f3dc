"""The agent-gym command, end to end through its console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from agent_gym.testing import need_data

CLI = [sys.executable, "-m", "agent_gym.cli"]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, check=check, env=os.environ.copy())


def test_list_shows_ids_counts_and_data_state():
    need_data("gsm8k")
    out = run("list").stdout
    assert "AgentTuning/GSM8K-v0" in out and "test: 1319" in out and "present" in out
    rows = json.loads(run("list", "--json").stdout)
    assert {r["id"] for r in rows} >= {"AgentTuning/GSM8K-v0", "AgentTuning/MMLU-v0"}


def test_run_resume_report_export(tmp_path):
    need_data("gsm8k")
    need_data("mmlu")
    out = tmp_path / "run.jsonl"
    first = run("run", "general", "--policy", "expert", "-n", "3", "-c", "2", "-o", str(out), "--no-progress")
    assert "AgentTuning/MMLU-v0" in first.stdout and "100.0" in first.stdout
    again = run("run", "general", "--policy", "expert", "-n", "5", "-o", str(out), "--no-progress")
    assert "6 already in" in again.stderr
    assert len(out.read_text().splitlines()) == 10
    report = json.loads(run("report", str(out), "--json").stdout)
    assert {(r["env"], r["episodes"], r["score"]) for r in report} == {
        ("AgentTuning/GSM8K-v0", 5, 1.0), ("AgentTuning/MMLU-v0", 5, 1.0)}
    exported = tmp_path / "ai.jsonl"
    assert "kept 10 of 10" in run("export", str(out), "-o", str(exported)).stdout
    assert json.loads(exported.read_text().splitlines()[0])["conversations"][-1]["loss"] is True


def test_report_plot_is_written(tmp_path):
    need_data("gsm8k")
    import pytest

    pytest.importorskip("matplotlib")
    out = tmp_path / "run.jsonl"
    run("run", "gsm8k", "--policy", "random", "-n", "2", "-o", str(out), "--no-progress")
    png = tmp_path / "scores.png"
    run("report", str(out), "--plot", str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_env_is_a_clear_error():
    res = run("run", "NoSuchEnv", check=False)
    assert res.returncode == 2 and "unknown env or suite 'NoSuchEnv'" in res.stderr
