"""AgentTuning/Mind2Web-v0: AgentBench's multiple-choice tournament on Mind2Web's test pages.

Mind2Web's released test files and ranker scores are not in the developers' data, so the env is
played on our own fixtures in exactly those formats (tests/fixtures/mind2web, rebuilt by its
make_fixtures.py): three tasks, five steps, with the 3-shot prompt read from the data directory.
The protocol's pure parts (parsing, F1, tournament, pruning) are checked on hand-worked cases.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import agent_gym
from agent_gym.data import DataMissingError, dataset
from agent_gym.episode import run_episode
from agent_gym.envs.mind2web import data, engine, prompt
from agent_gym.envs.mind2web.env import Mind2WebEnv

gym.register_envs(agent_gym)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "mind2web"
TASKS = FIXTURES / "test_domain_0.json"
SCORES = FIXTURES / "scores_all_data.pkl"


@pytest.fixture(scope="module")
def prompt_file() -> Path:
    """The 3-shot prompt from the data directory (upstream data: never in the repository)."""
    path = dataset("mind2web").path() / data.PROMPT_FILE
    if not path.is_file():
        msg = f"Mind2Web's prompt {data.PROMPT_FILE} missing: run `agent-gym data fetch mind2web` or `agent-gym data import PATH`"
        if os.environ.get("AGENT_GYM_REQUIRE_DATA") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture
def env(prompt_file):
    e = Mind2WebEnv(tasks_file=TASKS)
    yield e
    e.close()


# ----------------------------------------------------------------------------- pure protocol
def test_question_wording_comes_from_the_prompt_file_and_rebuilds_its_examples(prompt_file):
    messages = data.prompt_template()
    assert [m["role"] for m in messages] == ["user", "agent"] * 3  # the empty placeholder turn is dropped
    fmt = prompt.QuestionFormat.from_examples(messages)
    for example in messages[0::2]:  # each example question, rebuilt from its parts
        text = example["content"]
        html = text.split("'''\n")[1].removesuffix("\n")
        task = text.split("Task: ", 1)[1].split("\n", 1)[0]
        previous = text.split("Previous actions:\n", 1)[1].split("What should", 1)[0].splitlines()
        options = [line[3:] for line in text.split("A. None of the above\n", 1)[1].splitlines()]
        rebuilt = fmt.observation(html, task, [] if previous == ["None"] else previous, options)
        assert rebuilt == text + "\n"  # upstream's question ends with a newline; the file's examples are stripped
    with pytest.raises(ValueError, match="llm_prompt_cot"):
        prompt.QuestionFormat.from_examples([{"role": "user", "content": "no question here"}])


@pytest.mark.parametrize("reply, letter, action, found", [
    ("Thought: pickup first.\nAnswer: C.\nAction: SELECT\nValue: Pickup", "C", "SELECT Pickup", True),
    ("Answer: D.\nAction: CLICK", "D", "CLICK ", True),
    ("", "A", " ", False),                                     # nothing: upstream's defaults
    ("I pick B", "A", " ", False),                             # no "Answer: ": A
    ("answer: b", "A", " ", False),                            # case-sensitive
    ("Answer: G.\nAction: CLICK", "A", "CLICK ", False),       # only A-F
    ("Answer: E\nAction: HOVER\nValue: x", "E", " x", True),   # HOVER is no action: ""
    ("Value: first\nAnswer: B.\nAction: TYPE\nValue: second", "B", "TYPE first", True),  # the first Value line wins
    ("  Answer: B.\nAction: TYPE\nValue:   New York  \n", "B", "TYPE New York", True),
])
def test_replies_parse_as_upstream(reply, letter, action, found):
    assert prompt.parse_reply(reply) == prompt.Reply(letter, action, found)


def test_action_f1_and_targets_hand_computed():
    assert prompt.action_f1("TYPE New Jersey", "TYPE New York") == pytest.approx(2 / 3)  # P = R = 2/3
    assert prompt.action_f1("SELECT Economy Plus", "SELECT Economy") == pytest.approx(0.8)  # P 2/3, R 1
    assert prompt.action_f1("CLICK ", "CLICK ") == 1.0
    assert prompt.action_f1("", "") == 1.0 and prompt.action_f1(" ", "CLICK ") == 0.0
    assert prompt.action_f1("click", "CLICK") == 0.0  # case-sensitive
    assert prompt.action_f1("TYPE a a", "TYPE a") == 1.0  # token sets
    assert prompt.target_action("CLICK", "ignored") == "CLICK "
    assert prompt.target_action("TYPE", "line one\nline two") == "TYPE line one"
    assert prompt.step_metrics(("5", "CLICK "), ["5"], "CLICK ") == {"element_acc": 1.0, "action_f1": 1.0,
                                                                      "step_success": 1.0}
    assert prompt.step_metrics(("6", "CLICK "), ["5"], "CLICK ")["step_success"] == 0.0
    assert prompt.step_metrics(("", ""), None, None) == {"element_acc": 0.0, "action_f1": 0.0, "step_success": 0.0}


def _play(ids, letters, actions=None):
    """Run a tournament over ``ids`` answering ``letters`` in turn; options are the batch itself."""
    t = prompt.Tournament(ids)
    calls = []
    for letter in letters:
        if t.done:
            break
        batch = t.next_batch()
        calls.append(batch)
        t.record(batch, prompt.Reply(letter, actions or "CLICK ", letter != "X"))
    return t, calls


def test_tournament_is_upstreams_knockout():
    ids = [str(i) for i in range(10)]
    t, calls = _play(ids, "AA")  # nothing picked: two calls, prediction ('', '')
    assert t.done and calls == [ids[:5], ids[5:]] and t.final == ("", "")
    t, calls = _play(ids, "BCB")  # winners carried on: 0 and 6 meet in a third, 2-way call
    assert calls == [ids[:5], ids[5:], ["0", "6"]] and t.final == ("0", "CLICK ")
    t, calls = _play(ids, "BCA")  # the last call answers A: no candidate left, ('', '')
    assert len(calls) == 3 and t.final == ("", "")
    t, calls = _play(ids, "BCF")  # F past a 2-way call's options: ignored, as upstream's IndexError
    assert len(calls) == 3 and t.remaining == [] and t.final == ("", "")
    t, calls = _play(ids, "BA")  # 0 picked, then A: the lone 0 stands (no third call)
    assert len(calls) == 2 and t.final == ("0", "CLICK ")
    t, calls = _play(["9"], "B")  # one candidate: no call at all, ('', '')
    assert calls == [] and t.final == ("", "")
    order = prompt.shuffled_candidates(ids, 123, "task_step")
    assert order == prompt.shuffled_candidates(ids, 123, "task_step") and sorted(order) == ids
    assert order != prompt.shuffled_candidates(ids, 124, "task_step")


PAGE = ('<html backend_node_id="1"><body backend_node_id="2">'
        '<div backend_node_id="3"><div backend_node_id="4"><span backend_node_id="5" role="presentation" '
        'title="Hidden"><text>one two three four five six seven eight nine ten eleven twelve thirteen fourteen '
        'fifteen sixteen seventeen eighteen nineteen twenty twentyone</text></span></div></div>'
        '<ul backend_node_id="6">' + "".join(f'<li backend_node_id="{7 + i}"><text>{c}</text></li>'
                                             for i, c in enumerate("abcdef")) + '</ul>'
        '<a backend_node_id="13" href="http://x" aria_label="Read &amp; learn supercalifragilistic more" '
        'title="read &amp; learn supercalifragilistic more"><text>Tom &amp; Jerry</text></a></body></html>')


def test_pruned_page_and_options_hand_checked():
    tree = engine.parse(PAGE)
    # 13 and 5: the list (a sibling of 13) has no kept child and is unwrapped away, as are the
    # attribute-less wrappers of 5; ids follow the page, not the candidate order; "presentation",
    # "hidden", links and words of 15+ letters are left out; a title equal to the label shows once.
    mc = engine.multiple_choice(tree, ["13", "5"])
    twenty = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
             "seventeen eighteen nineteen twenty"
    assert mc.html == f"<html><body><span id=0>{twenty}</span><a id=1 read & learn more>Tom & Jerry</a></body></html>"
    assert mc.choices == (("5", "<span id=0>one two three four five six seven eight nine"),
                          ("13", "<a id=1 read & learn more>Tom & Jerry</a>"))
    # 7: siblings within 3 places stay (b, c, d), e and f go; the body, left with one child, is unwrapped
    mc = engine.multiple_choice(tree, ["7"])
    assert mc.html == "<html><ul><li id=0>a</li><li>b</li><li>c</li><li>d</li></ul></html>"
    assert mc.choices == (("7", "<li id=0>a</li>"),)
    with pytest.raises(ValueError, match="not in the step's cleaned_html"):
        engine.multiple_choice(tree, ["999"])


# ----------------------------------------------------------------------------- the env
def test_fixtures_load_in_mind2webs_format():
    tasks = data.load_file(TASKS)
    assert [t.id for t in tasks] == ["fx-flight", "fx-single", "fx-cabin"]
    first = tasks[0].steps[0]
    assert (first.op, first.pos_ids, len(first.neg_ids)) == ("CLICK", ("12",), 11)
    assert data.step_ranks(SCORES, "fx-flight_a0")["12"] == 0 and data.step_ranks(SCORES, "fx-flight_a2")["45"] == 12
    assert data.step_ranks(SCORES, "no-such_step") is None


def test_bad_task_files_name_the_item(tmp_path):
    broken = tmp_path / "broken.json"
    task = json.loads(TASKS.read_text())[1]
    broken.write_text(json.dumps([task, dict(task, actions=[])]))
    with pytest.raises(ValueError, match="item 1 is not a Mind2Web task.*at least one action"):
        data.load_file(broken)
    broken.write_text(json.dumps({"not": "a list"}))
    with pytest.raises(ValueError, match="JSON list of tasks"):
        data.load_file(broken)


def test_score_files_with_numpy_numbers_load(tmp_path):
    np = pytest.importorskip("numpy")
    path = tmp_path / "np.pkl"
    path.write_bytes(pickle.dumps({"scores": {"t_s": {"1": np.float32(2.5)}}, "ranks": {"t_s": {"1": np.int64(3)}}}))
    assert data.step_ranks(path, "t_s") == {"1": 3}


class Scripted:
    """Answers from a table ``{(task, step): (backend_node_id, action lines)}``: that element's
    letter when it is offered, else A."""

    name = "scripted"

    def __init__(self, table):
        self.table = table

    def reset(self, info):
        self.task = info["task_id"]

    def act(self, observation, info):
        node, lines = self.table.get((self.task, info["step"]), (None, ""))
        letter = next((letter for letter, n in info.get("choices", []) if n == node), None)
        return f"Thought: ...\nAnswer: {letter}.\n{lines}" if letter else "Thought: nothing fits.\nAnswer: A."


def test_scoring_matches_hand_computed_element_accuracy_action_f1_and_step_success(env):
    policy = Scripted({
        ("fx-flight", 0): ("12", "Action: CLICK"),                    # right element, right action
        ("fx-flight", 1): ("31", "Action: TYPE\nValue: New Jersey"),  # right element, F1 2/3
        ("fx-cabin", 0): ("51", "Action: SELECT\nValue: Economy"),    # wrong element, F1 1
    })
    trajs = [run_episode(env, policy, env_id="AgentTuning/Mind2Web-v0", task=t) for t in ("fx-flight", "fx-single",
                                                                                         "fx-cabin")]
    assert [t.status for t in trajs] == ["completed"] * 3
    # fx-flight step 2's gold select is ranked 12th (outside the top 10) and fx-single has one candidate:
    # both score 0 with no call. fx-flight: 2 calls for step 0 (10 candidates, the gold carried on),
    # 1 for step 1 (5 candidates); fx-single: the one placeholder turn; fx-cabin: 1 (2 candidates).
    assert [t.turns for t in trajs] == [3, 1, 1]
    assert [t.score for t in trajs] == pytest.approx([1 / 3, 0.0, 0.0])
    flight = trajs[0]
    assert [len(s.info["step_results"]) for s in flight.steps] == [0, 1, 2]  # scored when each tournament ends
    results = [r for s in flight.steps for r in s.info["step_results"]]
    assert [(r["element_acc"], r["action_f1"], r["step_success"]) for r in results] == \
        [(1.0, 1.0, 1.0), (1.0, pytest.approx(2 / 3), 0.0), (0.0, 0.0, 0.0)]
    assert results[1]["prediction"] == ["31", "TYPE New Jersey"] and results[1]["target_action"] == "TYPE New York"
    assert trajs[1].meta["step_results"][0]["calls"] == 0  # scored at reset
    summary = Mind2WebEnv.summarize(trajs)
    # 5 steps: element 1+1+0+0+0, F1 1+2/3+0+0+1, success 1+0+0+0+0
    assert summary["steps"] == 5
    assert summary["micro/element_acc"] == pytest.approx(2 / 5)
    assert summary["micro/action_f1"] == pytest.approx((8 / 3) / 5)
    assert summary["micro/step_sr"] == pytest.approx(1 / 5) == pytest.approx(summary["score"])
    assert summary["episode_score"] == pytest.approx((1 / 3) / 3)


def test_expert_succeeds_on_every_step_that_has_a_choice(env):
    for task, expected in (("fx-flight", 2 / 3), ("fx-single", 0.0), ("fx-cabin", 1.0)):
        env.reset(options={"task": task})
        total = 0.0
        for reply in env.expert_replies(env.task):
            _, reward, terminated, truncated, info = env.step(reply)
            total += reward
        assert terminated and not truncated and info["score"] == pytest.approx(expected) == pytest.approx(total)


def test_malformed_replies_count_as_none_of_the_above(env):
    obs, info = env.reset(options={"task": "fx-cabin"})
    assert info["fresh_context"] and info["prompt"][1]["role"] == "assistant" and "Task: Choose" in obs
    obs, reward, terminated, truncated, info = env.step("\x00\xff garbage without an answer")
    assert not info["action_valid"] and info["reply"]["letter"] == "A"
    assert terminated and info["score"] == 0.0 and info["step_results"][0]["prediction"] == ["", ""]
    # a letter past the options is ignored (upstream's IndexError) and marked invalid
    env.reset(options={"task": "fx-cabin"})
    _, _, terminated, _, info = env.step("Answer: F.\nAction: CLICK")
    assert terminated and not info["action_valid"] and info["step_results"][0]["element_acc"] == 0.0
    # a reply over the core's size limit is not parsed: it counts as A and the tournament goes on
    env.reset(options={"task": "fx-flight"})
    obs, _, terminated, truncated, info = env.step("Answer: B. " + "x" * (70 * 1024))
    assert not info["action_valid"] and "too long" in info["reply"]["refused"] and not (terminated or truncated)
    assert info["call"] == 2 and obs.startswith("'''\n<html>")
    with pytest.raises(TypeError):
        env.step(12345)


def test_candidate_order_is_seeded_per_step(prompt_file):
    a, b = Mind2WebEnv(tasks_file=TASKS), Mind2WebEnv(tasks_file=TASKS)
    other = Mind2WebEnv(tasks_file=TASKS, shuffle_seed=7)
    try:
        b.reset(options={"task": "fx-cabin"})  # whatever ran before, a step's order is its own
        b.step("Answer: A.")
        first_a, info_a = a.reset(options={"task": "fx-flight"})
        first_b, info_b = b.reset(options={"task": "fx-flight"})
        assert first_a == first_b and info_a["choices"] == info_b["choices"]
        _, info_o = other.reset(options={"task": "fx-flight"})
        assert info_o["choices"] != info_a["choices"]
        assert a.options()["candidate_order"] != Mind2WebEnv.paper_options["candidate_order"]
    finally:
        for e in (a, b, other):
            e.close()


def test_check_env_passes_on_the_fixtures(env):
    check_env(env, skip_render_check=True)


def test_score_files_resolve_and_bad_ones_are_refused(prompt_file, tmp_path):
    tasks = tmp_path / "mine.json"
    shutil.copy(TASKS, tasks)
    with pytest.raises(FileNotFoundError, match="scores_file"):
        Mind2WebEnv(tasks_file=tasks, scores_file=tmp_path / "nope.pkl")
    # a score file that lacks the task's steps: the episode ends as an env error naming the fix
    thin = tmp_path / "thin.pkl"
    thin.write_bytes(pickle.dumps({"scores": {}, "ranks": {}}))
    env = Mind2WebEnv(tasks_file=tasks, scores_file=thin)
    with pytest.raises(KeyError, match="scores_file="):
        env.reset(options={"task": "fx-cabin"})
    # a pickle that would run code is refused before anything runs
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"ranks": Evil()}))
    with pytest.raises(ValueError, match="only plain data"):
        data.load_ranks(evil)
    assert not (tmp_path / "pwned").exists()


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {Path(os.getcwd()) / 'pwned'}",))


def test_released_layout_unpacks_the_zip_and_names_the_fetch_when_absent(prompt_file, tmp_path, monkeypatch):
    monkeypatch.setenv("AGENT_GYM_DATA", str(tmp_path))
    folder = tmp_path / "agentbench" / data.FOLDER
    (folder / "prompt").mkdir(parents=True)
    shutil.copy(prompt_file, folder / "prompt" / prompt_file.name)
    ds = dataset("mind2web")
    assert set(ds.missing()) == {data.TEST_ZIP, data.SCORES_FILE} and not ds.is_present()
    with pytest.raises(DataMissingError, match="agent-gym data fetch mind2web"):
        Mind2WebEnv().reset(seed=0)
    # Mind2Web's zip holds one folder per test set (ours is not password-locked: zipfile cannot write that)
    with zipfile.ZipFile(folder / "test.zip", "w") as zf:
        zf.write(TASKS, "test_domain/test_domain_0.json")
        zf.writestr("test_task/test_task_0.json", json.dumps(json.loads(TASKS.read_text())[:1]))
    shutil.copy(SCORES, folder / "scores_all_data.pkl")
    assert ds.is_present()
    env = Mind2WebEnv()
    try:
        obs, info = env.reset(seed=0)
        assert [t.id for t in env.tasks()] == ["fx-flight", "fx-single", "fx-cabin"]
        assert (folder / "test_domain" / "test_domain_0.json").is_file()  # unpacked once
        assert isinstance(env.tasks()[0], data.TaskRef) and info["task_id"] in {"fx-flight", "fx-single", "fx-cabin"}
        index = json.loads((folder / "test_domain" / data.INDEX_FILE).read_text())  # ids kept for the next listing
        assert index["test_domain_0.json"]["ids"] == ["fx-flight", "fx-single", "fx-cabin"]
        assert [t.id for t in env.tasks("test_task")] == ["fx-flight"]
        assert env.tasks("std") is env.tasks("test") and info["provenance"]["split"] == "test"
        with pytest.raises(DataMissingError, match="no test_website"):
            env.tasks("test_website")
    finally:
        env.close()


def test_summary_counts_steps_never_reached_as_zero():
    from agent_gym.trajectory import Trajectory

    cut = Trajectory(env_id="AgentTuning/Mind2Web-v0", task_id="t", episode_id="e", prompt=[], first_observation="",
                     status="agent_context_limit", meta={"num_steps": 4, "step_results": [
                         {"element_acc": 1.0, "action_f1": 1.0, "step_success": 1.0}]})
    summary = Mind2WebEnv.summarize([cut])
    assert summary["steps"] == 4 and summary["micro/step_sr"] == 0.25 and summary["micro/action_f1"] == 0.25


@pytest.mark.parametrize("edit, says", [
    (lambda a: a.__setitem__("cleaned_html", None), "cleaned_html must be a string"),
    (lambda a: a["operation"].__setitem__("value", 12), "operation.value must be a string"),
    (lambda a: a["operation"].__setitem__("op", None), "operation.op must be a string"),
])
def test_records_of_the_wrong_type_are_named_when_the_file_is_read(tmp_path, edit, says):
    task = json.loads(TASKS.read_text())[1]
    edit(task["actions"][0])  # was: TypeError / AttributeError at reset or step, naming neither file nor item
    path = tmp_path / "typed.json"
    path.write_text(json.dumps([task]))
    with pytest.raises(ValueError, match=f"item 0 is not a Mind2Web task.*{says}"):
        data.load_file(path)


def test_a_page_that_is_not_xml_names_the_task_and_action(prompt_file, tmp_path):
    task = json.loads(TASKS.read_text())[0]  # fx-flight: its first step has candidates to choose from
    task["actions"][0]["cleaned_html"] = "<html><div"
    path = tmp_path / "bad_xml.json"
    path.write_text(json.dumps([task]))
    env = Mind2WebEnv(tasks_file=path, scores_file=SCORES)
    try:  # was: a bare lxml XMLSyntaxError
        with pytest.raises(ValueError, match=r"task fx-flight, action 0 .*not well-formed XML"):
            env.reset(options={"task": "fx-flight"})
    finally:
        env.close()


def test_a_tasks_file_without_ranker_scores_is_refused_before_any_episode(prompt_file, tmp_path, monkeypatch):
    tasks = tmp_path / "mine.json"
    shutil.copy(TASKS, tasks)  # no scores_all_data.pkl beside it, none in an empty data directory
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("AGENT_GYM_DATA", str(empty))
    # was: made fine, then every episode ended in error telling to fetch 245 MB of Mind2Web
    with pytest.raises(FileNotFoundError, match="scores_file=PATH.*scores_all_data.pkl beside"):
        Mind2WebEnv(tasks_file=tasks)
    Mind2WebEnv(tasks_file=tasks, scores_file=SCORES).close()
