"""GRPO fine-tuning of an LLM agent on agent-gym envs with TRL: the reward is the episode's score.

    # CPU smoke (the embedded SmolLM2-135M, 2 optimizer steps, tiny batch and short replies; a minute or two)
    python examples/train_grpo.py --env gsm8k --cpu-smoke --log runs/grpo-gsm8k.jsonl
    python examples/train_grpo.py --env db --cpu-smoke --log runs/grpo-db.jsonl
    # GPU (the documented path, docs/training.md): AgentLM-7B, bf16, LoRA if peft is installed
    python examples/train_grpo.py --env db --model THUDM/agentlm-7b --lora --output-dir runs/agentlm-7b-grpo-db

How it is wired (TRL 1.16 ``GRPOTrainer`` with a ``rollout_func``):

- The dataset is one row per task: its ``prompt`` is the env's own chat (``info["prompt"]`` and the first
  observation). TRL repeats each row ``num_generations`` times and hands the rows to :func:`make_rollout`'s
  function, which plays one episode per row **turn by turn with the model being trained**: the ReAct policy
  (the one ``agent-gym run`` evaluates with: same chat template, system message, stripping) renders each
  turn and asks :class:`TrainerBackend`, which samples from the training model and keeps the tokens.
- Multi-turn episodes become one sequence: the first prompt, then every reply and every observation in
  the chat template's tokens. ``env_mask`` marks the observation and template tokens 0, so the GRPO loss
  falls on the model's own tokens only; the model saw exactly these tokens when it sampled.
- The reward is the sum of the env's rewards over the episode (``info["score"]`` at its end: the paper's
  metric for the task), returned to TRL as the ``env_reward`` column and read by :func:`env_score`.
- ``--log`` writes JSON lines: one ``episode`` record per rollout (task, replies, per-step rewards, the
  reward given to TRL) and one ``log`` record per TRL log (its loss, reward mean, grad norm, ...).

Not the paper's: AgentTuning fine-tuned with SFT on filtered trajectories (``agent-gym export``); this is
online RL on the same envs. Training rollouts keep the whole history: an episode that would need the
history cut (AgentBench's rule) or goes past ``--max-episode-tokens`` ends there, with the score so far.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

# OpenMP threads spinning while they wait make a busy CPU several times slower (see policies/local.py)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is marked experimental in TRL 1.16

import gymnasium as gym  # noqa: E402

import agent_gym  # noqa: E402
from agent_gym.policies.backend import Generation, PromptTooLong  # noqa: E402

gym.register_envs(agent_gym)

SHORT_IDS = {"gsm8k": "AgentTuning/GSM8K-v0", "db": "AgentTuning/DB-v0", "alfworld": "AgentTuning/Alfworld-v0",
             "os": "AgentTuning/OS-v0", "mmlu": "AgentTuning/MMLU-v0"}
DEFAULT_GPU_MODEL = "THUDM/agentlm-7b"


class EpisodeCut(RuntimeError):
    """The episode cannot go on as one training sequence (history cut, token budget): it ends here."""


@dataclasses.dataclass
class EpisodeTokens:
    """The token sequence of one episode: ``prompt_ids``, then ``completion_ids`` with ``env_mask``
    (1: sampled by the model, 0: observation / chat-template tokens)."""

    prompt_ids: list[int] = dataclasses.field(default_factory=list)
    completion_ids: list[int] = dataclasses.field(default_factory=list)
    env_mask: list[int] = dataclasses.field(default_factory=list)
    last_prompt: str | None = None
    last_reply: str = ""
    ended_with_eos: bool = False

    @property
    def ids(self) -> list[int]:
        return self.prompt_ids + self.completion_ids


class TrainerBackend:
    """The ReAct policy's backend during training: samples from the model being trained.

    ``generate(prompt)`` gets the whole rendered conversation each turn. The first prompt is tokenized;
    each later one must extend the previous prompt and reply (the chat template's turn separators and the
    new observation are tokenized and appended with mask 0). So the sequence TRL trains on is exactly the
    one the model sampled from. Raises :class:`EpisodeCut` when it cannot extend (the policy cut the
    history) or the sequence would pass ``max_episode_tokens``.
    """

    kind = "trainer"

    def __init__(self, trainer: Any, tokenizer: Any, *, model_name: str, max_episode_tokens: int):
        self.trainer = trainer
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.max_episode_tokens = max_episode_tokens
        config = trainer.model.config
        self.context_length = getattr(config, "max_position_embeddings", None)
        eos = [tokenizer.eos_token_id, *_as_list(getattr(trainer.model.generation_config, "eos_token_id", None))]
        self.eos_ids = sorted({int(i) for i in eos if i is not None})
        self.episode = EpisodeTokens()

    @property
    def provenance(self) -> dict[str, Any]:
        return {"backend": self.kind, "url": None, "model": self.model_name}

    def chat_template(self):
        if not getattr(self.tokenizer, "chat_template", None):
            return None
        return lambda messages: self.tokenizer.apply_chat_template(list(messages), tokenize=False,
                                                                   add_generation_prompt=True)

    def generate(self, prompt: Any, *, stop=(), max_new_tokens: int = 128, temperature: float = 0.0,
                 top_p: float | None = None, seed: int | None = None) -> Generation:
        if not isinstance(prompt, str):
            raise EpisodeCut("the trainer needs a rendered prompt (chat template llama2 or auto, not server)")
        ids = self._extend(prompt)
        budget = min(self.max_episode_tokens, self.context_length or self.max_episode_tokens)
        max_new = min(max_new_tokens, budget - len(ids))
        if max_new <= 0:
            raise EpisodeCut(f"the episode reached {len(ids)} tokens (--max-episode-tokens {self.max_episode_tokens})")
        new = self._sample(ids, max_new)
        text, new = self._cut(new, stop)
        ep = self.episode
        ep.completion_ids += new
        ep.env_mask += [1] * len(new)
        ep.last_prompt, ep.last_reply = prompt, text
        ep.ended_with_eos = bool(new) and new[-1] in self.eos_ids
        return Generation(text=text, prompt_tokens=len(ids), completion_tokens=len(new),
                          finish_reason="eos_token" if ep.ended_with_eos else "length")

    # -------------------------------------------------------------- tokens
    def _encode(self, text: str, first: bool) -> list[int]:
        from agent_gym.policies.local import starts_with_bos

        special = first and not starts_with_bos(self.tokenizer, text)  # a template that emits BOS carries it
        return list(self.tokenizer(text, add_special_tokens=special).input_ids)

    def _extend(self, prompt: str) -> list[int]:
        ep = self.episode
        if ep.last_prompt is None:
            ep.prompt_ids = self._encode(prompt, first=True)
            return ep.ids
        if not prompt.startswith(ep.last_prompt):
            raise EpisodeCut("the policy cut the conversation's history (AgentBench's limit): the episode ends here")
        rest = prompt[len(ep.last_prompt):]
        reply = ep.last_reply.strip()
        at = rest.find(reply) if reply else 0
        if at < 0 or rest[:at].strip():
            raise EpisodeCut("the chat template changed the reply's text: it cannot be kept token for token")
        tail = rest[at + len(reply):]
        if ep.ended_with_eos:  # the sampled EOS already closes the turn: the template's own copy goes
            eos_text = self.tokenizer.convert_ids_to_tokens(ep.completion_ids[-1])
            stripped = tail.lstrip()
            if stripped.startswith(eos_text):
                tail = stripped[len(eos_text):]
        added = self._encode(tail, first=False)
        ep.completion_ids += added
        ep.env_mask += [0] * len(added)
        return ep.ids

    def _sample(self, ids: list[int], max_new: int) -> list[int]:
        import torch
        from trl.models import unwrap_model_for_generation

        trainer = self.trainer
        args = trainer.args
        if getattr(trainer, "use_vllm", False):
            return self._sample_vllm(ids, max_new)
        device = trainer.accelerator.device
        with (unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator,
                                          gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs) as model,
              torch.no_grad()):
            was_training = model.training
            model.eval()  # a training model with gradient checkpointing would generate without its KV cache
            try:
                out = model.generate(
                    input_ids=torch.tensor([ids], device=device), attention_mask=torch.ones(1, len(ids), device=device,
                                                                                           dtype=torch.long),
                    do_sample=args.temperature > 0, temperature=args.temperature or None, top_p=args.top_p,
                    top_k=args.top_k or None, max_new_tokens=max_new, eos_token_id=self.eos_ids,
                    pad_token_id=self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None
                    else self.eos_ids[0])
            finally:
                model.train(was_training)
        new = out[0, len(ids):].tolist()
        for i, token in enumerate(new):  # keep the first EOS, drop what follows (padding)
            if token in self.eos_ids:
                return new[:i + 1]
        return new

    def _sample_vllm(self, ids: list[int], max_new: int) -> list[int]:
        """One reply from TRL's vLLM engine (``--use-vllm``), whose weights TRL syncs before each rollout."""
        engine = self.trainer.vllm_generation
        saved = engine.max_completion_length
        engine.max_completion_length = max_new  # per turn, not the whole completion's budget
        try:
            _, completions, _, _ = engine.generate(prompts=[ids], images=None, num_generations=1)
        finally:
            engine.max_completion_length = saved
        return list(completions[0])

    def _cut(self, new: list[int], stop) -> tuple[str, list[int]]:
        """The reply's text for the env (no EOS, cut before a stop sequence) and the tokens kept."""
        body = [t for t in new if t not in self.eos_ids]
        text = self.tokenizer.decode(body, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        cuts = [text.find(s) for s in stop or () if s and s in text]
        if not cuts:
            return text, new
        text = text[:min(cuts)]
        for n in range(1, len(body) + 1):  # the fewest tokens whose text covers the stop sequence
            if any(s and s in self.tokenizer.decode(body[:n], skip_special_tokens=True,
                                                       clean_up_tokenization_spaces=False) for s in stop):
                return text, body[:n]
        return text, body


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def play(env: gym.Env, task: str, policy: Any, backend: TrainerBackend, max_turns: int | None) -> dict[str, Any]:
    """One episode of ``task`` with ``policy`` on ``backend``; the record written to the log."""
    from agent_gym.policy import ContextLimitExceeded

    backend.episode = EpisodeTokens()
    obs, info = env.reset(options={"task": task})
    policy.reset(info)
    replies, rewards, end, cut = [], [], None, None
    while True:
        try:
            reply = policy.act(obs, info)
        except (EpisodeCut, ContextLimitExceeded, PromptTooLong) as exc:
            cut = str(exc)
            break
        obs, reward, terminated, truncated, info = env.step(reply)
        replies.append(reply)
        rewards.append(float(reward))
        if terminated or truncated:
            end = info.get("end_reason")
            break
        if max_turns is not None and len(replies) >= max_turns:
            cut = f"--max-turns {max_turns}"
            break
    ep = backend.episode
    return {"task": info.get("task_id", task), "replies": replies, "rewards": rewards, "reward": sum(rewards),
            "score": info.get("score"), "status": info.get("status"), "end_reason": end, "cut": cut,
            "prompt_tokens": len(ep.prompt_ids), "model_tokens": sum(ep.env_mask),
            "env_tokens": len(ep.env_mask) - sum(ep.env_mask), "tokens": ep}


def env_score(prompts: list[Any], completions: list[Any], env_reward: list[float], **_: Any) -> list[float]:
    """TRL's reward function: the episode's score, computed by the env during the rollout."""
    return [float(r) for r in env_reward]


def make_rollout(env_id: str, env_kwargs: dict[str, Any], task_of: dict[str, str], args: argparse.Namespace,
                 log: Any):
    """TRL's ``rollout_func``: one episode per prompt row, its tokens and reward in TRL's format."""
    from agent_gym.policies.react import ReActPolicy

    env = gym.make(env_id, **env_kwargs)
    state: dict[str, Any] = {}

    def rollout_func(prompts: list[Any], trainer: Any) -> dict[str, list]:
        if "backend" not in state:
            state["backend"] = TrainerBackend(trainer, trainer.processing_class, model_name=args.model_name,
                                              max_episode_tokens=args.max_episode_tokens)
        backend = state["backend"]
        out: dict[str, list] = {"prompt_ids": [], "completion_ids": [], "env_mask": [], "env_reward": []}
        for prompt in prompts:
            policy = ReActPolicy(backend, temperature=trainer.args.temperature, max_new_tokens=args.max_new_tokens,
                                 chat_template=args.chat_template)
            t0 = time.perf_counter()
            record = play(env, task_of[prompt_key(prompt)], policy, backend, args.max_turns)
            tokens: EpisodeTokens = record.pop("tokens")
            if not tokens.completion_ids:  # nothing sampled (cut before the first reply): one EOS, masked
                tokens.completion_ids, tokens.env_mask = [backend.eos_ids[0]], [0]
            out["prompt_ids"].append(tokens.prompt_ids)
            out["completion_ids"].append(tokens.completion_ids)
            out["env_mask"].append(tokens.env_mask)
            out["env_reward"].append(record["reward"])
            record.update(event="episode", env=env_id, step=trainer.state.global_step,
                          seconds=round(time.perf_counter() - t0, 3))
            log(record)
        out["logprobs"] = None  # TRL recomputes them with the training model (no vLLM importance sampling)
        return out

    rollout_func.env = env
    return rollout_func


def prompt_key(prompt: Any) -> str:
    return json.dumps(prompt, sort_keys=True, ensure_ascii=False)


def build_dataset(env_id: str, env_kwargs: dict[str, Any], split: str | None, tasks: list[str] | None,
                  episodes: int, seed: int) -> tuple[Any, dict[str, str]]:
    """One row per task: ``prompt`` = the env's chat up to the first observation; and prompt -> task id."""
    from datasets import Dataset

    env = gym.make(env_id, **({**env_kwargs, "split": split} if split else env_kwargs))
    try:
        base = env.unwrapped
        if tasks is None:
            every = [t.id for t in base.tasks()] if hasattr(base, "tasks") else None
            if every is None:
                raise SystemExit(f"{env_id}: pass --task")
            import random

            tasks = random.Random(seed).sample(every, min(episodes, len(every)))
        rows, task_of = [], {}
        for task in tasks:
            obs, info = env.reset(options={"task": task})
            prompt = [dict(m) for m in info.get("prompt") or []] + [{"role": "user", "content": obs}]
            key = prompt_key(prompt)
            if key in task_of:  # two tasks that show the same text cannot be told apart by TRL's prompt
                continue
            task_of[key] = info["task_id"]
            rows.append({"prompt": prompt})
    finally:
        env.close()
    return Dataset.from_list(rows), task_of


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="gsm8k", help="an env id or short name (gsm8k, db, alfworld, os)")
    p.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="env option (JSON value or string), e.g. engine=sqlite, tasks_file=PATH")
    p.add_argument("--split", default=None, help="task split (default: the env's train split if it has data, "
                                                 "else its first)")
    p.add_argument("--task", action="append", default=None, help="train on these task ids (repeatable)")
    p.add_argument("--episodes", type=int, default=64, help="tasks drawn for the dataset (default 64)")
    p.add_argument("--model", default=None, help=f"HF id or folder (default {DEFAULT_GPU_MODEL}; SmolLM2 with "
                                                 f"--cpu-smoke)")
    p.add_argument("--chat-template", default=None, choices=("llama2", "auto"),
                   help="llama2 for AgentLM / Llama-2 (default by name), auto: the tokenizer's")
    p.add_argument("--cpu-smoke", action="store_true",
                   help="embedded SmolLM2 on the CPU, 2 steps, 2 generations of 1 task, short replies")
    p.add_argument("--steps", type=int, default=200, help="optimizer steps (max_steps)")
    p.add_argument("--num-generations", type=int, default=8, help="episodes per task per step (GRPO's group)")
    p.add_argument("--tasks-per-step", type=int, default=2, help="tasks (groups) per optimizer step")
    p.add_argument("--max-new-tokens", type=int, default=None, help="per reply (default: the env's, 128 held-in)")
    p.add_argument("--max-turns", type=int, default=None, help="replies per episode (default: the env's limit)")
    p.add_argument("--max-episode-tokens", type=int, default=4096, help="prompt + every turn of one episode")
    p.add_argument("--lr", type=float, default=1e-6)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--beta", type=float, default=0.0, help="KL coefficient (0: no reference model)")
    p.add_argument("--lora", action="store_true", help="train a LoRA adapter (needs peft)")
    p.add_argument("--train-layers", type=int, default=None,
                   help="train only the top N decoder layers and the final norm (the CPU smoke: 2)")
    p.add_argument("--use-vllm", action="store_true", help="sample with TRL's vLLM engine (colocated)")
    p.add_argument("--output-dir", default="runs/grpo")
    p.add_argument("--save", action=argparse.BooleanOptionalAction, default=True, help="save the trained model")
    p.add_argument("--log", default=None, help="JSON-lines log of episodes and TRL's logs")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.cpu_smoke:
        args.model = args.model or "smollm2"
        args.steps, args.num_generations, args.tasks_per_step = 2, args.num_generations if args.num_generations != 8 \
            else 2, 1
        args.max_new_tokens = args.max_new_tokens or 24
        args.max_turns = args.max_turns or 3
        args.episodes = min(args.episodes, 2)
        args.max_episode_tokens = min(args.max_episode_tokens, 2048)
        args.lr = 1e-5 if args.lr == 1e-6 else args.lr
        args.train_layers = 2 if args.train_layers is None else args.train_layers
    args.model = args.model or DEFAULT_GPU_MODEL
    return args


def freeze_below(model: Any, top: int) -> None:
    """Leave only the top ``top`` decoder layers and the final norm trainable: on a CPU the backward pass
    then stops there, about half of a step's time (embeddings stay frozen: they are tied to the LM head)."""
    layers = model.model.layers
    keep = {id(p) for layer in layers[len(layers) - top:] for p in layer.parameters()}
    keep |= {id(p) for p in model.model.norm.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)


def env_kwargs_of(pairs: list[str]) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise SystemExit(f"--env-arg {pair!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from agent_gym.policies import models

    env_id = SHORT_IDS.get(args.env, args.env)
    env_kwargs = env_kwargs_of(args.env_arg)
    log_fh = open(args.log, "a", encoding="utf-8") if args.log else None

    def log(record: dict[str, Any]) -> None:
        line = json.dumps(record, default=str)
        if log_fh:
            log_fh.write(line + "\n")
            log_fh.flush()
        if record.get("event") == "log" or not log_fh:
            print(line, flush=True)

    cls = gym.spec(env_id).entry_point
    split = args.split
    dataset, task_of = build_dataset(env_id, env_kwargs, split, args.task, args.episodes, args.seed)
    args.model_name = models.display_name(args.model)
    path = models.resolve(args.model)
    cpu = args.cpu_smoke or not torch.cuda.is_available()
    dtype = torch.float32 if cpu else torch.bfloat16
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if args.train_layers:
        freeze_below(model, args.train_layers)
    peft_config = None
    if args.lora:
        try:
            from peft import LoraConfig
        except ImportError:
            raise SystemExit("--lora needs peft: pip install peft")
        peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                 task_type="CAUSAL_LM")
    batch = args.num_generations * args.tasks_per_step
    config = GRPOConfig(
        output_dir=args.output_dir, max_steps=args.steps, learning_rate=args.lr, beta=args.beta,
        num_generations=args.num_generations, per_device_train_batch_size=batch, gradient_accumulation_steps=1,
        temperature=args.temperature, max_completion_length=args.max_episode_tokens, logging_steps=1,
        report_to="none", save_strategy="no", seed=args.seed, bf16=not cpu, use_cpu=cpu,
        gradient_checkpointing=not cpu, use_vllm=args.use_vllm, vllm_mode="colocate", disable_tqdm=True,
        shuffle_dataset=True, dataloader_num_workers=0)
    rollout_func = make_rollout(env_id, env_kwargs if not split else {**env_kwargs, "split": split}, task_of, args,
                                log)

    class LogToFile(TrainerCallback):
        def on_log(self, targs, state, control, logs=None, **kw):
            if logs:
                log({"event": "log", "step": state.global_step, **logs})

    trainer = GRPOTrainer(model=model, reward_funcs=env_score, args=config, train_dataset=dataset,
                          processing_class=tokenizer, rollout_func=rollout_func, peft_config=peft_config,
                          callbacks=[LogToFile()])
    log({"event": "start", "env": env_id, "env_class": str(cls), "model": args.model_name, "tasks": len(task_of),
         "steps": args.steps, "num_generations": args.num_generations, "tasks_per_step": args.tasks_per_step,
         "max_new_tokens": args.max_new_tokens, "max_turns": args.max_turns, "lr": args.lr, "lora": args.lora,
         "device": str(trainer.accelerator.device), "dtype": str(dtype)})
    try:
        trainer.train()
    finally:
        rollout_func.env.close()
    if args.save:
        trainer.save_model(args.output_dir)
    log({"event": "end", "output_dir": args.output_dir if args.save else None,
         "global_step": trainer.state.global_step})
    if log_fh:
        log_fh.close()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return 0 if losses and all(math.isfinite(x) for x in losses) else 1


if __name__ == "__main__":
    sys.exit(main())
