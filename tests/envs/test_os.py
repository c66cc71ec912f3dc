"""AgentTuning/OS-v0: AgentBench's reply parsing and judging, gold replays on the bubblewrap and
Docker sandboxes, and the sandbox's security: nothing the agent does reaches the host or the
next episode. Tests of the sandbox protocol run on both backends (the ``sandbox`` and ``any_env``
fixtures); Docker's on the suite's own ``dockerd`` (``docker_host``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import agent_gym
from agent_gym import cli
from agent_gym.core import INVALID_ACTION, TASK_LIMIT_REACHED
from agent_gym.envs.os_interaction import bwrap, data, docker, engine, prompt
from agent_gym.envs.os_interaction.env import OSEnv
from agent_gym.rollout import plan, rollout
from agent_gym.testing import need_data

gym.register_envs(agent_gym)

# Problems whose example solution cannot pass in a sandbox without network (the reason is the data's own).
NEEDS_NETWORK = {
    "6/new-5": "init runs `apt update && apt install sudo`; without network sudo is never installed",
    "6/new-6": "init runs `apt update && apt install sudo`; without network sudo is never installed",
    "6/new-8": "the example solution is `apt update && apt install sudo -y`",
}
# Problems whose result depends on the moment it is computed: AgentBench's own nondeterminism.
FLAKY = {
    "7/bootstrap-0": "counts processes; its init's five `sleep 60` end if a minute passes between the two counts (a loaded machine)",
    "7/bootstrap-6": "the machine's used-memory percentage (`free -m`) changes between the two runs",
    "7/bootstrap-8": "`find $TARGET_DIR` with the variable unset (the init script exported it to itself): counts `/`, /proc included",
    "7/bootstrap-18": "adds the machine's used-memory percentage (`free`), which changes between the two runs",
    "7/bootstrap-29": "counts every entry under the cwd `/`, /proc included, which changes between the two runs",
}
BWRAP_MISSING = bwrap.BwrapSandbox.unavailable()
needs_bwrap = pytest.mark.skipif(BWRAP_MISSING is not None, reason=f"bwrap sandbox unavailable: {BWRAP_MISSING}")


def bash(code: str) -> str:
    return prompt.bash_reply(code)


# ------------------------------------------------------------------ parsing (no sandbox)
def test_parse_action_follows_agentbench_extract_action():
    assert prompt.parse_action("Think: x\n\nAct: bash\n\n```bash\nls /\n```") == prompt.Action("bash", "ls /", "x")
    assert prompt.parse_action("Act: finish").kind == "commit"
    assert prompt.parse_action("Act: answer(220)").content == "220"
    assert prompt.parse_action("Act: answer((a) b)").content == "(a) b"  # first "(" to last ")"
    # no action at all
    assert prompt.parse_action("I think the answer is 5.").kind is None
    # two actions: the LAST recognised Act line wins; bash takes every bash block of the reply
    two = "Act: bash\n```bash\necho 1\n```\nAct: answer(5)"
    assert prompt.parse_action(two) == prompt.Action("commit", "5", "")
    both = "Act: answer(5)\nAct: bash\n```bash\necho 1\n```\n```bash\necho 2\n```"
    assert prompt.parse_action(both).content == "echo 1\n\necho 2"
    # answer without its parentheses falls back to the previous Act line
    assert prompt.parse_action("Act: bash\n```bash\nls\n```\nAct: answer 5").kind == "bash"
    # unterminated code block: bash with an empty command, as upstream
    assert prompt.parse_action("Act: bash\n\n```bash\necho hi") == prompt.Action("bash", "", "")
    assert prompt.parse_action("Act: BASH\n```bash\nx\n```").content == "x"  # case-insensitive


def test_observation_truncates_like_agentbench():
    assert prompt.observation("") == "The output of the OS is empty."
    assert prompt.observation("x" * 800) == "The output of the OS:\n\n" + "x" * 800
    long = prompt.observation("y" * 801)
    assert long == "The output of the OS:\n\n" + "y" * 780 + "\n[truncated because the output is too long]"


def test_match_strips_and_compares_exactly():
    assert prompt.match(" love \n", {"answer": "love", "strip": True})
    assert not prompt.match("Love", {"answer": "love", "strip": True})
    assert not prompt.match(None, {"answer": "love", "strip": True})
    assert prompt.match("abc123", {"regex": r"\d+$"})


def test_match_object_without_strip_compares_the_answer_as_given(tmp_path):
    """Upstream reads match["strip"] unconditionally (a KeyError that fails every answer); ours
    reads a missing "strip" as false: the problem is judged, the answer is not stripped."""
    problems = [
        {"description": "no strip", "evaluation": {"match": {"answer": "love"}}},
        {"description": "regex, no strip", "evaluation": {"match": {"regex": "^a+$"}}},
        {"description": "string form", "evaluation": {"match": "love"}},
    ]
    (tmp_path / "m.json").write_text(json.dumps(problems))
    loaded = data.load_file(tmp_path / "m.json")
    assert [p.match for p in loaded] == [{"strip": False, "answer": "love"}, {"strip": False, "regex": "^a+$"},
                                         {"answer": "love", "strip": True}]
    no_strip, regex, string = (p.match for p in loaded)
    assert prompt.match("love", no_strip) and not prompt.match(" love ", no_strip)
    assert prompt.match("aaa", regex) and not prompt.match(" aaa", regex)
    assert prompt.match(" love ", string)
    (tmp_path / "bad.json").write_text(json.dumps([{"description": "x", "evaluation": {"match": {"strip": True}}}]))
    with pytest.raises(ValueError, match="'answer' or 'regex'"):
        data.load_file(tmp_path / "bad.json")


def test_problems_load_in_upstream_order():
    need_data("agentbench_os")
    problems = data.load()
    assert len(problems) == 144
    kinds = [p.kind for p in problems]
    assert kinds.count("match") == 9 and kinds.count("check") == 123 and kinds.count("state") == 12
    ids = [p.id for p in problems]
    assert ids[0] == "1/stock-0" and len(set(ids)) == 144
    assert [p.id for p in problems if p.id.startswith("4/N41")][:1] == ["4/N41-0"]
    assert all(p.example is not None for p in problems if p.kind != "match")
    msgs = prompt.prompt_messages(data.prompts())
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user", "assistant"]
    assert msgs[0]["content"].endswith('Now, my problem is:\n\ntell me how many files are in the directory "/etc"?')


@needs_bwrap
def test_a_checker_that_cannot_run_here_is_an_error_not_a_wrong_answer(env):
    """When this machine cannot build the checker's view, the episode ends as an error (retried on
    resume), never as a failed check; a view the agent made impossible is a failed check."""
    start(env, "4/Q19-0")
    env.unwrapped.sandbox.root = "/nonexistent-image"  # the image vanished under the sandbox
    *_, term, trunc, info = env.step(prompt.answer_reply("3"))
    assert info["status"] == "error" and info["end_reason"] == "env_error"
    assert "checker needs root, Linux 5.12+" in info["error"]
    start(env, "4/Q19-0")
    env.step(bash("rm -rf /usr/lib; echo x > /usr/lib"))  # no folder left to lay the image's libraries on
    *_, term, trunc, info = env.step(prompt.answer_reply("3"))
    assert term and info["status"] == "completed" and info["success"] is False


# ------------------------------------------------------------------ the env on bubblewrap
@pytest.fixture
def env():
    need_data("agentbench_os")
    e = gym.make("AgentTuning/OS-v0", limits=engine.Limits(command_seconds=3))
    yield e
    e.close()


def start(env, task: str) -> tuple[str, dict]:
    return env.reset(options={"task": task})


BACKENDS = ["bwrap", pytest.param("docker", marks=pytest.mark.docker)]


@pytest.fixture(params=BACKENDS)
def backend(request) -> dict:
    """The env arguments of each sandbox backend: bubblewrap, and Docker on the suite's own dockerd."""
    if request.param == "bwrap":
        if BWRAP_MISSING:
            pytest.skip(f"bwrap sandbox unavailable: {BWRAP_MISSING}")
        return {"backend": "bwrap"}
    return {"backend": "docker", "host": request.getfixturevalue("docker_host")}


@pytest.fixture
def any_env(backend):
    """The env on each backend (3 s per command)."""
    need_data("agentbench_os")
    e = gym.make("AgentTuning/OS-v0", limits=engine.Limits(command_seconds=3), **backend)
    yield e
    e.close()


@needs_bwrap
def test_check_env_passes(env):
    check_env(env.unwrapped, skip_render_check=True)


@needs_bwrap
def test_shell_keeps_state_and_shows_the_terminal(env):
    obs, info = start(env, "4/Q19-0")
    assert obs.startswith(prompt.NEW_PROBLEM) and "matrix.txt" in obs and len(info["prompt"]) == 6
    env.step(bash("cd /root\nN=3"))
    obs, reward, term, trunc, info = env.step(bash("wc -l < matrix.txt; echo N=$N; pwd"))
    assert obs.startswith("The output of the OS:\n\n3\r\nN=3\r\n/root\r\n") and not (term or trunc)
    assert "root@" in obs and "~# " in obs[-30:]  # the prompt, as AgentBench's observations have it
    obs, reward, term, trunc, info = env.step(prompt.answer_reply("3"))
    assert term and info["success"] and reward == 1.0 and info["status"] == "completed"
    assert info["end_reason"] == "answered"


@needs_bwrap
def test_plain_output_option_strips_the_terminal():
    need_data("agentbench_os")
    env = gym.make("AgentTuning/OS-v0", tty_output=False)
    try:
        env.reset(options={"task": "4/Q19-0"})
        obs, *_ = env.step(bash("wc -l < /root/matrix.txt"))
        assert obs == "The output of the OS:\n\n3\n"
    finally:
        env.close()


@needs_bwrap
def test_wrong_answers_and_wrong_final_states_fail(env):
    start(env, "4/Q19-0")  # integer match
    *_, info = env.step(prompt.answer_reply("4"))
    assert info["success"] is False and info["score"] == 0.0
    start(env, "4/N41-0")  # string match ("no")
    *_, info = env.step(prompt.answer_reply("yes"))
    assert info["success"] is False
    start(env, "6/new-3")  # state check: find must lose its SUID bit
    env.step(bash("chmod u+x /usr/bin/find"))
    *_, info = env.step(prompt.finish_reply())
    assert info["success"] is False
    start(env, "6/new-3")
    env.step(bash("chmod u-s /usr/bin/find"))
    *_, info = env.step(prompt.finish_reply())
    assert info["success"] is True and info["end_reason"] == "answered"


@needs_bwrap
def test_malformed_replies_get_agentbench_handling(env):
    start(env, "4/Q19-0")
    obs, reward, term, trunc, info = env.step(bash("echo hi")[:-4])  # unterminated block: an empty command
    assert not term and info["action_valid"] and obs.startswith("The output of the OS:\n\n") and "hi" not in obs
    obs, reward, term, trunc, info = env.step("The answer is 3.")  # no action: the episode ends, judged
    assert term and info["status"] == INVALID_ACTION and not info["action_valid"] and info["success"] is False
    assert info["end_reason"] == "invalid_action"
    start(env, "6/new-3")  # a state problem still passes without an answer, as upstream judges it
    env.step(bash("chmod u-s /usr/bin/find"))
    *_, term, trunc, info = env.step("I fixed it.")
    assert term and info["status"] == INVALID_ACTION and info["success"] is True
    start(env, "4/Q19-0")  # two actions: the last one counts
    *_, term, trunc, info = env.step(bash("wc -l /root/matrix.txt") + "\n\nAct: answer(3)")
    assert term and info["success"]


@needs_bwrap
def test_round_limit_judges_without_an_answer(env):
    start(env, "6/new-3")
    for i in range(8):
        obs, reward, term, trunc, info = env.step(bash("chmod u-s /usr/bin/find" if i == 7 else "true"))
    assert trunc and not term and info["status"] == TASK_LIMIT_REACHED and info["success"] is True
    assert info["end_reason"] == "round_limit"


@needs_bwrap
def test_start_script_runs_in_the_agents_shell(env):
    start(env, "4/Q49-0")  # start: var=3.14 typed into the shell
    obs, *_ = env.step(bash('echo "var=$var"'))
    assert "var=3.14" in obs
    start(env, "4/N4-0")  # start ends with `su - jack`: the agent is jack now
    obs, *_ = env.step(bash("whoami; pwd"))
    assert "jack\r\n/home/jack" in obs


# ------------------------------------------------------------------ splits, your own tasks, provenance
def test_splits_are_named_as_everywhere_with_upstreams_alias():
    need_data("agentbench_os")
    assert OSEnv.splits == ("test", "dev", "train") and OSEnv.split_aliases == {"std": "test"}
    env = gym.make("AgentTuning/OS-v0", split="std")  # AgentBench.old's name for the paper's 144
    try:
        assert env.unwrapped.split == "test" and len(env.unwrapped.tasks()) == 144
    finally:
        env.close()


@needs_bwrap
def test_held_in_prompt_hints_and_provenance(env):
    """AgentBench.old's harness sent no system message; greedy, 128 new tokens."""
    obs, info = start(env, "4/Q19-0")
    assert info["system_prompt"] == "" and info["max_new_tokens"] == 128 and info["temperature"] == 0.0
    prov = info["provenance"]
    assert prov["engine"]["sandbox"] == "bwrap" and prov["options"] == {"backend": "bwrap"}
    rootfs = bwrap.default_rootfs()
    if rootfs is not None:
        assert prov["engine"]["os_image"].startswith(f"{rootfs} (dpkg ")
    assert prov["split"] == "test"


def test_engine_status_says_when_the_image_is_not_built(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AGENT_GYM_OS_ROOTFS", str(tmp_path / "no-such-rootfs"))
    status = OSEnv.engine_status()
    if BWRAP_MISSING:
        assert status.startswith("bwrap sandbox unavailable")
        return
    assert "docker/os/build.sh" in status and "host's /usr" in status and "secrets masked" in status
    cli.main(["list", "--json"])
    row = next(r for r in json.loads(capsys.readouterr().out) if r["id"] == "AgentTuning/OS-v0")
    assert row["engine"] == status
    cli.main(["list"])  # the table shows the message whole: it says which mode the sandbox runs in
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("AgentTuning/OS-v0") and line.endswith(status) for line in lines)
    (tmp_path / "rootfs" / "bin").mkdir(parents=True)
    (tmp_path / "rootfs" / "bin" / "bash").touch()
    monkeypatch.setenv("AGENT_GYM_OS_ROOTFS", str(tmp_path / "rootfs"))
    assert "build.sh" not in OSEnv.engine_status()


def _write_problems(folder: Path, name: str, problems: list) -> Path:
    """A problems file in upstream's format, with its scripts beside it (check/, example/, init/)."""
    (folder / "check").mkdir(parents=True, exist_ok=True)
    (folder / "init").mkdir(exist_ok=True)
    (folder / "check" / "integer-match.py").write_text(
        "from sys import argv\nif int(argv[1]) == int(argv[2]): exit(0)\nexit(1)")
    (folder / "init" / "numbers.sh").write_text("mkdir -p /root/n && for i in 1 2 3 4 5; do touch /root/n/$i; done")
    path = folder / name
    path.write_text(json.dumps(problems, indent=1))
    return path


MY_PROBLEMS = [
    {"description": "How many files are in /root/n?", "create": {"init": {"file": "init/numbers.sh"}},
     "evaluation": {"check": [None, {"language": "python", "file": "check/integer-match.py"}],
                    "example": "ls /root/n | wc -l"}},
    {"description": "Say hi.", "evaluation": {"match": {"answer": "hi"}}},
]


def test_dev_split_reads_agentbench_old_dev_layout(tmp_path, monkeypatch):
    """split="dev" reads data/os_interaction/data/dev.json with scripts/dev/ (a fixture in that layout)."""
    need_data("agentbench_os")
    real = data.DATASET.path()
    fake = tmp_path / "data"
    for f in data.DATASET.files:  # the required files as they are, the dev files as the fixture
        if not f.optional:
            (fake / data.DATASET.root / f.path).parent.mkdir(parents=True, exist_ok=True)
            (fake / data.DATASET.root / f.path).symlink_to(real / f.path)
    base = fake / data.DATASET.root
    dev = _write_problems(base / data.DEV_SCRIPTS, "dev.json", MY_PROBLEMS)
    (base / data.DEV_FILE).parent.mkdir(parents=True, exist_ok=True)
    dev.rename(base / data.DEV_FILE)
    for f in data.DATASET.files:  # the dev files the loader asks for, present in the fixture
        if f.optional and f.path.startswith(data.DEV_SCRIPTS) and not (base / f.path).exists():
            (base / f.path).parent.mkdir(parents=True, exist_ok=True)
            (base / f.path).write_text("exit 0")
    monkeypatch.setenv("AGENT_GYM_DATA", str(fake))
    problems = data.load("dev")
    assert [p.id for p in problems] == ["dev-1", "dev-0"]  # match problems first, as upstream orders them
    assert problems[1].init[0].code.startswith("mkdir -p /root/n") and problems[1].kind == "check"
    if BWRAP_MISSING is None:
        env = gym.make("AgentTuning/OS-v0", split="dev")
        try:
            env.reset(options={"task": "dev-0"})
            *_, info = env.step(prompt.answer_reply("5"))
            assert info["success"] and info["provenance"]["split"] == "dev"
        finally:
            env.close()


def test_dev_split_without_its_files_names_the_fetch_command(tmp_path, monkeypatch):
    need_data("agentbench_os")
    if (data.DATASET.path() / data.DEV_FILE).exists():
        pytest.skip("the dev files are in the data directory")
    with pytest.raises(agent_gym.data.DataMissingError, match="agent-gym data fetch agentbench_os"):
        data.load("dev")


@needs_bwrap
def test_tasks_file_plays_your_own_problems(tmp_path):
    need_data("agentbench_os")  # the instruction and one-shot prompt are AgentBench's
    path = _write_problems(tmp_path / "mine", "mine.json", MY_PROBLEMS)
    env = gym.make("AgentTuning/OS-v0", tasks_file=str(path))
    try:
        obs, info = env.reset(options={"task": "mine-0"})
        assert env.unwrapped.split == "custom" and "/root/n" in obs
        assert info["provenance"]["tasks_file"]["sha256"] == __import__("hashlib").sha256(path.read_bytes()).hexdigest()
        *_, info = env.step(prompt.answer_reply("4"))
        assert info["success"] is False
        env.reset(options={"task": "mine-0"})
        *_, info = env.step(prompt.answer_reply("5"))
        assert info["success"] is True
        env.reset(options={"task": "mine-1"})
        *_, info = env.step(prompt.answer_reply("hi"))
        assert info["success"] is True
    finally:
        env.close()


@needs_bwrap
def test_train_split_is_agentbench_mains_training_pool():
    need_data("agentbench_os")
    try:
        problems = data.load("train")
    except agent_gym.data.DataMissingError as exc:
        pytest.skip(str(exc))
    assert len(problems) == 1000 and problems[0].id == "train-0" and all(p.kind == "check" for p in problems)
    env = gym.make("AgentTuning/OS-v0", split="train")
    try:
        env.reset(options={"task": "train-0"})
        replies = env.unwrapped.expert_replies(env.unwrapped.task)
        for reply in replies:
            *_, term, trunc, info = env.step(reply)
        assert term and info["success"]
    finally:
        env.close()


# ------------------------------------------------------------------ the checker the agent cannot fool
# (agent's reply, problem, answer) that AgentBench judges correct with the agent's own tools
TAMPERING = [
    ("ln -s /bin/true /usr/local/bin/python3", "4/Q19-0", "999999"),  # issue 9's example
    ("ln -sf /bin/true /usr/bin/python3", "4/Q19-0", "999999"),
    ("cp /bin/true /usr/bin/python3.11", "4/Q19-0", "999999"),
    ("echo 'import os; os._exit(0)' > /etc/python3.11/sitecustomize.py", "4/Q19-0", "999999"),
    ("mkdir -p /root/.local/lib/python3.11/site-packages && echo 'import os; os._exit(0)' "
     "> /root/.local/lib/python3.11/site-packages/usercustomize.py", "4/Q19-0", "999999"),
    ("ln -sf /bin/true /etc/alternatives/awk", "6/new-7", None),  # the check pipes `ls -l /` into awk
]
# what the checker must still see of the agent's work
HONEST = [
    ("chmod u-s /usr/bin/find", "6/new-3", None),  # a mode change of an image file
    (r"""echo '#!/bin/bash' > /usr/bin/calc && echo 'python3 -c "print(\"%.6f\" % ($*))"' >> /usr/bin/calc"""
     " && chmod +x /usr/bin/calc", "5/new-0", None),  # a command added to /usr/bin
    ("echo /no/such.so > /etc/ld.so.preload", "4/Q19-0", "3"),  # ld.so would write a warning into the expected output
]


def _judged(env, code: str, task: str, answer: str | None) -> bool:
    env.reset(options={"task": task})
    obs, *_ = env.step(bash(code))
    *_, term, trunc, info = env.step(prompt.answer_reply(answer) if answer else prompt.finish_reply())
    assert term and info["end_reason"] == "answered"
    return info["success"]


def _check_tampering(env) -> None:
    for code, task, answer in TAMPERING:
        assert _judged(env, code, task, answer) is False, code
    for code, task, answer in HONEST:
        assert _judged(env, code, task, answer) is True, code


def test_checker_uses_the_images_tools(any_env, backend):
    if backend["backend"] == "bwrap" and bwrap.default_rootfs() is None:
        pytest.skip("the sandbox image is not built: run docker/os/build.sh (or set AGENT_GYM_OS_ROOTFS)")
    _check_tampering(any_env)
    if backend["backend"] == "docker":
        assert any_env.unwrapped.engine_info()["os_image"].startswith("sha256:")


def test_checker_sees_the_agents_files_and_processes(sandbox):
    """A checker sees what the agent left (files, processes, hostname); its processes are stopped meanwhile."""
    sandbox.execute("echo left > /root/mine; sleep 300 & echo $! > /root/pid")
    pid = sandbox.execute("cat /root/pid").split()[0]
    with sandbox.frozen():
        out = sandbox.run(engine.Script("bash", "cat /root/mine; ps -o stat= -p $(cat /root/pid); hostname; echo $PATH"),
                          pristine=True).output.split()
    frozen = "D" if isinstance(sandbox, docker.DockerSandbox) else "T"  # Docker pauses with the cgroup freezer
    assert out[0] == "left" and out[1].startswith(frozen) and out[2] == sandbox.hostname
    assert out[3] == engine.CHECK_PATH
    # signals as in a shell: a writer after `head` has gone dies quietly (Python, which builds the view, ignores SIGPIPE)
    assert sandbox.run(engine.Script("bash", "seq 1 200000 | head -n 1"), pristine=True).output == "1\n"
    assert "S" in sandbox.execute(f"ps -o stat= -p {pid}")  # running again afterwards


def _gold(backend: str, every: int = 1, **kwargs) -> list:
    result = rollout(plan(["AgentTuning/OS-v0"])[::every], "expert", concurrency=3, progress=False,
                     env_kwargs={"backend": backend, **kwargs})
    return result.trajectories


def _assert_gold(trajectories: list) -> None:
    assert len(trajectories) == 144
    failed = _assert_sample(trajectories)
    assert set(NEEDS_NETWORK) <= set(failed)
    summary = OSEnv.summarize(trajectories)  # upstream's overall.acc and the accuracy per file
    assert summary["score"] == pytest.approx((144 - len(failed)) / 144)
    assert summary["acc/1/stock"] == 1.0 and summary["acc/6/new"] == pytest.approx(6 / 9)


def _assert_sample(trajectories: list) -> dict:
    """Every example solution played passes the checker, but those that need the network (or are flaky);
    returns the failed ones."""
    failed = {t.task_id: (t.status, t.error) for t in trajectories if not t.success}
    assert set(failed) <= set(NEEDS_NETWORK) | set(FLAKY), failed
    assert all(t.status != "error" for t in trajectories)
    return failed


@pytest.mark.slow
def test_gold_replay_passes_every_problem(backend):
    """Example solutions, judged by the checker: 141/144 (the three that need the network fail); on Docker,
    CI replays every fourth problem."""
    need_data("agentbench_os")
    if backend["backend"] == "bwrap" and bwrap.default_rootfs() is None:
        pytest.skip("the sandbox image is not built: run docker/os/build.sh (or set AGENT_GYM_OS_ROOTFS)")
    if backend["backend"] == "docker" and os.environ.get("AGENT_GYM_FULL") != "1":
        # CI: every fourth problem (36; about 40 of the full replay's 185 s). The checker and the problems
        # are the backends' shared code, replayed whole on bwrap; AGENT_GYM_FULL=1 replays all 144 here too
        trajectories = _gold(every=4, **backend)
        assert len(trajectories) == 36
        _assert_sample(trajectories)
        return
    _assert_gold(_gold(**backend))


# ------------------------------------------------------------------ security (both backends)
SANDBOX_LIMITS = engine.Limits(command_seconds=3, memory_mb=256, processes=64)


@pytest.fixture
def sandbox(backend):
    """A started sandbox of each backend: 3 s per command, 256 MB, 64 processes."""
    options = {k: v for k, v in backend.items() if k != "backend"}
    sb = engine.make_sandbox(backend["backend"], SANDBOX_LIMITS, **options).start()
    yield sb
    sb.close()


@pytest.fixture
def bwrap_sandbox():
    if BWRAP_MISSING:
        pytest.skip(f"bwrap sandbox unavailable: {BWRAP_MISSING}")
    sb = bwrap.BwrapSandbox(SANDBOX_LIMITS).start()
    yield sb
    sb.close()


def _host_pids() -> set[int]:
    return {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()}


def _fresh_sandbox_is_clean(used) -> None:
    """The next sandbox of ``used``'s backend starts from the image; bwrap leaves no staging folder,
    cgroup or process; Docker no container."""
    if isinstance(used, docker.DockerSandbox):
        with docker.DockerSandbox(host=used.host) as sb:
            out = sb.execute("ls /bin/bash /canary* 2>&1; echo ok")
            assert "/bin/bash" in out and "No such file" in out and "ok" in out
            made = sb.container
        assert made not in _containers(used.host)
        return
    with bwrap.BwrapSandbox() as sb:
        out = sb.execute("ls /bin/bash /canary* 2>&1; echo ok")
        assert "/bin/bash" in out and "No such file" in out and "ok" in out
        traces = [Path(sb._staging), *sb._cgroups]  # noqa: SLF001 - what close() must remove
        members = {pid: _start_time(pid) for pid in sb._sandbox_pids()}  # noqa: SLF001
    assert traces and not any(p.exists() for p in traces)  # no staging folder, no cgroup left
    assert members and not [pid for pid, started in members.items() if _start_time(pid) == started]


def _start_time(pid: int) -> str | None:
    """A live process's start time (None once it is gone or a zombie), to tell it from pid reuse."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]


@pytest.mark.exclusive
def test_fork_bomb_is_contained(sandbox):
    before = len(_host_pids())
    t = time.monotonic()
    sandbox.execute(":(){ :|:& };:")
    sandbox.execute("sleep 1")
    assert len(_host_pids()) < before + 80  # the pids cgroup caps the sandbox at 64 processes
    sandbox.reset_processes()
    assert "alive" in sandbox.execute("echo alive")
    assert time.monotonic() - t < 30
    sandbox.close()
    _fresh_sandbox_is_clean(sandbox)


def test_rm_rf_root_and_writes_stay_inside(sandbox):
    canary = Path(tempfile.mkdtemp(prefix="agent-gym-canary-"))
    (canary / "keep").write_text("keep")
    sandbox.execute(f"echo pwned > /canary; echo pwned > /usr/bin/canary; echo x >> /etc/passwd; "
                    f"mkdir -p {canary}; echo pwned > {canary}/keep; echo pwned > /tmp/canary")
    out = sandbox.execute("rm -rf --no-preserve-root / 2>/dev/null; ls /usr/bin | wc -l")
    assert "0" in out
    assert (canary / "keep").read_text() == "keep" and Path("/usr/bin/bash").exists()
    assert not Path("/canary").exists() and not Path("/usr/bin/canary").exists() and not Path("/tmp/canary").exists()
    assert "pwned" not in Path("/etc/passwd").read_text() and not Path("/etc/passwd").read_text().endswith("x\n")
    shutil.rmtree(canary)
    sandbox.close()
    _fresh_sandbox_is_clean(sandbox)


def test_kernel_knobs_are_out_of_reach(sandbox):
    """Root inside is Docker's root: no global sysctls, mounts, clock, modules or raw devices."""
    out = sandbox.run(engine.Script("bash", (
        "echo 3 > /proc/sys/vm/drop_caches && echo sysctl-written; "
        "mount -t tmpfs x /mnt && echo mounted; "
        "date -s 2020-01-01 >/dev/null && echo clock-set; "
        "mknod /tmp/sda b 8 0 && echo mknod-done; "
        "ls /dev/sd* /dev/vd* /dev/nvme* /dev/mem 2>/dev/null; "
        "echo x > /proc/sysrq-trigger && echo trigger-written; true"))).output
    for escaped in ("sysctl-written", "mounted", "clock-set", "mknod-done", "/dev/", "trigger-written"):
        assert escaped not in out, out
    assert "Read-only file system" in out


def test_host_home_and_environment_are_invisible(sandbox, monkeypatch):
    secret = "agent-gym-secret-" + os.urandom(6).hex()
    home_file = Path.home() / f".agent-gym-canary-{secret[-6:]}"
    home_file.write_text(secret)
    try:
        monkeypatch.setenv("AGENT_GYM_TEST_SECRET", secret)
        sandbox.reset_processes()  # a shell started now would inherit the secret if anything leaked
        out = sandbox.execute(f"env; cat /proc/1/environ; ls -a ~ /home /root /work /mnt; cat {home_file} ~/{home_file.name}")
        assert secret not in out and secret[-6:] not in out.replace(f"canary-{secret[-6:]}", "")
        assert sandbox.run(engine.Script("bash", "env; cat /proc/*/environ")).output.count(secret) == 0
    finally:
        home_file.unlink()


@needs_bwrap
def test_without_an_image_the_hosts_secrets_are_masked():
    """The issue's case: on the host's own /etc and /var (no image built) the agent, root inside,
    read /etc/shadow. Now the password hashes are blanked (users kept, so useradd works), what the
    host keeps from other users is gone, logs and the like are hidden; the rest is the host's."""
    tag = os.urandom(6).hex()
    secret_file, log_file = Path(f"/etc/agent-gym-secret-{tag}"), Path(f"/var/log/agent-gym-{tag}.log")
    secret_file.write_text(f"s3cr3t={tag[::-1]}")
    secret_file.chmod(0o600)
    log_file.write_text(f"l0gged={tag[::-1]}")  # world-readable, but host state all the same
    try:
        with bwrap.BwrapSandbox(engine.Limits(command_seconds=5), root="/") as sb:
            out = sb.execute(f"cat /etc/shadow /etc/gshadow; cat {secret_file} {log_file}; ls /var/log | wc -l; "
                             "ls /etc/ssl/private; find /etc /var -xdev ! -perm -o=r ! -type l 2>/dev/null | wc -l")
            assert "s3cr3t=" not in out and "l0gged=" not in out and "No such file" in out
            shadow = sb.run(engine.Script("bash", "cat /etc/shadow")).output.splitlines()
            host_users = [line.split(":")[0] for line in Path("/etc/shadow").read_text().splitlines()]
            assert [line.split(":")[0] for line in shadow] == host_users
            assert all(line.split(":")[1] == "*" for line in shadow)
            gshadow = sb.run(engine.Script("bash", "cat /etc/gshadow")).output.splitlines()
            assert all(line.split(":")[1] == "*" for line in gshadow)
            counts = sb.run(engine.Script("bash", "ls -A /var/log | wc -l; find /etc /var -xdev ! -perm -o=r ! -type l "
                                                  "! -path '/etc/*shadow*' 2>/dev/null | wc -l")).output.split()
            assert counts == ["0", "0"], counts
            # the rest is the host's, writable as before
            assert "agent-gym-probe" in sb.execute("useradd -m agent-gym-probe && id agent-gym-probe")
            assert Path("/etc/os-release").read_text() == sb.run(engine.Script("bash", "cat /etc/os-release")).output
    finally:
        secret_file.unlink()
        log_file.unlink()
    assert "agent-gym-probe" not in Path("/etc/passwd").read_text()
    assert "secrets masked" in OSEnv.engine_status() or bwrap.default_rootfs() is not None


def test_no_network(sandbox):
    out = sandbox.execute("python3 -c \"import socket; s=socket.socket(); s.settimeout(2); "
                          "print('rc', s.connect_ex(('1.1.1.1', 53)))\"; cat /proc/net/dev | tail -n +3 | cut -d: -f1")
    assert "rc 101" in out  # ENETUNREACH: only a loopback device exists
    assert "eth" not in out and "lo" in out
    out = sandbox.execute("curl -sS -m 2 http://deb.debian.org/; curl -sS -m 2 http://151.101.2.132/")
    assert "Could not resolve host" in out and "Failed to connect" in out and "<html" not in out


@pytest.mark.exclusive
def test_endless_commands_are_stopped(sandbox):
    t = time.monotonic()
    out = sandbox.execute("sleep 1000")
    # Ctrl-C brought the shell back (whether its prompt text arrived before the read ended is timing)
    assert time.monotonic() - t < 3 + 3 and "^C" in out and sandbox.shell_alive and sandbox.resets == 0
    out = sandbox.execute("trap '' INT; while :; do :; done")  # deaf to Ctrl-C: the processes are reset
    assert sandbox.resets == 1
    assert "back" in sandbox.execute("echo back")
    assert time.monotonic() - t < 20


@needs_bwrap
def test_ctrl_c_works_even_when_the_host_process_ignores_sigint():
    import signal

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a job started with `&` or nohup
    try:
        sb = bwrap.BwrapSandbox(engine.Limits(command_seconds=2, memory_mb=256, processes=64)).start()
        sb.execute("true")  # the shell starts while SIGINT is ignored here
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        out = sb.execute("sleep 1000")
        assert "^C" in out and sb.shell_alive and sb.resets == 0
    finally:
        sb.close()


def test_an_exited_shell_is_replaced(sandbox):
    sandbox.execute("cd /usr; touch /root/kept")
    sandbox.execute("exit")
    out = sandbox.execute("pwd; ls /root/kept")
    assert out.startswith("/\r\n/root/kept\r\n")  # a new login shell in /; the files stay
    assert sandbox.resets == 0


def _kill_everything_inside(sb) -> None:
    """`kill -9 -1` from the agent's shell (the shell lives on) and from a child (the shell dies too):
    the sandbox's init survives, every later command runs, and a killed shell is replaced."""
    init = sb.init_pid if isinstance(sb, bwrap.BwrapSandbox) else None
    sb.execute("sleep 300 & touch /root/kept")
    out = sb.execute("kill -9 -1; echo shell-lived")
    assert "shell-lived" in out
    time.sleep(0.5)  # the init, were it killable, would be gone by now (and the namespace with it)
    assert "first-after" in sb.execute("echo first-after") and "second-after" in sb.execute("echo second-after")
    sb.execute("/bin/kill -9 -1")  # from a child: kills the agent's shell as well
    time.sleep(0.5)
    out = sb.execute("pwd; ls /root/kept; echo third-after")
    assert "third-after" in out and "/root/kept" in out
    assert "S" in sb.execute("ps -o stat= -p 1") and "1-alive" in sb.execute("kill -9 1; kill -TERM 1; echo 1-alive")
    if init is not None:
        assert Path(f"/proc/{init}").exists() and sb.init_pid == init


@needs_bwrap
def test_a_sandbox_made_in_a_short_lived_thread_outlives_it(env):
    """bwrap --die-with-parent fires when the thread that started it exits: an episode reset in a
    request handler's thread, then played from another, lost its sandbox."""
    import threading

    worker = threading.Thread(target=start, args=(env, "4/Q19-0"))
    worker.start()
    worker.join()
    time.sleep(0.5)
    obs, reward, term, trunc, info = env.step(bash("wc -l < /root/matrix.txt"))
    assert info["status"] == "running" and "3" in obs, obs
    *_, info = env.step(prompt.answer_reply("3"))
    assert info["success"] is True


def test_kill_everything_inside_leaves_the_sandbox_up(sandbox):
    _kill_everything_inside(sandbox)
    assert sandbox.run(engine.Script("bash", "echo script-ran")).output == "script-ran\n"


@pytest.mark.exclusive
def test_kill_everything_inside_an_episode_goes_on(any_env):
    """The issue's case: after `kill -9 -1` the next commands run and the episode goes on to be judged."""
    env = any_env
    start(env, "4/Q19-0")
    env.step(bash("kill -9 -1"))
    time.sleep(0.5)
    obs, *_ = env.step(bash("echo first-after"))
    assert "first-after" in obs
    obs, reward, term, trunc, info = env.step(bash("wc -l < /root/matrix.txt"))
    assert "3" in obs and not (term or trunc) and info["status"] == "running"
    *_, term, trunc, info = env.step(prompt.answer_reply("3"))
    assert term and info["status"] == "completed" and info["success"] is True


def _host_pid(init_host_pid: int, inner_pid: int) -> int:
    """The host pid of the process that is ``inner_pid`` in the pid namespace of ``init_host_pid``."""
    ns = os.readlink(f"/proc/{init_host_pid}/ns/pid")
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "ns" / "pid") == ns:
                nspid = next(line for line in (entry / "status").read_text().splitlines() if line.startswith("NSpid:"))
                if int(nspid.split()[-1]) == inner_pid:
                    return int(entry.name)
        except (OSError, StopIteration):
            continue
    raise AssertionError(f"no process {inner_pid} in the namespace of {init_host_pid}")


def _stall(env, which: str, init_pid) -> None:
    """The issue's case: a sandbox wedged from outside (SIGSTOP of its init or of the agent's shell)
    ends the step within the command's deadline as `error` naming the sandbox; the next episode,
    with the stopped processes left as they are, scores."""
    import signal

    start(env, "4/Q19-0")
    sb = env.unwrapped.sandbox
    init = init_pid(sb)
    target = init if which == "init" else _host_pid(init, int(sb.execute("echo $$").split()[0]))
    os.kill(target, signal.SIGSTOP)
    try:
        time.sleep(0.1)
        t = time.monotonic()
        obs, reward, term, trunc, info = env.step(bash("echo after"))
        took = time.monotonic() - t
        assert info["status"] == "error" and info["end_reason"] == "env_error" and (term or trunc), info
        assert "sandbox" in info["error"] and "stopped" in info["error"] and str(target) in info["error"]
        assert took < sb.limits.command_seconds, took
        t = time.monotonic()
        start(env, "4/Q19-0")
        *_, term, trunc, info = env.step(prompt.answer_reply("3"))
        assert term and info["status"] == "completed" and info["success"] is True
        assert time.monotonic() - t < 30
    finally:
        try:
            os.kill(target, signal.SIGCONT)
        except ProcessLookupError:
            pass


@needs_bwrap
@pytest.mark.parametrize("which", ["init", "shell"])
@pytest.mark.exclusive
def test_a_sandbox_stopped_from_outside_ends_the_episode_as_error(env, which):
    _stall(env, which, lambda sb: sb.init_pid)


def test_100_mb_of_output_is_capped(sandbox):
    t = time.monotonic()
    out = sandbox.execute("head -c 100000000 /dev/zero | tr '\\0' a")
    assert len(out) <= sandbox.limits.output_bytes + 4096
    assert len(prompt.observation(out)) < 900
    assert time.monotonic() - t < 20
    assert "fine" in sandbox.execute("echo fine")


def test_endless_output_is_interrupted_and_capped(sandbox):
    """A writer that never ends: Ctrl-C at the deadline, and the command keeps output_bytes plus the
    last 4 KiB (the prompt), what came before Ctrl-C and after it together."""
    out = sandbox.execute("yes aaaaaaaa")
    assert len(out) <= sandbox.limits.output_bytes + 4096 and out.rstrip().endswith("#"), out[-200:]
    assert sandbox.shell_alive and sandbox.resets == 0 and "fine" in sandbox.execute("echo fine")


def test_processes_outside_cannot_be_seen_or_killed(sandbox):
    victim = subprocess.Popen(["sleep", "300"])
    try:
        out = sandbox.execute(f"ps -e | wc -l; kill -9 {victim.pid}; kill -9 -1; ls /proc | grep -c '^[0-9]'")
        assert victim.poll() is None
        listing = sandbox.run(engine.Script("bash", "ps -eo pid,comm")).output
        assert "pytest" not in listing and "python" not in listing
    finally:
        victim.kill()
        victim.wait()


def _cgroup_paths(pid: int) -> dict[str, str]:
    """{"pids": path, "memory": path} (v1) or {"": path} (v2) of a process, as /proc/<pid>/cgroup names them."""
    out = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for ctl in controllers.split(",") if controllers else [""]:
            if ctl in ("pids", "memory", ""):
                out[ctl] = path
    return out


def test_sandbox_cgroups_are_nested_in_the_runners_own(bwrap_sandbox):
    """A limit put on the runner's cgroup covers its sandboxes: theirs are made inside it."""
    from agent_gym.envs.os_interaction import cgroups

    sandbox = bwrap_sandbox
    own = cgroups.own_cgroups()
    assert sandbox._cgroups  # noqa: SLF001
    for d in sandbox._cgroups:  # noqa: SLF001
        assert d.parent in own.values() and d.name.startswith(f"agent-gym-os-{os.getpid()}-")
    mine, theirs = _cgroup_paths(os.getpid()), _cgroup_paths(sandbox.init_pid)
    sandbox.execute("true")
    shell = sandbox.shell.proc.pid  # the host side of the shell (nsenter), in the sandbox's cgroups
    for ctl in ("pids", "memory") if "memory" in own else ("",):
        assert theirs[ctl].startswith(mine[ctl].rstrip("/") + "/agent-gym-os-"), (ctl, mine, theirs)
        assert _cgroup_paths(shell)[ctl] == theirs[ctl]


def test_runner_cgroups_read_v1_v2_and_cgroup_namespaces():
    from agent_gym.envs.os_interaction import cgroups

    v1 = ("8:pids:/\n4:memory:/jobs/abc\n1:cpu:/\n0::/\n",
          "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
          "39 31 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n"
          "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n")
    assert cgroups.runner_cgroups(*v1) == {"pids": Path("/sys/fs/cgroup/pids"),
                                           "memory": Path("/sys/fs/cgroup/memory/jobs/abc"),
                                           "": Path("/sys/fs/cgroup/unified")}
    v2 = ("0::/user.slice/user-0.slice/session-3.scope\n",
          "30 24 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n")
    assert cgroups.runner_cgroups(*v2) == {"": Path("/sys/fs/cgroup/user.slice/user-0.slice/session-3.scope")}
    # a container that sees its own cgroup as the mount's root (no cgroup namespace): the mount root maps it
    ns = ("0::/docker/f00/job\n", "30 24 0:26 /docker/f00 /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n")
    assert cgroups.runner_cgroups(*ns) == {"": Path("/sys/fs/cgroup/job")}


_KILLED_RUNNER = """
import json, sys
from agent_gym.envs.os_interaction import bwrap, engine
sb = bwrap.BwrapSandbox(engine.Limits(command_seconds=3, processes=64, memory_mb=256)).start()
sb.execute("sleep 300 &")
print(json.dumps({"staging": sb._staging, "cgroups": [str(d) for d in sb._cgroups], "init": sb.init_pid,
                  "shell": sb.shell.proc.pid}), flush=True)
sys.stdin.read()
"""


@needs_bwrap
@pytest.mark.exclusive
def test_a_start_sweeps_what_a_sigkilled_runner_left():
    """The issue's case: SIGKILL of the Python process leaves its staging folder and the two
    cgroups of each live sandbox; the sandbox's processes die with it, and the next start removes
    the rest (names carry pid and start time: a live runner's are kept)."""
    import signal

    child = subprocess.Popen([sys.executable, "-c", _KILLED_RUNNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    left = json.loads(child.stdout.readline())
    with bwrap.BwrapSandbox(engine.Limits(processes=64, memory_mb=256)) as live:  # a live runner's: kept
        assert Path(left["staging"]).is_dir() and all(Path(d).is_dir() for d in left["cgroups"])
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdin.close()
        child.stdout.close()
        deadline = time.monotonic() + 30  # the sandbox dies with its runner; on a loaded machine that takes a while
        while (_start_time(left["init"]) is not None or _start_time(left["shell"]) is not None) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _start_time(left["init"]) is None and _start_time(left["shell"]) is None  # died with it
        assert Path(left["staging"]).is_dir() and len(left["cgroups"]) >= 1
        assert all(Path(d).is_dir() for d in left["cgroups"])  # what the kill left, until a start
        with bwrap.BwrapSandbox(engine.Limits(processes=64, memory_mb=256)) as sb:
            assert "ok" in sb.execute("echo ok")
            assert not Path(left["staging"]).exists() and not any(Path(d).exists() for d in left["cgroups"])
            assert Path(live._staging).is_dir() and all(d.is_dir() for d in live._cgroups)  # noqa: SLF001
        assert "still" in live.execute("echo still")


def test_memory_limit(sandbox):
    out = sandbox.execute("python3 -c \"a = bytearray(600 * 1024 * 1024); print('allocated')\"; echo rc=$?")
    assert "allocated" not in out and "rc=137" in out  # killed (SIGKILL) by the 256 MB cgroup limit
    assert "allocated" in sandbox.execute("python3 -c \"a = bytearray(100 * 1024 * 1024); print('allocated')\"")
    assert "still" in sandbox.execute("echo still")


# ------------------------------------------------------------------ Docker
@pytest.fixture(scope="module")
def docker_host():
    """A private dockerd (no bridge, no iptables) with the image imported from the built rootfs."""
    rootfs = bwrap.default_rootfs()
    if rootfs is None:
        pytest.skip("the sandbox image is not built: run docker/os/build.sh")
    if docker.sdk is None:
        pytest.skip(f"the Docker SDK is not installed: {docker.INSTALL}")
    daemon = docker.PrivateDockerd(rootfs)
    try:
        host = daemon.__enter__()
    except engine.SandboxError as exc:
        pytest.skip(str(exc))
    yield host
    daemon.__exit__()


def _containers(host: str, **labels: str) -> dict[str, dict[str, str]]:
    """{container id: its labels} of every container of the daemon (with ``labels``, if given)."""
    client = docker.connect(host)
    try:
        found = client.api.containers(all=True, filters={"label": [f"{k}={v}" for k, v in labels.items()]})
        return {c["Id"]: c["Labels"] for c in found}
    finally:
        client.close()


@pytest.mark.exclusive
def test_scripts_past_their_time_limit_are_cut(sandbox):
    """A script beside the shell (upstream's exec_run) gets its arguments and exit status, and one
    past its time limit ends on time with what it printed, then nothing of it runs on."""
    assert sandbox.run(engine.Script("bash", "echo $1 $2; exit 3"), "a", "b") == engine.RunResult(3, "a b\n")
    t = time.monotonic()
    result = sandbox.run(engine.Script("bash", "echo started; sleep 100; echo never"), timeout=1)
    assert result.timed_out and result.exit_code == -1 and result.output == "started\n"
    assert time.monotonic() - t < 1 + 5  # the limit, plus ending the exec on a loaded machine
    assert "fine" in sandbox.execute("echo fine")


@pytest.mark.docker
def test_docker_sandbox_is_labelled_with_its_owner(docker_host):
    """Labels name the process that made the container: boot id, hostname, pid and start time."""
    from agent_gym.envs.os_interaction import cgroups

    with docker.DockerSandbox(host=docker_host) as sb:
        labels = _containers(docker_host)[sb.container]
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    import socket

    assert labels == {"created_by": "agent-gym-os",
                      "agent-gym-os.owner": f"{boot}/{socket.gethostname()}/{cgroups.owner_tag()}"}
    assert cgroups.owner_tag().startswith(f"{os.getpid()}-")


_KILLED_DOCKER_RUNNER = """
import json, sys
from agent_gym.envs.os_interaction import docker, engine
sb = docker.DockerSandbox(engine.Limits(command_seconds=3), host=sys.argv[1]).start()
sb.execute("sleep 300 &")
print(json.dumps({"container": sb.container}), flush=True)
sys.stdin.read()
"""


@pytest.mark.docker
def test_docker_start_removes_the_containers_a_sigkilled_runner_left(docker_host):
    """The issue's case: a runner killed with SIGKILL leaves its container running; the next start
    removes it, and keeps a live runner's, and one whose owner is this pid with another start
    time (a reused pid) is removed too."""
    import signal
    import socket

    child = subprocess.Popen([sys.executable, "-c", _KILLED_DOCKER_RUNNER, docker_host], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    left = json.loads(child.stdout.readline())["container"]
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    here = f"{boot}/{socket.gethostname()}"
    assert _containers(docker_host)[left]["agent-gym-os.owner"].startswith(f"{here}/{child.pid}-")
    with docker.DockerSandbox(host=docker_host) as live:
        reused = live.api.create_container(  # our own pid, but another process's start time
            docker.DEFAULT_IMAGE, ["true"],
            labels={**docker.CREATED_BY, docker.OWNER_LABEL: f"{here}/{os.getpid()}-1"})["Id"]
        elsewhere = live.api.create_container(  # another machine's runner sharing the daemon: not ours to judge
            docker.DEFAULT_IMAGE, ["true"],
            labels={**docker.CREATED_BY, docker.OWNER_LABEL: f"{boot}/another-host/{child.pid}-1"})["Id"]
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdin.close()
        child.stdout.close()
        assert left in _containers(docker_host)  # the container outlives its runner, until a start
        with docker.DockerSandbox(host=docker_host) as sb:
            now = _containers(docker_host, created_by="agent-gym-os")
            assert left not in now and reused not in now
            assert {sb.container, live.container, elsewhere} <= set(now)
            assert "ok" in sb.execute("echo ok")
        live.api.remove_container(elsewhere, force=True)


@pytest.mark.docker
@pytest.mark.parametrize("which", ["init", "shell"])
@pytest.mark.exclusive
def test_docker_sandbox_stopped_from_outside_ends_the_episode_as_error(docker_host, which):
    need_data("agentbench_os")
    env = gym.make("AgentTuning/OS-v0", backend="docker", host=docker_host, limits=engine.Limits(command_seconds=3))
    try:
        _stall(env, which, lambda sb: sb.api.inspect_container(sb.container)["State"]["Pid"])
    finally:
        env.close()


@pytest.mark.docker
def test_docker_follows_the_current_docker_context(docker_host, tmp_path, monkeypatch):
    """With DOCKER_HOST unset, the daemon is the current docker context's (as `docker context use`
    leaves it in the config folder)."""
    import hashlib

    meta = tmp_path / "contexts" / "meta" / hashlib.sha256(b"agent-gym-test").hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({"Name": "agent-gym-test", "Metadata": {}, "Endpoints": {
        "docker": {"Host": docker_host, "SkipTLSVerify": False}}}))
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": "agent-gym-test"}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    assert docker.endpoint()[1] == f"{docker_host} (docker context 'agent-gym-test'; DOCKER_HOST unset)"
    with docker.DockerSandbox() as sb:
        assert sb.container in _containers(docker_host) and "ok" in sb.execute("echo ok")


DOWN = "unix:///nonexistent/agent-gym/docker.sock"


@pytest.mark.skipif(docker.sdk is None, reason=f"the Docker SDK is not installed: {docker.INSTALL}")
def test_a_docker_daemon_that_is_down_stops_the_run_naming_docker_host(tmp_path, monkeypatch, capsys):
    """One clear error before the first episode, naming the endpoint and DOCKER_HOST: from host=,
    from DOCKER_HOST, and `agent-gym run` exits 2 with nothing recorded."""
    need_data("agentbench_os")
    env = gym.make("AgentTuning/OS-v0", backend="docker", host=DOWN)
    try:
        with pytest.raises(engine.SandboxError, match="DOCKER_HOST") as raised:
            env.unwrapped.preflight()
        assert DOWN in str(raised.value) and "does not answer" in str(raised.value)
    finally:
        env.close()
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")  # nothing listens on the discard port
    t = time.monotonic()
    with pytest.raises(docker.DaemonUnreachable, match=r"tcp://127.0.0.1:9 \(DOCKER_HOST\)"):
        docker.DockerSandbox().start()
    assert time.monotonic() - t < 10
    out = tmp_path / "run.jsonl"
    code = cli.main(["run", "AgentTuning/OS-v0", "--policy", "expert", "-n", "1", "--env-arg", "backend=docker",
                     "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "DOCKER_HOST" in err and "tcp://127.0.0.1:9" in err, err
    assert not out.exists() or not out.read_text().strip()
