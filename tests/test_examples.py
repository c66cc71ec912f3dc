"""The examples run as shipped: scripts as processes, notebooks cell by cell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


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


def run_notebook(path: Path, cwd: Path) -> list[str]:
    """Execute a notebook with nbclient in a real Jupyter kernel (as a user's Jupyter would), in
    ``cwd``; the text of each code cell's outputs, in order. A cell that raises fails the test."""
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    texts = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        parts = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            elif "data" in out:
                parts.append(out["data"].get("text/markdown") or out["data"].get("text/plain", ""))
        texts.append("".join(parts))
    return texts


def test_quickstart_notebook_runs(tmp_path):
    need_data("gsm8k")
    out = run_notebook(EXAMPLES / "quickstart.ipynb", tmp_path)
    assert "(1.0, 'completed')" in out[1]
    assert "over 50 problems" in out[2] and "mean score" in out[2]


def test_own_policy_notebook_runs(tmp_path):
    need_data("mmlu")
    out = run_notebook(EXAMPLES / "own_policy.ipynb", tmp_path)
    assert out[2].split()[0].startswith("Answer:")
    assert "AgentTuning/MMLU-v0  longest-option  20" in out[3]
    assert len((tmp_path / "runs" / "longest-option.jsonl").read_text().splitlines()) == 20


def test_evaluation_report_notebook_runs(tmp_path):
    need_data("gsm8k")
    need_data("mmlu")
    out = run_notebook(EXAMPLES / "evaluation_report.ipynb", tmp_path)
    assert "| gsm8k | general | 3 | 100.0 * |" in out[0]
    assert (tmp_path / "eval-report" / "scores.png").stat().st_size > 1000
    assert "'alfworld'" in out[2]


def test_training_set_notebook_runs(tmp_path):
    need_data("agentbench_os")
    from agent_gym.envs.os_interaction import bwrap

    if bwrap.default_rootfs() is None:
        pytest.skip("the OS sandbox image is not built (docker/os/build.sh)")
    out = run_notebook(EXAMPLES / "training_set.ipynb", tmp_path)
    assert out[0].strip() == "3"
    assert "OS     3             3" in out[1]
    assert out[2].strip() == "(15, 12)"
    assert "num_rows: 15" in out[3]


def test_custom_policy_example_runs_from_the_cli_as_module_factory(tmp_path):
    need_data("mmlu")
    out = tmp_path / "run.jsonl"
    res = subprocess.run([sys.executable, "-m", "agent_gym.cli", "run", "AgentTuning/MMLU-v0", "-n", "5", "--policy",
                          "custom_policy:longest_option", "-o", str(out), "--no-progress"], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(EXAMPLES)})
    assert res.returncode == 0, res.stderr
    assert [json.loads(line)["policy"] for line in out.read_text().splitlines()] == ["longest-option"] * 5
