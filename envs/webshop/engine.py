"""WebShop's text site: the BM25 search index and one shopper's session (pages, clicks, rendering).

The site follows ``web_agent_site/envs/web_agent_text_env.py`` (``WebAgentTextEnv`` with its
``SimServer`` and ``SimBrowser``) and its HTML templates, rendered directly to what
``convert_html_to_text(simple=True)`` made of them: the visible text pieces, stripped, joined by
``" [SEP] "``. :meth:`Shop.available_actions` is ``get_available_actions()``: the lowercased text of
every button and product link, then every option value, in page order, duplicates collapsed.

Search (``SearchIndex``): upstream queried a pyserini Lucene BM25 index of one document per product,
``lowercase(Title + " " + Description + " " + BulletPoints[0] + " " + option text)``
(``search_engine/convert_product_file_format.py``), and kept the top 50 hits with a positive score.
Here the same documents go into a ``bm25s`` index with Lucene's scoring (k1 0.9, b 0.4: pyserini's
defaults) and an analyzer close to Lucene's English one (word/number tokens, possessive ``'s``
dropped, Lucene's 33 stop words, Porter stemming); ties go to the earlier product, as in Lucene.
The index is built once per catalogue and kept on disk, keyed by the catalogue's sha256.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent_gym.envs.webshop import reward as rewards
from agent_gym.envs.webshop.data import Catalogue, Goal, Product

SEARCH_RETURN_N = 50  # engine.py
PRODUCT_WINDOW = 10
END_BUTTON, NEXT_PAGE, PREV_PAGE, BACK_TO_SEARCH = "Buy Now", "Next >", "< Prev", "Back to Search"
SUB_PAGES = ("Description", "Features", "Reviews")  # "Attributes" only with show_attrs, which AgentBench left off
SEP = " [SEP] "

# --------------------------------------------------------------------------------------------- search
# Lucene's EnglishAnalyzer stop set (StopAnalyzer.ENGLISH_STOP_WORDS_SET), which pyserini's default analyzer uses.
LUCENE_STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these "
    "they this to was will with".split())
# StandardTokenizer (UAX#29) keeps "6.7", "l'eau", "i3" whole and splits on other punctuation
_TOKEN = re.compile(r"\w+(?:[.,'’]\w+)*")
INDEX_VERSION = "1"  # bump when the analyzer or the documents change: the cache key includes it
BM25_K1, BM25_B = 0.9, 0.4


@functools.lru_cache(maxsize=1)
def _stemmer():
    try:
        import Stemmer
    except ImportError:
        raise ImportError("WebShop's search stems like Lucene with PyStemmer: pip install 'agent-gym[webshop]'") from None
    return Stemmer.Stemmer("porter")


def analyze(text: str) -> list[str]:
    """Lucene-like English analysis: lowercase tokens, possessive ``'s`` dropped, stop words out, Porter stems."""
    tokens = []
    for token in _TOKEN.findall(text.lower()):
        if token.endswith(("'s", "’s")):
            token = token[:-2]
        if token and token not in LUCENE_STOP_WORDS:
            tokens.append(token)
    return _stemmer().stemWords(tokens)


def document_text(product: Product) -> str:
    """The text WebShop's converter indexed for a product (lowercased title, description, first bullet, options)."""
    option_text = ", and ".join(f"{name}: {', '.join(values)}" for name, values in product.options.items())
    first_bullet = product.bullet_points[0] if product.bullet_points else ""
    return " ".join([product.title, product.description, first_bullet, option_text]).lower()


class SearchIndex:
    """BM25 over a catalogue's products. ``search(keywords)`` -> up to 50 ASINs, best first.

    ``open(catalogue, cache_dir)`` loads the index saved for the catalogue's sha256 or builds and saves
    it (a temporary folder renamed into place, so concurrent builders never see half an index).
    """

    def __init__(self, retriever: Any, asins: Sequence[str]):
        self.retriever = retriever
        self.asins = list(asins)
        self.vocab = retriever.vocab_dict

    @classmethod
    def build(cls, documents: Sequence[str], asins: Sequence[str]) -> "SearchIndex":
        import bm25s

        retriever = bm25s.BM25(k1=BM25_K1, b=BM25_B, method="lucene")
        retriever.index([analyze(d) for d in documents], show_progress=False)
        return cls(retriever, asins)

    @classmethod
    def open(cls, catalogue: Catalogue, cache_dir: Path | None) -> "SearchIndex":
        key = f"{catalogue.sha256[:32]}-v{INDEX_VERSION}"
        folder = (cache_dir / key) if cache_dir is not None else None
        with _build_lock:
            cached = _open_indexes.get(str(folder or key))
            if cached is not None:
                return cached
            index = cls._load(folder) if folder is not None and (folder / "asins.json").is_file() else None
            if index is None:
                products = catalogue.products
                index = cls.build([document_text(p) for p in products], [p.asin for p in products])
                if folder is not None:
                    index._save(folder)
            _open_indexes[str(folder or key)] = index
            return index

    @classmethod
    def _load(cls, folder: Path) -> "SearchIndex | None":
        import bm25s

        try:
            retriever = bm25s.BM25.load(str(folder), mmap=False, show_progress=False, verbosity=0)
            asins = json.loads((folder / "asins.json").read_text())
        except (OSError, ValueError):
            return None  # a damaged cache is rebuilt
        return cls(retriever, asins)

    def _save(self, folder: Path) -> None:
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        except OSError:
            return  # a read-only cache folder: the index lives in memory only
        try:
            self.retriever.save(str(tmp), show_progress=False)
            (tmp / "asins.json").write_text(json.dumps(self.asins))
            os.replace(tmp, folder)
        except OSError:
            pass  # another process saved it first
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def scores(self, keywords: str) -> np.ndarray:
        """BM25 score of every product for a query (0 where no query term occurs)."""
        tokens = [t for t in analyze(keywords) if t in self.vocab]
        if not tokens:
            return np.zeros(len(self.asins), dtype=np.float32)
        return self.retriever.get_scores(tokens)

    def search(self, keywords: str, k: int = SEARCH_RETURN_N) -> list[str]:
        """The ``k`` best-scoring ASINs with a positive score; equal scores keep catalogue order."""
        scores = self.scores(keywords)
        positive = np.flatnonzero(scores > 0)
        if len(positive) > k:
            kth = np.partition(scores[positive], len(positive) - k)[len(positive) - k]
            positive = positive[scores[positive] >= kth]
        order = np.lexsort((positive, -scores[positive]))[:k]
        return [self.asins[i] for i in positive[order]]


_build_lock = threading.Lock()
_open_indexes: dict[str, SearchIndex] = {}


# ----------------------------------------------------------------------------------------------- site
def _parse_action(action: str) -> tuple[str, str | None]:
    """``engine.py:parse_action``: ``name[arg]`` (greedy name, as upstream's regex), else ``(action, None)``."""
    m = re.match(r"(.+)\[(.+)\]", action)
    return (m.group(1), m.group(2)) if m else (action, None)


def _is_text_node(text: str) -> bool:
    """Whether BeautifulSoup's html.parser gives a text node that ``convert_html_to_text`` prints:
    none for an empty string; ASCII whitespace with a newline becomes ``"\\n"``, which it skips; other
    whitespace stays (and prints as an empty piece between two separators, as upstream)."""
    return bool(text) and not (not text.strip(" \n\t\f\r") and "\n" in text)


class Shop:
    """One shopper's session on the text site, for one goal.

    Pages: ``index`` (search box), ``search_results``, ``item_page``, ``item_sub_page``, ``done``.
    :meth:`step` takes ``search[keywords]`` / ``click[value]`` and returns ``(reward, done, valid)``;
    an action that is not on the page is a no-op (upstream: "If the action is not valid, perform nothing").
    """

    def __init__(self, catalogue: Catalogue, index: SearchIndex, goal: Goal,
                 spacy_model: str = rewards.DEFAULT_SPACY_MODEL):
        self.catalogue = catalogue
        self.index = index
        self.goal = goal
        self.instruction = goal.instruction_text
        self.spacy_model = spacy_model
        self.page_name = "index"
        self.keywords: str | None = None
        self.page = 1
        self.results: list[Product] = []
        self.asin: str | None = None
        self.options: dict[str, str] = {}
        self.sub_page: str | None = None
        self.clicked_asins: list[str] = []
        self.purchase: dict[str, Any] | None = None

    # -- what the agent sees
    def observation(self) -> str:
        """The page as ``convert_html_to_text(simple=True)`` printed it."""
        head = ["Instruction:", self.instruction]
        if self.page_name == "index":
            texts = ["WebShop", *head, "Search"]
        elif self.page_name == "search_results":
            texts = [*head, BACK_TO_SEARCH, f"Page {self.page} (Total results: {len(self.results)})"]
            texts += [PREV_PAGE, NEXT_PAGE] if self.page > 1 else [NEXT_PAGE]
            for p in self._page_products():
                texts += [p.asin, p.title, p.price_tag]
        elif self.page_name == "item_page":
            p = self.product
            texts = [*head, BACK_TO_SEARCH, PREV_PAGE]
            for name, values in p.options.items():
                texts += [name, *values]
            texts += [p.title, f"Price: {p.price_tag}", f"Rating: {p.rating}", *SUB_PAGES, END_BUTTON]
        elif self.page_name == "item_sub_page":
            p = self.product
            texts = [*head, BACK_TO_SEARCH, PREV_PAGE]
            if self.sub_page == "Description":
                texts.append(p.description)
            elif self.sub_page == "Features":
                texts += [" " + b for b in p.bullet_points]  # the template puts a space before each bullet
            # Reviews: WebShop's loader left every product's reviews empty
        else:  # done: the agent's episode is over; upstream's page showed the score
            texts = ["Thank you for shopping with us!", "Your score (min 0.0, max 1.0)",
                     str(self.purchase["reward"] if self.purchase else 0.0)]
        return SEP.join(t.strip() for t in texts if _is_text_node(t))

    def available_actions(self) -> dict[str, Any]:
        """``get_available_actions()``: ``{"has_search_bar": bool, "clickables": [str, ...]}``."""
        return {"has_search_bar": self.page_name == "index", "clickables": list(self._clickables())}

    def _clickables(self) -> dict[str, str | None]:
        """Clickable text -> the option name it sets (``None`` for buttons and product links)."""
        if self.page_name == "index":
            buttons = ["Search"]
        elif self.page_name == "search_results":
            buttons = [BACK_TO_SEARCH, *([PREV_PAGE] if self.page > 1 else []), NEXT_PAGE]
            buttons += [p.asin for p in self._page_products()]
        elif self.page_name == "item_page":
            buttons = [BACK_TO_SEARCH, PREV_PAGE, *SUB_PAGES, END_BUTTON]
        elif self.page_name == "item_sub_page":
            buttons = [BACK_TO_SEARCH, PREV_PAGE]
        else:
            buttons = []
        table: dict[str, str | None] = {b.lower(): None for b in buttons}
        if self.page_name == "item_page":
            for name, values in self.product.options.items():
                for value in values:
                    table[value] = name  # a value in two groups: the last radio button wins, as in the dict upstream
        return table

    # -- what the agent does
    def step(self, action: str) -> tuple[float, bool, bool]:
        """Apply ``search[...]`` / ``click[...]``: ``(reward, done, valid)``; invalid actions change nothing."""
        name, arg = _parse_action(action)
        if arg is not None:
            arg = arg.lower()
        if name == "search" and arg:
            self._search(arg, page=1)
            return 0.0, False, True
        clickables = self._clickables()
        if name == "click" and arg in clickables and arg != "search":
            return self._click(arg, clickables[arg])
        return 0.0, False, False

    def _click(self, target: str, option_name: str | None) -> tuple[float, bool, bool]:
        if target == END_BUTTON.lower():
            return self._buy(), True, True
        if target == BACK_TO_SEARCH.lower():
            self.page_name, self.keywords, self.page, self.asin, self.options = "index", None, 1, None, {}
            self.clicked_asins.clear()
        elif target == NEXT_PAGE.lower() and self.page_name == "search_results":
            self._search(self.keywords, self.page + 1)
        elif target == PREV_PAGE.lower() and self.page_name == "search_results":
            self._search(self.keywords, self.page - 1)
        elif target == PREV_PAGE.lower() and self.page_name == "item_sub_page":
            self.page_name = "item_page"
        elif target == PREV_PAGE.lower() and self.page_name == "item_page":
            self._search(self.keywords, self.page)
        elif target in (s.lower() for s in SUB_PAGES):
            self.page_name, self.sub_page = "item_sub_page", next(s for s in SUB_PAGES if s.lower() == target)
        elif self.page_name == "search_results" and option_name is None:  # a product link
            self.asin = target.upper()
            self.clicked_asins.append(self.asin)
            self.page_name = "item_page"
        elif option_name is not None:
            self.options[option_name] = target
            self.page_name = "item_page"
        return 0.0, False, True

    def _search(self, keywords: str, page: int) -> None:
        # SimServer.search_results searches again for every results page and forgets the product and options
        by_asin = self.catalogue.by_asin
        self.results = [by_asin[a] for a in self.index.search(keywords) if a in by_asin]
        self.keywords, self.page, self.page_name = keywords, page, "search_results"
        self.asin, self.options = None, {}

    def _buy(self) -> float:
        """SimServer.done: score the product on the page with the chosen options at its drawn price."""
        price = self.catalogue.prices[self.asin]
        value, terms = rewards.reward(self.product, self.goal, price, self.options, self.spacy_model)
        self.purchase = {"asin": self.asin, "options": dict(self.options), "price": price, "reward": value,
                         "reward_info": terms}
        self.page_name = "done"
        return value

    def _page_products(self) -> list[Product]:
        return self.results[(self.page - 1) * PRODUCT_WINDOW:self.page * PRODUCT_WINDOW]

    @property
    def product(self) -> Product:
        return self.catalogue.by_asin[self.asin]
