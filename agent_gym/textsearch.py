"""Full-text search over a list of ``(title, text)`` documents: a BM25 index and a Wikipedia-like page explorer.

The index is built once per corpus with ``bm25s`` (the same library WebShop's search uses) and kept
on disk under :func:`cache_dir`, keyed by the corpus's sha256, so a second process (or a second env)
loads it in milliseconds instead of re-indexing. Nothing here knows any task: an env hands in its
documents and asks for the top-k, a page by title, or the explorer's search / lookup replies.

:class:`Explorer` gives a searchable corpus the behaviour of langchain's ``DocstoreExplorer`` over its
``Wikipedia`` docstore (langchain 0.0.17x, which AgentTuning's HotpotQA and ReWOO evaluations called):

- ``search(x)``: a page whose title matches ``x`` (exactly, or nearly: case, accents, punctuation, a
  trailing "(disambiguator)", a close spelling) becomes the current page and its first paragraph
  (text before the first blank line) is returned; otherwise ``"Could not find [x]. Similar: [...]"``
  with the titles BM25 ranks best, written as a Python list as upstream's ``wikipedia.search`` list was;
- ``lookup(k)``: the next paragraph of the current page that contains ``k`` (case-insensitive),
  prefixed ``"(Result i/n) "``; ``"No Results"`` / ``"No More Results"``; a new keyword starts over;
  :class:`NoPageError` when the last search found no page (upstream raised ``ValueError`` too).

Install: ``pip install bm25s`` (in the ``hotpotqa`` and ``rewoo`` extras).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import os
import re
import shutil
import tempfile
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

from agent_gym.data import jsonl_rows

#: Where indexes are kept: ``$AGENT_GYM_INDEX_CACHE``, else ``<user cache>/agent-gym/textsearch``.
CACHE_ENV = "AGENT_GYM_INDEX_CACHE"
#: Bumped when the index layout or tokenisation changes, so old caches are not read.
INDEX_VERSION = 1
#: A title this close to the query (difflib ratio of the normalised strings) is a "near" hit.
NEAR_RATIO = 0.9


@dataclasses.dataclass(frozen=True)
class Document:
    """One page: its title and its text (paragraphs separated by a blank line)."""

    title: str
    text: str


@dataclasses.dataclass(frozen=True)
class Hit:
    """A search result: the document's position in the corpus, its title and BM25 score."""

    index: int
    title: str
    score: float


class NoPageError(ValueError):
    """``lookup`` before any successful ``search`` (upstream's ``DocstoreExplorer`` raised ``ValueError``)."""


def cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("agent-gym")) / "textsearch"


def corpus_sha256(documents: Iterable[Document | tuple[str, str]]) -> str:
    """The corpus's identity: sha256 over every title and text in order (unit separators between)."""
    digest = hashlib.sha256()
    for doc in documents:
        title, text = (doc.title, doc.text) if isinstance(doc, Document) else doc
        digest.update(title.encode("utf-8", "replace") + b"\x1f" + text.encode("utf-8", "replace") + b"\x1e")
    return digest.hexdigest()


def normalize_title(title: str) -> str:
    """``"Beyoncé (singer)"`` -> ``"beyonce singer"``: accents off, case folded, punctuation as spaces."""
    text = unicodedata.normalize("NFKD", title)
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    return " ".join(re.sub(r"[\W_]+", " ", text).split())


_PARENTHETICAL = re.compile(r"\s*\([^()]*\)\s*$")


def _tokenize(texts: list[str], bm25s_module) -> list[list[str]]:
    return bm25s_module.tokenize(texts, stopwords="en", show_progress=False, return_ids=False)


def _import_bm25s():
    try:
        import bm25s
    except ImportError as exc:
        raise ImportError("text search needs bm25s: pip install bm25s "
                          "(or pip install 'agent-gym[hotpotqa]')") from exc
    return bm25s


class TextIndex:
    """A BM25 index over ``documents`` (title and text indexed together), with title lookup.

    ``TextIndex.build(documents)`` loads the cached index of this exact corpus or builds and
    caches it. Duplicate titles keep their first document for title lookup; every document is
    searchable. Thread-safe for queries.
    """

    def __init__(self, documents: Sequence[Document], retriever, sha256: str):
        self.documents = documents
        self.sha256 = sha256
        self._retriever = retriever
        self._by_title: dict[str, int] = {}
        self._by_base: dict[str, list[int]] = {}
        for i, doc in enumerate(documents):
            key = normalize_title(doc.title)
            self._by_title.setdefault(key, i)
            base = normalize_title(_PARENTHETICAL.sub("", doc.title))
            if base != key:
                self._by_base.setdefault(base, []).append(i)

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, documents: Iterable[Document | tuple[str, str]], cache: Path | None = None) -> TextIndex:
        """The index of ``documents``, read from the on-disk cache when this corpus was indexed before.

        ``cache``: the cache folder (default :func:`cache_dir`). The index is also kept in memory per
        cache folder and corpus, for the process's lifetime. Raises ``ValueError`` for an empty corpus.
        """
        docs = [d if isinstance(d, Document) else Document(str(d[0]), str(d[1])) for d in documents]
        if not docs:
            raise ValueError("a text index needs at least one document")
        sha = corpus_sha256(docs)
        folder = (cache or cache_dir()) / f"v{INDEX_VERSION}-{sha}"
        with _build_lock:
            found = _memory.get(str(folder))
            if found is not None:
                return cls(docs, found, sha)
            bm25s = _import_bm25s()
            retriever = None
            if (folder / "params.index.json").is_file():
                try:
                    retriever = bm25s.BM25.load(str(folder), load_vocab=True, show_progress=False, verbosity=0)
                except Exception:  # noqa: BLE001 - a damaged cache is rebuilt, never fatal
                    retriever = None
            if retriever is None:
                retriever = bm25s.BM25()
                retriever.index(_tokenize([f"{d.title}\n{d.text}" for d in docs], bm25s), show_progress=False)
                _save(retriever, folder)
            _memory[str(folder)] = retriever
            return cls(docs, retriever, sha)

    # ------------------------------------------------------------------ queries
    def search(self, query: str, k: int = 10) -> list[Hit]:
        """The ``k`` best documents for ``query`` by BM25 (ties: corpus order); none scoring 0."""
        if k <= 0:
            return []
        bm25s = _import_bm25s()
        tokens = _tokenize([query], bm25s)[0]
        if not tokens:
            return []
        import numpy as np

        scores = self._retriever.get_scores(tokens)
        positive = np.flatnonzero(scores > 0)
        if positive.size == 0:
            return []
        order = positive[np.lexsort((positive, -scores[positive]))][:k]
        return [Hit(int(i), self.documents[int(i)].title, float(scores[int(i)])) for i in order]

    def find_title(self, query: str) -> int | None:
        """The document whose title is ``query``, exactly or nearly (see the module docstring), else ``None``."""
        key = normalize_title(query)
        if not key:
            return None
        if key in self._by_title:
            return self._by_title[key]
        bases = self._by_base.get(key, [])
        if len(bases) == 1:  # "Milhouse" -> "Milhouse (The Simpsons)" when that is the only one
            return bases[0]
        best, best_ratio = None, NEAR_RATIO
        for hit in self.search(query, k=10):
            ratio = difflib.SequenceMatcher(None, key, normalize_title(hit.title)).ratio()
            if ratio > best_ratio or (ratio == best_ratio and best is None):
                best, best_ratio = hit.index, ratio
        return best


def _save(retriever, folder: Path) -> None:
    """Write the index next to its final place, then rename it in (a cut write leaves no half index)."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            retriever.save(str(tmp), show_progress=False)
            os.replace(tmp, folder)
        except OSError:
            if not folder.exists():
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError:
        pass  # a read-only cache only costs the next process a rebuild


_memory: dict[str, object] = {}
_build_lock = threading.Lock()


class Explorer:
    """langchain's ``DocstoreExplorer`` behaviour over a :class:`TextIndex` (module docstring).

    One per episode: it remembers the current page and the lookup keyword. ``similar``: how many
    titles a miss suggests (upstream's ``wikipedia.search`` default, 10).
    """

    def __init__(self, index: TextIndex, similar: int = 10):
        self.index = index
        self.similar = similar
        self.page: Document | None = None
        self._lookup_str = ""
        self._lookup_index = 0

    def search(self, term: str) -> str:
        found = self.index.find_title(term)
        if found is None:
            self.page = None
            titles = [h.title for h in self.index.search(term, k=self.similar)]
            return f"Could not find [{term}]. Similar: {titles!r}"
        self.page = self.index.documents[found]
        return self.paragraphs()[0]

    def paragraphs(self) -> list[str]:
        if self.page is None:
            raise NoPageError("Cannot get paragraphs without a document")
        return self.page.text.split("\n\n")

    def lookup(self, term: str) -> str:
        if self.page is None:
            raise NoPageError("Cannot lookup without a successful search first")
        if term.lower() != self._lookup_str:
            self._lookup_str = term.lower()
            self._lookup_index = 0
        else:
            self._lookup_index += 1
        found = [p for p in self.paragraphs() if self._lookup_str in p.lower()]
        if not found:
            return "No Results"
        if self._lookup_index >= len(found):
            return "No More Results"
        return f"(Result {self._lookup_index + 1}/{len(found)}) {found[self._lookup_index]}"


def read_jsonl(path: str | Path) -> list[Document]:
    """Documents of a JSON-lines corpus (a Wikipedia dump, say): one ``{"title": ..., "text": ...}``
    object per line, paragraphs in ``text`` separated by a blank line (``"paragraphs": [...]`` is
    accepted instead of ``text``). Blank lines are skipped; a bad line raises ``ValueError`` naming it."""
    docs = []
    for n, row in jsonl_rows(path):
        try:
            text = row["text"] if "text" in row else "\n\n".join(row["paragraphs"])
            docs.append(Document(str(row["title"]), str(text)))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{n}: a corpus line is {{\"title\": ..., \"text\": ...}} "
                             f"({type(exc).__name__}: {exc})") from None
    if not docs:
        raise ValueError(f"{path}: the corpus has no documents")
    return docs
