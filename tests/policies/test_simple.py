"""The model-free policies: random picks seeded per episode (reproducible runs, other text per
episode), the expert's replies per task."""

from __future__ import annotations

import dataclasses

import gymnasium as gym

from agent_gym.core import Begin, Outcome, TextEnv
from agent_gym.policies.simple import RandomPolicy
from agent_gym.rollout import plan, rollout
from agent_gym.testing import need_data


@dataclasses.dataclass(frozen=True)
class Room:
    id: str


class RoomsEnv(TextEnv):
    """Eight rooms, three moves each out of ten admissible actions (as ALFWorld lists them); no engine."""

    task_name = "rooms"
    max_turns = 3

    @classmethod
    def load_tasks(cls, split):
        return [Room(str(i)) for i in range(8)]

    def _begin(self, task):
        return Begin(observation=f"You are in room {task.id}.", admissible_actions=[f"go {d}" for d in range(10)])

    def _act(self, action):
        return Outcome(f"You did {action}.", score=0.0, admissible_actions=[f"go {d}" for d in range(10)])


ROOMS = "Toy/Rooms-v0"
if ROOMS not in gym.registry:
    gym.register(ROOMS, entry_point=RoomsEnv)


def _actions(result) -> dict[str, list[str]]:
    return {t.episode_id: [s.action for s in t.steps] for t in result.trajectories}


def test_random_policy_gives_each_episode_its_own_picks_and_a_rerun_the_same():
    runs = [_actions(rollout(plan([ROOMS], seed=seed), "random", policy_options={"seed": seed}, concurrency=c,
                             progress=False)) for seed, c in ((0, 1), (0, 4), (1, 1))]
    first = runs[0]
    assert len(first) == 8 and all(len(a) == 3 for a in first.values())
    assert len({tuple(a) for a in first.values()}) >= 6, first  # 8 episodes, 1000 possible move sequences
    assert runs[1] == first  # the same run again (in any thread order): the same picks
    assert runs[2] != first  # another --seed: other picks


def test_random_text_without_admissible_actions_differs_per_episode_and_reruns_the_same():
    need_data("gsm8k")
    runs = [_actions(rollout(plan(["AgentTuning/GSM8K-v0"], episodes=5), "random", policy_options={"seed": 0},
                             progress=False)) for _ in range(2)]
    assert len({tuple(a) for a in runs[0].values()}) == 5
    assert runs[0] == runs[1]


def test_one_random_policy_over_unseeded_resets_goes_on_instead_of_repeating():
    from agent_gym.episode import run_episode

    env = gym.make(ROOMS)
    policy = RandomPolicy(env.action_space, seed=3, env=env)
    seeded = [s.action for s in run_episode(env, policy, task=0, seed=7).steps]
    later = [[s.action for s in run_episode(env, policy, task=0).steps] for _ in range(3)]
    assert len({tuple(a) for a in [seeded, *later]}) == 4
    assert [s.action for s in run_episode(env, policy, task=0, seed=7).steps] == seeded  # the seed again: the same


def test_expert_replays_each_tasks_own_solution_whatever_the_episode():
    need_data("gsm8k")
    result = rollout(plan(["AgentTuning/GSM8K-v0"], episodes=3, repeats=2), "expert", concurrency=2, progress=False)
    by_task: dict[str, set[tuple[str, ...]]] = {}
    for t in result.trajectories:
        by_task.setdefault(t.task_id, set()).add(tuple(s.action for s in t.steps))
    assert all(len(replies) == 1 for replies in by_task.values())  # repeats of a task: the same replies
    assert len({r for replies in by_task.values() for r in replies}) == 3  # other tasks: other replies
    assert all(t.score == 1.0 for t in result.trajectories)
