"""A Gymnasium space for unbounded Unicode text.

``gymnasium.spaces.Text`` needs a charset and a maximum length; an agent's reply or an
engine's observation has neither, so the envs of this package use :class:`AnyText`.
"""

from __future__ import annotations

import string
from typing import Any

import numpy as np
from gymnasium.spaces import Space

_SAMPLE_ALPHABET = string.ascii_letters + string.digits + string.punctuation + " \n"


class AnyText(Space[str]):
    """Every ``str`` is a member. ``sample()`` gives short random printable text.

    Equality is by type and sampling bound, which is what gymnasium's vector envs need to
    accept several copies of an env as "equivalent".
    """

    def __init__(self, max_sample_length: int = 64, seed: int | np.random.Generator | None = None):
        self.max_sample_length = max_sample_length
        super().__init__(shape=None, dtype=str, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        length = int(self.np_random.integers(0, self.max_sample_length + 1))
        idx = self.np_random.integers(0, len(_SAMPLE_ALPHABET), size=length)
        return "".join(_SAMPLE_ALPHABET[i] for i in idx)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str)

    def __repr__(self) -> str:
        return "AnyText()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AnyText) and other.max_sample_length == self.max_sample_length

    def __hash__(self) -> int:
        return hash(("AnyText", self.max_sample_length))
