"""The framework's own cost: per-step overhead on a no-op env, and rollout throughput vs concurrency.

    python benchmarks/bench_core.py

Targets (issue 2): the framework adds under 50 us per step; concurrency 32 reaches at least 25x
the episode throughput of concurrency 1 with a policy that sleeps 50 ms per call.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import gymnasium as gym

from agent_gym.core import Begin, Outcome, TextEnv
from agent_gym.policies.simple import ReplayPolicy
from agent_gym.rollout import EpisodeSpec, rollout
from agent_gym.spaces import AnyText

STEPS = 10_000
TURNS = 4


@dataclasses.dataclass(frozen=True)
class NoopTask:
    id: str


class NoopTextEnv(TextEnv):
    """Does nothing but the protocol: what remains is the framework's own cost."""

    max_turns = None

    @classmethod
    def load_tasks(cls, split):
        return [NoopTask(str(i)) for i in range(1000)]

    def _begin(self, task):
        return Begin(observation="start")

    def _act(self, action):
        self.n = getattr(self, "n", 0) + 1
        return Outcome(observation="ok", score=0.0, done=self.n % TURNS == 0)


class RawEnv(gym.Env):
    """The same no-op as a bare gymnasium env: the baseline."""

    observation_space = AnyText()
    action_space = AnyText()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return "start", {}

    def step(self, action):
        self.n = getattr(self, "n", 0) + 1
        return "ok", 0.0, self.n % TURNS == 0, False, {}


def per_step_us(env: gym.Env) -> float:
    env.reset(seed=0)
    t0 = time.perf_counter()
    for _ in range(STEPS):
        _, _, terminated, truncated, _ = env.step("Action: noop")
        if terminated or truncated:
            env.reset()
    return (time.perf_counter() - t0) / STEPS * 1e6


def sleepy_policy(env: Any, **_: Any) -> ReplayPolicy:
    class Sleepy(ReplayPolicy):
        def act(self, observation, info):
            time.sleep(0.05)
            return "Action: noop"

    return Sleepy([])


def throughput(concurrency: int, episodes: int) -> float:
    specs = [EpisodeSpec("Bench/Noop-v0", str(i % 1000), "test", seed=i, repeat=i // 1000) for i in range(episodes)]
    t0 = time.perf_counter()
    rollout(specs, sleepy_policy, concurrency=concurrency, progress=False)
    return episodes / (time.perf_counter() - t0)


def main() -> None:
    gym.register("Bench/Noop-v0", entry_point=NoopTextEnv)
    raw = per_step_us(RawEnv())
    ours = per_step_us(NoopTextEnv())
    made = per_step_us(gym.make("Bench/Noop-v0"))
    print(f"per step, {STEPS} steps: raw gymnasium env {raw:.2f} us, TextEnv {ours:.2f} us "
          f"-> framework overhead {ours - raw:.2f} us (target < 50); via gym.make wrappers {made:.2f} us")
    base = throughput(1, 20)
    for c, n in ((1, 20), (8, 160), (32, 640)):
        eps = base if c == 1 else throughput(c, n)
        print(f"concurrency {c:>2}: {eps:7.2f} episodes/s ({TURNS} turns x 50 ms), {eps / base:5.1f}x of concurrency 1")


if __name__ == "__main__":
    main()
