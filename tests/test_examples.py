"""The examples run as shipped: scripts as processes, notebooks cell by cell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


from agent_gym.testing import need_data

ROOT = Path(__file__).resolve().parents[1]

EXAMPLES = ROOT / "examples"


def test_quickstart_script_runs(tmp_path):
    need_data("gsm8k")
    need_data("mmlu")
    out = subprocess.run([sys.executable, str(EXAMPLES / "quickstart.py")], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, env=os.environ.copy())
    assert out.returncode == 0, out.stderr
    assert "mean score 1.00" in out.stdout and "kept 20 trajectories" in out.stdout


def run_notebook(path: Path) -> dict:
    """Execute a notebook's code cells in order in one namespace (no Jupyter needed)."""
    namespace: dict = {"__name__": "__main__"}
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"{path.name}", "exec"), namespace)  # noqa: S102
    return namespace


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    need_data("gsm8k")
    monkeypatch.chdir(tmp_path)
    ns = run_notebook(EXAMPLES / "quickstart.ipynb")
    assert len(ns["result"].trajectories) == 50
    assert 0.0 <= ns["result"].mean_score < 0.5


def test_custom_policy_example_runs_from_the_cli_as_module_factory(tmp_path):
    need_data("mmlu")
    out = tmp_path / "run.jsonl"
    res = subprocess.run([sys.executable, "-m", "agent_gym.cli", "run", "AgentTuning/MMLU-v0", "-n", "5", "--policy",
                          "custom_policy:longest_option", "-o", str(out), "--no-progress"], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(EXAMPLES)})
    assert res.returncode == 0, res.stderr
    assert [json.loads(line)["policy"] for line in out.read_text().splitlines()] == ["longest-option"] * 5
