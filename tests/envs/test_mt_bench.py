"""MT-Bench as AgentTuning ran it (eval_mt_bench_tgi.py) and FastChat v0.2.31 judged it (gen_judgment.py,
single-answer grading): the questions and turns, the per-category decoding, the judge's prompts with
GPT-4's references, FastChat's rating parse, the means; an episode judged through a real
``agent-gym serve`` with the embedded model as the judge."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import agent_gym
from agent_gym.core import LLAMA2_SYSTEM
from agent_gym.data import dataset
from agent_gym.envs.mt_bench import data, prompt
from agent_gym.envs.mt_bench.env import MTBenchEnv
from agent_gym.testing import need_data
from agent_gym.trajectory import Step, Trajectory

gym.register_envs(agent_gym)
ENV_ID = "AgentTuning/MTBench-v0"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "mt_bench"


def upstream_prompts() -> dict[str, dict]:
    """judge_prompts.jsonl read here on its own, to check the env's prompts against the file."""
    path = dataset("mt_bench").path() / "judge_prompts.jsonl"
    return {row["name"]: row for row in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


# ----------------------------------------------------------------------------------- data
def test_the_80_questions_their_categories_and_gpt4_references():
    need_data("mt_bench")
    questions = data.load()
    assert [q.id for q in questions] == [str(i) for i in range(81, 161)]
    categories = [q.category for q in questions]
    assert {c: categories.count(c) for c in set(categories)} == {c: 10 for c in (
        "writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")}
    assert all(len(q.turns) == 2 for q in questions)
    with_reference = [q for q in questions if q.reference]
    assert len(with_reference) == 30 and {q.category for q in with_reference} == {"math", "reasoning", "coding"}
    # the roleplay question with a "reference" key of its own is not judged against it (FastChat's ref file only)
    assert next(q for q in questions if q.id == "95").reference is None
    assert {"single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn"} <= set(data.judge_prompts())


# ----------------------------------------------------------------------------- the episode
def test_two_turns_the_second_question_after_the_first_answer_and_the_papers_decoding():
    need_data("mt_bench")
    env = gym.make(ENV_ID)
    obs, info = env.reset(options={"task": "81"})
    question = env.unwrapped.task
    assert obs == question.turns[0] and info["prompt"] == []
    assert info["system_prompt"] == LLAMA2_SYSTEM and info["strip_messages"] is False
    assert (info["max_new_tokens"], info["temperature"], info["category"]) == (4096, 0.7, "writing")
    obs, reward, terminated, truncated, info = env.step("  Aloha from Hawaii!  ")
    assert obs == question.turns[1] and reward == 0.0 and not (terminated or truncated)
    assert info["status"] == "running" and env.unwrapped._answers == ["Aloha from Hawaii!"]  # stripped, as upstream
    for task, temperature in (("111", 0.0), ("131", 0.0), ("141", 0.1), ("151", 0.1), ("91", 0.7), ("101", 0.0)):
        _, info = env.reset(options={"task": task})
        assert info["temperature"] == temperature == prompt.TEMPERATURE[info["category"]]


def test_an_over_long_first_reply_counts_as_an_empty_answer_and_the_episode_goes_on():
    need_data("mt_bench")
    env = gym.make(ENV_ID)
    env.reset(options={"task": "81"})
    obs, _, terminated, _, info = env.step("x" * 70_000)
    assert obs == env.unwrapped.task.turns[1] and not terminated
    assert info["action_valid"] is False and "reply too long" in info["rejected"]
    assert env.unwrapped._answers == [""]


# ------------------------------------------------------------------------------ judge prompts
def test_judge_prompts_are_fastchats_templates_filled_with_the_turns_and_references():
    need_data("mt_bench")
    files = upstream_prompts()
    questions = {q.id: q for q in data.load()}
    writing, math = questions["81"], questions["111"]
    answers = ["first answer", "second answer"]

    name, messages = prompt.judge_messages(data.judge_prompts(), writing, answers, 1)
    assert name == "single-v1"
    assert messages[0] == {"role": "system", "content": files["single-v1"]["system_prompt"]}
    user = messages[1]["content"]
    assert user.startswith("[Instruction]\nPlease act as an impartial judge")
    assert user.endswith(f"[Question]\n{writing.turns[0]}\n\n[The Start of Assistant's Answer]\nfirst answer\n"
                         "[The End of Assistant's Answer]")
    assert "second answer" not in user  # turn 1 is judged on its own

    name, messages = prompt.judge_messages(data.judge_prompts(), writing, answers, 2)
    assert name == "single-v1-multi-turn"
    assert messages[0]["content"] == files["single-v1-multi-turn"]["system_prompt"]
    assert messages[0]["content"].startswith("Please act as an impartial judge")
    assert messages[1]["content"] == (
        "<|The Start of Assistant A's Conversation with User|>\n\n"
        f"### User:\n{writing.turns[0]}\n\n### Assistant A:\nfirst answer\n\n"
        f"### User:\n{writing.turns[1]}\n\n### Assistant A:\nsecond answer\n\n"
        "<|The End of Assistant A's Conversation with User|>")

    name, messages = prompt.judge_messages(data.judge_prompts(), math, answers, 1)
    assert name == "single-math-v1"
    assert (f"[The Start of Reference Answer]\n{math.reference[0]}\n[The End of Reference Answer]"
            in messages[1]["content"])
    name, messages = prompt.judge_messages(data.judge_prompts(), math, answers, 2)
    assert name == "single-math-v1-multi-turn"
    user = messages[1]["content"]
    assert user.index(math.reference[0]) < user.index(math.reference[1]) < user.index("first answer")
    assert f"### Reference answer:\n{math.reference[1]}\n\n<|The End of Reference Answer|>" in user


# ----------------------------------------------------------------------------- rating parse
@pytest.mark.parametrize("judgment, rating", [
    ("The answer is helpful and accurate. Rating: [[8]]", 8),
    ("Good.\n\nRating: [[7.5]]", 7.5),
    ("Rating: [9]", 9),                                     # FastChat's backup pattern
    ("See [1]. Overall: [[6]]", 6),                         # [[n]] wins over an earlier [n]
    ("First [[3]], then on reflection [[9]]", 3),           # the first match
    ("I would rate it 8/10.", -1),                          # no pattern: FastChat's -1
    ("Rating: [[eight]]", -1),
    ("", -1),
])
def test_ratings_are_read_as_fastchat_reads_them(judgment, rating):
    assert prompt.parse_rating(judgment) == rating


def test_ratings_off_the_scale_count_as_none_and_the_episode_score_is_the_mean_over_10():
    assert [prompt.is_rating(r) for r in (1, 10, 7.5, 0, 11, -1, 2023)] == [True, True, True, False, False, False, False]
    assert prompt.score([8, 6]) == 0.7
    assert prompt.score([8, -1]) == 0.8   # an unrated turn is left out, as FastChat leaves it out
    assert prompt.score([-1, -1]) == 0.0


def test_summarize_gives_fastchats_means_per_turn_and_category():
    def traj(qid: str, category: str, ratings: list[float]) -> Trajectory:
        info = {"category": category, "ratings": ratings}
        steps = [Step("a1", "q2", 0.0, False, False, {"category": category}),
                 Step("a2", "judged", prompt.score(ratings), True, False, info)]
        return Trajectory(env_id=ENV_ID, task_id=qid, episode_id=qid, prompt=[], first_observation="q1",
                          steps=steps, score=prompt.score(ratings), status="completed")

    out = MTBenchEnv.summarize([traj("81", "writing", [8, -1]), traj("111", "math", [6, 4]),
                                traj("112", "math", [2, 10])])
    assert out["mt_bench_rating"] == pytest.approx((8 + 6 + 4 + 2 + 10) / 5)  # every rated judgment once
    assert out["score"] == pytest.approx(out["mt_bench_rating"] / 10)
    assert out["turn/1"] == pytest.approx((8 + 6 + 2) / 30) and out["turn/2"] == pytest.approx((4 + 10) / 20)
    assert out["category/writing"] == pytest.approx(0.8) and out["category/math"] == pytest.approx(0.55)
    assert out["unrated_judgments"] == 1 and out["episodes"] == 3


# ------------------------------------------------------------------------------ users' files
def test_a_tasks_file_in_mt_bench_format_carries_its_own_references(tmp_path):
    good = FIXTURES / "two_questions.jsonl"
    questions = data.load_file(good)
    assert [(q.id, q.category) for q in questions] == [("1", "writing"), ("2", "math")]
    assert questions[0].reference is None and questions[1].reference == ("4", "8")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question_id": 7, "category": "math", "turns": ["2+2?", "times 2?"]}\n')
    with pytest.raises(ValueError, match="question 7 .math. is judged against a reference answer"):
        data.load_file(bad)
    bad.write_text('{"question_id": 7, "category": "math", "turns": ["only one"]}\n')
    with pytest.raises(ValueError, match="not of MT-Bench's form"):
        data.load_file(bad)


# ------------------------------------------------------------------------ judges and servers
def test_judge_settings_that_cannot_work_stop_at_construction():
    need_data("mt_bench")
    from agent_gym.policy import PolicySetupError

    with pytest.raises(ValueError, match="judge must be one of local, tgi, openai"):
        gym.make(ENV_ID, judge="gpt-4")
    with pytest.raises(ValueError, match="needs judge_url"):
        gym.make(ENV_ID, judge="tgi")
    pytest.importorskip("text_generation", reason='the tgi backend needs: pip install -e ".[tgi]"')
    with pytest.raises(PolicySetupError, match="no TGI server at http://127.0.0.1:9"):
        gym.make(ENV_ID, judge="tgi", judge_url="http://127.0.0.1:9")


@pytest.fixture(scope="module")
def served_judge():
    """``agent-gym serve`` with the embedded SmolLM2, a real HTTP server in its own process."""
    pytest.importorskip("aiohttp", reason='agent-gym serve needs the serve extra: pip install -e ".[serve]"')
    pytest.importorskip("text_generation", reason='the tgi backend needs: pip install -e ".[tgi]"')
    from agent_gym.policies import models

    try:
        models.embedded_gguf()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(str(exc))
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "policies"))
    from policy_servers import serve

    with serve("--max-concurrent-requests", "8", timeout=300) as (_, url):
        yield url


@pytest.mark.slow
def test_an_episode_judged_through_agent_gym_serve_by_the_embedded_model(served_judge):
    need_data("mt_bench")
    from agent_gym.policies.tgi import TGIBackend

    env = gym.make(ENV_ID, judge="tgi", judge_url=served_judge, judge_max_new_tokens=16)
    _, info = env.reset(options={"task": "81"})
    assert info["provenance"]["options"]["judge"] == "tgi"
    question = env.unwrapped.task
    answers = ["Aloha! I saw a luau and hiked Diamond Head.", "A luau amazed me. A hike up Diamond Head awed me."]
    env.step(answers[0])
    obs, reward, terminated, truncated, info = env.step(answers[1])
    assert terminated and not truncated and info["end_reason"] == "answered"

    assert info["judge"] == {"kind": "tgi", "model": "SmolLM2-135M-Instruct", "url": served_judge,
                             "max_new_tokens": 16}
    files = upstream_prompts()
    first, second = info["judgments"]
    assert [first["prompt_name"], second["prompt_name"]] == ["single-v1", "single-v1-multi-turn"]
    assert first["messages"] == [
        {"role": "system", "content": files["single-v1"]["system_prompt"]},
        {"role": "user", "content": files["single-v1"]["prompt_template"].format(
            question=question.turns[0], answer=answers[0])}]
    assert second["messages"][1]["content"] == files["single-v1-multi-turn"]["prompt_template"].format(
        question_1=question.turns[0], question_2=question.turns[1], answer_1=answers[0], answer_2=answers[1])
    # the judgments are the served model's replies, and the ratings FastChat's reading of them
    assert first["text"] and second["text"] and first["error"] is None
    assert info["ratings"] == [prompt.parse_rating(first["text"]), prompt.parse_rating(second["text"])]
    assert reward == info["score"] == prompt.score(info["ratings"])
    assert "Judged by SmolLM2-135M-Instruct" in obs
    # the server answers the very same messages (greedy) with the very same judgment
    again = TGIBackend(served_judge).generate(first["messages"], max_new_tokens=16, temperature=0.0)
    assert again.text == first["text"]


@pytest.mark.slow
def test_a_conversation_the_judges_context_cannot_hold_gets_no_rating(served_judge):
    need_data("mt_bench")
    env = gym.make(ENV_ID, judge="tgi", judge_url=served_judge, judge_max_new_tokens=8)
    env.reset(options={"task": "81"})
    env.step("word " * 12_000)  # about 12k tokens: beyond SmolLM2's 8192
    _, reward, terminated, _, info = env.step("short")
    assert terminated and info["ratings"] == [-1, -1] and reward == 0.0
    assert all("judge context too small" in j["error"] for j in info["judgments"])


@pytest.mark.slow
def test_check_env_passes_with_a_served_judge(served_judge):
    """gymnasium's checker plays a whole episode (two steps): judged here in a few tokens."""
    need_data("mt_bench")
    env = gym.make(ENV_ID, judge="tgi", judge_url=served_judge, judge_max_new_tokens=4)
    check_env(env.unwrapped, skip_render_check=True)
