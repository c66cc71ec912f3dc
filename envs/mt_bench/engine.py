"""The MT-Bench judge: an LLM behind any of agent-gym's backends (the paper's was GPT-4 via OpenAI).

This is the only code of the package that talks to a model. The backend is made on the first
judgment (a local model loads then), except for servers, which are probed when the judge is made
so that a run against a server that is not there stops before its first episode.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from agent_gym.envs.mt_bench import prompt

Message = dict[str, str]
JUDGE_KINDS = ("local", "tgi", "openai")


@dataclasses.dataclass
class Judgment:
    """One judge call: the prompt's name, the messages sent, the judge's reply and the rating read from it
    (:func:`agent_gym.envs.mt_bench.prompt.parse_rating`: -1 when none could be read)."""

    prompt_name: str
    messages: list[Message]
    text: str
    rating: float
    error: str | None = None

    def to_info(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Judge:
    """``kind``: a backend kind of :func:`agent_gym.policies.backend.get_backend` (``local``, ``tgi``,
    ``openai``); ``model``: its model (``None``: the local backend's embedded SmolLM2, or what the
    server serves); ``url``: the server for ``tgi`` / ``openai``; ``max_new_tokens``: the judgment's
    length (FastChat's 2048). Decoding is greedy, as FastChat's temperature 0."""

    def __init__(self, kind: str = "local", model: str | None = None, url: str | None = None,
                 max_new_tokens: int = prompt.JUDGE_MAX_NEW_TOKENS):
        if kind not in JUDGE_KINDS:
            raise ValueError(f"judge must be one of {', '.join(JUDGE_KINDS)}, got {kind!r}")
        if kind != "local" and not url:
            raise ValueError(f"a {kind} judge needs judge_url (the server's root, e.g. http://localhost:8080)")
        if kind == "local" and url:
            raise ValueError("the local judge runs in this process: judge_url is for judge='tgi' or 'openai'")
        if max_new_tokens < 1:
            raise ValueError(f"judge_max_new_tokens must be at least 1, got {max_new_tokens}")
        self.kind, self.model, self.url, self.max_new_tokens = kind, model, url, max_new_tokens
        self._backend: Any = None
        if kind != "local":
            self.backend  # noqa: B018 - probe the server now (PolicySetupError names the fix)

    @property
    def backend(self) -> Any:
        if self._backend is None:
            from agent_gym.policies.backend import get_backend

            self._backend = get_backend(self.kind, model=self.model, url=self.url)
        return self._backend

    @property
    def model_name(self) -> str:
        """The judge's model as recorded with every score (the server's model id for a server)."""
        if self._backend is not None:
            return self._backend.model_name
        if self.kind == "local":
            from agent_gym.policies.models import display_name

            return display_name(self.model)
        return self.model or "served model"

    def describe(self) -> dict[str, Any]:
        """``{"kind", "model", "url", "max_new_tokens"}``: the judge as recorded with a score."""
        return {"kind": self.kind, "model": self.model_name, "url": self.url, "max_new_tokens": self.max_new_tokens}

    def judge(self, name: str, messages: Sequence[Message]) -> Judgment:
        """Ask the judge; a conversation the judge's context cannot hold gets no rating (FastChat
        recorded an API failure as ``$ERROR$``, rating -1); any other backend failure raises
        (:class:`agent_gym.policies.backend.BackendError`: the episode ends in ``error`` and a
        resumed run judges it again)."""
        from agent_gym.policies.backend import PromptTooLong

        try:
            reply = self.backend.generate(list(messages), max_new_tokens=self.max_new_tokens, temperature=0.0)
        except PromptTooLong as exc:
            return Judgment(name, list(messages), "", prompt.NO_RATING, error=f"judge context too small: {exc}")
        return Judgment(name, list(messages), reply.text, prompt.parse_rating(reply.text))
