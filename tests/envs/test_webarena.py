"""WebArena: the prompt and action language (pure), the evaluators, and whole episodes in real headless
Chromium against small sites served on localhost (tests/fixtures/webarena), in WebArena's config format."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import sys
import threading
from pathlib import Path

import pytest

from agent_gym.core import ERROR
from agent_gym.envs.webarena import data, evaluators, prompt
from agent_gym.testing import need_data

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "webarena"
TASKS = FIXTURES / "tasks.json"
AUTH = FIXTURES / "auth"
sys.path.insert(0, str(FIXTURES))
from local_sites import Server  # noqa: E402

SETTINGS = ("SHOPPING", "SHOPPING_ADMIN", "REDDIT", "GITLAB", "MAP", "WIKIPEDIA", "HOMEPAGE", "WEBARENA_AUTH_DIR")


@pytest.fixture(autouse=True)
def _no_deployment(monkeypatch):
    """The user's settings must not leak into what these tests check."""
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)


# ---------------------------------------------------------------------------- the action language (pure)
def test_the_action_is_the_first_text_between_a_pair_of_splitters_on_one_line():
    reply = "Let's think. In summary, the next action I will perform is ```click [12]``` then ```stop [x]```"
    assert prompt.extract_action(reply) == "click [12]"
    with pytest.raises(prompt.ActionParsingError):
        prompt.extract_action("```click\n[12]```")  # upstream's (.*?) does not cross a newline
    with pytest.raises(prompt.ActionParsingError):
        prompt.extract_action("click [12]")


@pytest.mark.parametrize("text, expected", [
    ("click [12]", prompt.Action("click", element_id="12")),
    ("click[12]", prompt.Action("click", element_id="12")),
    ("hover [7]", prompt.Action("hover", element_id="7")),
    ("type [3] [restaurants near CMU] [1]", prompt.Action("type", element_id="3", text="restaurants near CMU\n")),
    ("type [3] [no enter] [0]", prompt.Action("type", element_id="3", text="no enter")),
    ("type [3] [default presses enter]", prompt.Action("type", element_id="3", text="default presses enter\n")),
    ("press [Control+a]", prompt.Action("press", key_comb="Control+a")),
    ("scroll [down]", prompt.Action("scroll", direction="down")),
    ("scroll up", prompt.Action("scroll", direction="up")),
    ("new_tab", prompt.Action("new_tab")),
    ("tab_focus [1]", prompt.Action("tab_focus", page_number=1)),
    ("close_tab", prompt.Action("close_tab")),
    ("goto [http://example.com/a?b=c]", prompt.Action("goto", url="http://example.com/a?b=c")),
    ("go_back", prompt.Action("go_back")),
    ("go_forward", prompt.Action("go_forward")),
    ("stop [$279.49]", prompt.Action("stop", answer="$279.49")),
    ("stop", prompt.Action("stop", answer="")),
])
def test_every_action_of_the_id_based_language_parses(text, expected):
    assert prompt.parse_action(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "click [abc]", "type [3]", "jump [4]", "tab_focus [x]", "goto"])
def test_malformed_actions_are_parsing_errors_not_crashes(text):
    with pytest.raises(prompt.ActionParsingError):
        prompt.parse_action(text)


def test_a_tab_number_past_pythons_int_parsing_limit_is_a_tab_that_is_not_there():
    # int() of 5,000 digits raises ValueError: the step ended the episode as an env error
    action = prompt.parse_action("tab_focus [" + "9" * 5000 + "]")
    assert action.kind == "tab_focus" and action.page_number >= 10**18
    assert prompt.parse_action("tab_focus [" + "0" * 5000 + "1]").page_number == 1


def test_previous_action_text_is_upstreams():
    nodes = {"12": "[12] link 'Blue Mug' url: http://x/product/1"}
    assert prompt.describe(prompt.Action("click", element_id="12"), nodes) == \
        "click [12] where [12] is link 'Blue Mug' url: http://x/product/1"
    assert prompt.describe(prompt.Action("type", element_id="12", text="mug\n"), nodes).startswith("type [12] [mug\n]")
    assert "no matching element found" in prompt.describe(prompt.Action("hover", element_id="99"), nodes)
    assert prompt.describe(prompt.Action("none", raw="hi"), nodes).startswith('The previous prediction you issued was "hi"')
    assert prompt.describe(prompt.Action("tab_focus", page_number=2), nodes) == "page_focus [2]"


def test_early_stops_are_run_pys():
    click, none = prompt.Action("click", element_id="1"), prompt.Action("none")
    typing = prompt.Action("type", element_id="5", text="a")
    assert prompt.early_stop([]) is None
    assert prompt.early_stop([click] * 2) is None
    assert prompt.early_stop([click] * 3) == "Same action for 3 times"
    assert prompt.early_stop([none] * 3) == "Failed to parse actions for 3 times"
    assert prompt.early_stop([typing, click, typing, click, typing]) == "Same typing action for 3 times"
    many = [prompt.Action("scroll", direction=d) for d in ("up", "down") * 15]
    assert prompt.early_stop(many) == "Reach max steps 30"
    assert prompt.early_stop(many[:29]) is None


def test_urls_are_shown_as_the_agent_knew_the_sites_and_mapped_back():
    sites = {"SHOPPING": "http://localhost:7770", "GITLAB": "http://localhost:8023"}
    assert prompt.to_real("http://localhost:7770/mugs.html", sites) == "http://onestopmarket.com/mugs.html"
    assert prompt.to_local("goto [http://gitlab.com/a11y]", sites) == "goto [http://localhost:8023/a11y]"
    assert prompt.to_local("goto [http://reddit.com]", sites) == "goto [http://reddit.com]"  # REDDIT not set


def test_observations_are_cut_at_1920_cl100k_tokens():
    enc = prompt.tokenizer()
    assert enc.name == "cl100k_base" and enc.encode("hello world") == [15339, 1917]  # gpt-4's ids
    long = "[1] StaticText 'lorem ipsum' " * 2000
    cut = prompt.truncate(long)
    assert len(enc.encode(cut)) == 1920 and long.startswith(cut)
    assert prompt.truncate("short") == "short"


def test_the_prompt_is_the_llama_providers_turns():
    instruction = {"intro": " Intro \n", "examples": [(" x1 ", " y1 "), ("x2", "y2")],
                   "template": "OBSERVATION:\n{observation}\nURL: {url}\nOBJECTIVE: {objective}\nPREVIOUS ACTION: {previous_action}"}
    turns = prompt.messages(instruction)
    assert [t["content"] for t in turns] == ["Intro", "Ok.", "x1", "y1", "x2", "y2"]
    assert [t["role"] for t in turns] == ["user", "assistant"] * 3
    assert prompt.current(instruction, "tree", "http://u", "goal", "None") == \
        "OBSERVATION:\ntree\nURL: http://u\nOBJECTIVE: goal\nPREVIOUS ACTION: None"


# ---------------------------------------------------------------------------- evaluators (pure parts)
def test_string_match_exact_and_must_include_pass_and_fail():
    assert evaluators.string_match('"$12.50"', {"exact_match": "$12.50"}, None)[0] == 1.0
    assert evaluators.string_match("$12.5", {"exact_match": "$12.50"}, None)[0] == 0.0
    assert evaluators.string_match(" $12.50", {"exact_match": "$12.50"}, None)[0] == 0.0  # no strip (AgentTuning's)
    both = {"must_include": ["Blue Mug", "Red Kettle"]}
    assert evaluators.string_match("blue mug and red kettle", both, None)[0] == 1.0
    assert evaluators.string_match("Blue Mug only", both, None)[0] == 0.0
    with pytest.raises(evaluators.JudgeMissing, match="judge_backend"):
        evaluators.string_match("x", {"fuzzy_match": ["y"]}, None)


def test_url_match_rules():
    ev = {"reference_url": "http://s/a |OR| http://s/b/", "url_note": "EXACT"}
    assert evaluators.url_match("http://s/b", ev) == 1.0 and evaluators.url_match("http://s/a/", ev) == 1.0
    assert evaluators.url_match("http://s/a?x=1", ev) == 0.0
    assert evaluators.url_match("http://s/a?x=1", {**ev, "url_note": "GOLD in PRED"}) == 1.0


def test_helper_calls_are_parsed_never_evaluated():
    assert evaluators.parse_call("reddit_get_post_url('__last_url__')") == ("reddit_get_post_url", ["__last_url__"])
    name, args = evaluators.parse_call("gitlab_get_project_memeber_role(__page__, 'byteblaze')")
    assert name == "gitlab_get_project_memeber_role" and args[0] is evaluators.PAGE and args[1] == "byteblaze"
    for bad in ("__import__('os').system('true')", "open('/etc/passwd')", "reddit_get_post_url(x)", "1+"):
        with pytest.raises(ValueError):
            evaluators.parse_call(bad)
    assert evaluators.reddit_get_post_url("http://r/f/news/42/slug/7") == "http://r/f/news/42/"
    assert evaluators.reddit_get_post_url("http://r/user/x") == "http://r/user/x"


# ---------------------------------------------------------------------------- data
def test_the_812_configs_load_without_any_site_url():
    need_data("webarena")
    tasks = data.load("test")
    assert len(tasks) == 812 and [t.id for t in tasks[:3]] == ["0", "1", "2"]
    mix = {}
    for t in tasks:
        mix[t.eval_types] = mix.get(t.eval_types, 0) + 1
    assert mix == {("string_match",): 322, ("program_html",): 283, ("url_match", "program_html"): 129,
                   ("url_match",): 68, ("string_match", "url_match"): 10}  # UPSTREAM_SCORING.md 8.5
    assert "__SHOPPING_ADMIN__" in tasks[0].start_url
    instruction = data.instruction()
    assert len(instruction["examples"]) == 2 and instruction["meta_data"]["action_splitter"] == "```"


def test_the_prompt_json_is_derived_from_the_module_with_ast(tmp_path):
    module = b'prompt = {\n\t"intro": """a\nb""",\n\t"examples": [("x", "y",)],\n}\n'
    assert json.loads(data.prompt_from_module(module)) == {"prompt": {"intro": "a\nb", "examples": [["x", "y"]]}}
    with pytest.raises(ValueError):
        data.prompt_from_module(b"x = 1\n")


def test_a_bad_tasks_file_names_the_problem(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"task_id": 1, "intent": "x", "start_url": "", "eval": {"eval_types": ["rouge"]}}]))
    with pytest.raises(ValueError, match="rouge"):
        data.load_file(bad)
    bad.write_text("not json")
    with pytest.raises(ValueError, match="not JSON"):
        data.load_file(bad)


# ---------------------------------------------------------------------------- no deployment configured
def test_without_site_urls_reset_names_the_setting_and_the_episode_ends_in_error():
    need_data("webarena")
    import gymnasium as gym

    env = gym.make("AgentTuning/WebArena-v0")
    try:
        obs, info = env.reset(options={"task": 0})  # a shopping-admin task
        assert "SHOPPING_ADMIN" in obs and "shopping_admin=" in obs and info["setup_error"] == obs
        obs, reward, terminated, truncated, info = env.step("```stop [x]```")
        assert (terminated, truncated, reward) == (True, False, 0.0)
        assert info["status"] == ERROR and info["end_reason"] == "env_error" and "SHOPPING_ADMIN" in obs
        with pytest.raises(RuntimeError, match="SHOPPING, SHOPPING_ADMIN, REDDIT, GITLAB, MAP, WIKIPEDIA, HOMEPAGE"):
            env.unwrapped.preflight()
    finally:
        env.close()


def test_preflight_wants_a_judge_for_fuzzy_match_tasks():
    from agent_gym.envs.webarena.env import WebArenaEnv

    env = WebArenaEnv(tasks_file=TASKS, shopping="http://127.0.0.1:9")
    with pytest.raises(RuntimeError, match="judge_backend"):
        env.preflight()
    env.close()


# ---------------------------------------------------------------------------- in Chromium
@pytest.fixture(scope="module")
def site():
    server = Server()
    yield server
    server.close()


@pytest.fixture(scope="module")
def judge_server():
    """A server of the OpenAI protocol whose "model" answers the fuzzy-match question by substring:
    a fake judge (a real LLM's verdicts are not the evaluator's to test), spoken to by our openai backend."""
    from aiohttp import web

    async def models(request):
        return web.json_response({"object": "list", "data": [{"id": "fake-judge", "object": "model"}]})

    async def chat(request):
        body = await request.json()
        question = body["messages"][-1]["content"]
        statement, reference = re.match(r'Given the statement "(.*)", would it be correct to infer "(.*)"\?',
                                        question, re.S).groups()
        verdict = "Yes" if reference.lower() in statement.lower() else "No"
        return web.json_response({"id": "1", "object": "chat.completion", "created": 0, "model": "fake-judge",
                                  "choices": [{"index": 0, "finish_reason": "stop",
                                               "message": {"role": "assistant", "content": verdict}}],
                                  "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    app = web.Application()
    app.add_routes([web.get("/v1/models", models), web.post("/v1/chat/completions", chat)])
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder = {}

    def run():
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(runner.setup())
        tcp = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(tcp.start())
        holder["runner"], holder["port"] = runner, tcp._server.sockets[0].getsockname()[1]
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(30)
    yield f"http://127.0.0.1:{holder['port']}/v1"
    asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@pytest.fixture(scope="module")
def env(site, judge_server):
    need_data("webarena")  # our task configs still take the paper's prompt from the data
    pytest.importorskip("selenium")
    from agent_gym.envs.webarena.env import WebArenaEnv

    # the judge talks through agent-gym's openai backend (the openai extra); the rest needs no judge
    judge = ({"judge_backend": "openai", "judge_model": "fake-judge", "judge_url": judge_server}
             if importlib.util.find_spec("openai") else {})
    # reddit on "localhost", the shop on "127.0.0.1": two sites the URL mapping can tell apart
    e = WebArenaEnv(tasks_file=TASKS, shopping=site.url, reddit=site.url.replace("127.0.0.1", "localhost"),
                    auth_dir=AUTH, sleep_after_execution=0.1, eval_sleep=0.0, **judge)
    yield e
    pids = e._browser.chromium.pids() if e._browser is not None else []
    e.close()
    from agent_gym.browser import browser_pids

    assert not [p for p in pids if p in browser_pids()], "the env's chromium outlived close()"


def node(obs: str, pattern: str) -> str:
    match = re.search(r"\[(\d+)\] " + pattern, obs)
    assert match, f"no node {pattern!r} in:\n{obs}"
    return match.group(1)


def play(env, task, *replies):
    obs, info = env.reset(options={"task": task})
    out = (obs, 0.0, False, False, info)
    for reply in replies:
        out = env.step(reply(out[0]) if callable(reply) else reply)
    return out


def test_the_observation_is_the_viewports_accessibility_tree_in_the_template(env, site):
    obs, info = env.reset(options={"task": "1"})
    assert obs.startswith("OBSERVATION:\nTab 0 (current): One Stop Market\n\n[")
    assert re.search(r"\n\[\d+\] RootWebArea 'One Stop Market' focused: True", obs)
    assert re.search(r"\n\t\[\d+\] link 'Blue Mug' url: http://127\.0\.0\.1:\d+/product/1", obs)
    assert re.search(r"\n\t\t\[\d+\] textbox 'Search' required: False", obs)  # inside the form, one tab deeper
    assert obs.endswith("URL: http://onestopmarket.com/\nOBJECTIVE: Which products does the shop sell?\n"
                        "PREVIOUS ACTION: None")
    assert info["prompt"][0]["content"].startswith("You are an autonomous intelligent agent")
    assert len(info["prompt"]) == 6 and info["history"] == "none"
    if env.judge is not None:
        assert info["provenance"]["options"]["judge"] == {"backend": "openai", "model": "fake-judge",
                                                          "url": env.judge.backend.url}


def test_click_type_and_stop_play_a_whole_episode(env):
    obs, reward, terminated, truncated, info = play(
        env, "1",
        lambda o: f"Let's search. In summary, the next action I will perform is ```type [{node(o, 'textbox')}] [mug] [1]```",
        "```stop [Blue Mug, Red Kettle]```")
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["status"] == "completed" and info["end_reason"] == "answered" and info["success"]
    assert info["evaluation"] == {"string_match": 1.0} and info["url"].endswith("/search?q=mug")


def test_each_action_works_in_chromium(env, site):
    obs, info = env.reset(options={"task": "1"})
    box = node(obs, "textbox 'Search'")
    obs, *_, info = env.step(f"```type [{box}] [kettle] [0]```")  # typed, Enter not pressed
    assert info["url"] == site.url + "/" and info["fail_error"] == ""
    assert re.search(r"textbox 'Search' .*", obs) and "PREVIOUS ACTION: type [" in obs
    obs, *_, info = env.step("```press [Enter]```")
    assert info["url"] == site.url + "/search?q=kettle" and "Red Kettle" in obs
    obs, *_, info = env.step("```go_back```")
    assert info["url"] == site.url + "/"
    obs, *_, info = env.step("```go_forward```")
    assert info["url"].endswith("/search?q=kettle")
    obs, *_, info = env.step("```goto [http://onestopmarket.com/product/2]```")  # mapped back to the deployment
    assert info["url"] == site.url + "/product/2" and "URL: http://onestopmarket.com/product/2" in obs
    obs, *_, info = env.step(f"```click [{node(obs, 'button')}]```")
    assert "1 item in cart" in obs
    obs, *_, info = env.step("```goto [http://onestopmarket.com/hover]```")
    obs, *_, info = env.step(f"```hover [{node(obs, 'button')}]```")
    assert "Menu open" in obs
    obs, *_, info = env.step("```goto [http://onestopmarket.com/keys]```")
    field = node(obs, "textbox 'Field'")
    obs, *_, info = env.step(f"```type [{field}] [abc] [0]```")
    obs, *_, info = env.step("```press [Control+a]```")
    assert "last key Control+a" in obs
    obs, *_, info = env.step("```goto [http://onestopmarket.com/long]```")
    assert "Top of the page" in obs and "Bottom marker" not in obs  # the viewport only
    for _ in range(2):
        obs, *_, info = env.step("```scroll [down]```")
    assert "Top of the page" not in obs and "Filler paragraph 40" in obs
    obs, *_, info = env.step("```scroll [up]```")
    assert "PREVIOUS ACTION: scroll [up]" in obs
    obs, *_, info = env.step("```new_tab```")
    assert "Tab 1 (current): " in obs and "Tab 0: Long" in obs
    obs, *_, info = env.step("```tab_focus [0]```")
    assert "Tab 0 (current): Long | Tab 1: " in obs and "PREVIOUS ACTION: page_focus [0]" in obs
    obs, *_, info = env.step("```close_tab```")
    assert obs.startswith("OBSERVATION:\nTab 0 (current): ") and "Tab 1" not in obs


def test_a_link_opening_a_tab_and_a_missing_element(env):
    obs, info = env.reset(options={"task": "1"})
    obs, *_, info = env.step(f"```click [{node(obs, 'link .About us.')}]```")
    assert "Tab 0 (current): One Stop Market | Tab 1: About" in obs  # the page opened it; focus stays
    obs, *_, info = env.step("```click [99999]```")
    assert "no matching element found" in obs and info["fail_error"].startswith("KeyError")


def test_goto_opens_no_local_file_and_runs_no_script(env):
    obs0, info = env.reset(options={"task": "1"})
    for url in ("file:///etc/passwd", "FILE:/etc/hostname", "javascript:document.body.innerHTML='x'",
                "data:text/html,<p>fake</p>", "chrome://version"):
        obs, _, terminated, truncated, info = env.step(f"```goto [{url}]```")
        assert info["fail_error"].startswith("ValueError: goto only opens http(s) URLs"), url
        page = obs.split("\nURL: ")[0]  # the previous action, later on, repeats the URL
        assert info["url"].startswith("http://127.0.0.1") and "root:" not in page and "fake" not in page
        assert not (terminated or truncated)


def test_unparsable_replies_three_times_end_the_episode_evaluated(env):
    obs, reward, terminated, truncated, info = play(env, "4", "no action", "still none", "```jump [1]```")
    assert terminated and info["end_reason"] == "invalid_action" and info["answer"].startswith("Early stop: Failed")
    assert "The previous prediction you issued was" not in obs
    obs, info = env.reset(options={"task": "4"})
    _, _, _, _, info = env.step("nothing here")
    assert not info["action_valid"]


def test_repeating_an_action_three_times_stops_and_the_url_is_still_scored(env):
    link = lambda o: f"```click [{node(o, 'link .Red Kettle.')}]```"  # noqa: E731
    obs, reward, terminated, truncated, info = play(env, "4", link, "```scroll [down]```", "```scroll [down]```",
                                                    "```scroll [down]```")
    assert terminated and info["end_reason"] == "repeated_action" and info["evaluation"] == {"url_match": 1.0}
    assert reward == 1.0  # run.py evaluated the early stop like any other end


@pytest.mark.parametrize("task, replies, score", [
    ("0", ["```stop [$12.50]```"], 1.0),                                                   # exact_match
    ("0", ["```stop [12.50 dollars]```"], 0.0),
    ("1", ["```stop [Blue Mug]```"], 0.0),                                                 # must_include
    ("2", ["```stop [The poster was grateful for the tip]```"], 1.0),                      # fuzzy_match
    ("2", ["```stop [The poster was angry]```"], 0.0),
    ("3", [lambda o: f"```type [{node(o, 'textbox')}] [mug] [1]```", "```stop```"], 1.0),  # url_match EXACT
    ("3", [lambda o: f"```type [{node(o, 'textbox')}] [kettle] [1]```", "```stop```"], 0.0),
    ("4", [lambda o: f"```click [{node(o, 'link .Red Kettle.')}]```", "```stop```"], 1.0),  # GOLD in PRED
    ("4", ["```stop```"], 0.0),
    ("5", [lambda o: f"```click [{node(o, 'button')}]```", "```stop```"], 1.0),          # program_html, "last"
    ("5", ["```stop```"], 0.0),
    ("6", ["```stop```"], 1.0),                                                          # login cookie + JS locator
    ("7", ["```stop```"], 1.0),                                                          # func: URL (reddit helper)
    ("7", ["```goto [http://reddit.com/f/news/43/other]```", "```stop```"], 0.0),
    ("8", ["```stop```"], 1.0),                                                          # shopping REST helpers
    ("9", [lambda o: f"```click [{node(o, 'link .Red Kettle.')}]```", "```stop [$39.99]```"], 1.0),  # product
    ("9", ["```stop [$39.99]```"], 0.0),
    ("10", ["```stop```"], 1.0),                                                         # later dict form
])
def test_each_evaluator_passes_and_fails_as_it_should(env, task, replies, score):
    if task == "2" and env.judge is None:
        pytest.skip('the fuzzy-match judge here speaks through the openai backend: pip install -e ".[openai]"')
    obs, reward, terminated, truncated, info = play(env, task, *replies)
    assert terminated and info["score"] == score and reward == score, info.get("evaluation")
    if task == "2":
        assert info["evaluation"]["judge"]["model"] == "fake-judge"
        assert info["evaluation"]["judge_replies"] == ["Yes" if score else "No"]


def test_missing_login_state_a_missing_site_and_an_unreachable_site_say_what_to_fix(site):
    need_data("webarena")
    from agent_gym.envs.webarena.env import WebArenaEnv
    from agent_gym.episode import run_episode
    from agent_gym.policies.simple import ReplayPolicy

    env = WebArenaEnv(tasks_file=TASKS, shopping=site.url, sleep_after_execution=0.0)
    try:
        with pytest.raises(FileNotFoundError, match="WEBARENA_AUTH_DIR"):
            env.reset(options={"task": "6"})
        obs, info = env.reset(options={"task": "11"})  # shopping_admin not set, shopping is
        assert "SHOPPING_ADMIN" in obs and "shopping_admin=URL" in obs
        trajectory = run_episode(env, ReplayPolicy(["```stop```"]), task="11")
        assert trajectory.status == ERROR and "SHOPPING_ADMIN" in trajectory.error
        env.sites["SHOPPING"] = "http://127.0.0.1:9"  # nothing listens there
        with pytest.raises(ConnectionError, match=r"deployment up at SHOPPING=http://127\.0\.0\.1:9"):
            env.reset(options={"task": "0"})
    finally:
        env.close()


def test_a_replay_policy_plays_a_full_episode_through_run_episode(env):
    from agent_gym.episode import run_episode
    from agent_gym.policies.simple import ReplayPolicy

    replies = ["```goto [http://onestopmarket.com/product/2]```", "```stop [$39.99]```"]
    trajectory = run_episode(env, ReplayPolicy(replies), task="9")
    assert trajectory.score == 1.0 and trajectory.status == "completed"
    assert len(trajectory.steps) == 2


def test_check_env_passes_with_a_deployment(env):
    from gymnasium.utils.env_checker import check_env

    check_env(env, skip_render_check=True)


def test_a_browser_killed_mid_episode_ends_the_step_in_error_and_the_next_reset_starts_a_new_one(site):
    need_data("webarena")
    from agent_gym.browser import browser_pids, reap
    from agent_gym.envs.webarena.env import WebArenaEnv

    env = WebArenaEnv(tasks_file=TASKS, shopping=site.url, sleep_after_execution=0.0, eval_sleep=0.0)
    try:
        env.reset(options={"task": "0"})
        first = env._browser.chromium
        reap(first.tag)
        obs, reward, terminated, truncated, info = env.step("```scroll [down]```")
        assert truncated and info["status"] == ERROR and info["end_reason"] == "env_error"
        obs, info = env.reset(options={"task": "0"})
        assert env._browser.chromium is not first and "Blue Mug" in obs
        _, reward, *_ = env.step("```stop [$12.50]```")
        assert reward == 1.0
    finally:
        tags = [env._browser.chromium.tag] if env._browser else []
        env.close()
    assert not any(browser_pids(tag) for tag in tags)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("AGENT_GYM_FULL") != "1",
                    reason="about 60 s on a busy CPU (loads the embedded model): run with AGENT_GYM_FULL=1")
def test_the_embedded_model_can_be_the_fuzzy_match_judge(site):
    """Any agent-gym backend judges fuzzy_match; here the local one (SmolLM2), recorded in info."""
    pytest.importorskip("torch")
    from agent_gym.envs.webarena.env import WebArenaEnv
    from agent_gym.policy import PolicySetupError

    try:
        env = WebArenaEnv(tasks_file=TASKS, reddit=site.url, judge_backend="local", sleep_after_execution=0.0)
    except PolicySetupError as exc:
        pytest.skip(f"the embedded model is not installed: {exc}")
    try:
        env.reset(options={"task": "2"})
        _, reward, terminated, _, info = env.step("```stop [The poster was grateful for the tip]```")
        assert terminated and info["evaluation"]["judge"]["backend"] == "local"
        (reply,) = info["evaluation"]["judge_replies"]
        assert reward == (1.0 if "Yes" in reply else 0.0)
    finally:
        env.close()


def test_a_run_without_any_site_url_stops_before_the_first_episode(tmp_path):
    need_data("webarena")
    from agent_gym.policies.simple import ReplayPolicy
    from agent_gym.rollout import RunSetupError, plan, rollout

    out = tmp_path / "run.jsonl"
    with pytest.raises(RunSetupError, match="SHOPPING, SHOPPING_ADMIN, REDDIT"):
        rollout(plan(["AgentTuning/WebArena-v0"], episodes=2), lambda env, **_: ReplayPolicy(["```stop```"]),
                output=out, progress=False)
    assert not out.exists()
