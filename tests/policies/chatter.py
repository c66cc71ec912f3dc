"""A small multi-turn test env and a recording wrapper around a real backend, for the policy tests."""

from __future__ import annotations

from collections.abc import Sequence

from agent_gym.core import Begin, Outcome, TextEnv


class ChatterEnv(TextEnv):
    """A small multi-turn env: ``turns`` long observations, then done; hints in ``info`` as a task env gives them."""

    task_name = "chatter"
    max_turns = 50

    def __init__(self, observation_words: int = 60, hints: dict | None = None, prompt_words: int = 5, turns: int = 6):
        super().__init__()
        self.turns = turns
        self.observation_words, self.hints, self.prompt_words = observation_words, hints or {}, prompt_words

    @classmethod
    def load_tasks(cls, split: str) -> Sequence:
        from types import SimpleNamespace

        return [SimpleNamespace(id="t0")]

    def _begin(self, task) -> Begin:
        prompt = [{"role": "user", "content": "Instruction: " + "rule " * self.prompt_words},
                  {"role": "assistant", "content": "Ok."}]
        self.turns_played = 0
        return Begin(observation=self._observation(), prompt=prompt, extra=dict(self.hints))

    def _observation(self) -> str:
        return f"Observation {self.turns_played}: " + "stone " * self.observation_words

    def _act(self, action: str) -> Outcome:
        self.turns_played += 1
        return Outcome(observation=self._observation(), score=0.0, done=self.turns_played >= self.turns)


class RecordingBackend:
    """The real local backend, with the prompts it was given kept for inspection."""

    def __init__(self, inner):
        self.inner, self.prompts, self.calls = inner, [], []
        self.model_name, self.context_length = inner.model_name, inner.context_length

    def chat_template(self):
        return self.inner.chat_template()

    def generate(self, prompt, **kwargs):
        self.prompts.append(prompt)
        self.calls.append(kwargs)
        return self.inner.generate(prompt, **kwargs)
