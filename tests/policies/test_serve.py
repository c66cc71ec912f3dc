"""``agent-gym serve`` over real HTTP, spoken to by the official ``text-generation`` and OpenAI clients.

Faults are real: a server with a one-request limit answers 429, a killed server process drops the
connection, a short client timeout expires during a long generation.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from chatter import ChatterEnv
from policy_servers import free_port, serve

from agent_gym.episode import run_episode
from agent_gym.policies.backend import BackendError, BackendUnavailable, PolicySetupError, PromptTooLong
from agent_gym.policies.openai_compat import OpenAIBackend
from agent_gym.policies.react import ReActPolicy
from agent_gym.policies.tgi import TGIBackend

# these tests talk to real servers through every backend: they need the serve, tgi and openai extras
for _extra_module in ("aiohttp", "text_generation", "openai"):
    pytest.importorskip(_extra_module, reason=f"needs {_extra_module}: pip install -e '.[all]'")


text_generation = pytest.importorskip("text_generation")
openai = pytest.importorskip("openai")
COUNT = "Count: one, two,"


def test_health_and_info(server):
    assert requests.get(f"{server}/health").status_code == 200
    info = requests.get(f"{server}/info").json()
    assert info["model_id"] == "SmolLM2-135M-Instruct"
    assert info["max_total_tokens"] == 8192 and info["max_stop_sequences"] == 4


def test_generate_keeps_the_stop_sequence_as_tgi_does(server):
    client = text_generation.Client(server)
    out = client.generate(COUNT, max_new_tokens=10, stop_sequences=["four"])
    assert out.generated_text.endswith("four") and out.details.finish_reason.value == "stop_sequence"
    out = client.generate(COUNT, max_new_tokens=3)
    assert out.details.generated_tokens == 3 and out.details.finish_reason.value == "length"


def test_stream_events_add_up_to_the_generated_text(server):
    client = text_generation.Client(server)
    whole = client.generate(COUNT, max_new_tokens=6).generated_text
    events = list(client.generate_stream(COUNT, max_new_tokens=6))
    assert len(events) == 6 and all(e.details is None for e in events[:-1])
    assert "".join(e.token.text for e in events) == whole == events[-1].generated_text
    raw = requests.post(f"{server}/generate_stream", json={"inputs": COUNT, "parameters": {"max_new_tokens": 2}})
    assert raw.headers["content-type"].startswith("text/event-stream") and raw.text.startswith("data:{")


def test_root_returns_a_list_and_generate_an_object(server):
    body = {"inputs": COUNT, "parameters": {"max_new_tokens": 2}}
    root = requests.post(server, json=body).json()
    obj = requests.post(f"{server}/generate", json=body).json()
    assert isinstance(root, list) and root[0]["generated_text"] == obj["generated_text"]


@pytest.mark.parametrize("body, message", [
    ({"inputs": "word " * 9000, "parameters": {"max_new_tokens": 8}}, "must have less than"),
    ({"inputs": "word " * 8150, "parameters": {"max_new_tokens": 100}}, "must be <= 8192"),
    ({"inputs": "", "parameters": {}}, "cannot be empty"),
    ({"inputs": "x", "parameters": {"max_new_tokens": 0}}, "strictly positive"),
    ({"inputs": "x", "parameters": {"max_new_tokens": "5"}}, "must be a whole number, not str"),
    ({"inputs": "x", "parameters": {"truncate": 0}}, "`truncate` must be a whole number > 0"),
    ({"inputs": "x", "parameters": {"stop": ["a", "b", "c", "d", "e"]}}, "up to 4 stop sequences"),
    ({"inputs": "x", "parameters": {"temperature": 0}}, "`temperature` must be strictly positive"),
    # a seed torch cannot take hung its request and failed the batch; NaN was a 500
    ({"inputs": "x", "parameters": {"do_sample": True, "seed": 2 ** 70}}, "`seed` must be a whole number"),
])
def test_validation_errors_are_tgi_json(server, body, message):
    resp = requests.post(f"{server}/generate", json=body)
    assert resp.status_code == 422
    assert resp.json()["error_type"] == "validation" and message in resp.json()["error"]


def test_details_come_only_when_asked_and_truncate_keeps_the_last_tokens(server):
    """As TGI: ``details`` is in the answer only with ``"details": true``; ``truncate`` cuts the input to its
    last N tokens (it was ignored)."""
    plain = requests.post(f"{server}/generate", json={"inputs": COUNT, "parameters": {"max_new_tokens": 3}}).json()
    assert set(plain) == {"generated_text"}
    asked = requests.post(f"{server}/generate", json={"inputs": COUNT, "parameters": {"max_new_tokens": 3,
                                                                                        "details": True}}).json()
    assert asked["generated_text"] == plain["generated_text"] and asked["details"]["generated_tokens"] == 3
    # an input past the model's limit fits once cut to its last n tokens, which are COUNT's own: the same answer
    # (keeping the first n would answer "word\nword\n...")
    n = len(requests.post(f"{server}/tokenize", json={"inputs": COUNT}).json())
    long = "word\n" * 9000 + COUNT
    assert [t["id"] for t in requests.post(f"{server}/tokenize", json={"inputs": long}).json()[-n:]] == [
        t["id"] for t in requests.post(f"{server}/tokenize", json={"inputs": COUNT}).json()]
    cut = requests.post(f"{server}/generate", json={"inputs": long, "parameters": {"max_new_tokens": 3, "truncate": n}})
    assert cut.status_code == 200, cut.text
    assert cut.json()["generated_text"] == plain["generated_text"]
    whole = requests.post(f"{server}/generate", json={"inputs": long, "parameters": {"max_new_tokens": 3}})
    assert whole.status_code == 422 and "must have less than" in whole.json()["error"]
    same = requests.post(f"{server}/generate", json={"inputs": COUNT, "parameters": {"max_new_tokens": 3,
                                                                                       "truncate": n}}).json()
    assert same["generated_text"] == plain["generated_text"]  # nothing cut: the same answer


def test_chat_logprobs_and_n_as_openai_defines_them(server):
    """Chat ``logprobs`` / ``top_logprobs`` come back in OpenAI's form (they were ignored); ``n`` above 1, which
    this server does not do, is refused rather than answered with one choice."""
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="none")
    ask = [{"role": "user", "content": "What is 2+3?"}]
    chat = client.chat.completions.create(model="x", messages=ask, max_tokens=5, logprobs=True, top_logprobs=3)
    content = chat.choices[0].logprobs.content
    assert len(content) == chat.usage.completion_tokens and all(len(t.top_logprobs) == 3 for t in content)
    for token in content:  # greedy: the chosen token is the likeliest, and its log-prob is the top one's
        assert token.logprob <= 0 and token.top_logprobs[0].logprob == pytest.approx(token.logprob)
        assert bytes(token.bytes).decode() == token.token
    plain = client.chat.completions.create(model="x", messages=ask, max_tokens=5)
    assert plain.choices[0].logprobs is None and plain.choices[0].message.content == chat.choices[0].message.content
    with pytest.raises(openai.UnprocessableEntityError) as caught:  # TGI's error body, as TGI's /v1 routes give
        client.chat.completions.create(model="x", messages=ask, max_tokens=5, n=2)
    assert "`n` must be 1" in str(caught.value.body)  # the client keeps the body's "error"
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.chat.completions.create(model="x", messages=ask, max_tokens=5, logprobs=True, top_logprobs=10 ** 6)
    assert "`top_logprobs` must be an integer" in str(caught.value.body)


def test_a_nan_temperature_is_a_validation_error(server):  # Python's json reads NaN: it was a 500
    resp = requests.post(f"{server}/generate", data='{"inputs": "x", "parameters": {"temperature": NaN}}',
                         headers={"Content-Type": "application/json"})
    assert resp.status_code == 422 and "`temperature` must be strictly positive" in resp.json()["error"]


def test_malformed_json_is_a_validation_error_and_the_server_lives_on(server):
    resp = requests.post(f"{server}/generate", data=b"\xff{not json", headers={"Content-Type": "application/json"})
    assert resp.status_code == 422 and resp.json()["error_type"] == "validation"
    assert requests.get(f"{server}/health").status_code == 200


def test_too_long_prompt_becomes_prompt_too_long_in_the_backend(server):
    with pytest.raises(PromptTooLong):
        TGIBackend(server).generate("word " * 9000, max_new_tokens=8)


def test_openai_client_completions_and_chat(server):
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="none")
    assert client.models.list().data[0].id == "SmolLM2-135M-Instruct"
    done = client.completions.create(model="x", prompt=COUNT, max_tokens=10, stop=["four"])
    assert "four" not in done.choices[0].text and done.choices[0].text.startswith(" three")  # OpenAI drops the stop
    chat = client.chat.completions.create(model="x", messages=[{"role": "user", "content": "What is 2+3?"}],
                                          max_tokens=12)
    assert "5" in chat.choices[0].message.content and chat.usage.completion_tokens <= 12


def test_tgi_messages_api(server):
    from text_generation.types import Message

    out = text_generation.Client(server).chat([Message(role="user", content="What is 2+3?")], max_tokens=12)
    assert "5" in out.choices[0].message.content


def test_overload_answers_429_and_the_backend_retries_through_it():
    with serve("--max-concurrent-requests", "1") as (_, url):
        def raw(_: int) -> requests.Response:
            return requests.post(f"{url}/generate", json={"inputs": COUNT, "parameters": {"max_new_tokens": 6}})

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(raw, range(4)))
        refused = [a for a in answers if a.status_code == 429]
        assert refused and refused[0].json() == {"error": "Model is overloaded", "error_type": "overloaded"}
        with pytest.raises(text_generation.errors.OverloadedError):
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda _: text_generation.Client(url).generate(COUNT, max_new_tokens=6), range(4)))
        backend = TGIBackend(url, backoff=0.05, retries=10)
        with ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda _: backend.generate(COUNT, max_new_tokens=6).text, range(4)))
        assert len(set(replies)) == 1 and replies[0].startswith(" three")


def test_client_timeout_is_a_clear_error(server):
    backend = TGIBackend(server, timeout=1, retries=0)
    with pytest.raises(BackendError, match="did not answer within 1"):
        backend.generate(COUNT, max_new_tokens=1000)  # counting goes on far longer than a second
    assert requests.get(f"{server}/health", timeout=5).status_code == 200


def test_server_killed_mid_run_and_nobody_listening_are_unavailable():
    with serve() as (proc, url):
        backend = TGIBackend(url, retries=2, backoff=0.05)
        errors: list[BaseException | str] = []

        def long_call() -> None:
            try:
                errors.append(backend.generate(COUNT, max_new_tokens=1000).text)  # counting never ends by itself
            except BaseException as exc:  # noqa: BLE001  (collected for the assertion)
                errors.append(exc)

        worker = threading.Thread(target=long_call)
        worker.start()
        worker.join(1.5)  # the request is now decoding
        proc.kill()
        worker.join(30)
        assert not worker.is_alive() and isinstance(errors[0], BackendUnavailable), errors
        assert "unreachable" in str(errors[0])
        # an episode whose server is gone is recorded as an error, not raised
        traj = run_episode(ChatterEnv(turns=1), ReActPolicy(backend, max_new_tokens=2), seed=0)
        assert traj.status == "error" and "unreachable" in traj.error
    # nobody listening when the backend is made: refused at once, before any episode, naming the fix
    with pytest.raises(PolicySetupError, match="no TGI server at .* start it"):
        TGIBackend(f"http://127.0.0.1:{free_port()}", retries=1, backoff=0.01)
    with pytest.raises(PolicySetupError, match="no OpenAI-compatible server at .* start it"):
        OpenAIBackend(f"http://127.0.0.1:{free_port()}", retries=0)


def test_stream_client_that_disconnects_does_not_hurt_the_server(server):
    with requests.post(f"{server}/generate_stream", json={"inputs": COUNT, "parameters": {"max_new_tokens": 300}},
                       stream=True, timeout=30) as resp:
        next(resp.iter_lines())
    out = text_generation.Client(server).generate(COUNT, max_new_tokens=2)
    assert out.details.generated_tokens == 2


def test_bos_is_sent_once_when_the_template_emits_it(bos_model):
    """A tokenizer that adds BOS and a template that emits it: the served prompt has one BOS on every route."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bos_model)
    ask = [{"role": "user", "content": "What is 2+3?"}]
    want = list(tokenizer.apply_chat_template(ask, tokenize=True, add_generation_prompt=True, return_dict=False))
    assert want[0] == tokenizer.bos_token_id and want[1] != want[0]
    with serve("--model", str(bos_model)) as (_, url):
        chat = openai.OpenAI(base_url=f"{url}/v1", api_key="none").chat.completions.create(
            model="x", messages=ask, max_tokens=1)
        assert chat.usage.prompt_tokens == len(want)  # the server renders, then tokenizes without a second BOS
        rendered = tokenizer.apply_chat_template(ask, tokenize=False, add_generation_prompt=True)
        served = requests.post(f"{url}/tokenize", json={"inputs": rendered}).json()
        assert [t["id"] for t in served] == want
        # our tgi / openai backends render for a server that adds BOS itself: they leave the BOS text out
        for backend in (TGIBackend(url), OpenAIBackend(url)):
            text = backend.chat_template()(ask)
            assert not text.startswith(tokenizer.bos_token) and tokenizer(text).input_ids == want
