"""``AgentTuning/WebShop-v0``: WebShop's text site with AgentBench's protocol.

One episode is one human goal ("i need a long lasting 6.76 fl oz bottle of l'eau d'issey, and price
lower than 100.00 dollars"). The prompt is AgentBench's instruction, ``Ok.`` and its one-shot; each
observation is ``Observation:\\n<page>\\n\\nAvailable Actions:\\n<dict>`` as AgentBench printed it.
The action is read from the line after ``Action:`` (``search[...]`` or ``click[...]``); a reply
without one is a format failure that ends the episode with reward 0 (``info["format_fail"]``);
an action the page does not offer changes nothing (WebShop's "perform nothing"; ``action_valid``
False). ``click[Buy Now]`` ends the episode with WebShop's reward (``info["reward_info"]`` has its
terms). At most 10 replies (AgentBench's rounds). Score: the reward (0..1); the paper's WebShop
number is its mean. Decoding: greedy, 128 new tokens; no system message.

Splits (over the seeded shuffle of the catalogue's human goals, see :mod:`.data`): ``test`` = goals
0-199 (AgentBench's ``std``, alias ``"std"``), ``dev`` = 200-279, ``train`` = 1500 on (WebShop's own).
``tasks_file=PATH``: a JSON list of WebShop goal dicts, played on the catalogue.

Options: ``catalogue`` (a products file in WebShop's scraped format; its attributes and human
instructions beside it, or ``attributes=`` / ``human_instructions=``); default
``$AGENT_GYM_WEBSHOP_CATALOGUE`` or the data directory's ``items_shuffle_1000.json`` (``setting="full"``:
``items_shuffle.json``). ``price_seed`` (upstream drew prices and price caps unseeded), ``spacy_model``
(the paper: ``en_core_web_lg``), ``index_dir`` (where search indexes are kept; default
``agent_gym.textsearch.cache_dir()/webshop``, i.e. ``$AGENT_GYM_INDEX_CACHE`` or the user cache).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from agent_gym.core import GOAL_REACHED, INVALID_ACTION, INVALID_ACTION_END, Begin, Outcome, TextEnv
from agent_gym import textsearch
from agent_gym.envs.webshop import data, engine, prompt, reward

SEARCH = f"bm25s-lucene k1={engine.BM25_K1} b={engine.BM25_B} porter"


class WebShopEnv(TextEnv):
    task_name = "webshop"
    splits = ("test", "dev", "train")
    split_aliases: ClassVar[dict[str, str]] = {"std": "test"}
    max_turns = 10  # AgentBench.old predict: for j in range(10)
    system_prompt = ""  # AgentBench.old's TGI client: no system message
    decoding: ClassVar[dict[str, Any]] = {"max_new_tokens": 128, "temperature": 0.0}
    paper_options: ClassVar[dict[str, Any]] = {"catalogue": "items_shuffle_1000.json", "spacy_model": "en_core_web_lg",
                                               "search": "pyserini-lucene-bm25", "price_seed": None}

    def __init__(self, split: str | None = None, render_mode: str | None = None,
                 tasks_file: str | Path | None = None, catalogue: str | Path | None = None,
                 attributes: str | Path | None = None, human_instructions: str | Path | None = None,
                 setting: str = "1000", price_seed: int = data.PRICE_SEED,
                 spacy_model: str = reward.DEFAULT_SPACY_MODEL, index_dir: str | Path | None = None):
        super().__init__(split=split, render_mode=render_mode, tasks_file=tasks_file)
        path = Path(catalogue) if catalogue is not None else data.default_catalogue(setting)
        self.catalogue = data.load_catalogue(path, attributes, human_instructions, price_seed)
        self.price_seed = price_seed
        self.spacy_model = spacy_model
        reward.spacy_model(spacy_model)  # a missing model stops here, naming its pip command
        self.index = engine.SearchIndex.open(
            self.catalogue, Path(index_dir) if index_dir is not None else textsearch.cache_dir() / "webshop")
        self.load_tasks = self._own_tasks  # this env's catalogue, not the default one
        self.shop: engine.Shop | None = None

    @classmethod
    def load_tasks(cls, split: str) -> Sequence[data.Goal]:
        """The goals of ``split`` on the default catalogue (what ``agent-gym list`` and ``run`` count)."""
        return data.split_goals(data.load_catalogue(data.default_catalogue()).goals, split)

    def _own_tasks(self, split: str) -> Sequence[data.Goal]:
        return data.split_goals(self.catalogue.goals, split)

    @classmethod
    def load_tasks_file(cls, path: Path) -> Sequence[data.Goal]:
        """WebShop goal dicts (see :func:`.data.load_goals_file`)."""
        return data.load_goals_file(path)

    @classmethod
    def engine_status(cls) -> str:
        missing = [m for m in ("bm25s", "Stemmer", "spacy", "thefuzz") if not _importable(m)]
        if missing:
            return f"missing {', '.join(missing)}: pip install 'agent-gym[webshop]'"
        return "built-in (bm25s search, spaCy title score)"

    def engine_info(self) -> dict[str, str]:
        return {**_versions(), "spacy_model": f"{self.spacy_model} "
                                              f"{reward.spacy_model(self.spacy_model).meta.get('version', '?')}"}

    def options(self) -> dict[str, Any]:
        return {"catalogue": self.catalogue.path.name, "catalogue_sha256": self.catalogue.sha256,
                "spacy_model": self.spacy_model, "search": SEARCH, "price_seed": self.price_seed}

    def _begin(self, task: data.Goal) -> Begin:
        self.shop = engine.Shop(self.catalogue, self.index, task, self.spacy_model)
        actions = self.shop.available_actions()
        return Begin(observation=prompt.observation(self.shop.observation(), actions),
                     prompt=prompt.messages(data.agentbench_prompt()),
                     admissible_actions=actions["clickables"],
                     extra={"goal_asin": task.asin, "format_fail": False, "page": self.shop.page_name})

    def _act(self, reply_text: str) -> Outcome:
        action = prompt.parse_action(reply_text)
        if action is None:  # AgentBench: format_fail, reward 0, the session stops
            return Outcome(observation=prompt.FORMAT_FAIL_MESSAGE, score=0.0, done=True, status=INVALID_ACTION,
                           action_valid=False, end_reason=INVALID_ACTION_END,
                           extra={"format_fail": True, "action": None})
        value, done, valid = self.shop.step(action)
        actions = self.shop.available_actions()
        extra = {"action": action, "page": self.shop.page_name}
        if done:
            purchase = self.shop.purchase
            extra.update(purchase=purchase, reward_info=purchase["reward_info"])
            return Outcome(observation=self.shop.observation(), score=value, done=True, success=value >= 1.0,
                           progress=value, end_reason=GOAL_REACHED, admissible_actions=[], extra=extra)
        return Outcome(observation=prompt.observation(self.shop.observation(), actions), action_valid=valid,
                       admissible_actions=actions["clickables"], extra=extra)

    def expert_replies(self, task: data.Goal) -> list[str] | None:
        """Search the goal product's title, page to it, open it, pick the option values that match the
        goal's options (WebShop's own fuzzy rule), buy. ``None`` when search does not find it in the top 50."""
        product = self.catalogue.by_asin.get(task.asin)
        if product is None:
            return None
        keywords = " ".join(product.title.replace("[", " ").replace("]", " ").split())
        found = self.index.search(keywords.lower())
        hits = [a for a in found if a in self.catalogue.by_asin]
        if task.asin not in hits:
            return None
        replies = [prompt.reply("I think I should search for the product.", f"search[{keywords}]")]
        replies += [prompt.reply("I think it is on the next page.", "click[Next >]")] * (hits.index(task.asin) // 10)
        replies.append(prompt.reply("I think this is the product.", f"click[{task.asin}]"))
        for value in _matching_options(product, task.goal_options):
            replies.append(prompt.reply(f"I think I should select {value}.", f"click[{value}]"))
        replies.append(prompt.reply("I think I should buy it.", "click[Buy Now]"))
        return replies

    @classmethod
    def summarize(cls, trajectories: Sequence[Any]) -> dict[str, float]:
        """AgentBench's metrics: ``reward`` (mean; the paper's number), ``format_fail_rate``, ``average_round``."""
        from agent_gym.metrics import default_summary

        out = default_summary(trajectories)
        n = len(trajectories) or 1
        out["reward"] = sum(t.score for t in trajectories) / n
        out["format_fail_rate"] = sum(t.end_reason == INVALID_ACTION_END for t in trajectories) / n
        out["average_round"] = sum(t.turns for t in trajectories) / n
        return out


def _matching_options(product: data.Product, wanted: Sequence[str]) -> list[str]:
    """For each goal option, the product's best-matching value (one per option group) when it clears WebShop's bar."""
    picks: dict[str, str] = {}
    for goal_value in wanted:
        target = reward.normalize_color(goal_value.lower())
        best = max(((reward.fuzzy(reward.normalize_color(v), target), name, v)
                    for name, values in product.options.items() if name not in picks for v in values),
                   default=None)
        if best is not None and best[0] > reward.FUZZ_THRESHOLD:
            picks[best[1]] = best[2]
    return list(picks.values())


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("bm25s", "spacy", "thefuzz", "rapidfuzz", "pystemmer"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
