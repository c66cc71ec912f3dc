"""``AgentTuning/CardGame-v0``: AgentBench's Digital Card Game (Aquawar) against its baseline AIs.

One episode is one game. Each step is one model call of AgentBench's LLM player: a guess (which
enemy fish is which type) or an action (which fish does what to whom), in the JSON format of
:mod:`~agent_gym.envs.cardgame.prompt`. A reply that does not parse or validate is an attempt lost and
the same decision is asked again; after 5 failed attempts a guess is skipped and an action loses the
game (the engine refuses the empty action), as upstream. The opponent's moves run inside the env.

Score: 1 for a win, 0 otherwise; over the 200 games of the paper's schedule its mean is the win rate
(``summarize`` adds it per opponent and side). ``info["messages"]`` is the exact chat of the call as
upstream's client sent it (history of that decision kind, the rules, the state); the observation is the
rules and the state prompt, so a policy keeping its own history sees the rules too. The rules are
AgentBench's own texts when ``agent-gym data fetch cardgame`` has put them in the data directory, else our
wording of them; ``options()["prompts"]`` says which (``"agentbench"`` / ``"ours"``).
Rules and protocol: docs/cardgame.md; engine: :mod:`~agent_gym.envs.cardgame.engine`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from agent_gym.core import (ENV_STEP_LIMIT, GOAL_REACHED, INVALID_ACTION, INVALID_ACTION_END, RUNNING, TASK_FAILED,
                            Begin, Outcome, TextEnv)
from agent_gym.envs.cardgame import data, engine, prompt
from agent_gym.envs.cardgame.baselines import make_opponent


class CardGameEnv(TextEnv):
    """Splits: ``test`` (the paper's 200 games; upstream ``ext``) and ``dev`` (12). A task is
    ``(opponent, side, seed)``: pick one with ``reset(options={"task": "baseline2/side1/seed7"})``, or
    play games of your own with ``tasks_file=`` (JSON lines ``{"opponent", "side", "seed"}``)."""

    task_name = "cardgame"
    splits = ("test", "dev")
    split_aliases: ClassVar[dict[str, str]] = {"ext": "test"}
    max_turns = None  # the game bounds itself: 128 phases, at most 5 calls per decision
    decoding: ClassVar[dict[str, Any]] = {"max_new_tokens": 512, "temperature": 0.0}
    system_prompt: ClassVar[str | None] = ""  # AgentBench's harness sent no system message
    strip_messages = True
    paper_options: ClassVar[dict[str, Any]] = {"prompts": "agentbench"}  # AgentBench.old prompt/en.py

    def __init__(self, split: str | None = None, render_mode: str | None = None,
                 tasks_file: str | Path | None = None):
        super().__init__(split=split, render_mode=render_mode, tasks_file=tasks_file)
        self.match: engine.Match | None = None
        self._side = 0
        self._decision: str | None = None   # engine.ASSERT (a guess) or engine.ACTION
        self._attempt = 0
        self._history: dict[str, list[tuple[str, str]]] = {}
        self._prompt_text = ""
        upstream = data.upstream_rules()  # read once: every game of this env uses the same rules texts
        self._prompts = "agentbench" if upstream else "ours"
        #: The rules texts of this env's calls: ``{"action": ..., "guess": ...}`` (upstream's or ours).
        self.rules = ({"action": upstream["action_rules"], "guess": upstream["guess_rules"]} if upstream
                      else {"action": prompt.ACTION_RULES, "guess": prompt.GUESS_RULES})

    @classmethod
    def load_tasks(cls, split: str) -> Sequence[data.CardGameTask]:
        return data.schedule(split)

    @classmethod
    def load_tasks_file(cls, path: Path) -> Sequence[data.CardGameTask]:
        return data.load_file(path)

    def options(self) -> dict[str, Any]:
        return {"prompts": self._prompts}

    def engine_info(self) -> dict[str, str]:
        return {"aquawar": "python reimplementation of AgentBench.old card_game logic/src"}

    def provenance(self) -> dict[str, Any]:
        prov = super().provenance()
        if self.tasks_file is None:  # no dataset to check: the schedule is generated (data.schedule)
            prov.setdefault("dataset", {"name": None, "state": "generated",
                                        "schedule": f"{len(self.tasks())} seeded games"})
        prov["prompts_file"] = data.prompts_file_state()
        return prov

    @classmethod
    def summarize(cls, trajectories: Sequence[Any]) -> dict[str, float]:
        """``win_rate`` (the paper's number, x100 in its table) overall and per opponent and side."""
        from agent_gym.metrics import default_summary, group_means

        out = default_summary(trajectories)
        if trajectories:
            out["win_rate"] = out["score"]
            for key, fn in (("opponent", lambda t: t.task_id.split("/")[0]),
                            ("side", lambda t: t.task_id.split("/")[1])):
                out.update({f"win_rate/{k}": v for k, v in sorted(group_means(trajectories, key=fn).items())})
        return out

    # ------------------------------------------------------------------ episode
    def _begin(self, task: data.CardGameTask) -> Begin:
        opponent = make_opponent(task.opponent, random.Random(task.seed))
        players: list[Any] = [None, None]
        players[task.side ^ 1] = opponent
        self.match = engine.Match(players)
        self._side = task.side
        self._history = {engine.ASSERT: [], engine.ACTION: []}
        observation = self._next_decision()
        assert observation is not None, "a game cannot end before the agent's first decision"
        return Begin(observation=observation, prompt=[], extra=self._extra(task))

    def _act(self, reply: str) -> Outcome:
        assert self.match is not None
        self._attempt += 1
        view = self.match.views[self._side]
        if self._decision == engine.ASSERT:
            guess = prompt.decode_guess(reply, view)
            valid = guess is not None
            if valid:
                self._history[engine.ASSERT].append((self._prompt_text, reply))
            if valid or self._attempt >= prompt.ATTEMPTS:
                self.match.agent_guess(guess or (-1, -1))
                return self._after_decision(valid)
        else:
            action, _move = prompt.decode_action(reply, view)
            valid = action is not None
            if valid:
                self._history[engine.ACTION].append((self._prompt_text, reply))
            if valid or self._attempt >= prompt.ATTEMPTS:
                self.match.agent_act(action)
                return self._after_decision(valid)
        return Outcome(observation=self._observation(), action_valid=False, extra=self._extra())

    def _after_decision(self, valid: bool) -> Outcome:
        observation = self._next_decision()
        if observation is not None:
            return Outcome(observation=observation, action_valid=valid, extra=self._extra())
        game = self.match.game
        won = game.winner == self._side
        agent_illegal = game.end == engine.INVALID_OPERATION and not won
        if agent_illegal:
            end_reason, status = INVALID_ACTION_END, INVALID_ACTION
        elif game.end == engine.STATE_LIMIT_EXCEEDED:
            end_reason, status = ENV_STEP_LIMIT, RUNNING
        else:
            end_reason, status = (GOAL_REACHED if won else TASK_FAILED), RUNNING
        verdict = "You won the game." if won else "You lost the game."
        why = {engine.ALL_DEAD: "every fish of one team is dead",
               engine.STATE_LIMIT_EXCEEDED: f"the {engine.STATE_LIMIT}-phase limit was reached",
               engine.INVALID_OPERATION: f"an illegal move ({game.error})"}[game.end]
        return Outcome(observation=f"Game over: {why}. {verdict}", score=1.0 if won else 0.0, done=True,
                       status=status, success=won, action_valid=valid, end_reason=end_reason,
                       extra={**self._extra(), "winner": game.winner, "game_end": game.end, "phases": game.state})

    def _next_decision(self) -> str | None:
        """Run the opponent until the agent decides; the observation of that decision, ``None`` at the end."""
        pending = self.match.advance()
        if pending is None:
            self._decision = None
            return None
        self._decision, self._attempt = pending[0], 0
        view = self.match.views[self._side]
        self._prompt_text = prompt.guess_prompt(view) if self._decision == engine.ASSERT else prompt.action_prompt(view)
        return self._observation()

    def _rules(self) -> str:
        return self.rules["guess" if self._decision == engine.ASSERT else "action"]

    def _observation(self) -> str:
        return f"{self._rules()}\n\n{self._prompt_text}"

    def _extra(self, task: data.CardGameTask | None = None) -> dict[str, Any]:
        extra: dict[str, Any] = {"phase": "guess" if self._decision == engine.ASSERT else
                                 "action" if self._decision == engine.ACTION else None,
                                 "attempt": self._attempt + 1 if self._decision else None}
        if self._decision is not None:
            keep = prompt.GUESS_HISTORY if self._decision == engine.ASSERT else prompt.ACTION_HISTORY
            extra["messages"] = prompt.messages(self._history[self._decision][-keep:], self._rules(), self._prompt_text)
        else:
            extra["messages"] = None
        if task is not None:
            extra.update(opponent=task.opponent, side=task.side, game_seed=task.seed)
        return extra
