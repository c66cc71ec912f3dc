"""HotpotQA as AgentTuning ran it (eval_heldout/hotpotQA, BOLAA's ReactAgent): the 300 questions, the ReAct
prompt, Search / Lookup / Finish over the offline Wikipedia, the F1 reward, the step and context limits,
the completion scaffolding and the per-level summary."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import gymnasium as gym
import pytest

import agent_gym
from agent_gym.envs.hotpotqa import data, prompt
from agent_gym.envs.hotpotqa.env import HotpotQAEnv
from agent_gym.testing import need_data
from agent_gym.trajectory import Trajectory

pytest.importorskip("bm25s", reason="HotpotQA's search needs bm25s: pip install 'agent-gym[hotpotqa]'")
gym.register_envs(agent_gym)

ID = "AgentTuning/HotpotQA-v0"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "hotpotqa"
INVALID = "Invalid Action. Valid Actions are Lookup[<topic>] Search[<topic>] and Finish[<answer>]."


@pytest.fixture(scope="module")
def env():
    need_data("hotpotqa")
    e = gym.make(ID).unwrapped
    yield e
    e.close()


# ------------------------------------------------------------------------------- data and prompt
def test_the_papers_300_questions_and_corpus():
    need_data("hotpotqa")
    questions = data.load()
    assert len(questions) == 300
    assert Counter(q.level for q in questions) == {"easy": 100, "medium": 100, "hard": 100}
    assert Counter(q.type for q in questions if q.level == "hard") == {"bridge": 85, "comparison": 15}
    assert questions[0].id == "easy/0" and questions[0].answer == "Badr Hari"
    assert questions[299].id == "hard/99"
    docs = data.corpus(questions)
    assert len(docs) == 2958  # every paragraph of the 300 questions, one page per title
    titles = {d.title for d in docs}
    assert all(t in titles for q in questions for t in q.supporting_titles)


def test_first_observation_is_upstreams_react_prompt(env):
    obs, info = env.reset(options={"task": "easy/0"})
    strings = data.react_prompt()
    assert obs == strings["instruction"].format(examples=strings["examples"], question=env.task.question,
                                                scratchpad="")
    assert obs.startswith("This task involves solving a question-answering exercise")
    assert obs.count("Question: ") == 3  # the two few-shot examples, then ours
    assert obs.endswith("(END OF EXAMPLES)\nQuestion: " + env.task.question)
    assert info["prompt"] == [] and info["system_prompt"] == ""
    assert info["max_new_tokens"] == 256 and info["temperature"] == 0.0
    assert info["level"] == "easy" and info["type"] == "bridge"
    assert info["context_tokens"] == 679  # cl100k tokens of that prompt (upstream's limit is 1700)


# ------------------------------------------------------------------------------- actions
def test_search_hit_near_hit_and_miss_with_suggestions(env):
    env.reset(options={"task": "easy/0"})
    obs, reward, terminated, truncated, info = env.step("Thought 1: I need to search Badr Hari.\nAction 1: Search[Badr Hari]")
    assert obs.startswith("Observation 1: Badr Hari (Arabic: ")
    assert obs.endswith("crimes of violence outside of the ring.")  # the page's first (only) paragraph, one line
    assert (reward, terminated, truncated, info["action_valid"]) == (0.0, False, False, True)
    assert info["action"] == ["Search", "Badr Hari"]
    obs, *_ = env.step("Action 2: Search[badr  HARRI]")  # case, spacing and a typo: a near title hit
    assert obs.startswith("Observation 2: Badr Hari (Arabic: ")
    obs, *_ = env.step("Thought 3: broader.\nAction 3: Search[kick boxer world champion]")
    assert obs.startswith("Observation 3: Could not find [kick boxer world champion]. Similar: ['")
    similar = eval(obs.split("Similar: ", 1)[1])  # a Python list, as upstream's wikipedia.search printed it
    assert len(similar) == 10 and "Badr Hari" in similar and all(isinstance(t, str) for t in similar)


def test_lookup_on_the_page_then_no_more_results_and_before_any_page(env):
    env.reset(options={"task": "easy/0"})
    obs, *_ = env.step("Action 1: Lookup[kickboxer]")
    assert obs == ("Observation 1: The last page Searched was not found, so you cannot Lookup a keyword in it. "
                   "Please try one of the similar pages given.")
    env.step("Action 2: Search[Badr Hari]")
    obs, *_ = env.step("Action 3: Lookup[Kickboxer]")
    assert obs.startswith("Observation 3: (Result 1/1) Badr Hari (Arabic: ")  # the page is one paragraph
    obs, *_ = env.step("Action 4: Lookup[kickboxer]")
    assert obs == "Observation 4: No More Results"
    obs, *_ = env.step("Action 5: Lookup[cricket]")
    assert obs == "Observation 5: No Results"
    env.step("Action 6: Search[nothing like this exists qqq]")
    obs, *_ = env.step("Action 7: Lookup[kickboxer]")  # a failed search forgets the page, as upstream
    assert obs.startswith("Observation 7: The last page Searched was not found")


def test_lookup_cycles_through_the_paragraphs_of_a_users_corpus():
    need_data("hotpotqa")  # a user's questions still take the paper's prompt from the data
    env = gym.make(ID, tasks_file=FIXTURES / "questions.jsonl", corpus=FIXTURES / "corpus.jsonl").unwrapped
    env.reset(options={"task": "easy/0"})
    assert env.options()["corpus"]["path"].endswith("corpus.jsonl")
    obs, *_ = env.step("Action 1: Search[Lighthouse of Pharos]")
    assert obs == "Observation 1: The Lighthouse of Pharos was a tall tower built in Alexandria."
    got = [env.step(f"Action {n}: Lookup[tower]")[0] for n in (2, 3, 4, 5)]
    assert got == ["Observation 2: (Result 1/3) The Lighthouse of Pharos was a tall tower built in Alexandria.",
                   "Observation 3: (Result 2/3) Its light was a fire that burned at the top of the tower at night.",
                   "Observation 4: (Result 3/3) The tower was damaged by earthquakes and its light went out.",
                   "Observation 5: No More Results"]
    obs, *_ = env.step("Action 6: Lookup[light]")  # a new keyword starts over
    assert obs.startswith("Observation 6: (Result 1/4) ")
    obs, *_ = env.step("Action 7: Search[Mercury]")  # two "Mercury (...)" pages: a miss, both suggested
    assert obs.startswith("Observation 7: Could not find [Mercury]. Similar: ['Mercury (")
    _, reward, terminated, _, info = env.step("Action 8: Finish[Alexandria]")
    assert reward == 1.0 and terminated and info["success"]
    env.close()


def test_invalid_actions_and_upstreams_parse_fallbacks(env):
    env.reset(options={"task": "easy/0"})
    for n, reply in enumerate(["Thought 1: hmm", "Action 2: Dance[x]", "Action 3: search[Badr Hari]",
                               "Action 4: Search[]", "", "\x00\xff" * 10], 1):
        obs, reward, terminated, truncated, info = env.step(reply)
        assert obs == f"Observation {n}: {INVALID}" and not info["action_valid"], reply
        assert not (terminated or truncated)
    env.reset(options={"task": "easy/0"})
    # upstream's fuzzy parse: spaces and dots stripped, then the prefix match
    obs, *_ = env.step("Action 1: Search[Badr Hari].")
    assert obs.startswith("Observation 1: Badr Hari (Arabic:")
    obs, *_ = env.step("Search[Badr Hari] because it is the name")  # no labels: the whole reply is the action
    assert obs.startswith("Observation 2: Badr Hari (Arabic:")
    assert prompt.parse_action("Finish[The answer is [x]]") == ("Finish", "The answer is [x]")
    assert prompt.parse_action("Lookup") == ("Lookup", "")
    assert prompt.split_reply("Thought 3: a\nb\nAction 3: Search[x]\nObservation 3: made up") == ("ab", "Search[x]")


def test_ten_steps_at_most(env):
    env.reset(options={"task": "medium/4"})
    for n in range(1, 11):
        _, reward, terminated, truncated, info = env.step(f"Action {n}: Lookup[x]")  # short: under the context limit
        if n < 10:
            assert not (terminated or truncated)
    assert (terminated, truncated) == (False, True)
    assert info["status"] == "task_limit_reached" and info["end_reason"] == "round_limit" and info["score"] == 0.0


def test_the_context_limit_halts_as_upstream():
    need_data("hotpotqa")
    env = gym.make(ID, max_context_tokens=900).unwrapped
    env.reset(options={"task": "easy/0"})
    _, _, terminated, _, info = env.step("Action 1: Search[Badr Hari]")  # 679 + the page: 850 tokens
    assert not terminated and info["context_tokens"] == 850
    _, reward, terminated, truncated, info = env.step("Action 2: Search[Badr Hari]")
    assert (terminated, truncated) == (True, False) and info["context_tokens"] > 900
    assert info["status"] == "agent_context_limit" and info["end_reason"] == "context_limit" and reward == 0.0
    assert gym.make(ID).unwrapped.options()["max_context_tokens"] == 1700
    env.close()


# ------------------------------------------------------------------------------- reward
@pytest.mark.parametrize("answer, gold, f1", [
    ("Badr Hari", "Badr Hari", 1.0),
    ("the  Badr-Hari!", "Badr Hari", 0.0),        # "badrhari": punctuation is removed, not spaced
    ("Hari", "Badr Hari", 2 / 3),                 # P 1, R 1/2
    ("Badr Hari kickboxer", "Badr Hari", 0.8),    # P 2/3, R 1
    ("A Badr Hari", "The Badr Hari", 1.0),        # articles dropped
    ("yes", "no", 0.0), ("yes it is", "yes", 0.0), ("No.", "no", 1.0),
    ("noanswer", "noanswer", 1.0), ("noanswer", "Paris", 0.0),
    ("New York New York", "New York City", 0.5714285714285714),  # P 2/4, R 2/3
    ("", "Paris", 0.0),
])
def test_f1_is_hotpotqas_official_rule(answer, gold, f1):
    assert prompt.f1_score(answer, gold)[0] == pytest.approx(f1)


def test_a_wrong_answer_is_scored_by_f1_and_ends_the_episode(env):
    env.reset(options={"task": "easy/0"})
    obs, reward, terminated, truncated, info = env.step("Thought 1: I know it.\nAction 1: Finish[Hari]")
    assert obs == "Observation 1: Answer is INCORRECT"
    assert reward == pytest.approx(2 / 3) and terminated and not truncated and not info["success"]
    assert (info["answer"], info["em"], info["status"]) == ("Hari", False, "completed")
    assert info["precision"] == 1.0 and info["recall"] == 0.5


def test_gold_policy_scores_f1_one_on_all_300(env):
    """Search every supporting title, then Finish with the gold answer (about 10 s for all 300)."""
    scores, turns = [], Counter()
    for i, task in enumerate(env.tasks()):
        obs, info = env.reset(options={"task": i})
        for reply in env.expert_replies(task):
            obs, reward, terminated, truncated, info = env.step(reply)
            assert "Could not find" not in obs and "Invalid Action" not in obs, (task.id, obs[:100])
        assert terminated and info["status"] == "completed" and info["success"], task.id
        scores.append(info["score"])
        turns[info["turn"]] += 1
    assert scores == [1.0] * 300
    assert turns == {3: 300}  # two supporting pages and the answer


# ------------------------------------------------------------------------------- completion form
def test_completion_scaffolding_rebuilds_upstreams_prompt(env):
    """A policy that plays the paper's completion form (two newline-stopped calls per step) from
    info['completion'] sees exactly upstream's prompt, and its joined reply is parsed as the chat one."""
    obs, info = env.reset(options={"task": "easy/0"})
    c = info["completion"]
    assert c["stop"] == ["\n"] and c["max_new_tokens"] == 256 and c["prompt"] == obs
    text = c["prompt"]
    scripted = [(" I need to search Badr Hari.", " Search[Badr Hari]"), (" Look up kickboxer.", " Lookup[kickboxer]"),
                (" Done.", " Finish[Badr Hari]")]
    for n, (thought, action) in enumerate(scripted, 1):
        text += c["thought_prefix"].format(n=n) + " " + thought.strip()
        text += c["action_prefix"].format(n=n) + " " + action.strip()
        reply = c["reply"].format(n=n, thought=thought.strip(), action=action.strip())
        obs, reward, terminated, _, info = env.step(reply)
        text += c["observation_prefix"] + obs
        assert text == env.completion_prompt()
    assert terminated and reward == 1.0
    assert "\nThought 2: Look up kickboxer.\nAction 2: Lookup[kickboxer]\nObservation 2: (Result 1/1) " in text
    assert text.endswith("\nAction 3: Finish[Badr Hari]\nObservation 3: Answer is CORRECT")


# ------------------------------------------------------------------------------- users' files and summary
def test_a_users_questions_search_their_own_paragraphs(tmp_path):
    need_data("hotpotqa")  # a user's questions still take the paper's prompt from the data
    env = gym.make(ID, tasks_file=FIXTURES / "questions.jsonl").unwrapped
    assert [t.id for t in env.tasks()] == ["easy/0", "custom/0"]
    obs, info = env.reset(options={"task": "custom/0"})
    assert info["provenance"]["split"] == "custom" and obs.endswith("Question: Is Mercury a planet?")
    obs, *_ = env.step("Action 1: Search[Mercury (planet)]")
    assert obs == "Observation 1: Mercury is the smallest planet."
    _, reward, *_ = env.step("Action 2: Finish[Yes.]")
    assert reward == 1.0
    env.close()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "no answer"}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:1: not a HotpotQA record"):
        gym.make(ID, tasks_file=bad).unwrapped.tasks()
    with pytest.raises(FileNotFoundError, match="corpus"):
        gym.make(ID, corpus=tmp_path / "missing.jsonl")


def test_summary_is_per_level_and_the_mean_of_level_means():
    def traj(task_id, score):
        return Trajectory(env_id=ID, task_id=task_id, episode_id=task_id, prompt=[], first_observation="",
                          score=score, success=score == 1.0, status="completed")

    trajs = [traj("easy/0", 1.0), traj("easy/1", 0.5), traj("medium/0", 0.0), traj("hard/0", 0.2),
             traj("hard/1", 0.4), traj("hard/2", 0.6)]
    out = HotpotQAEnv.summarize(trajs)
    assert out["level/easy"] == 0.75 and out["level/medium"] == 0.0 and out["level/hard"] == pytest.approx(0.4)
    assert out["mean_of_levels"] == pytest.approx((0.75 + 0.0 + 0.4) / 3)
    assert out["score"] == pytest.approx(2.7 / 6) and out["success_rate"] == pytest.approx(1 / 6)


def test_a_tasks_file_with_a_malformed_context_names_the_line(tmp_path):
    bad = tmp_path / "q.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "a", "context": "not a list"}) + "\n")
    with pytest.raises(ValueError, match=r"q\.jsonl:1: not a HotpotQA record"):  # was a bare unpacking error
        data.load_file(bad)
