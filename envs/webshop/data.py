"""WebShop's catalogue and human goals, loaded as WebShop's own loader reads them (no engine, no prompt).

Upstream files (``princeton-nlp/WebShop``, ``web_agent_site/utils.py`` and ``setup.sh``):

- the catalogue, ``items_shuffle_1000.json`` (the 1000-product setting AgentBench played) or
  ``items_shuffle.json`` (the full 1.18M-product setting): a JSON list of scraped products
  (``asin``, ``name``, ``pricing``, ``customization_options``, ``product_category``,
  ``full_description``, ``small_description``, ``category``, ``query``, ``images``, ...);
- the attributes, ``items_ins_v2_1000.json`` / ``items_ins_v2.json``: ``{asin: {"attributes": [...], ...}}``;
- the human instructions, ``items_human_ins.json``: ``{asin: [{"instruction", "instruction_attributes",
  "instruction_options"}, ...]}``.

:func:`load_catalogue` follows ``engine.py:load_products`` (prices parsed from the ``$`` string,
option values lowercased with ``/`` shown as `` | ``, bullet points, ``DUMMY_ATTR``) and
``goal.py:get_human_goals`` (one goal per human instruction with attributes; a price cap drawn from
the next four multiples of 10 above the price), then shuffles the goals with seed 233 as
``SimServer`` did. Upstream drew range prices and price caps from the unseeded global ``random``
(each AgentBench worker process drew its own); here both come from ``random.Random(price_seed)``
in upstream's order, so a goal's instruction and cap are reproducible.

A user's catalogue (``catalogue=PATH`` on the env) is read by the same code: the attributes and
human instructions are taken from the same folder (``items_ins_v2<suffix>.json`` beside
``items_shuffle<suffix>.json``, and ``items_human_ins.json``) unless named explicitly.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import random
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from agent_gym.data import DataFile, DataMissingError, Dataset, data_dir_path, require

# Google Drive ids from WebShop's setup.sh; the human instructions are also in WebShop's git tree.
_DRIVE = "https://drive.google.com/uc?export=download&id="
_WEBSHOP_RAW = "https://raw.githubusercontent.com/princeton-nlp/WebShop/master/"

#: The settings: catalogue file and attributes file in the dataset folder.
SETTINGS = {
    "1000": ("items_shuffle_1000.json", "items_ins_v2_1000.json"),
    "full": ("items_shuffle.json", "items_ins_v2.json"),
}
HUMAN_INSTRUCTIONS = "items_human_ins.json"
#: AgentBench's prompt strings (extracted from AgentBench.old's webshop task), in the ``agentbench`` dataset.
PROMPTS_DATASET, PROMPTS_FILE = "dbbench", "agentbench_old_prompts.json"
#: Environment variable naming a catalogue file to play when the env is given none (tests point it at theirs).
CATALOGUE_ENV = "AGENT_GYM_WEBSHOP_CATALOGUE"

DATASET = Dataset(
    name="webshop",
    root="webshop",
    files=(
        DataFile("items_ins_v2_1000.json", url=_DRIVE + "1IduG0xl544V_A_jv3tHXC0kyFi7PnyBu",
                 sha256="f88a36314a397b53b3d9c3fa5878e5f7b26d35019a51ec83fbedeca61a948f6f"),
        # WebShop's baseline files (instruction strings, goal -> query map): kept with the data, unused by the env
        DataFile("human_goals.json", url=_WEBSHOP_RAW + "baseline_models/data/human_goals.json",
                 sha256="b68746ed66cd31fdc5f70eb3f5831a46b38163563b57a66ddcab8fd60ee0cbdc", optional=True),
        DataFile("goal_query_map.json", url=_WEBSHOP_RAW + "baseline_models/data/goal_query_map.json",
                 sha256="1524f438ffbc51c7e308e635d7d9e14fa696b08f5d4300922d454ef0105cea86", optional=True),
        # the catalogue and the human instructions: no copy could be checked here, so no sha256 yet
        DataFile("items_shuffle_1000.json", url=_DRIVE + "1EgHdxQ_YxqIQlvvq5iKlCrkEKR6-j0Ib", optional=True),
        DataFile(HUMAN_INSTRUCTIONS, url=_WEBSHOP_RAW + "baseline_models/data/items_human_ins.json", optional=True),
        DataFile("items_shuffle.json", url=_DRIVE + "1A2whVgOO0euk5O13n2iYDM0bQRkkRduB", optional=True),
        DataFile("items_ins_v2.json", url=_DRIVE + "1s2j6NgHljiZzQNL3veZaAiyW_qDEgBNi", optional=True),
        # 9 of WebShop's human demonstrations (a Google Drive folder in setup.sh: no per-file URL)
        *(DataFile(f"all_trajs/{name}.jsonl", sha256=digest, optional=True) for name, digest in (
            ("20220427_1_12", "55f6c0eda3e6b2c9cdd1bbf40da2241d1fde24d5aac2476e8a9decf9ceb78535"),
            ("20220427_1_13", "287af3889c12cd33788e59f7b255c17d2554e5a458f4f26290fb3c5bc460c219"),
            ("20220427_1_15", "08417d5e756736178cf09a75a5d77c051e1ad4d3472b7e0974999efab90daddc"),
            ("20220427_1_17", "00859e263c96f62f8999a9773d6be6a13e971f3a1ec2c0951d9b989b5fa0d743"),
            ("20220427_1_18", "2cdba54bdd3c2877285bfa044f61d20277a100ef55cd54bc3761ff9b2b6ae2e6"),
            ("20220427_1_21", "3e32d0c311478c9505eb54b335113c6d61b42cc6054fb78deea3d08d456e6217"),
            ("20220427_1_23", "95959eeb4d5cfe813c88bd534cae89341f8ad5fdab64c8d5245914b3b2bcb329"),
            ("20220427_1_6", "f1e9dfbbafd47373ef8cec5e6d23b4c4919a3056437e1bcb872cbc2db4a4569b"),
            ("20220427_1_7", "26ed0213c32e8856ec71e0a56fa6d6521647ab424aa2bbe763912ddeb3cb910a"),
        )),
    ),
    description="WebShop (Yao et al. 2022): the 1000-product catalogue AgentBench played (items_shuffle_1000.json) "
                "or the full 1.18M-product one (items_shuffle.json), product attributes, 12087 human instructions; "
                "AgentBench's split: human goals 0-199 (test), 200-279 (dev)",
    license="MIT",
    homepage="https://github.com/princeton-nlp/WebShop",
)

#: Split -> goal index range in the shuffled goal list. AgentBench.old: configs/tasks/webshop/{std,dev}.yaml;
#: train follows WebShop's own baseline split (goals 1500 on; 0-499 test, 500-1499 eval).
SPLIT_RANGES = {"test": (0, 200), "dev": (200, 280), "train": (1500, None)}
GOAL_SHUFFLE_SEED = 233  # SimServer: random.seed(233); random.shuffle(self.goals)
PRICE_SEED = 0           # ours: upstream's prices and price caps were unseeded
PRICE_RANGE = [10.0 * i for i in range(1, 100)]  # goal.py: candidate price caps
NO_PRICE_CAP = 1000000
# engine.py:clean_product_keys: scraped fields the site never shows
_DROPPED_KEYS = ("product_information", "brand", "brand_url", "list_price", "availability_quantity",
                 "availability_status", "total_reviews", "total_answered_questions", "seller_id", "seller_name",
                 "fulfilled_by_amazon", "fast_track_message", "aplus_present", "small_description_old")


@dataclasses.dataclass(frozen=True)
class Product:
    """One product as WebShop's site shows it (``load_products``' fields).

    ``pricing``: one price or a ``[low, high]`` range in dollars; ``price_tag``: its text (``"$12.5"``,
    ``"$10.0 to $15.99"``); ``options``: option name (lowercased) -> values (lowercased, ``/`` as `` | ``).
    """

    asin: str
    title: str
    description: str
    bullet_points: tuple[str, ...]
    pricing: tuple[float, ...]
    price_tag: str
    options: dict[str, tuple[str, ...]]
    attributes: tuple[str, ...]
    category: str
    query: str
    product_category: str
    rating: str = "N.A."

    @property
    def name(self) -> str:
        return self.title


@dataclasses.dataclass(frozen=True)
class Goal:
    """One WebShop goal (``get_human_goals``' dict): the product to buy and what the reward checks.

    ``id`` is the goal's index in the shuffled goal list (AgentBench's session number) as text;
    ``price_upper`` in dollars (1000000: no cap); ``goal_options``: the instruction's option values.
    """

    id: str
    asin: str
    category: str
    query: str
    name: str
    product_category: str
    instruction_text: str
    attributes: tuple[str, ...]
    price_upper: float
    goal_options: tuple[str, ...]
    weight: float = 1.0


@dataclasses.dataclass(frozen=True)
class Catalogue:
    """Products (file order, first of each ASIN), their prices for this process, and the shuffled goals."""

    path: Path
    sha256: str
    products: tuple[Product, ...]
    by_asin: dict[str, Product]
    prices: dict[str, float]
    goals: tuple[Goal, ...]


def parse_pricing(text: Any) -> tuple[tuple[float, ...], str]:
    """``load_products``' price rule: every ``$``-separated piece is a number (other characters
    dropped); one piece -> that price, more -> the first two as a range; none -> ``$100.0``."""
    if not text:
        return (100.0,), "$100.0"
    try:
        pricing = [float(Decimal(re.sub(r"[^\d.]", "", piece))) for piece in str(text).split("$")[1:]]
    except InvalidOperation:
        raise ValueError(f"pricing {text!r} has a $ piece that is not a number") from None
    if not pricing:  # no "$" at all: upstream would index an empty list; treat as missing
        return (100.0,), "$100.0"
    if len(pricing) == 1:
        return (pricing[0],), f"${pricing[0]}"
    return (pricing[0], pricing[1]), f"${pricing[0]} to ${pricing[1]}"


def _product(raw: dict[str, Any], attributes: dict[str, Any]) -> Product:
    asin = raw["asin"]
    options: dict[str, tuple[str, ...]] = {}
    for option_name, contents in (raw.get("customization_options") or {}).items():
        if contents is None:
            continue
        options[option_name.lower()] = tuple(c["value"].strip().replace("/", " | ").lower() for c in contents)
    bullets = raw["small_description"]
    bullets = tuple(bullets) if isinstance(bullets, list) else (bullets,)
    pricing, tag = parse_pricing(raw.get("pricing"))
    entry = attributes.get(asin)
    attrs = tuple(entry["attributes"]) if entry and "attributes" in entry else ("DUMMY_ATTR",)
    return Product(
        asin=asin, title=raw["name"], description=raw["full_description"], bullet_points=bullets,
        pricing=pricing, price_tag=tag, options=options, attributes=attrs, category=raw["category"],
        query=raw["query"].lower().strip(), product_category=raw["product_category"],
    )


def read_products(path: Path, attributes: dict[str, Any]) -> list[Product]:
    """The catalogue's products in file order, skipping what ``load_products`` skips (ASIN ``nan``
    or longer than 10 characters, repeated ASINs). A malformed product raises ``ValueError`` naming it."""
    with open(path, encoding="utf-8") as fh:
        raw_products = json.load(fh)
    if not isinstance(raw_products, list):
        raise ValueError(f"{path}: a WebShop catalogue is a JSON list of products")
    seen: set[str] = set()
    products = []
    for number, raw in enumerate(raw_products):
        asin = raw.get("asin") if isinstance(raw, dict) else None
        if not isinstance(asin, str):
            raise ValueError(f"{path}: product {number} has no asin")
        if asin == "nan" or len(asin) > 10 or asin in seen:
            continue
        seen.add(asin)
        try:
            products.append(_product(raw, attributes))
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"{path}: product {number} ({asin}) is not in WebShop's format: "
                             f"{type(exc).__name__}: {exc}") from exc
    return products


def draw_prices(products: list[Product], rng: random.Random) -> dict[str, float]:
    """``generate_product_prices``: a range is drawn uniformly (here from ``rng``), one price is itself."""
    return {p.asin: p.pricing[0] if len(p.pricing) == 1 else rng.uniform(*p.pricing[:2]) for p in products}


def human_goals(products: list[Product], prices: dict[str, float], instructions: dict[str, Any],
                rng: random.Random) -> list[Goal]:
    """``get_human_goals`` then ``SimServer``'s shuffle (seed 233); ids are the shuffled positions."""
    goals = []
    for product in products:
        for item in instructions.get(product.asin, ()):
            attributes = item["instruction_attributes"]
            if not attributes:
                continue
            caps = [p for p in PRICE_RANGE if p > prices[product.asin]][:4]
            if len(caps) >= 2:
                _, price_upper = sorted(rng.sample(caps, 2))
                price_text = f", and price lower than {price_upper:.2f} dollars"
            else:
                price_upper, price_text = NO_PRICE_CAP, ""
            goals.append(dict(
                asin=product.asin, category=product.category, query=product.query, name=product.title,
                product_category=product.product_category,
                instruction_text=item["instruction"].strip(".") + price_text,
                attributes=tuple(attributes), price_upper=price_upper,
                goal_options=tuple(item["instruction_options"]),
            ))
    random.Random(GOAL_SHUFFLE_SEED).shuffle(goals)
    return [Goal(id=str(i), **g) for i, g in enumerate(goals)]


def goal_from_dict(index: int, raw: dict[str, Any]) -> Goal:
    """A goal in WebShop's own dict form (what ``SimServer.goals`` holds and human trajectories record)."""
    options = raw.get("goal_options") or ()
    if isinstance(options, dict):  # synthetic goals keep {name: value}; the reward reads the pairs
        options = tuple(f"{k}: {v}" for k, v in options.items())
    return Goal(
        id=str(raw.get("id", index)), asin=raw["asin"], category=raw["category"], query=raw["query"],
        name=raw["name"], product_category=raw["product_category"], instruction_text=raw["instruction_text"],
        attributes=tuple(raw["attributes"]), price_upper=float(raw["price_upper"]), goal_options=tuple(options),
        weight=float(raw.get("weight", 1)),
    )


def load_goals_file(path: str | Path) -> list[Goal]:
    """Goals from a JSON list (or JSON lines) of WebShop goal dicts (``asin``, ``category``, ``query``,
    ``name``, ``product_category``, ``instruction_text``, ``attributes``, ``price_upper``,
    ``goal_options``): a user's own tasks (``tasks_file=``). A bad goal raises ``ValueError`` naming it."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        items = json.loads(text)
        items = items if isinstance(items, list) else [items]
    except json.JSONDecodeError:
        try:
            items = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: neither a JSON list nor JSON lines of WebShop goals ({exc})") from exc
    goals = []
    for i, raw in enumerate(items):
        try:
            goals.append(goal_from_dict(i, raw))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # AttributeError: not a dict
            raise ValueError(f"{path}: goal {i} is not a WebShop goal ({type(exc).__name__}: {exc})") from exc
    return goals


def companion_files(catalogue: Path) -> tuple[Path, Path]:
    """The attributes and human-instruction files WebShop keeps beside a catalogue file:
    ``items_shuffle<suffix>.json`` -> ``items_ins_v2<suffix>.json`` and ``items_human_ins.json``."""
    suffix = catalogue.name.removeprefix("items_shuffle") if catalogue.name.startswith("items_shuffle") else ".json"
    return catalogue.with_name(f"items_ins_v2{suffix}"), catalogue.with_name(HUMAN_INSTRUCTIONS)


def default_catalogue(setting: str = "1000") -> Path:
    """The catalogue to play when none is given: ``$AGENT_GYM_WEBSHOP_CATALOGUE``, else the data
    directory's file for ``setting`` (``"1000"`` or ``"full"``); a clear error when it is absent."""
    if os.environ.get(CATALOGUE_ENV):
        return Path(os.environ[CATALOGUE_ENV]).expanduser()
    if setting not in SETTINGS:
        raise ValueError(f"WebShop settings are {sorted(SETTINGS)}, not {setting!r}")
    products_file, attributes_file = SETTINGS[setting]
    try:
        return require("webshop", products_file, attributes_file, HUMAN_INSTRUCTIONS) / products_file
    except DataMissingError as exc:
        raise DataMissingError(
            f"{exc} WebShop's catalogue ({products_file}) and human instructions ({HUMAN_INSTRUCTIONS}) come from "
            f"WebShop's Google Drive links (setup.sh): `agent-gym data fetch webshop` downloads them, or put them in "
            f"{data_dir_path() / 'webshop'}; or play your own catalogue file with catalogue=PATH "
            f"(or ${CATALOGUE_ENV}).") from None


def load_catalogue(path: str | Path, attributes: str | Path | None = None, human_instructions: str | Path | None = None,
                   price_seed: int = PRICE_SEED) -> Catalogue:
    """Products, prices and shuffled human goals of a catalogue file (cached per file state and seed).

    Raises ``FileNotFoundError`` naming a missing file, ``ValueError`` for a malformed one.
    """
    path = Path(path).expanduser().resolve()
    attr_default, human_default = companion_files(path)
    files = [path, Path(attributes or attr_default).resolve(), Path(human_instructions or human_default).resolve()]
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"WebShop file {f} does not exist (catalogue {path}: its attributes and human "
                                    f"instructions are read from the same folder unless given)")
    states = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    return _load_catalogue(states, price_seed)


@functools.lru_cache(maxsize=4)
def _load_catalogue(states: tuple[tuple[str, int, int], ...], price_seed: int) -> Catalogue:
    from agent_gym.data import sha256_of

    (path, *_), (attr_path, *_), (human_path, *_) = states
    with open(attr_path, encoding="utf-8") as fh:
        attributes = json.load(fh)
    with open(human_path, encoding="utf-8") as fh:
        instructions = json.load(fh)
    products = read_products(Path(path), attributes)
    rng = random.Random(price_seed)
    prices = draw_prices(products, rng)
    goals = human_goals(products, prices, instructions, rng)
    return Catalogue(path=Path(path), sha256=sha256_of(Path(path)), products=tuple(products),
                     by_asin={p.asin: p for p in products}, prices=prices, goals=tuple(goals))


def split_goals(goals: tuple[Goal, ...], split: str) -> list[Goal]:
    """The goals of a split: ``test`` = goals 0-199 (AgentBench's std), ``dev`` = 200-279, ``train`` = 1500 on."""
    if split not in SPLIT_RANGES:
        raise ValueError(f"WebShop has splits {sorted(SPLIT_RANGES)}, not {split!r}")
    start, end = SPLIT_RANGES[split]
    return list(goals[start:end])


@functools.lru_cache(maxsize=1)
def agentbench_prompt() -> dict[str, Any]:
    """AgentBench.old's WebShop strings: ``prompt`` (the instruction) and ``one_shot_turns``."""
    with open(require(PROMPTS_DATASET, PROMPTS_FILE) / PROMPTS_FILE, encoding="utf-8") as fh:
        return json.load(fh)["webshop"]
