"""Helpers for test suites of agent-gym envs (ours and users' own)."""

from __future__ import annotations

import os


def need_data(name: str) -> None:
    """Skip the calling test when dataset ``name`` is missing from the data directory,
    or fail it when ``AGENT_GYM_REQUIRE_DATA=1`` (CI, where a silent skip would hide a gap)."""
    import pytest

    from agent_gym.data import dataset

    if not dataset(name).is_present():
        msg = f"dataset {name!r} missing: run `agent-gym data fetch {name}` (online) or `agent-gym data import PATH` (a local copy)"
        if os.environ.get("AGENT_GYM_REQUIRE_DATA") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
