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
        # AGENT_GYM_ABSENT_DATA names datasets a CI's copy is known to lack (no copy could be had):
        # those skip, with the reason, even where every other missing dataset fails the test
        absent = {n.strip() for n in os.environ.get("AGENT_GYM_ABSENT_DATA", "").split(",") if n.strip()}
        if os.environ.get("AGENT_GYM_REQUIRE_DATA") == "1" and name not in absent:
            pytest.fail(msg)
        pytest.skip(msg + (" (declared absent from this machine's copy: AGENT_GYM_ABSENT_DATA)" if name in absent else ""))
