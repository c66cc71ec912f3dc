"""examples/train_grpo.py: TRL's GRPO loop over agent-gym envs, its CPU setting run for real.

The runs are subprocesses of the example as a user runs it (the embedded SmolLM2, 2 optimizer steps).
What they log must be real: every logged episode reward is the env's score of the logged replies (played
again through a fresh env), TRL's logged reward is their mean, its loss is finite, and the weights that
TRL's optimizer trained differ from the embedded model's once a group's rewards differ. The multi-turn
token bookkeeping is checked on its own, on a DB episode of several turns (the tiny model rarely plays one).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import types
from pathlib import Path

import gymnasium as gym
import pytest

import agent_gym
from agent_gym.testing import need_data

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "train_grpo.py"
gym.register_envs(agent_gym)

pytest.importorskip("trl")
pytest.importorskip("datasets")

# Two problems of our own in GSM8K's format whose answer is the number the question states: the paper's
# extraction reads the last number of the reply, and a 12-token reply ("Let's think step by step. Sara has 2")
# often ends on it, not always. So a group's rewards differ and GRPO has something to learn from (on the test
# split the tiny model scores 0, every advantage is 0 and so is the gradient).
EASY_GSM8K = [
    {"question": "Sara has 2 cats. How many cats does Sara have?", "answer": "Sara has 2 cats.\n#### 2"},
    {"question": "Tom has 5 apples. How many apples does Tom have?", "answer": "Tom has 5 apples.\n#### 5"},
]


def _example():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import train_grpo
    finally:
        sys.path.pop(0)
    return train_grpo


def _smollm2_or_skip() -> str:
    from agent_gym.policies import models
    from agent_gym.policies.backend import PolicySetupError

    try:
        return models.resolve(None)
    except PolicySetupError as exc:
        pytest.skip(str(exc))


def run_smoke(tmp_path: Path, *args: str) -> tuple[list[dict], Path]:
    log, out = tmp_path / "log.jsonl", tmp_path / "model"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--cpu-smoke", "--log", str(log), "--output-dir", str(out),
                           *args], capture_output=True, text=True, timeout=1800, cwd=ROOT, env=os.environ.copy())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads(line) for line in log.read_text().splitlines()], out


def replayed_reward(env_id: str, env_kwargs: dict, task: str, replies: list[str]) -> list[float]:
    env = gym.make(env_id, **env_kwargs)
    try:
        env.reset(options={"task": task})
        rewards = []
        for reply in replies:
            _, reward, terminated, truncated, _ = env.step(reply)
            rewards.append(float(reward))
            if terminated or truncated:
                break
        return rewards
    finally:
        env.close()


def check_real(records: list[dict], env_id: str, env_kwargs: dict, generations: int) -> list[dict]:
    """Rewards are the env's scores of the logged replies; TRL's loss is finite and its reward their mean."""
    episodes = [r for r in records if r["event"] == "episode"]
    logs = [r for r in records if r["event"] == "log" and "loss" in r]
    assert len(logs) == 2, logs  # the CPU setting's 2 optimizer steps
    assert len(episodes) == 2 * generations
    for ep in episodes:
        assert ep["reward"] == sum(ep["rewards"]) == pytest.approx(ep["score"])
        assert replayed_reward(env_id, env_kwargs, ep["task"], ep["replies"]) == ep["rewards"]
        assert ep["model_tokens"] > 0
    for step, log in enumerate(logs):
        assert math.isfinite(log["loss"]) and math.isfinite(log["grad_norm"])
        mine = [ep["reward"] for ep in episodes if ep["step"] == step]
        assert len(mine) == generations
        assert log["rewards/env_score/mean"] == pytest.approx(sum(mine) / len(mine), abs=1e-6)
        assert log["num_tokens"] > 0
    return logs


def top_layer_changed(out: Path, base: str) -> bool:
    from safetensors import safe_open

    with safe_open(str(Path(base) / "model.safetensors"), "pt") as a, \
            safe_open(str(out / "model.safetensors"), "pt") as b:
        names = [n for n in a.keys() if ".layers." in n]
        top = max(int(n.split(".layers.")[1].split(".")[0]) for n in names)
        low = [n for n in names if f".layers.{0}." in n]
        for n in low:  # frozen by --train-layers: unchanged
            assert (a.get_tensor(n) == b.get_tensor(n)).all(), n
        return any(not (a.get_tensor(n) == b.get_tensor(n)).all() for n in names if f".layers.{top}." in n)


@pytest.mark.slow
def test_gsm8k_cpu_smoke_logs_env_scores_and_trains(tmp_path):
    base = _smollm2_or_skip()
    need_data("gsm8k")
    tasks = tmp_path / "easy.jsonl"
    tasks.write_text("".join(json.dumps(r) + "\n" for r in EASY_GSM8K))
    env_kwargs = {"tasks_file": str(tasks)}
    records, out = run_smoke(tmp_path, "--env", "gsm8k", "--env-arg", f"tasks_file={tasks}", "--num-generations", "4",
                             "--max-new-tokens", "12")
    logs = check_real(records, "AgentTuning/GSM8K-v0", env_kwargs, 4)
    learned = [log for log in logs if log["frac_reward_zero_std"] < 1]
    assert learned, "no group with differing rewards: nothing for GRPO to learn (the problems should give one)"
    assert all(log["grad_norm"] > 0 for log in learned)
    assert top_layer_changed(out, base)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("AGENT_GYM_FULL") != "1",
                    reason="minutes of CPU with the same checks as the GSM8K smoke (and the multi-turn sequence is "
                           "test_multi_turn_episode_is_one_sequence_of_the_conversation): run with AGENT_GYM_FULL=1")
def test_db_cpu_smoke_logs_env_scores(tmp_path):
    _smollm2_or_skip()
    need_data("dbbench")
    records, _ = run_smoke(tmp_path, "--env", "db", "--env-arg", "engine=sqlite", "--no-save")
    logs = check_real(records, "AgentTuning/DB-v0", {"engine": "sqlite"}, 2)
    for log in logs:  # rewards all equal: the advantages, so the loss and the gradient, are exactly 0
        if log["frac_reward_zero_std"] == 1:
            assert log["loss"] == 0 and log["grad_norm"] == 0


def test_multi_turn_episode_is_one_sequence_of_the_conversation():
    """A DB write question played with its gold SQL over several turns: the sequence TRL trains on is the
    rendered conversation token for token, the model's tokens (mask 1) are exactly its replies, and the
    reward is the env's score."""
    path = _smollm2_or_skip()
    need_data("dbbench")
    from transformers import AutoTokenizer

    from agent_gym.policies.react import ReActPolicy

    train_grpo = _example()
    tokenizer = AutoTokenizer.from_pretrained(path)
    env = gym.make("AgentTuning/DB-v0", engine="sqlite")
    task = next(t.id for t in env.unwrapped.tasks() if t.id.startswith("INSERT"))
    env.reset(options={"task": task})
    gold = env.unwrapped.expert_replies(env.unwrapped.task)
    assert len(gold) >= 2

    class FakeSampler(train_grpo.TrainerBackend):
        """Samples the gold replies instead of the model's (the bookkeeping is what is under test)."""

        def _sample(self, ids, max_new):
            return tokenizer(gold[len(self.replies_given)], add_special_tokens=False).input_ids + [tokenizer.eos_token_id]

        def generate(self, prompt, **kw):
            out = super().generate(prompt, **kw)
            self.replies_given.append(out.text)
            self.prompts.append(prompt)
            return out

    trainer = types.SimpleNamespace(model=types.SimpleNamespace(
        config=types.SimpleNamespace(max_position_embeddings=8192),
        generation_config=types.SimpleNamespace(eos_token_id=tokenizer.eos_token_id)))
    backend = FakeSampler(trainer, tokenizer, model_name="SmolLM2-135M-Instruct", max_episode_tokens=8192)
    backend.replies_given, backend.prompts = [], []
    policy = ReActPolicy(backend, temperature=1.0, max_new_tokens=128)
    record = train_grpo.play(env, task, policy, backend, max_turns=None)
    env.close()
    ep = record["tokens"]
    assert record["replies"] == gold and record["reward"] == 1.0 and record["end_reason"] == "answered"
    assert record["env_tokens"] > 0 and len(backend.prompts) == len(gold)
    # the last prompt the policy rendered, then the last reply and its EOS: the whole sequence
    whole = tokenizer.decode(ep.prompt_ids + ep.completion_ids, clean_up_tokenization_spaces=False)
    assert whole == backend.prompts[-1] + gold[-1] + tokenizer.eos_token
    mine = [t for t, m in zip(ep.completion_ids, ep.env_mask) if m]
    assert tokenizer.decode(mine, clean_up_tokenization_spaces=False) == "".join(r + tokenizer.eos_token for r in gold)
