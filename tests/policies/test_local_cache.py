"""The local engine's KV prefix cache and continuous batching, on the embedded SmolLM2 and real episodes.

Replies with the cache must be the replies without it, token for token (greedy); the cache must
make a turn compute only its new tokens, stay within its byte bound, and requests must join and
leave a running batch between tokens. ``agent-gym serve`` streams OpenAI chat completions.
"""

from __future__ import annotations

import threading

import gymnasium as gym
import pytest
import torch

import agent_gym
from agent_gym.episode import run_episode
from agent_gym.policies.kvcache import PrefixCache, SequenceKV
from agent_gym.policies.local import Batcher, Request
from agent_gym.policies.react import ReActPolicy
from agent_gym.testing import need_data

gym.register_envs(agent_gym)


# --------------------------------------------------------------------------- the radix tree alone
def _sequence(ids: list[int]) -> SequenceKV:
    """A one-layer 'KV' whose value at each position is its token id: what a lookup copies is checkable."""
    seq = SequenceKV((1, 1, 1), len(ids), torch.float32, "cpu")
    seq.buf[:, :, :, :len(ids)] = torch.tensor(ids, dtype=torch.float32).view(1, 1, 1, -1, 1)
    seq.advance(ids)
    return seq


def _looked_up(cache: PrefixCache, ids: list[int]) -> list[int]:
    into = SequenceKV((1, 1, 1), 1, torch.float32, "cpu")
    n = cache.lookup(ids, into)
    assert into.ids == ids[:n] and into.length == n
    return [int(x) for x in into.buf[0, 0, 0, :n, 0]]


def test_prefix_cache_returns_the_longest_cached_prefix_and_shares_it():
    per_token = 2 * 4  # K and V, one float32 each
    cache = PrefixCache(max_bytes=1000 * per_token)
    task = list(range(100, 150))  # the task's instruction, shared by its episodes
    cache.insert(_sequence(task + [1, 2, 3]))
    cache.insert(_sequence(task + [7, 8]))  # a second episode: the tree splits after the shared prefix
    assert cache.bytes == (50 + 3 + 2) * per_token  # the instruction is stored once
    assert _looked_up(cache, task + [7, 8, 9]) == task + [7, 8]
    assert _looked_up(cache, task + [1, 2, 4]) == task + [1, 2]  # a partial node
    assert _looked_up(cache, [5] + task) == []
    cache.insert(_sequence(task + [1, 2, 3, 4, 5]))  # the next turn extends its conversation: only 2 new tokens
    assert cache.bytes == (50 + 5 + 2) * per_token


def test_prefix_cache_stays_within_its_bound_and_evicts_the_least_recently_used():
    per_token = 8
    cache = PrefixCache(max_bytes=25 * per_token)
    cache.insert(_sequence(list(range(10))))
    cache.insert(_sequence(list(range(100, 110))))
    _looked_up(cache, list(range(10)))  # used again: the other one is older now
    cache.insert(_sequence(list(range(200, 210))))
    assert cache.bytes <= cache.max_bytes and cache.evicted_bytes == 10 * per_token
    assert _looked_up(cache, list(range(100, 110))) == [] and len(_looked_up(cache, list(range(10)))) == 10
    cache.insert(_sequence(list(range(1000, 1100))))  # larger than the whole bound: not kept, nothing flushed
    assert len(_looked_up(cache, list(range(200, 210)))) == 10


# --------------------------------------------------------------------------- real episodes, cache on and off
def _play(backend, env, tasks, max_new_tokens):
    before = backend.stats()
    replies = [[step.action for step in run_episode(env, ReActPolicy(backend, max_new_tokens=max_new_tokens),
                                                    task=task).steps] for task in tasks]
    after = backend.stats()
    return replies, {k: after[k] - before[k] for k in ("prefill_tokens", "reused_tokens")}


@pytest.mark.slow
def test_real_episodes_give_the_same_replies_with_and_without_the_cache(local_backend):
    """ALFWorld (2 turns of one game) and two DB questions (one shared instruction): the cache changes no token."""
    need_data("alfworld")
    need_data("alfworld-agentbench")
    need_data("dbbench")
    on = local_backend.variant(prefix_cache_mb=64)
    off = local_backend.variant(prefix_cache_mb=0)
    plays = [("AgentTuning/Alfworld-v0", [0], 2, {}), ("AgentTuning/DB-v0", [0, 1], 1, {"engine": "sqlite"})]
    for env_id, tasks, turns, options in plays:
        env = gym.make(env_id, max_episode_steps=turns, **options)
        try:
            with_cache, cost = _play(on, env, tasks, 5)
            without, cost_off = _play(off, env, tasks, 5)
        finally:
            env.close()
        assert with_cache == without and sum(map(len, without)) == turns * len(tasks), env_id
        assert cost_off["reused_tokens"] == 0
        # a turn after the first, and an episode after the first, computes only its new tokens: the rest is reused
        assert cost["prefill_tokens"] + cost["reused_tokens"] == cost_off["prefill_tokens"]
        assert cost["reused_tokens"] > cost_off["prefill_tokens"] / 3, (env_id, cost, cost_off)
    assert on.stats()["cache_bytes"] <= on.stats()["cache_max_bytes"]


# --------------------------------------------------------------------------- continuous batching
@pytest.mark.exclusive
def test_a_request_joins_a_running_batch_and_leaves_before_it_ends(local_backend):
    LONG = 128  # tokens: the short request arrives and ends well before, however slow the machine
    model = local_backend.model
    long_ids, short_ids = model.encode("Count: one, two,"), model.encode(model.render([{"role": "user",
                                                                                          "content": "Hi!"}]))
    alone = []
    for ids, n in ((long_ids, LONG), (short_ids, 4)):
        r = Request(ids, n)
        model.run_batch([r])
        alone.append(r.tokens)
    batcher = Batcher(model, max_batch=4)
    order: list[str] = []
    joined = threading.Event()
    long = Request(long_ids, LONG, on_token=lambda *_: joined.set() if len(long.tokens) >= 3 else None,
                   on_done=lambda: order.append("long"))
    batcher.submit(long)
    assert joined.wait(120)  # the long request is decoding: the short one arrives mid-batch
    short = batcher.submit(Request(short_ids, 4, on_done=lambda: order.append("short")))
    short.wait(120), long.wait(120)
    assert order == ["short", "long"] and batcher.engine.peak_batch == 2 and batcher.batches == 1
    assert [long.tokens, short.tokens] == alone and len(alone[0]) == LONG


def test_a_request_with_a_seed_torch_cannot_take_fails_alone(local_backend):
    """A seed of 2^70 once failed every request of the batch and hung its own (taken off the queue
    before its generator raised, so nobody ended it)."""
    model = local_backend.model
    ids = model.encode("Count: one, two,")
    alone = Request(ids, 4)
    model.run_batch([alone])
    batcher = Batcher(model, max_batch=4)
    good = batcher.submit(Request(ids, 4))
    bad = batcher.submit(Request(ids, 4, temperature=1.0, seed=2 ** 70))
    assert bad.done.wait(60) and good.done.wait(120)
    assert isinstance(bad.error, ValueError) and "seed" in str(bad.error)
    assert good.error is None and good.tokens == alone.tokens


# --------------------------------------------------------------------------- serve: OpenAI streaming
def test_openai_chat_completions_stream_adds_up_to_the_whole_reply(server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="none")
    ask = [{"role": "user", "content": "Count from one to ten in words."}]
    whole = client.chat.completions.create(model="x", messages=ask, max_tokens=12).choices[0].message.content
    chunks = list(client.chat.completions.create(model="x", messages=ask, max_tokens=12, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].object == "chat.completion.chunk" and chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole and len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 2
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    # a stop sequence ends the stream and is never sent, even when it spans tokens
    stop = whole.split()[2][:3]
    cut = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="x", messages=ask, max_tokens=12, stream=True, stop=[stop]))
    assert cut == whole[:whole.index(stop)]
    import requests

    raw = requests.post(f"{server}/v1/chat/completions", json={"messages": ask, "max_tokens": 2, "stream": True})
    assert raw.headers["content-type"].startswith("text/event-stream") and raw.text.endswith("data: [DONE]\n\n")
