"""The env server (``agent-gym serve-env``) and RemoteEnv: real servers on localhost, real envs.

A remote episode must be the in-process episode: same observations, rewards and info for the
same seed. Sessions are separate envs; limits answer with errors that name the option, and the
server lives on.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import gymnasium as gym
import pytest

pytest.importorskip("openenv.core", reason="the env server needs OpenEnv: pip install 'agent-gym[envserver]'")

import agent_gym  # noqa: E402,F401
from agent_gym.episode import run_episode  # noqa: E402
from agent_gym.policies.simple import expert  # noqa: E402
from agent_gym.remote import EnvServerFull, EnvServerUnavailable, RemoteEnv, RemoteEnvError, SessionClosed  # noqa: E402
from agent_gym.testing import need_data  # noqa: E402
from agent_gym.trajectory import Trajectory, dumps  # noqa: E402

GSM8K, DB, ALFWORLD = "AgentTuning/GSM8K-v0", "AgentTuning/DB-v0", "AgentTuning/Alfworld-v0"
DATA = {GSM8K: ["gsm8k"], DB: ["dbbench"], ALFWORLD: ["alfworld", "alfworld-agentbench"]}
MAX_PAYLOAD = 64 * 1024


def _launch(*args: str) -> subprocess.Popen:
    """``agent-gym serve-env ARGS --port 0`` in a process of its own."""
    return subprocess.Popen([sys.executable, "-m", "agent_gym.cli", "serve-env", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())


def _url(proc: subprocess.Popen) -> str:
    """The server's URL, from the line it prints once it listens."""
    line = proc.stdout.readline()
    if "serving" not in line:
        proc.kill()
        pytest.fail(f"agent-gym serve-env did not start: {line}{proc.stdout.read()}")
    # keep reading what it logs: a full pipe would block the server
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return line.split(" on ", 1)[1].split()[0]


def _start(*args: str) -> tuple[subprocess.Popen, str]:
    proc = _launch(*args)
    return proc, _url(proc)


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def servers():
    """Two servers, started at once: a roomy one, and one with tight limits."""
    procs = [_launch("--env", "gsm8k,db,alfworld", "--max-sessions", "8", "--idle-timeout", "120",
                     "--max-payload-bytes", str(MAX_PAYLOAD)),
             _launch("--env", "gsm8k,db", "--max-sessions", "2", "--idle-timeout", "1")]
    try:
        yield {"url": _url(procs[0]), "tight": _url(procs[1])}
    finally:
        for proc in procs:
            _stop(proc)


def _record(traj) -> dict:
    """A trajectory as its JSONL record, less the wall-clock fields."""
    record = json.loads(dumps(traj))
    for key in ("seconds", "started_at"):
        record.pop(key, None)
    for step in record["steps"]:
        step.pop("seconds", None)
    return record


@pytest.mark.parametrize("env_id,seed", [(GSM8K, 11), (DB, 5), (ALFWORLD, 3)])
def test_a_seeded_episode_is_the_same_in_process_and_through_the_server(servers, env_id, seed):
    for name in DATA[env_id]:
        need_data(name)
    here = gym.make(env_id)
    try:
        local = run_episode(here, expert(here), env_id=env_id, seed=seed)
    finally:
        here.close()
    remote_env = RemoteEnv(servers["url"], env_id)
    try:
        remote = run_episode(remote_env, expert(remote_env), env_id=env_id, seed=seed)
    finally:
        remote_env.close()
    assert local.status != "error", local.error
    assert local.steps and local.score > 0  # the expert solved it: the comparison covers a whole episode
    assert _record(remote) == _record(local)


def test_openenvs_own_generic_client_drives_an_env(servers):
    need_data("gsm8k")
    from openenv.core import GenericEnvClient

    with GenericEnvClient(base_url=servers["url"]).sync() as client:
        first = client.reset(env_id="gsm8k", seed=0, options={"task": "3"})
        info = first.observation["info"]
        assert info["task_id"] == "3" and info["status"] == "running" and not first.done
        assert [m["role"] for m in info["prompt"]][:2] == ["user", "assistant"]  # the paper's 8-shot chat
        assert "sprints" in first.observation["text"]  # task 3: James's sprints
        result = client.step({"message": "So he runs 540 meters. The answer is 540"})
        assert result.done and result.reward == 1.0
        assert result.observation["terminated"] and not result.observation["truncated"]
        assert result.observation["info"]["status"] == "completed"
        state = client.state()
        assert state["env_id"] == GSM8K and state["task_id"] == "3" and state["expert_replies"] is None


def test_sessions_are_separate_envs(servers):
    need_data("gsm8k")
    a = RemoteEnv(servers["url"], GSM8K)
    b = RemoteEnv(servers["url"], GSM8K, extraction="robust")
    try:
        assert a.options() == {"extraction": "paper"} and b.options() == {"extraction": "robust"}
        _, info_a = a.reset(options={"task": "3"})
        _, info_b = b.reset(options={"task": "5"})
        answer_b = b.expert_replies(b.task)[0]
        answer_a = a.expert_replies(a.task)[0]
        assert answer_a != answer_b
        # interleaved: each session answers its own question; neither reset touched the other
        _, reward_a, done_a, _, info_a = a.step(answer_a)
        assert (reward_a, done_a, info_a["task_id"]) == (1.0, True, "3")
        _, reward_b, done_b, _, info_b = b.step(answer_b)
        assert (reward_b, done_b, info_b["task_id"]) == (1.0, True, "5")
        assert a.state().task_id == "3" and b.state().task_id == "5"
    finally:
        a.close()
        b.close()


@pytest.mark.exclusive
def test_an_idle_session_is_closed_and_a_reset_opens_a_new_one(servers):
    need_data("gsm8k")
    env = RemoteEnv(servers["tight"], GSM8K)
    try:
        env.reset(seed=0)
        time.sleep(4.0)  # idle well past the server's --idle-timeout 1 (its reaper is another process)
        with pytest.raises(SessionClosed, match=r"idle for more than 1 s \(agent-gym serve-env --idle-timeout\)"):
            env.step("The answer is 1")
        assert _active(servers["tight"]) == 0  # the server closed the env and freed the slot
        _, info = env.reset(seed=0, options={"task": "3"})  # a new session
        assert info["task_id"] == "3"
        assert env.step(env.expert_replies(env.task)[0])[1] == 1.0
    finally:
        env.close()


@pytest.mark.exclusive
def test_a_step_longer_than_the_idle_timeout_is_not_cut(servers):
    need_data("dbbench")
    from agent_gym.envs.db.prompt import operation

    env = RemoteEnv(servers["tight"], DB)
    try:
        if env.options().get("engine") != "mariadb":
            pytest.skip("needs MariaDB's SLEEP() (apt-get install mariadb-server)")
        env.reset(seed=0)
        started = time.monotonic()
        obs, _, done, _, info = env.step(operation("SELECT SLEEP(2.5)"))  # in flight 2.5 s; idle limit 1 s
        assert time.monotonic() - started >= 2.5 and not done and info["action_valid"], obs
        assert not env.step(operation("SELECT 1"))[2]  # the same session and episode
    finally:
        env.close()


@pytest.mark.exclusive
def test_the_session_limit_refuses_one_more_with_the_option_to_raise(servers):
    need_data("gsm8k")
    first, second = RemoteEnv(servers["tight"], GSM8K), RemoteEnv(servers["tight"], GSM8K)
    try:
        with pytest.raises(EnvServerFull, match=r"2/2 sessions.*--max-sessions"):
            RemoteEnv(servers["tight"], GSM8K)
        first.close()  # closing frees the slot at once
        third = RemoteEnv(servers["tight"], GSM8K)
        third.reset(seed=1)
        third.close()
        second.reset(seed=2)  # the others never noticed
    finally:
        first.close()
        second.close()


def test_an_oversized_payload_is_refused_and_the_session_goes_on(servers):
    need_data("gsm8k")
    import requests

    env = RemoteEnv(servers["url"], GSM8K)
    try:
        env.reset(options={"task": "3"})
        with pytest.raises(RemoteEnvError, match=r"over this server's limit of 65536 bytes .*--max-payload-bytes"):
            env.step("x" * (MAX_PAYLOAD + 1))
        assert env.step("The answer is 540")[1] == 1.0  # the same episode, still running
    finally:
        env.close()
    response = requests.post(servers["url"] + "/mcp", data=b"{" * (MAX_PAYLOAD + 1), timeout=30)
    assert response.status_code == 413 and "--max-payload-bytes" in response.json()["detail"]


def test_a_binary_frame_and_a_flag_that_is_not_a_boolean_get_clear_errors(servers):
    """On the raw WebSocket: a binary frame is answered with what to send instead (it was ``"'text'"``), a
    reset key it does not know is named, a reset's ``expert`` or ``episode`` must be a boolean (``"no"``
    counted as true), and the session goes on."""
    need_data("gsm8k")
    from websockets.sync.client import connect

    with connect(servers["url"].replace("http", "ws", 1) + "/ws") as ws:
        ws.send(b'{"type": "reset", "data": {}}')
        reply = json.loads(ws.recv(timeout=30))
        assert reply["type"] == "error" and "text frame of JSON" in reply["data"]["message"], reply
        ws.send(json.dumps({"type": "reset", "data": {"env_id": GSM8K, "sede": 3}}))
        reply = json.loads(ws.recv(timeout=30))
        assert reply["type"] == "error" and "reset takes seed, " in reply["data"]["message"], reply
        assert "not sede" in reply["data"]["message"]
        for flag in ("expert", "episode"):
            ws.send(json.dumps({"type": "reset", "data": {"env_id": GSM8K, flag: "no"}}))
            reply = json.loads(ws.recv(timeout=30))
            assert reply["type"] == "error" and f"{flag} must be true or false, got 'no'" in reply["data"]["message"]
        ws.send(json.dumps({"type": "reset", "data": {"env_id": GSM8K, "options": {"task": "3"}}}))
        reply = json.loads(ws.recv(timeout=30))
        assert reply["type"] == "observation" and reply["data"]["observation"]["info"]["task_id"] == "3", reply


def test_env_errors_keep_their_type_and_the_session(servers):
    need_data("gsm8k")
    with pytest.raises(ValueError, match=r"has no option 'extractoin'"):
        RemoteEnv(servers["url"], GSM8K, extractoin="robust")
    with pytest.raises(ValueError, match=r"does not serve 'AgentTuning/MMLU-v0'.*serve-env --env"):
        RemoteEnv(servers["url"], "AgentTuning/MMLU-v0")
    env = RemoteEnv(servers["url"], GSM8K)
    try:
        with pytest.raises(KeyError, match="unknown task id 'no-such-task'"):
            env.reset(options={"task": "no-such-task"})
        with pytest.raises(gym.error.ResetNeeded):
            env.step("The answer is 1")
        assert env.reset(options={"task": "3"})[1]["task_id"] == "3"  # the session lives on
    finally:
        env.close()


def test_check_env_passes_on_remote_env(servers):
    need_data("gsm8k")
    from gymnasium.utils.env_checker import check_env

    env = RemoteEnv(servers["url"], GSM8K)
    try:
        check_env(env)
    finally:
        env.close()
    env.close()  # twice is fine


def test_a_server_that_is_not_there_or_goes_away_is_named():
    need_data("gsm8k")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    with pytest.raises(EnvServerUnavailable, match=rf"127.0.0.1:{port}.*agent-gym serve-env"):
        RemoteEnv(f"http://127.0.0.1:{port}", GSM8K, connect_timeout_s=5)
    proc, url = _start("--env", "gsm8k")
    try:
        env = RemoteEnv(url, GSM8K)
        env.reset(seed=0)
    finally:
        proc.kill()
        proc.wait()
    with pytest.raises(EnvServerUnavailable, match=rf"{url}.*still running"):
        env.step("The answer is 1")
    with pytest.raises(EnvServerUnavailable, match=url):
        env.reset(seed=0)
    env.close()


def _active(url: str) -> int:
    import requests

    for _ in range(50):  # the server's teardown runs just after the close
        active = requests.get(url + "/agent-gym", timeout=10).json()["active_sessions"]
        if active == 0:
            return 0
        time.sleep(0.1)
    return active


def test_agent_gym_run_plays_through_the_server_and_resumes(servers, tmp_path):
    """``agent-gym run --env-server URL``: the same records as a local run; a rerun resumes (plays nothing)."""
    for name in DATA[GSM8K] + DATA[DB]:
        need_data(name)
    base = [sys.executable, "-m", "agent_gym.cli", "run", "gsm8k", "db", "-n", "2", "--policy", "expert",
            "--no-progress", "-c", "2"]
    remote_out, local_out = tmp_path / "remote.jsonl", tmp_path / "local.jsonl"
    for cmd in ([*base, "--env-server", servers["url"], "-o", str(remote_out)], [*base, "-o", str(local_out)],
                [*base, "--env-server", servers["url"], "-o", str(remote_out)]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]

    def records(path):
        out = {}
        for line in path.read_text().splitlines():
            record = _record(Trajectory.from_dict(json.loads(line)))
            assert record["episode_id"] not in out, "an episode was recorded twice"
            out[record["episode_id"]] = record
        return out

    remote, local = records(remote_out), records(local_out)
    assert len(local) == 4 and all(r["score"] == 1.0 for r in local.values())
    assert remote == local
    refused = subprocess.run([*base, "--env-server", servers["url"], "--workers", "processes", "-o",
                              str(tmp_path / "x.jsonl")], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--env-server plays from threads" in refused.stderr


def test_a_run_the_server_cannot_hold_stops_before_the_first_episode(servers, tmp_path):
    """-c above the server's free sessions once recorded EnvServerFull errors episode after episode."""
    need_data("gsm8k")
    out = tmp_path / "run.jsonl"
    for envs, why in ((["gsm8k", "db"], "lower -c, or start the server with --max-sessions 4"),
                      (["alfworld"], "does not serve AgentTuning/Alfworld-v0")):
        done = subprocess.run([sys.executable, "-m", "agent_gym.cli", "run", *envs, "-n", "2", "-c", "2", "--policy",
                               "expert", "--no-progress", "--env-server", servers["tight"], "-o", str(out)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and why in done.stderr, done.stderr[-2000:]
        assert not out.exists() or not out.read_text().strip()
