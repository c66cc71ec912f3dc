"""No episode sees or changes another's state (issue 16), for every registered env.

* Every env: 4 episodes played at once, each on its own env in its own thread, end exactly as the
  same 4 episodes played one after another (score, status, success, end reason).
* Where an episode has state of its own, each writes a marker the others then look for: files and
  processes in the OS sandbox (bubblewrap and Docker), tables in the DB server, files in HumanEval's
  sandbox, cookies and web storage in WebArena's browser; and the next episode of the same env sees
  none of it. The KG store cannot be written by any call; MiniWoB's task pages keep no storage.
* The OS sandbox's escape checks run on both backends (tests/envs/test_os.py holds the fuller bwrap
  suite and the Docker backend's own tests).
"""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import pytest

from .conftest import (ALL_IDS, FOREIGN_ACTIONS, EnvCase, Stepper, db_sql, env_case, os_bash, python_block,
                       require)

#: Replies of each episode in the concurrency check: its own expert's first ones, then two other tasks' actions.
OWN_REPLIES = 4


# with pytest-xdist (tests/conftest.py): 4 episodes at once under time bounds
pytestmark = pytest.mark.exclusive


def _script(stepper: Stepper, task) -> list[str]:
    stepper.reset(task)
    own = stepper.expert_replies()
    return own[:OWN_REPLIES] + [FOREIGN_ACTIONS[0], FOREIGN_ACTIONS[3]]


def _play(stepper: Stepper, task, replies: list[str]) -> tuple:
    stepper.reset(task)
    info: dict = {}
    for reply in replies:
        (_, _, terminated, truncated, info), _ = stepper.step(reply)
        if terminated or truncated:
            break
    return info.get("score"), info.get("status"), info.get("success"), info.get("end_reason")


def _in_threads(jobs) -> list:
    """Run the callables at once, one thread each; their results in order (a raise fails the test)."""
    results: list = [None] * len(jobs)
    errors: list = []
    start = threading.Barrier(len(jobs))

    def run(i, job):
        try:
            start.wait(60)
            results[i] = job()
        except BaseException as exc:  # noqa: BLE001 - reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(900)
    if errors:
        raise errors[0]
    assert not any(t.is_alive() for t in threads), "a concurrent episode never ended"
    return results


@pytest.fixture
def four():
    """Up to 4 envs of one case (``four(case)``), closed at the end of the test."""
    opened: list[Stepper] = []

    def make(case: EnvCase, n: int = 4) -> list[Stepper]:
        for _ in range(n):
            opened.append(Stepper(case, slack=n))
        return opened[-n:]

    yield make
    for stepper in opened:
        stepper.close()


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_four_concurrent_episodes_end_as_the_same_four_played_one_after_another(env_id, four):
    case = env_case(env_id)
    steppers = four(case)
    tasks = (steppers[0].task_choices() * 4)[:4]
    scripts = [_script(steppers[0], task) for task in tasks]
    serial = [_play(steppers[0], task, script) for task, script in zip(tasks, scripts)]
    together = _in_threads([lambda s=s, t=t, r=r: _play(s, t, r) for s, t, r in zip(steppers, tasks, scripts)])
    assert together == serial
    assert all(status is not None and status != "error" for _, status, _, _ in serial), serial


# ------------------------------------------------------------------------------------------ OS sandbox
def _docker_host(stack) -> str:
    """A Docker daemon for the sandbox: the private one tests/envs/test_os.py starts, else ``DOCKER_HOST``."""
    from agent_gym.envs.os_interaction import bwrap, docker, engine

    daemon_class = getattr(docker, "PrivateDockerd", None)
    rootfs = bwrap.default_rootfs()
    if daemon_class is not None and rootfs is not None:
        daemon = daemon_class(rootfs)
        try:
            host = daemon.__enter__()
        except engine.SandboxError as exc:
            pytest.skip(f"no Docker daemon: {exc}")
        stack.callback(daemon.__exit__)
        return host
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    pytest.skip("no Docker daemon: build the OS image (docker/os/build.sh) or set DOCKER_HOST")


@pytest.fixture(scope="module", params=["bwrap", pytest.param("docker", marks=pytest.mark.docker)])
def os_case(request):
    """The OS env's case on each sandbox backend (3 s commands)."""
    import contextlib

    import gymnasium as gym

    from agent_gym.envs.os_interaction import engine
    from agent_gym.envs.os_interaction.bwrap import BwrapSandbox

    stack = contextlib.ExitStack()
    if request.param == "bwrap":
        def make(resources):
            require(BwrapSandbox.unavailable(), "bwrap sandbox")
            return gym.make("AgentTuning/OS-v0", limits=engine.Limits(command_seconds=3)).unwrapped
    else:
        host = _docker_host(stack)

        def make(resources):
            return gym.make("AgentTuning/OS-v0", backend="docker", host=host,
                            limits=engine.Limits(command_seconds=3)).unwrapped
    yield EnvCase(f"AgentTuning/OS-v0[{request.param}]", make, 3.0 + 2.0 + 20.0, engine=True, datasets=("agentbench_os",))
    stack.close()


def _shell(stepper: Stepper, code: str) -> str:
    (obs, _, _, _, info), _ = stepper.step(os_bash(code))
    assert info["status"] != "error", obs
    return obs


def test_os_episodes_see_none_of_each_others_files_or_processes(os_case, four):
    steppers = four(os_case, 3)
    tags = [f"agm{uuid.uuid4().hex[:8]}" for _ in steppers]
    for stepper in steppers:
        stepper.reset(0)

    def write(stepper, tag):
        return _shell(stepper, f"echo {tag} > /tmp/{tag}; echo {tag} > /root/{tag}; echo {tag} > /{tag}; "
                               f"export AGM={tag}; (exec -a {tag} sleep 300 &) ; echo written")

    assert all("written" in out for out in _in_threads([lambda s=s, t=t: write(s, t) for s, t in zip(steppers, tags)]))
    look = "ls /tmp /root / ; ps -eo args; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n' | grep AGM"
    seen = _in_threads([lambda s=s: _shell(s, look) for s in steppers])
    for i, out in enumerate(seen):
        assert tags[i] in out, out  # its own marker is there
        assert not [t for j, t in enumerate(tags) if j != i and t in out], out
    steppers[0].reset(1)  # the next episode of the same env: none of the last one's state
    out = _shell(steppers[0], look)
    assert not [t for t in tags if t in out], out


ESCAPES = [
    # (what is tried, a shell command, text that must not be in the output)
    ("write a host file", "echo pwned > /proc/1/root/tmp/agm-escape; cat /proc/1/root/tmp/agm-escape 2>&1; echo done",
     None),
    ("read the host's files", "cat /work/main/pyproject.toml /etc/hostname.host 2>&1; ls /work 2>&1", "agent-gym"),
    ("reach the network", "curl -sS -m 3 http://1.1.1.1/ 2>&1; python3 -c \"import socket; s=socket.socket(); "
     "s.settimeout(2); print('rc', s.connect_ex(('1.1.1.1', 80)))\"", "rc 0"),
    ("see host processes", "ps -eo args", "pytest"),
    ("load a kernel module or remount", "mount -o remount,rw /proc/sys 2>&1; echo 1 > /proc/sys/kernel/sysrq 2>&1 "
     "&& echo SYSRQ-WRITTEN", "SYSRQ-WRITTEN"),
]


@pytest.mark.parametrize("what, code, forbidden", ESCAPES, ids=[e[0] for e in ESCAPES])
def test_os_sandbox_escapes_fail_on_both_backends(os_case, four, what, code, forbidden, tmp_path):
    stepper = four(os_case, 1)[0]
    stepper.reset(0)
    out = _shell(stepper, code)
    if forbidden:
        assert forbidden not in out, (what, out)
    assert not Path("/tmp/agm-escape").exists(), what


def test_os_fork_bomb_and_rm_rf_leave_the_next_episode_whole(os_case, four):
    stepper = four(os_case, 1)[0]
    stepper.reset(0)
    _shell(stepper, ":(){ :|:& };:")
    _shell(stepper, "rm -rf --no-preserve-root / 2>/dev/null; echo gone")
    stepper.reset(0)
    out = _shell(stepper, "ls /bin/bash && echo whole")
    assert "whole" in out, out


# ------------------------------------------------------------------------------------------ DB server
def test_db_episodes_see_none_of_each_others_tables(four):
    steppers = four(env_case("AgentTuning/DB-v0"), 3)
    tags = [f"agm_{uuid.uuid4().hex[:8]}" for _ in steppers]
    for stepper in steppers:
        stepper.reset("other/0")
    names = [s.call(lambda env: env._db.name, bound=5)[0] for s in steppers]  # noqa: SLF001 - the attack's target
    _in_threads([lambda s=s, t=t: s.step(db_sql(f"CREATE TABLE {t} (a INT)")) for s, t in zip(steppers, tags)])
    look = db_sql("SELECT table_schema, table_name FROM information_schema.tables WHERE table_name LIKE 'agm\\_%'")
    seen = _in_threads([lambda s=s: s.step(look)[0][0] for s in steppers])
    for i, out in enumerate(seen):
        assert tags[i] in out and not [t for j, t in enumerate(tags) if j != i and t in out], out
    for i, stepper in enumerate(steppers):  # naming another episode's database: refused
        other = names[(i + 1) % len(names)]
        if other == names[i]:
            continue
        for sql in (f"SELECT * FROM `{other}`.`{tags[(i + 1) % len(tags)]}`", f"DROP DATABASE `{other}`",
                    f"USE `{other}`"):
            (obs, _, _, _, info), _ = stepper.step(db_sql(sql))
            assert "denied" in obs.lower(), (sql, obs)
    steppers[0].reset("other/0")
    assert tags[0] not in steppers[0].step(look)[0][0]


# ------------------------------------------------------------------------------------------ HumanEval
def test_humaneval_programs_see_none_of_each_others_files(four):
    steppers = four(env_case("AgentTuning/HumanEval-v0"), 2)
    tag = f"agm{uuid.uuid4().hex[:8]}"
    paths = [f"/tmp/{tag}", f"/dev/shm/{tag}", f"/var/tmp/{tag}", f"/{tag}"]
    for stepper in steppers:
        stepper.reset(0)
    # the problem's own solution, with code of ours after it at module level
    solution = steppers[0].call(lambda env: env.task.prompt + env.expert_replies(env.task)[0], bound=10)[0]
    writer = python_block(solution + "\nimport time\nfor p in %r:\n    try:\n        open(p, 'w').write('x')\n"
                          "    except OSError:\n        pass\ntime.sleep(2)\n" % paths)
    reader = python_block(solution + "\nimport os, time\ntime.sleep(1)\nassert not any(os.path.exists(p) for p in %r)\n"
                          % paths)
    results = _in_threads([lambda: steppers[0].step(writer)[0], lambda: steppers[1].step(reader)[0]])
    assert results[1][4]["score"] == 1.0, results[1][0]  # the reader passed: no file of the writer's was there
    steppers[0].reset(0)  # the writer's next program: its own files are gone too
    (obs, _, _, _, info), _ = steppers[0].step(reader)
    assert info["score"] == 1.0, obs
    assert not [p for p in paths if Path(p).exists()]


# ------------------------------------------------------------------------------------------ KG store
def test_kg_calls_cannot_write_the_store(four):
    stepper = four(env_case("AgentTuning/KnowledgeGraph-v0"), 1)[0]
    stepper.reset(0)
    gold = stepper.call(lambda env: env.expert_replies(env.task), bound=10)[0]
    for argument in ("m.0gasg> } ; DROP ALL ; SELECT * { ?s ?p <x", "m.0gasg> . } INSERT DATA { <a> <b> <c> } #",
                     "?x) } CLEAR DEFAULT #", "\" } ; LOAD <file:///etc/passwd> ; #"):
        for call in (f"get_relations({argument})", f"get_neighbors({argument}, spaceflight.rocket_engine.designed_by)"):
            (obs, _, terminated, truncated, info), _ = stepper.step(f"Thought: x\nAction: {call}")
            assert info["status"] != "error", obs
            if terminated or truncated:
                stepper.reset(0)
    assert _play(stepper, 0, gold)[0] == 1.0  # the gold answer still holds: the store is as it was


# ------------------------------------------------------------------------------------------ browsers
def test_webarena_cookies_and_storage_are_the_episodes_own(four):
    steppers = four(env_case("AgentTuning/WebArena-v0"), 2)
    for stepper in steppers:
        stepper.reset("0")
    tag = f"agm{uuid.uuid4().hex[:8]}"
    set_state = ("document.cookie = 'agm=%s; path=/'; localStorage.setItem('agm', '%s'); "
                 "sessionStorage.setItem('agm', '%s');" % (tag, tag, tag))
    get_state = "return [document.cookie, localStorage.getItem('agm'), sessionStorage.getItem('agm')].join('|')"

    def script(env, js):
        return env._browser.driver.execute_script(js)  # noqa: SLF001 - a page's own script, as a site would run it

    steppers[0].call(script, set_state, bound=20)
    assert tag in steppers[0].call(script, get_state, bound=20)[0]
    assert tag not in steppers[1].call(script, get_state, bound=20)[0]  # another episode, the same origin
    steppers[0].reset("0")  # the next episode of the same env
    assert tag not in steppers[0].call(script, get_state, bound=20)[0]
    steppers[0].reset("2")  # another site, then back: nothing kept for the first origin either
    steppers[0].reset("0")
    assert tag not in steppers[0].call(script, get_state, bound=20)[0]


def test_miniwob_task_pages_keep_no_cookies_or_web_storage():
    """MiniWoB's episodes share one browser per process (a window each, engine.Page): what keeps them
    apart is that no task page, nor MiniWoB's core script, writes cookies or web storage."""
    from agent_gym.testing import need_data

    need_data("miniwob")
    from agent_gym.envs.miniwob import data, engine

    pages = {episode.task for episode in data.load()}
    root = engine.html_dir()
    checked = 0
    for path in [*(root / f"{task}.html" for task in pages), *(root.parent / "core").glob("*.js")]:
        text = path.read_text(errors="replace")
        checked += 1
        for api in ("localStorage", "sessionStorage", "document.cookie", "indexedDB"):
            assert api not in text, f"{path} uses {api}"
    assert checked >= len(pages)
