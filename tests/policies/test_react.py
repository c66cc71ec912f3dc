"""The ReAct policy playing real envs through each backend, and its history / context handling.

The must-show of the policies issue: a GSM8K and an MMLU episode played end to end by the embedded
SmolLM2 in process (``local``) and over HTTP through ``agent-gym serve`` (``tgi``, ``openai``), with
trajectories written, and the same greedy reply from all three.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import gymnasium as gym
import pytest
from chatter import ChatterEnv, RecordingBackend

import agent_gym
from agent_gym.core import AGENT_CONTEXT_LIMIT
from agent_gym.episode import run_episode
from agent_gym.policies import POLICIES, make_policy
from agent_gym.policies.backend import get_backend
from agent_gym.policies.react import ReActPolicy
from agent_gym.trajectory import read_jsonl, write_jsonl

# these tests talk to real servers through every backend: they need the serve, tgi and openai extras
for _extra_module in ("aiohttp", "text_generation", "openai"):
    pytest.importorskip(_extra_module, reason=f"needs {_extra_module}: pip install -e '.[all]'")


gym.register_envs(agent_gym)
EPISODES = [("AgentTuning/GSM8K-v0", "gsm8k", 3), ("AgentTuning/MMLU-v0", "mmlu", 7)]
BACKENDS = {  # backend name -> policy options (``url`` filled in from the server fixture)
    "local": {"backend": "local"},
    "tgi": {"backend": "tgi"},
    "tgi-stream": {"backend": "tgi", "stream": True},
    "openai": {"backend": "openai"},
}


_played: list = []


@pytest.fixture
def played(server, require_data, tmp_path_factory):
    """Every (env, backend) episode, played once per session, written to JSONL and read back."""
    for _, data_name, _ in EPISODES:
        require_data(data_name)
    if _played:
        return _played[0]
    out = {}
    path = tmp_path_factory.mktemp("runs") / "trajectories.jsonl"
    for env_id, _, task in EPISODES:
        env = gym.make(env_id)
        for name, options in BACKENDS.items():
            url = None if name == "local" else server
            policy = make_policy("react", env, **options, url=url, max_new_tokens=24, seed=0, unknown_flag=1)
            out[env_id, name] = run_episode(env, policy, task=task, seed=0)
        env.close()
    assert write_jsonl(out.values(), path) == len(out)
    _played.append((out, list(read_jsonl(path))))
    return _played[0]


def test_registered_names():
    assert {"react", "human"} <= set(POLICIES)


@pytest.mark.parametrize("env_id", [e for e, _, _ in EPISODES])
def test_episode_played_end_to_end_through_every_backend(played, env_id):
    trajectories, written = played
    replies = {}
    for name in BACKENDS:
        traj = trajectories[env_id, name]
        assert traj.status in ("completed", "invalid_action") and traj.error is None, traj.error
        assert traj.policy == "react" and traj.model == "SmolLM2-135M-Instruct"
        step = traj.steps[0]
        if env_id.startswith("AgentTuning/MMLU"):  # the paper's mode: scored by next-token log-probs, nothing generated
            assert traj.provenance["policy"]["scoring"] == "logprobs" and step.action in {f"Answer: {c}" for c in "ABCD"}
        else:
            assert step.action.strip() and step.prompt_tokens > 0 and 0 < step.completion_tokens <= 24
        replies[name] = step.action
    assert len(set(replies.values())) == 1, replies  # greedy: the same reply through every backend
    assert {(t.env_id, t.steps[0].action) for t in written} >= {(env_id, replies["local"])}


def test_openai_chat_endpoint_gives_the_same_reply(played, server, require_data):
    require_data("gsm8k")
    env = gym.make("AgentTuning/GSM8K-v0")
    policy = make_policy("react", env, backend="openai", url=server, chat_template="server", max_new_tokens=24)
    assert policy.chat_template == "server"  # messages go to /v1/chat/completions, the server renders them
    traj = run_episode(env, policy, task=3, seed=0)
    assert traj.steps[0].action == played[0]["AgentTuning/GSM8K-v0", "local"].steps[0].action


def test_policies_made_per_episode_in_threads_share_one_backend(local_backend, require_data):
    require_data("gsm8k")

    def play(task: int) -> str:
        env = gym.make("AgentTuning/GSM8K-v0")
        return run_episode(env, make_policy("react", env, max_new_tokens=6), task=task, seed=0).steps[0].action

    alone = [play(t) for t in range(3)]
    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(play, range(3))) == alone
    assert make_policy("react", None).backend is local_backend


# --------------------------------------------------------------------------- multi-turn behaviour
def test_long_history_is_cut_with_a_notice_and_the_newest_turns_kept(local_backend):
    backend = RecordingBackend(local_backend)
    policy = ReActPolicy(backend, max_new_tokens=3, segment_limit=300)
    traj = run_episode(ChatterEnv(observation_words=60), policy, seed=0)
    assert traj.status == "completed" and len(traj.steps) == 6
    assert "[NOTICE]" not in backend.prompts[0]
    last = backend.prompts[-1]
    assert "messages are omitted." in last and "Instruction: rule" in last  # the instruction always stays
    assert "Observation 5:" in last and "Observation 1:" not in last


def test_env_hints_set_decoding_and_explicit_options_win(local_backend):
    hints = {"stop": ["stone"], "max_new_tokens": 5, "temperature": 0.0}
    backend = RecordingBackend(local_backend)
    run_episode(ChatterEnv(hints=hints, turns=1), ReActPolicy(backend), seed=0)
    assert backend.calls[0]["stop"] == ["stone"] and backend.calls[0]["max_new_tokens"] == 5
    backend = RecordingBackend(local_backend)
    run_episode(ChatterEnv(hints=hints, turns=1), ReActPolicy(backend, max_new_tokens=2, stop=["x"]), seed=0)
    assert backend.calls[0]["stop"] == ["x"] and backend.calls[0]["max_new_tokens"] == 2


def test_llama2_template_with_agentlm_system_prompt(local_backend):
    backend = RecordingBackend(local_backend)
    run_episode(ChatterEnv(turns=1), ReActPolicy(backend, chat_template="llama2", max_new_tokens=2), seed=0)
    first = backend.prompts[0]
    assert first.startswith("[INST] <<SYS>>\nYou are a helpful, respectful and honest assistant.\n<</SYS>>\n\n"
                            "Instruction: rule") and first.endswith("[/INST]") and " Ok. </s><s>[INST] " in first
    backend = RecordingBackend(local_backend)
    run_episode(ChatterEnv(hints={"system_prompt": ""}, turns=1), ReActPolicy(backend, chat_template="llama2",
                                                                      max_new_tokens=2), seed=0)
    assert backend.prompts[0].startswith("[INST] Instruction: rule")  # AgentBench held-in: no system message


def test_context_too_small_ends_the_episode_with_agent_context_limit():
    small = get_backend("local", context_length=300)
    traj = run_episode(ChatterEnv(prompt_words=400), ReActPolicy(small, max_new_tokens=4), seed=0)
    assert traj.status == AGENT_CONTEXT_LIMIT and not traj.steps and "cannot fit" in traj.error
    # a history that outgrows the context is cut turn by turn instead, while the newest turns still fit
    traj = run_episode(ChatterEnv(observation_words=50), ReActPolicy(small, max_new_tokens=4), seed=0)
    assert traj.status == "completed" and len(traj.steps) == 6
    assert all(s.prompt_tokens + 4 <= 300 for s in traj.steps)
    # an observation that alone exceeds the context cannot be played
    traj = run_episode(ChatterEnv(observation_words=400), ReActPolicy(small, max_new_tokens=4), seed=0)
    assert traj.status == AGENT_CONTEXT_LIMIT


def test_fresh_context_starts_each_call_from_the_prompt(local_backend):
    """Mind2Web's multiple-choice calls were separate sessions upstream: ``info["fresh_context"]``."""
    backend = RecordingBackend(local_backend)
    run_episode(ChatterEnv(hints={"fresh_context": True}, turns=3, observation_words=3),
                ReActPolicy(backend, max_new_tokens=2), seed=0)
    last = backend.prompts[-1]
    assert "Instruction: rule" in last and "Observation 2:" in last and "Observation 1:" not in last
    backend = RecordingBackend(local_backend)
    run_episode(ChatterEnv(turns=3, observation_words=3), ReActPolicy(backend, max_new_tokens=2), seed=0)
    assert "Observation 1:" in backend.prompts[-1]  # without it the history stays


def test_kept_reply_replaces_the_agents_last_turn_in_the_history(local_backend):
    """KG: AgentBench kept the reply cut at "Observation:" in the history; the env says so in ``kept_reply``."""
    backend = RecordingBackend(local_backend)
    policy = ReActPolicy(backend, max_new_tokens=2)
    env = ChatterEnv(turns=2, observation_words=3)
    obs, info = env.reset(seed=0)
    policy.reset(info)
    policy.act(obs, info)
    obs, _, _, _, info = env.step("whatever")
    policy.act(obs, {**info, "kept_reply": "KEPT-REPLY"})
    assert "KEPT-REPLY" in backend.prompts[-1]


def test_history_none_shows_only_the_prompt_and_the_current_observation(local_backend):
    """WebArena's agent saw no history: ``info["history"] == "none"``."""
    backend = RecordingBackend(local_backend)
    run_episode(ChatterEnv(hints={"history": "none"}, turns=3, observation_words=3),
                ReActPolicy(backend, max_new_tokens=2), seed=0)
    assert "Observation 2:" in backend.prompts[-1] and "Observation 1:" not in backend.prompts[-1]


def test_completion_scaffolding_plays_hotpotqa_as_the_paper_did(local_backend, require_data):
    """HotpotQA's agent was a plain completion: the thought after "Thought n:", the action after "Action n:"."""
    require_data("hotpotqa")
    import gymnasium as gym

    backend = RecordingBackend(local_backend)
    env = gym.make("AgentTuning/HotpotQA-v0")
    policy = ReActPolicy(backend, completion=True, max_new_tokens=8)
    obs, info = env.reset(seed=0)
    start = info["completion"]["prompt"]
    policy.reset(info)
    reply = policy.act(obs, info)
    assert reply.startswith("Thought 1: ") and "\nAction 1: " in reply
    obs, _, terminated, _, info = env.step(reply)
    if not terminated:
        policy.act(obs, info)
        assert "\nObservation 1: " in backend.prompts[2] and backend.prompts[2].endswith("\nThought 2:")
    assert backend.prompts[0] == start + "\nThought 1:"
    assert backend.prompts[1].startswith(backend.prompts[0]) and backend.prompts[1].endswith("\nAction 1:")
    assert all(c["stop"] == ["\n"] for c in backend.calls)
    assert policy.provenance["scaffolding"] == "completion"
    env.close()


def test_the_envs_exact_messages_replace_the_history(local_backend):
    """The card game gives the exact chat upstream sent for each call in ``info["messages"]``."""
    backend = RecordingBackend(local_backend)
    exact = [{"role": "user", "content": "RULES-AND-STATE"}]
    run_episode(ChatterEnv(hints={"messages": exact}, turns=2, observation_words=3),
                ReActPolicy(backend, max_new_tokens=2), seed=0)
    assert all("RULES-AND-STATE" in p and "Observation" not in p for p in backend.prompts)
