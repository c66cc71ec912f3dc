"""Playing one episode: a policy against an env, recorded as a :class:`Trajectory`."""

from __future__ import annotations

import time
import traceback
from typing import Any

import gymnasium as gym

from agent_gym.core import AGENT_CONTEXT_LIMIT, CONTEXT_LIMIT, ENV_ERROR, ERROR, ROUND_LIMIT
from agent_gym.policy import ContextLimitExceeded, Policy, policy_name
from agent_gym.trajectory import Step, Trajectory, step_info


def run_episode(env: gym.Env, policy: Policy, *, env_id: str | None = None, task: str | int | None = None,
                seed: int | None = None, episode_id: str | None = None, split: str | None = None) -> Trajectory:
    """Reset ``env`` on ``task`` (or the ``seed``'s choice), let ``policy`` play it to the end.

    Never raises for a fault inside the episode: an exception from the env or the policy is
    recorded with status ``error`` (``agent_context_limit`` for :class:`ContextLimitExceeded`).
    """
    env_id = env_id or (env.spec.id if env.spec else type(env.unwrapped).__name__)
    options: dict[str, Any] = {}
    if task is not None:
        options["task"] = task
    if split is not None:
        options["split"] = split
    started = time.time()
    traj = Trajectory(env_id=env_id, task_id=str(task) if task is not None else "", episode_id=episode_id or "",
                      prompt=[], first_observation="", policy=policy_name(policy),
                      model=getattr(policy, "model_name", None), seed=seed, split=split, started_at=started)
    try:
        obs, info = env.reset(seed=seed, options=options or None)
        traj.task_id, traj.prompt, traj.first_observation = info["task_id"], info.get("prompt", []), obs
        traj.episode_id = traj.episode_id or f"{env_id}|{traj.task_id}"
        traj.meta = {k: v for k, v in info.items()
                     if k not in ("prompt", "admissible_actions", "provenance") and k not in _STANDARD}
        traj.provenance = {"env": info.get("provenance", {})}
        policy.reset(info)
        traj.provenance["policy"] = _policy_provenance(policy)
        done = False
        while not done:
            t0 = time.perf_counter()
            try:
                action = policy.act(obs, info)
            except ContextLimitExceeded as exc:
                traj.status, traj.error, traj.end_reason = AGENT_CONTEXT_LIMIT, str(exc), CONTEXT_LIMIT
                break
            usage = getattr(policy, "last_usage", None) or {}
            obs, reward, terminated, truncated, info = env.step(action)
            traj.steps.append(Step(action=action, observation=obs, reward=float(reward), terminated=terminated,
                                   truncated=truncated, info=step_info(info), seconds=time.perf_counter() - t0,
                                   prompt_tokens=usage.get("prompt_tokens"),
                                   completion_tokens=usage.get("completion_tokens")))
            done = terminated or truncated
            traj.status = info.get("status", traj.status)
            traj.end_reason = info.get("end_reason", traj.end_reason)
            if info.get("status") == ERROR:
                traj.error = info.get("error")
        traj.score = float(info.get("score", 0.0))
        traj.success = bool(info.get("success", False))
        if traj.status == "running":  # stopped by a wrapper (TimeLimit) rather than the env itself
            if traj.steps and traj.steps[-1].truncated:
                traj.status, traj.end_reason = "task_limit_reached", ROUND_LIMIT
        traj.provenance["policy"] = _policy_provenance(policy)  # as used (a policy may settle options on its first call)
    except Exception as exc:  # recorded, never raised: a run of many episodes goes on
        traj.status, traj.end_reason = ERROR, ENV_ERROR
        traj.error = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:]
    traj.seconds = time.time() - started
    return traj


_STANDARD = {"task_id", "action_valid", "success", "score", "progress", "status", "end_reason", "turn"}


def _policy_provenance(policy: Policy) -> dict[str, Any]:
    """The policy's own account of itself (``policy.provenance``: backend, model, decoding), or its name."""
    prov = getattr(policy, "provenance", None)
    if callable(prov):
        prov = prov()
    out = dict(prov) if isinstance(prov, dict) else {}
    out.setdefault("policy", policy_name(policy))
    model = getattr(policy, "model_name", None)
    if model is not None:
        out.setdefault("model", model)
    return out
