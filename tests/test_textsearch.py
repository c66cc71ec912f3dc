"""agent_gym.textsearch: the BM25 index (built once per corpus, cached on disk by sha256), title lookup and
the Wikipedia-like explorer (langchain DocstoreExplorer's search / lookup replies)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("bm25s", reason="text search needs bm25s: pip install bm25s")

from agent_gym import textsearch  # noqa: E402
from agent_gym.textsearch import Document, Explorer, NoPageError, TextIndex, corpus_sha256, read_jsonl  # noqa: E402

CORPUS = Path(__file__).resolve().parent / "fixtures" / "hotpotqa" / "corpus.jsonl"


@pytest.fixture()
def index(tmp_path) -> TextIndex:
    return TextIndex.build(read_jsonl(CORPUS), cache=tmp_path)


def test_search_ranks_by_bm25_and_drops_non_matches(index):
    hits = index.search("liquid metal element", k=3)
    assert hits[0].title == "Mercury (element)"
    assert all(h.score > 0 for h in hits) and hits == sorted(hits, key=lambda h: -h.score)
    assert index.search("zzzz qqqq") == [] and index.search("") == [] and index.search("the of a") == []
    assert len(index.search("Alexandria", k=2)) == 2 and index.search("Alexandria", k=0) == []


def test_titles_match_exactly_or_nearly(index):
    title = lambda q: None if index.find_title(q) is None else index.documents[index.find_title(q)].title  # noqa: E731
    assert title("Alexandria") == "Alexandria"
    assert title("alexandria") == title("ALEXANDRIA.") == "Alexandria"            # case, punctuation
    assert title("Beyonce") == "Beyoncé"                                          # accents
    assert title("Lighthouse of Pharo") == "Lighthouse of Pharos"                # a close spelling
    assert title("Pharos") == "Pharos (island)"                                   # the only "Pharos (...)"
    assert title("Mercury") is None                                              # two "Mercury (...)": ambiguous
    assert title("Egypt") is None and title("") is None


def test_explorer_search_hit_and_miss_with_suggestions(index):
    ex = Explorer(index, similar=3)
    assert ex.search("Lighthouse of Pharos") == "The Lighthouse of Pharos was a tall tower built in Alexandria."
    miss = ex.search("Mercury")
    assert miss == "Could not find [Mercury]. Similar: ['Mercury (planet)', 'Mercury (element)']"
    assert ex.page is None
    with pytest.raises(NoPageError):
        ex.lookup("tower")


def test_explorer_lookup_walks_paragraphs_and_restarts_on_a_new_keyword(index):
    ex = Explorer(index)
    ex.search("Lighthouse of Pharos")
    assert ex.lookup("Tower") == "(Result 1/3) The Lighthouse of Pharos was a tall tower built in Alexandria."
    assert ex.lookup("tower") == "(Result 2/3) Its light was a fire that burned at the top of the tower at night."
    assert ex.lookup("tower") == "(Result 3/3) The tower was damaged by earthquakes and its light went out."
    assert ex.lookup("tower") == "No More Results"
    assert ex.lookup("light") == "(Result 1/4) The Lighthouse of Pharos was a tall tower built in Alexandria."
    assert ex.lookup("camel") == "No Results"


def test_index_is_cached_on_disk_by_corpus_sha256(tmp_path):
    docs = read_jsonl(CORPUS)
    sha = corpus_sha256(docs)
    TextIndex.build(docs, cache=tmp_path)
    folder = tmp_path / f"v{textsearch.INDEX_VERSION}-{sha}"
    assert (folder / "params.index.json").is_file()
    # a fresh process loads that index instead of building one (proved by damaging the build path)
    code = ("import sys, bm25s; from agent_gym import textsearch as t; from pathlib import Path\n"
            "bm25s.BM25.index = lambda *a, **k: sys.exit('rebuilt')\n"
            f"ix = t.TextIndex.build(t.read_jsonl({str(CORPUS)!r}), cache=Path({str(tmp_path)!r}))\n"
            "print(ix.search('liquid metal', k=1)[0].title)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Mercury (element)"
    # another corpus, another key
    assert corpus_sha256(docs[:-1]) != sha and corpus_sha256([("a", "b")]) == corpus_sha256([Document("a", "b")])


def test_a_damaged_cache_is_rebuilt(tmp_path):
    docs = [Document("Alpha", "first letter"), Document("Beta", "second letter of the alphabet")]
    folder = tmp_path / f"v{textsearch.INDEX_VERSION}-{corpus_sha256(docs)}"
    folder.mkdir()
    (folder / "params.index.json").write_text("{not json")
    assert TextIndex.build(docs, cache=tmp_path).search("alphabet")[0].title == "Beta"


def test_bad_corpora_are_refused_with_the_line(tmp_path):
    with pytest.raises(ValueError, match="at least one document"):
        TextIndex.build([], cache=tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title": "A", "text": "x"}\n{"name": "B"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: a corpus line is"):
        read_jsonl(bad)
    ok = tmp_path / "ok.jsonl"
    ok.write_text('{"title": "A", "paragraphs": ["one", "two"]}\n\n')
    assert read_jsonl(ok) == [Document("A", "one\n\ntwo")]
