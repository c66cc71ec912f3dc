"""ReWOO as AgentTuning ran it (eval_heldout/rewoo: PWS planner / worker / solver, DataLoader's seed-2024 samples):
the sampled questions, the planner and solver prompts, upstream's plan-parsing quirks, every offline tool for
real, the deterministic scorer against hand-computed EM / F1, and an end-to-end run with the embedded model."""

from __future__ import annotations

import http.server
import json
import threading
from collections import Counter
from pathlib import Path

import gymnasium as gym
import pytest

import agent_gym
from agent_gym.envs.rewoo import data, engine, prompt
from agent_gym.envs.rewoo.env import ReWOOEnv
from agent_gym.testing import need_data
from agent_gym.trajectory import Trajectory

pytest.importorskip("bm25s", reason="ReWOO's tools need bm25s and sympy: pip install 'agent-gym[rewoo]'")
pytest.importorskip("sympy", reason="ReWOO's calculator needs sympy: pip install 'agent-gym[rewoo]'")
gym.register_envs(agent_gym)

ID = "AgentTuning/ReWOO-v0"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "rewoo"


def need_all_data():
    for name in ("rewoo", "hotpotqa", "gsm8k"):
        need_data(name)


@pytest.fixture(scope="module")
def env():
    need_all_data()
    e = gym.make(ID).unwrapped
    yield e
    e.close()


# ------------------------------------------------------------------------------- questions
def test_fifty_questions_per_dataset_drawn_as_pandas_sample_with_seed_2024(env):
    tasks = env.tasks()
    assert len(tasks) == 300
    assert Counter(t.dataset for t in tasks) == {name: 50 for name in data.DATASETS}
    # df.sample(50, random_state=2024) = RandomState(2024).choice(len(df), 50, replace=False), checked against pandas
    assert data.sample_rows(53)[:5] == [29, 25, 43, 13, 17]          # physics_question.csv (53 rows)
    assert data.sample_rows(74)[:5] == [3, 2, 12, 48, 19]            # SOTU_QA.csv (74 rows)
    assert data.sample_rows(2290)[:5] == [994, 2185, 1311, 1000, 2005]  # strategy_qa.csv
    ids = [t.id for t in tasks]
    assert ids[:1] == ["hotpot_qa/174"] and "physics_question/29" in ids and "sotu_qa/3" in ids
    sotu = next(t for t in tasks if t.id == "sotu_qa/3")
    assert sotu.question.startswith("Based on State of the Union Address 2023: What are the difference in the roles")
    assert sotu.tools == ("LLM", "Calculator", "Google", "SearchSOTU") and sotu.fewshot == "GSM8K_PWS"
    gsm = next(t for t in tasks if t.dataset == "gsm8k")
    assert gsm.label.strip().lstrip("-").replace(",", "").isdigit()  # the text after "#### "
    assert env.options()["gsm8k_split"] in ("train", "test") and "trivia_qa" in env.options()["left_out"]


def test_planner_prompt_is_prefix_tools_fewshot_suffix_question(env):
    obs, info = env.reset(options={"task": "hotpot_qa/174"})
    strings = data.prompts()
    tools = prompt.tool_list(["Wikipedia", "LLM"], (strings["workers"] or {}).get("descriptions")
                             or prompt.OUR_DESCRIPTIONS)
    assert obs == (strings["planner"]["DEFAULT_PREFIX"] + tools + strings["fewshots"]["HOTPOTQA_PWS_BASE"]
                   + strings["planner"]["DEFAULT_SUFFIX"] + env.task.question + "\n")
    assert "\nWikipedia[input]: " in obs and "\nLLM[input]: " in obs and "Calculator[input]" not in obs
    assert info["prompt"] == [] and info["system_prompt"] == "You are a helpful, respectful and honest assistant."
    assert info["max_new_tokens"] == 256 and info["phase"] == "plan" and info["judge"] == {"judge": "em"}
    _, info = env.reset(options={"task": "sotu_qa/3"})
    assert info["unavailable_tools"] == ["Google"]


# ------------------------------------------------------------------------------- plan parsing
def test_plan_parsing_keeps_upstreams_quirks():
    plan = ("Plan: a\n#E1 = Wikipedia[Badr Hari]\nPlan: b\n#E2 = LLM[Who is #E1?]\n #E3 = ignored (indented)\n"
            "#E10 = Calculator[1+1]\nPlan: c\n#E3 = just text")
    assert prompt.parse_plans(plan) == ["Plan: a", "Plan: b", "Plan: c"]
    assert prompt.parse_evidences(plan) == {"#E1": "Wikipedia[Badr Hari]", "#E2": "LLM[Who is #E1?]",
                                            "#E10": "No evidence found", "#E3": "just text"}
    with pytest.raises(prompt.PlanError):
        prompt.parse_evidences("Plan: a\n#E1 Wikipedia[x]")
    assert prompt.split_call("Calculator[2+2]") == ("Calculator", "2+2")
    assert prompt.split_call("Calculator[2+2") == ("Calculator", "2+")  # upstream drops the last character
    assert prompt.split_call("no brackets") is None
    assert prompt.substitute("Is #E1 older than #E12?", {"#E1": "Ann", "#E12": "Bo"}) == "Is [Ann] older than [Ann]2?"
    with pytest.raises(prompt.PlanError):
        prompt.worker_log(["Plan: a", "Plan: b"], {"#E1": "x"})


def test_a_plan_upstream_could_not_parse_answers_nan(env):
    env.reset(options={"task": "hotpot_qa/174"})
    obs, reward, terminated, truncated, info = env.step("Plan: look\n#E1 Wikipedia[Kim Clijsters]")
    assert terminated and reward == 0.0 and info["prediction"] == "nan" and not info["action_valid"]
    assert info["end_reason"] == "invalid_action" and "no '='" in info["failure"]


# ------------------------------------------------------------------------------- tools, for real
def test_wikipedia_searches_the_hotpotqa_pages(env):
    env.reset(options={"task": "hotpot_qa/174"})
    obs, _, terminated, _, info = env.step(
        "Plan: Search Kim Clijsters.\n#E1 = Wikipedia[Kim Clijsters]\nPlan: Search a nonsense.\n"
        "#E2 = Wikipedia[zzqx nothing]\nPlan: Calculator is not a tool of hotpot_qa.\n#E3 = Calculator[1+1]\n"
        "Plan: ask\n#E4 = LLM[Who is older? #E1]")
    w = {x["evidence"]: x for x in info["workers"]}
    assert w["#E1"]["output"].startswith("Kim Antonie Lode Clijsters") and w["#E1"]["by"] == "env"
    assert w["#E2"]["output"].startswith("Could not find [zzqx nothing]. Similar: ")
    assert w["#E3"]["output"] == "No evidence found"  # a tool not given to the dataset, as upstream
    assert not terminated and info["phase"] == "worker"
    assert obs.endswith("Who is older? [" + w["#E1"]["output"] + "]")  # the LLM worker's request, #E1 substituted
    obs, _, _, _, info = env.step("Mary Pierce")
    assert info["phase"] == "solve" and info["workers"][-1] == {
        "evidence": "#E4", "tool": "LLM", "input": "Who is older? [" + w["#E1"]["output"] + "]",
        "output": "Mary Pierce", "by": "agent"}
    assert "Plan: ask\nEvidence:\nMary Pierce\n" in obs
    assert obs.startswith(data.prompts()["solver"]["DEFAULT_PREFIX"] + env.task.question + "\nPlan: Search Kim")
    assert obs.endswith(data.prompts()["solver"]["DEFAULT_SUFFIX"] + env.task.question + "\n")
    _, reward, terminated, _, info = env.step("Mary Pierce")
    assert terminated and reward == 1.0 and info["em"] and info["f1"] == 1.0 and info["judge"] == {"judge": "em"}


@pytest.mark.parametrize("expression, value", [
    ("(2 * 3.5 - 10) - 8", "-11"), ("1/3", "1/3 ≈ 0.333333333333333"), ("0.1 + 0.2", "0.3"), ("2^10", "1024"),
    ("1,234 * 2", "2468"), ("20% * 50", "10"), ("157 - 57 =", "100"), ("factorial(5)", "120"),
    ("sqrt(2)", "sqrt(2) ≈ 1.41421356237310"),
])
def test_calculator_is_exact(expression, value):
    assert engine.calculator(expression) == value


@pytest.mark.parametrize("expression", ["x + 1", "__import__('os').system('id')", "(1).real", "1/0", "2**10**10",
                                        "(10**999)**999", "7 km", ""])
def test_calculator_refuses_what_is_not_arithmetic(expression):
    assert engine.calculator(expression).startswith("Calculator error: ")


@pytest.mark.parametrize("expression, expected", [
    ("((9**9999)**100)**100", "Calculator error: a number in it has more than 100000 digits"),  # ran for minutes
    ("factorial(1000)**10000", "Calculator error: a number in it has more than 100000 digits"),
    ("*".join(f"(sqrt({p})+sqrt({p + 1}))" for p in range(2, 40, 2)), "≈"),  # simplify ran for minutes
    ("factorial(1000)**30", "1.37824575646004e+77028"),
    ("sqrt(8)*sqrt(2)", "4"),
])
@pytest.mark.exclusive
def test_calculator_answers_big_or_tangled_expressions_in_bounded_time(expression, expected):
    import time

    engine.calculator("1 + 1")  # sympy's import is not the calculator's time
    start = time.monotonic()
    out = engine.calculator(expression)
    assert time.monotonic() - start < 3.0 and (out == expected or expected == "≈" and "≈" in out), out


def test_search_sotu_returns_the_best_passage_and_online_tools_say_they_are_offline():
    need_data("rewoo")
    index = engine.sotu_index(data.speech())
    assert all(len(d.text) <= engine.SOTU_CHUNK for d in index.documents) and len(index.documents) > 30
    found = engine.search_sotu(index, "leader of the House Democrats Hakeem Jeffries")
    assert "Hakeem Jeffries" in found and len(found) <= engine.SOTU_CHUNK
    assert engine.search_sotu(index, "qqqzzz") == "No passage of state_of_the_union matches the query."


def test_every_tool_called_for_real_with_an_endpoint_for_the_online_ones(tmp_path):
    need_all_data()
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.path)
            body = b"Answer: 42"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/ask"
    env = gym.make(ID, tasks_file=FIXTURES / "questions.jsonl", endpoints={"WolframAlpha": url}).unwrapped
    try:
        _, info = env.reset(options={"task": "mixed/0"})
        assert info["unavailable_tools"] == ["Google"] and info["provenance"]["split"] == "custom"
        _, _, _, _, info = env.step(
            "Plan: p1\n#E1 = SearchSOTU[new Speaker of the House]\nPlan: p2\n#E2 = Calculator[83 - 58]\n"
            "Plan: p3\n#E3 = Wikipedia[Badr Hari]\nPlan: p4\n#E4 = Google[Kevin McCarthy]\n"
            "Plan: p5\n#E5 = WolframAlpha[6 * 7]\nPlan: p6\n#E6 = LLM[Name the Speaker in #E1]")
        out = {w["tool"]: w["output"] for w in info["workers"]}
        assert "Kevin McCarthy" in out["SearchSOTU"] and out["Calculator"] == "25"
        assert out["Wikipedia"].startswith("Badr Hari (Arabic:")
        assert out["Google"].startswith("Google is not available offline")
        assert out["WolframAlpha"] == "42" and seen == ["/ask?q=6%20%2A%207"]
        assert info["phase"] == "worker"
    finally:
        server.shutdown()
        env.close()
    with pytest.raises(ValueError, match="endpoints can name"):
        gym.make(ID, endpoints={"Bing": "http://x"})


# ------------------------------------------------------------------------------- scoring
@pytest.mark.parametrize("prediction, label, em, f1", [
    ("Mary Pierce", "Mary Pierce", True, 1.0),
    ("the Mary Pierce.", "Mary Pierce", True, 1.0),       # articles and punctuation go
    ("Pierce", "Mary Pierce", False, 2 / 3),              # P 1, R 1/2
    ("Mary Pierce is older", "Mary Pierce", False, 2 / 3),  # P 2/4, R 2/2
    ("yes", "Yes", True, 1.0), ("no, it is not", "No", False, 0.0),  # HotpotQA's yes/no rule
    ("plausible", "implausible", False, 0.0),
    ("7187 m", "Can be one of ['7187 m', '7 km']", False, 0.4),  # P 2/2, R 2/8 (BIG-bench physics labels)
])
def test_deterministic_scorer_matches_hand_computed_em_f1(prediction, label, em, f1):
    assert prompt.exact_match(prediction, label) is em
    assert prompt.f1_score(prediction, label) == pytest.approx(f1)


def test_the_judge_is_named_with_every_score():
    need_all_data()
    env = gym.make(ID, tasks_file=FIXTURES / "questions.jsonl", judge="f1").unwrapped
    env.reset(options={"task": "custom/0"})
    env.step("Plan: compute\n#E1 = Calculator[6 * 7]")
    _, reward, terminated, _, info = env.step("It is 42")
    assert terminated and reward == pytest.approx(0.5)  # "it is 42" vs "42": P 1/3, R 1, F1 2PR/(P+R) = 1/2
    assert info["judge"] == {"judge": "f1"} and info["em"] is False and info["f1"] == pytest.approx(0.5)
    assert env.options()["judge"] == "f1"
    with pytest.raises(ValueError, match="judge must be one of"):
        gym.make(ID, judge="gpt4")


def test_summary_is_micro_accuracy_with_per_dataset_means():
    def traj(task_id, score):
        return Trajectory(env_id=ID, task_id=task_id, episode_id=task_id, prompt=[], first_observation="",
                          score=score, success=score == 1.0, status="completed")

    out = ReWOOEnv.summarize([traj("gsm8k/1", 1.0), traj("gsm8k/2", 0.0), traj("sotu_qa/3", 1.0)])
    assert out["score"] == pytest.approx(2 / 3) and out["dataset/gsm8k"] == 0.5 and out["dataset/sotu_qa"] == 1.0


def test_tool_descriptions_are_derived_from_upstreams_worker_source():
    derived = json.loads(data.workers_from_source((FIXTURES / "Worker_shape.py").read_bytes()))
    assert derived["descriptions"] == {"Search": "Looks things up. Input is a query.", "LLM": "Asks a model.",
                                       "SearchSpeech": "Searches the document the_speech for a query."}
    assert derived["llm_instruction"] == "Be brief.\n\n{input}"
    with pytest.raises(ValueError):
        data.workers_from_source(b"x = 1\n")


# ------------------------------------------------------------------------------- the embedded model
@pytest.mark.slow
def test_end_to_end_with_the_embedded_model():
    """SmolLM2 plans, answers the LLM worker calls and solves 2 questions (small token budgets); then a
    scripted plan calls every tool, the LLM tool and the judge both through the local backend."""
    need_all_data()
    pytest.importorskip("torch", reason="the embedded model needs the local extra")
    from agent_gym.episode import run_episode
    from agent_gym.policies.react import react

    from gymnasium.wrappers import TimeLimit

    try:
        policy_factory = lambda: react(backend="local", max_new_tokens=16)  # noqa: E731
        policy_factory()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"embedded model unavailable: {exc}")
    env = TimeLimit(gym.make(ID).unwrapped, max_episode_steps=3)  # plan, at most one LLM call, answer: keeps it short
    for task in ("hotpot_qa/174", "sotu_qa/3"):
        traj = run_episode(env, policy_factory(), env_id=ID, task=task)
        assert traj.status in ("completed", "invalid_action", "task_limit_reached"), traj.error
        assert traj.steps and traj.error is None
        if traj.steps[-1].terminated:
            assert traj.steps[-1].info["judge"] == {"judge": "em"} and "prediction" in traj.steps[-1].info
    env.close()

    local = {"backend": "local"}
    env = gym.make(ID, tasks_file=FIXTURES / "questions.jsonl", llm_tool=local, judge=local,
                   tool_max_new_tokens=4).unwrapped
    env.reset(options={"task": "mixed/0"})
    obs, _, _, _, info = env.step(
        "Plan: p1\n#E1 = SearchSOTU[new Speaker of the House]\nPlan: p2\n#E2 = Calculator[83 - 58]\n"
        "Plan: p3\n#E3 = Wikipedia[Badr Hari]\nPlan: p4\n#E4 = Google[Kevin McCarthy]\n"
        "Plan: p5\n#E5 = WolframAlpha[6 * 7]\nPlan: p6\n#E6 = LLM[Name the Speaker in #E2]")
    assert info["phase"] == "solve"
    by = {w["tool"]: w["by"] for w in info["workers"]}
    assert by == {"SearchSOTU": "env", "Calculator": "env", "Wikipedia": "env", "Google": "env",
                  "WolframAlpha": "env", "LLM": "backend"}
    assert isinstance(info["workers"][-1]["output"], str)
    answer = engine.ask(engine.make_backend(local), obs, max_new_tokens=8)
    _, reward, terminated, _, info = env.step(answer)
    assert terminated and reward in (0.0, 1.0)
    judge = info["judge"]
    assert judge["judge"] == "llm" and judge["backend"] == "local" and judge["model"] == "SmolLM2-135M-Instruct"
    assert reward == float(judge["verdict"].strip() == "CORRECT")
    env.close()


@pytest.mark.parametrize("row, why", [
    ({"question": None, "answer": None}, "question and answer must be text"),  # was asked as "None"
    ({"question": "q", "answer": ["a"]}, "question and answer must be text"),
    ({"question": "q", "answer": "a", "tools": "Wikipedia"}, "tools must be a list"),  # was its nine letters
    ({"question": "q", "answer": "a", "tools": ["Bing"]}, "tools must be a list"),
])
def test_a_tasks_file_with_malformed_fields_names_the_line(tmp_path, row, why):
    bad = tmp_path / "q.jsonl"
    bad.write_text(json.dumps({"question": "ok", "answer": 42}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=rf"q\.jsonl:2: .*{why}"):
        data.load_file(bad)


def test_a_plan_repeating_evidence_into_an_input_is_bounded(env):
    """#E1 16,000 times made a 9 MB Wikipedia query: minutes of string scans and search."""
    import time

    env.reset(options={"task": "hotpot_qa/174"})
    start = time.monotonic()
    _, _, _, _, info = env.step("Plan: a\n#E1 = Wikipedia[Paris]\nPlan: b\n#E2 = Wikipedia[" + "#E1 " * 16000 + "]")
    assert time.monotonic() - start < 5.0
    first, second = info["workers"]
    assert second["input"].startswith("[" + first["output"] + "] [") and len(second["input"]) == 8000
