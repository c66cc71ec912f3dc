"""Several inference instances behind one backend (``--url A --url B``), against real ``agent-gym serve`` processes.

AgentTuning's README starts more TGI instances on more ports and its harnesses spread requests over them;
here requests go to the least-loaded live instance, a dead one is taken out and tried again later, and a
rollout goes on while one instance is left (issue 18).
"""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from policy_servers import free_port, serve, wait_healthy

from agent_gym.policies.backend import (POOL_BACKOFF, BackendUnavailable, PolicySetupError, PooledBackend,
                                        get_backend, split_urls)

pytest.importorskip("text_generation")


# with pytest-xdist (tests/conftest.py): least-loaded routing and kills timed against requests
pytestmark = pytest.mark.exclusive


@pytest.fixture(scope="module")
def pair(local_backend) -> Iterator[list[tuple[subprocess.Popen, str]]]:
    """Two ``agent-gym serve`` instances of the embedded model (the second is killed by the last test)."""
    with serve() as first, serve() as second:
        yield [first, second]


def serve_on(port: int) -> subprocess.Popen:
    """``agent-gym serve`` on a given port (a dead instance's port coming back)."""
    proc = subprocess.Popen([sys.executable, "-m", "agent_gym.policies.serve", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_healthy(proc, f"http://127.0.0.1:{port}", 120)
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def by_url(pool: PooledBackend) -> dict[str, dict]:
    return {i["url"]: i for i in pool.instances()}


def test_url_lists_split_on_commas_and_repeats():
    assert split_urls("http://a:1, http://b:2,,") == ["http://a:1", "http://b:2"]
    assert split_urls(["http://a:1", "http://b:2,http://c:3"]) == ["http://a:1", "http://b:2", "http://c:3"]
    with pytest.raises(PolicySetupError, match="twice"):
        PooledBackend("tgi", ["http://127.0.0.1:1", "http://127.0.0.1:1"])
    with pytest.raises(PolicySetupError, match="tgi and openai"):
        PooledBackend("local", ["a", "b"])


def test_requests_go_to_the_least_loaded_instance(pair):
    (_, a), (_, b) = pair
    pool = get_backend("tgi", url=f"{a},{b}")
    assert isinstance(pool, PooledBackend) and pool.url == f"{a},{b}"
    assert pool.provenance["urls"] == [a, b] and pool.model_name == get_backend("tgi", url=a).model_name
    start = {u: i["requests"] for u, i in by_url(pool).items()}
    for _ in range(4):  # one at a time: none in flight, so the one that answered fewer goes next
        pool.generate("Hello", max_new_tokens=2)
    assert {u: i["requests"] - start[u] for u, i in by_url(pool).items()} == {a: 2, b: 2}
    # a long request holds one instance: the short ones meanwhile all go to the other
    long = threading.Thread(target=pool.generate, args=("Count from 1 to 1000: 1, 2, 3, 4,",),
                            kwargs={"max_new_tokens": 150})
    long.start()
    while not any(i["in_flight"] for i in pool.instances()):
        time.sleep(0.01)
    busy = next(u for u, i in by_url(pool).items() if i["in_flight"])
    idle = b if busy == a else a
    before = by_url(pool)[idle]["requests"]
    while_busy = 0  # short calls that all ended while the long one was still in flight
    for k in range(1, 4):
        pool.generate("Hi", max_new_tokens=2)
        if by_url(pool)[busy]["in_flight"] == 1:
            while_busy = k
    long.join()
    assert while_busy >= 1, "the long request ended before a short one: the test proves nothing (machine too slow?)"
    assert by_url(pool)[idle]["requests"] - before >= while_busy


def test_an_instance_down_at_start_is_tried_again_later_and_none_left_fails_clearly(pair):
    (_, a), _ = pair
    port = free_port()
    late_url = f"http://127.0.0.1:{port}"
    pool = PooledBackend("tgi", [a, late_url])
    assert by_url(pool)[late_url]["up"] is False and "no TGI server" in by_url(pool)[late_url]["error"]
    for _ in range(3):
        pool.generate("Hello", max_new_tokens=2)
    assert by_url(pool)[a]["requests"] == 3 and by_url(pool)[late_url]["requests"] == 0
    late = serve_on(port)
    try:
        time.sleep(POOL_BACKOFF)  # its first failure keeps it out for POOL_BACKOFF seconds
        for _ in range(3):
            pool.generate("Hello", max_new_tokens=2)
        assert by_url(pool)[late_url]["requests"] >= 2 and by_url(pool)[late_url]["error"] is None

        # every instance gone: the request fails within the pool's patience, naming each instance
        other = f"http://127.0.0.1:{free_port()}"
        lonely = PooledBackend("tgi", [late_url, other], patience=2.0)
        lonely.generate("Hello", max_new_tokens=2)
        stop(late)
        began = time.monotonic()
        with pytest.raises(BackendUnavailable, match="every inference instance is down") as caught:
            lonely.generate("Hello", max_new_tokens=2)
        assert late_url in str(caught.value) and other in str(caught.value)
        assert time.monotonic() - began < 10
        with pytest.raises(PolicySetupError, match="no inference instance answers") as caught:
            PooledBackend("tgi", [late_url, other])
        assert late_url in str(caught.value) and other in str(caught.value)
    finally:
        stop(late)


@pytest.mark.slow  # a third server
def test_instances_of_different_models_are_refused(pair, bos_model):
    (_, a), _ = pair
    with serve("--model", str(bos_model)) as (_, other):
        with pytest.raises(PolicySetupError, match="same model"):
            PooledBackend("tgi", [a, other])


class ShortPromptPolicy:
    """Asks the pooled backend one short question per step (GSM8K's 8-shot prompt costs a CPU model seconds, and
    this test is about the requests, not the prompt); its reply is the agent's answer."""

    def __init__(self, env=None, *, url: str, **ignored):
        self.backend = get_backend("tgi", url=url)
        self.model_name = self.backend.model_name

    def reset(self, info):
        pass

    def act(self, observation, info):
        return self.backend.generate("What is 2 + 2?", max_new_tokens=4).text


def test_a_rollout_survives_killing_one_of_two_instances_midway(pair, tmp_path):
    """One rollout over two instances; one is killed (SIGKILL) at the first episode end after it answered a
    request of this run: every episode is recorded once, none in error, and the survivor answered the rest."""
    from agent_gym.rollout import plan, rollout

    (_, a), (victim, b) = pair
    output = tmp_path / "run.jsonl"
    episodes = plan(["AgentTuning/GSM8K-v0"], episodes=12)
    killed = threading.Event()
    pool = get_backend("tgi", url=f"{a},{b}")
    served_before = {u: i["requests"] for u, i in by_url(pool).items()}
    at_kill: dict[str, dict] = {}

    def on_episode(traj):
        # the first episode end after the victim answered one of this run's requests (the first episode may
        # end before it has: on a loaded machine the first requests can all go to the other instance)
        now = by_url(pool)
        if not killed.is_set() and now[b]["requests"] > served_before[b]:
            killed.set()
            at_kill.update(now)
            victim.send_signal(signal.SIGKILL)

    result = rollout(episodes, ShortPromptPolicy, output=output, concurrency=4, policy_options={"url": f"{a},{b}"},
                     progress=False, on_episode=on_episode, handle_sigint=False)
    assert killed.is_set(), f"the victim answered none of the 12 episodes' requests: {by_url(pool)}"
    assert victim.wait(10) == -signal.SIGKILL
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    ids = collections.Counter(line["episode_id"] for line in lines)
    assert sorted(ids) == sorted(e.episode_id for e in episodes)  # none lost
    assert set(ids.values()) == {1}                              # none recorded twice
    assert "error" not in {line["status"] for line in lines}, [line.get("error") for line in lines][:1]
    assert not result.errors
    state = by_url(pool)
    assert at_kill[b]["requests"] > served_before[b]         # the victim served this run before it died
    assert state[b]["failures"] >= 1 and state[b]["error"]   # then it was tried, failed and was taken out
    assert state[a]["requests"] > at_kill[a]["requests"]     # the survivor took the rest
    assert sum(state[u]["requests"] - served_before[u] for u in (a, b)) == 12  # one answered request per episode


def test_more_requests_than_a_server_admits_wait_their_turn(local_backend):
    """``-c`` above the server's ``--max-concurrent-requests``: its 429s are waited out, on one URL and in a
    pool with a dead instance; they once became episode errors blaming a dead server, and a live instance
    that had answered a 429 stayed out of the pool."""
    with serve("--max-concurrent-requests", "1") as (_, url):
        dead = f"http://127.0.0.1:{free_port()}"
        for backend in (get_backend("tgi", url=url), PooledBackend("tgi", [url, dead])):
            results: list = []

            def ask(i: int) -> None:
                try:
                    results.append(backend.generate(f"Count to {i}:", max_new_tokens=12).text)
                except Exception as exc:  # noqa: BLE001 - the test reports it
                    results.append(exc)

            threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(600)
            assert len(results) == 4 and all(isinstance(r, str) for r in results), results
            if isinstance(backend, PooledBackend):
                assert by_url(backend)[url]["up"] and by_url(backend)[url]["requests"] == 4
