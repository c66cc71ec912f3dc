"""GSM8K and MMLU as the paper ran them (AgentTuning eval_general/eval_gsm8k_tgi.py and eval_mmlu_hf.py):
the chat prompts, answer extraction, MMLU's log-prob scoring hints, users' task files, gold replays
and the metric tables."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import pytest

import agent_gym
from agent_gym.core import LLAMA2_SYSTEM
from agent_gym.envs.gsm8k import data as gsm8k_data
from agent_gym.envs.gsm8k.prompt import extract, is_correct, last_number, same_number
from agent_gym.envs.mmlu import data as mmlu_data
from agent_gym.envs.mmlu.prompt import parse_letter
from agent_gym.metrics import format_table, report_rows
from agent_gym.policies.simple import ReplayPolicy
from agent_gym.rollout import plan, rollout
from agent_gym.testing import need_data

gym.register_envs(agent_gym)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "general"
GSM8K, MMLU = "AgentTuning/GSM8K-v0", "AgentTuning/MMLU-v0"


# ------------------------------------------------------------------------------------ GSM8K
def test_gsm8k_prompt_is_the_papers_eight_shot_chat():
    need_data("gsm8k")
    env = gym.make(GSM8K)
    obs, info = env.reset(options={"task": 0})
    question = env.unwrapped.task.question
    assert obs == "\nQuestion: " + question
    prompt = info["prompt"]
    assert len(prompt) == 18  # instruction, "Ok.", 8 question/answer pairs: upstream's 18 messages
    assert [m["role"] for m in prompt] == ["user", "assistant"] * 9
    assert prompt[0]["content"] == ("Please provide a detailed step-by-step solution for the following grade "
                                    "school math question. ")
    assert prompt[1]["content"] == "Ok."
    assert prompt[2]["content"].startswith("Question: In 2004, there were 60 kids at a cookout.")
    assert prompt[3]["content"].startswith("Let's think step by step.\nIn 2005, 60/2=30 kids")
    assert prompt[17]["content"].endswith("he picked 120 + 230 = 350 apples from his orchard.\nThe answer is 350")
    assert all(m["content"].startswith("Question: ") for m in prompt[2::2])
    assert all(m["content"].startswith("Let's think step by step.\n") for m in prompt[3::2])
    assert info["system_prompt"] == LLAMA2_SYSTEM == gsm8k_data.paper_prompt()["system_message"]
    assert info["max_new_tokens"] == 512 == gsm8k_data.paper_prompt()["max_new_tokens"]
    assert info["temperature"] == 0.0


def test_gsm8k_reply_is_cut_at_the_first_new_question():
    need_data("gsm8k")
    for extraction in ("paper", "robust"):
        env = gym.make(GSM8K, extraction=extraction)
        env.reset(options={"task": 0})
        assert env.unwrapped.task.answer == "18"
        _, reward, terminated, _, info = env.step("The answer is 18\nQuestion: A man has 5 hats.")
        assert reward == 1.0 and terminated and info["success"]
        assert info["predicted"] == "18" and info["end_reason"] == "answered"


@pytest.mark.parametrize("reply,expected", [
    ("It costs $1,250.", "250"), ("The answer is 18.00", "0"), ("The answer is -3", "3"),
    ("The answer is 007", None),  # eval("007") is a SyntaxError upstream: no answer
    ("The answer is 00", "0"), ("no digits", None), ("", None), ("The answer is \u0663", None),
    ("12 then 34\nQuestion: 56?", "34"), ("The answer is 20800", "20800"),
])
def test_gsm8k_paper_extraction_reads_the_last_run_of_digits(reply, expected):
    assert extract(reply, "paper") == expected


@pytest.mark.parametrize("reply,gold,paper,robust", [
    ("The answer is 18", "18", True, True),
    ("The answer is 18.00", "18", False, True),       # paper reads "00"
    ("The answer is $1,250.", "1,250", False, True),  # paper reads 250
    ("It gets colder: -3 degrees.", "-3", False, True),  # paper reads 3: a negative gold is never matched
    ("So \\boxed{42}, checked with 7 steps.", "42", False, True),
    ("The answer is 5.5", "5", True, False),          # paper reads the 5 after the point
    ("20-8=12", "12", True, True),
])
def test_gsm8k_paper_and_robust_extraction_score_differently(reply, gold, paper, robust):
    assert is_correct(extract(reply, "paper"), gold) is paper
    assert is_correct(extract(reply, "robust"), gold) is robust


def test_gsm8k_records_its_extraction_mode_and_options():
    need_data("gsm8k")
    env = gym.make(GSM8K)
    assert env.unwrapped.options() == {"extraction": "paper"} == type(env.unwrapped).paper_options
    assert env.unwrapped.engine_info() == {}
    _, info = env.reset(options={"task": 0})
    assert info["extraction"] == "paper"
    robust = gym.make(GSM8K, extraction="robust")
    assert robust.unwrapped.options() == {"extraction": "robust"}
    assert robust.reset(options={"task": 0})[1]["extraction"] == "robust"
    with pytest.raises(ValueError, match="extraction must be one of"):
        gym.make(GSM8K, extraction="lenient")
    # the trajectory says which rule produced its score
    for extraction in ("paper", "robust"):
        (t,) = rollout(plan([GSM8K], episodes=1), "expert", env_kwargs={"extraction": extraction},
                       progress=False).trajectories
        assert t.provenance["env"]["options"] == {"extraction": extraction}
        assert t.provenance["env"]["paper_options"] == {"extraction": "paper"}


def test_gsm8k_reply_without_a_number_is_an_invalid_action():
    need_data("gsm8k")
    env = gym.make(GSM8K)
    env.reset(options={"task": 0})
    _, reward, terminated, _, info = env.step("I do not know.")
    assert reward == 0.0 and terminated
    assert info["status"] == "invalid_action" and info["end_reason"] == "invalid_action" and not info["action_valid"]


def test_core_input_hygiene_as_docs_general_says():
    """NUL characters are dropped before reading (upstream would read "1\\x008" as 8); replies over
    64 KiB are refused."""
    need_data("gsm8k")
    need_data("mmlu")
    env = gym.make(GSM8K)
    env.reset(options={"task": 0})
    assert env.step("The answer is 1\x008")[1] == 1.0
    env = gym.make(MMLU)
    env.reset(options={"task": "anatomy/3"})
    _, reward, terminated, _, info = env.step(f"Answer: {env.unwrapped.task.answer}" + " " * 65_536)
    assert reward == 0.0 and terminated and info["status"] == "invalid_action"


def test_gsm8k_train_split_names_the_fetch_command_when_absent(tmp_path, monkeypatch):
    need_data("gsm8k")
    source = gsm8k_data.DATASET.path()
    (tmp_path / "gsm8k").mkdir()
    for name in ("test.jsonl", "agenttuning_prompt.json"):
        (tmp_path / "gsm8k" / name).symlink_to(source / name)
    monkeypatch.setenv("AGENT_GYM_DATA", str(tmp_path))
    assert gsm8k_data.DATASET.is_present()  # train.jsonl is optional
    env = gym.make(GSM8K, split="train")
    with pytest.raises(Exception, match=r"train.jsonl.*agent-gym data fetch gsm8k"):
        env.reset(options={"task": 0})


def test_gsm8k_plays_a_users_tasks_file():
    need_data("gsm8k")  # the prompt strings come from the data directory
    path = FIXTURES / "gsm8k_tasks.jsonl"
    env = gym.make(GSM8K, tasks_file=path)
    assert env.unwrapped.split == "custom" and len(env.unwrapped.tasks()) == 3
    obs, info = env.reset(options={"task": 1})
    assert obs == "\nQuestion: A shop sold 1,000 cups at $2 each. How much money did it make?"
    assert len(info["prompt"]) == 18
    assert info["provenance"]["tasks_file"]["path"] == str(path)
    assert env.step("1000 * 2 = 2000 dollars.\nThe answer is 2000")[1] == 1.0
    assert [p.answer for p in gsm8k_data.load_file(path)] == ["5", "2,000", "-3"]


def test_gsm8k_tasks_file_of_another_shape_is_refused(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "no answer"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: a GSM8K row"):
        gsm8k_data.load_file(bad)


def test_gsm8k_prompt_file_is_derived_from_the_upstream_script_with_ast():
    source = (FIXTURES / "synthetic_gsm8k_script.py").read_bytes()
    derived = json.loads(gsm8k_data.prompt_from_script(source))
    assert derived["system_message"] == "Be brief."
    assert derived["instruction"] == "Solve this {carefully}. "
    assert derived["agent_ack"] == "Sure."
    assert derived["final_user_turn_format"] == "\nProblem: {question}"
    assert derived["max_new_tokens"] == 300
    assert [s["question"] for s in derived["shots"]] == [
        "Question: A box holds 12 eggs. How many eggs are in 2 boxes?",
        "Question: Tom has 3 red pens and 4 blue pens. How many pens does he have?"]
    assert derived["shots"][1]["answer"] == "Let's think step by step.\n3 + 4 = 7.\nThe answer is 7"
    strings = {**derived, "shots": derived["shots"]}
    from agent_gym.envs.gsm8k.prompt import chat, observation
    assert len(chat(strings)) == 6 and observation("1+1?", strings) == "\nProblem: 1+1?"
    with pytest.raises(ValueError, match="shots"):
        gsm8k_data.prompt_from_script(b"Q1 = 'x'\n")


def test_gsm8k_prompt_file_is_declared_for_fetch_from_a_pinned_commit():
    (entry,) = [f for f in gsm8k_data.DATASET.files if f.path == "agenttuning_prompt.json"]
    assert gsm8k_data.AGENTTUNING_COMMIT in entry.url and entry.url.endswith("eval_general/eval_gsm8k_tgi.py")
    assert len(entry.sha256) == 64
    module, _, fn = entry.derive.partition(":")
    assert module == "agent_gym.envs.gsm8k.data" and getattr(gsm8k_data, fn) is gsm8k_data.prompt_from_script


# ------------------------------------------------------------------------------------ MMLU
def test_mmlu_prompt_is_the_papers_five_shot_chat():
    need_data("mmlu")
    env = gym.make(MMLU)
    obs, info = env.reset(options={"task": "high_school_us_history/0"})
    task = env.unwrapped.task
    prompt = info["prompt"]
    assert prompt[0] == {"role": "system", "content": (
        "The following is a multiple-choice question about high school us history. Please choose the most "
        "suitable one among A, B, C and D as the answer to this question.")}
    assert len(prompt) == 11 and [m["role"] for m in prompt[1:]] == ["user", "assistant"] * 5
    shots = mmlu_data.shots_by_subject()["high_school_us_history"]
    for shot, user, agent in zip(shots, prompt[1::2], prompt[2::2]):
        assert user["content"] == f"Question: {shot.question}\n" + "\n".join(
            f"{c}. {choice}" for c, choice in zip("ABCD", shot.choices))
        assert agent["content"] == f"Answer: {shot.answer}"
    assert obs == (f"Question: {task.question}\nA. {task.choices[0]}\nB. {task.choices[1]}\n"
                   f"C. {task.choices[2]}\nD. {task.choices[3]}").rstrip()
    assert info["scoring"] == "logprobs" and info["max_new_tokens"] == 1 and info["temperature"] == 0.0
    assert info["choice_scoring"] == {"choices": ["A", "B", "C", "D"], "continuations": [" A", " B", " C", " D"],
                                      "answer_prefix": " Answer: "}


def test_mmlu_generation_mode_asks_for_text_and_records_it():
    need_data("mmlu")
    env = gym.make(MMLU, scoring="generation")
    _, info = env.reset(options={"task": "anatomy/3"})
    assert "choice_scoring" not in info and info["scoring"] == "generation" and info["max_new_tokens"] == 32
    assert env.unwrapped.options() == {"scoring": "generation", "shots": 5}
    assert gym.make(MMLU).unwrapped.options() == type(env.unwrapped).paper_options
    assert info["provenance"]["options"] == {"scoring": "generation", "shots": 5}
    assert env.unwrapped.engine_info() == {}
    answer = env.unwrapped.task.answer
    _, reward, terminated, _, info = env.step(f"Let me think.\n**Answer:** {answer}")
    assert reward == 1.0 and terminated and info["end_reason"] == "answered" and info["predicted"] == answer


def test_mmlu_dev_questions_are_never_their_own_shot_and_shots_can_be_fewer():
    need_data("mmlu")
    env = gym.make(MMLU, split="dev")
    obs, info = env.reset(options={"task": "anatomy/0"})
    question = env.unwrapped.task.question
    assert question in obs and len(info["prompt"]) == 9
    assert not any(question in m["content"] for m in info["prompt"])
    _, info = gym.make(MMLU, shots=0).reset(options={"task": "anatomy/0"})
    assert [m["role"] for m in info["prompt"]] == ["system"]
    with pytest.raises(ValueError, match="shots must be 0..5"):
        gym.make(MMLU, shots=6)


def test_mmlu_unreadable_reply_is_an_invalid_action():
    need_data("mmlu")
    env = gym.make(MMLU)
    env.reset(options={"task": "anatomy/3"})
    _, reward, _, _, info = env.step("A good question; I am not sure.")
    assert reward == 0.0 and info["status"] == "invalid_action" and info["end_reason"] == "invalid_action"


@pytest.mark.parametrize("reply,expected", [
    # committed answers in markdown and LaTeX
    ("The answer is **B**", "B"), ("**Answer:** B", "B"), ("Answer: **B**", "B"), ("**B**", "B"),
    ("\\boxed{B}", "B"), ("$\\boxed{\\text{B}}$", "B"),
    # the last explicit "answer is X" / "Answer: X" wins; an article "A" and lower-case letters never count
    ("A good way to see it: the answer is B.", "B"), ("The answer is B; answer a is wrong.", "B"),
    ("The answer is A. No wait, the answer is (C).", "C"), ("Answer: c", None), ("the answer is a", None),
    ("A cat.", None), ("a cat", None), ("I think it is", None), ("", None),
    # a reply that is, or opens with, a marked choice
    ("B", "B"), ("(C) because ...", "C"), ("D. Spinal", "D"), ("The answer is A.", "A"), ("Answer: D", "D"),
    ("B\n\nThe others are wrong.", "B"), ("Reasoning first.\n(D)", "D"), ("The correct answer is option C.", "C"),
])
def test_mmlu_parser_reads_a_committed_answer_and_nothing_else(reply, expected):
    assert parse_letter(reply) == expected


def test_mmlu_plays_a_users_tasks_file_with_its_dev_shots():
    path = FIXTURES / "mmlu" / "test" / "widgetry_test.csv"
    env = gym.make(MMLU, tasks_file=path)
    assert env.unwrapped.split == "custom"
    assert [t.id for t in env.unwrapped.tasks()] == ["widgetry/0", "widgetry/1", "widgetry/2"]
    obs, info = env.reset(options={"task": "widgetry/2"})
    assert obs == "Question: Which is largest?\nA. 1\nB. 10\nC. 100\nD. 1000"  # upstream's rstrip
    assert info["prompt"][0]["content"].startswith("The following is a multiple-choice question about widgetry.")
    assert [m["content"] for m in info["prompt"][1:3]] == ["Question: Dev one?\nA. a\nB. b\nC. c\nD. d", "Answer: A"]
    assert len(info["prompt"]) == 11  # 5 of the 6 dev rows beside it
    assert info["provenance"]["tasks_file"]["path"] == str(path)
    assert env.step("Answer: D")[1] == 1.0
    (q,) = [t for t in mmlu_data.load_file(path) if t.id == "widgetry/1"]
    assert q.question == 'A widget, said to be "round", has how many sides?' and q.answer == "A"


def test_mmlu_tasks_file_of_another_shape_is_refused(tmp_path):
    bad = tmp_path / "x_test.csv"
    bad.write_text("Q?,a,b,c,d,E\n")
    with pytest.raises(ValueError, match="row 0 has answer 'E'"):
        mmlu_data.load_file(bad)
    bad.write_text("Q?,a,b,c,A\n")
    with pytest.raises(ValueError, match="row 0 has 5 fields"):
        mmlu_data.load_file(bad)


def test_mmlu_categories_are_the_papers_four():
    """eval_mmlu_hf.py's TASK_NAME_MAPPING: Hendrycks' grouping, but anatomy counts as STEM."""
    assert len(mmlu_data.CATEGORY_OF) == 57
    assert {c: len(s) for c, s in mmlu_data.CATEGORIES.items()} == {
        "STEM": 19, "humanities": 13, "social sciences": 12, "other": 13}
    assert mmlu_data.CATEGORY_OF["anatomy"] == "STEM" and mmlu_data.CATEGORY_OF["virology"] == "other"


# ------------------------------------------------------- the prompt string the paper's harness built
def fastchat_llama2(system: str, turns: list[str]) -> str:
    """FastChat 0.2.31's ``llama-2`` conversation (re-derived here from its rules, not imported):
    ``system_template`` "[INST] <<SYS>>\\n{system}\\n<</SYS>>\\n\\n" (else "[INST] "); the first message
    then " "; later ones "<role> <message>" and sep " " after a user turn, sep2 " </s><s>" after an
    agent turn; the open agent turn (``None``) adds its role "[/INST]". Messages are not stripped."""
    ret = f"[INST] <<SYS>>\n{system}\n<</SYS>>\n\n" if system else "[INST] "
    roles, seps = ("[INST]", "[/INST]"), (" ", " </s><s>")
    for i, message in enumerate([*turns, None]):
        if message:
            ret += message + " " if i == 0 else roles[i % 2] + " " + message + seps[i % 2]
        else:
            ret += roles[i % 2]
    return ret


class RecordingBackend:
    """A backend that records the prompt strings it is sent."""

    model_name, context_length, can_score = "agentlm-7b", None, True

    def __init__(self):
        self.prompts: list[str] = []

    def generate(self, prompt, **_):
        from agent_gym.policies.backend import Generation

        self.prompts.append(prompt)
        return Generation("The answer is 18")

    def choice_logprobs(self, prompt, continuations):
        self.prompts.append(prompt)
        return [-3.0, -0.5, -2.0, -1.0]

    def chat_template(self):
        return None


def test_gsm8k_prompt_string_is_the_papers():
    need_data("gsm8k")
    from agent_gym.policies.react import ReActPolicy

    env = gym.make(GSM8K)
    obs, info = env.reset(options={"task": 0})
    backend = RecordingBackend()
    policy = ReActPolicy(backend, chat_template="llama2")
    policy.reset(info)
    assert policy.act(obs, info) == "The answer is 18" and info["strip_messages"] is False
    strings = gsm8k_data.paper_prompt()
    turns = [strings["instruction"], strings["agent_ack"]]
    for shot in strings["shots"]:
        turns += [shot["question"], shot["answer"]]
    turns.append(f"\nQuestion: {env.unwrapped.task.question}")
    assert backend.prompts == [fastchat_llama2("You are a helpful, respectful and honest assistant.", turns)]
    assert backend.prompts[0].startswith("[INST] <<SYS>>\nYou are a helpful, respectful and honest assistant.\n"
                                         "<</SYS>>\n\nPlease provide a detailed step-by-step solution for the "
                                         "following grade school math question.  [/INST] Ok. </s><s>[INST] Question: ")
    assert backend.prompts[0].endswith("at the farmers' market? [/INST]")


def test_mmlu_prompt_string_is_the_papers_for_every_subject():
    need_data("mmlu")
    from agent_gym.policies.react import ReActPolicy

    env = gym.make(MMLU)
    for subject in sorted(mmlu_data.CATEGORY_OF):
        obs, info = env.reset(options={"task": f"{subject}/0"})
        assert info["strip_messages"] is False
        task = env.unwrapped.task
        backend = RecordingBackend()
        policy = ReActPolicy(backend, chat_template="llama2")
        policy.reset(info)
        assert policy.act(obs, info) == "Answer: B"  # the best of the recorded log-probs
        system = (f"The following is a multiple-choice question about {subject.replace('_', ' ')}. Please choose "
                  "the most suitable one among A, B, C and D as the answer to this question.")
        turns = []
        for shot in mmlu_data.shots_by_subject()[subject]:
            turns.append(f"Question: {shot.question}\n" + "\n".join(f"{c}. {x}" for c, x in zip("ABCD", shot.choices)))
            turns.append(f"Answer: {shot.answer}")
        question = "Question: " + task.question + "".join(f"\n{c}. {x}" for c, x in zip("ABCD", task.choices))
        turns.append((question + "\nAnswer:").split("Answer:")[0].rstrip())
        assert backend.prompts == [fastchat_llama2(system, turns) + " Answer: "], subject
        assert backend.prompts[0].endswith(f"D. {task.choices[3].rstrip()} [/INST] Answer: ")


# ----------------------------------------------------------------------- gold replays, metrics
@pytest.mark.parametrize("env_id,dataset,n,env_kwargs", [
    (GSM8K, "gsm8k", 1319, {"extraction": "robust"}),
    (GSM8K, "gsm8k", 1319, {"extraction": "paper"}),
    (MMLU, "mmlu", 14042, {}),
])
def test_gold_replay_scores_full_marks_on_the_whole_test_set(tmp_path, env_id, dataset, n, env_kwargs):
    need_data(dataset)
    out = tmp_path / "gold.jsonl"
    result = rollout(plan([env_id]), "expert", output=out, concurrency=4, progress=False, env_kwargs=env_kwargs)
    assert len(result.trajectories) == n
    # upstream's digit runs cannot read a negative number: no reply scores on the two problems whose gold is -10 and -3
    unreachable = {"489", "1113"} if env_kwargs.get("extraction") == "paper" else set()
    assert {t.task_id for t in result.trajectories if t.score != 1.0} == unreachable
    assert all(t.status == "completed" for t in result.trajectories)
    assert sum(t.total_reward for t in result.trajectories) == n - len(unreachable)
    (row,) = report_rows([out])
    assert row["episodes"] == n and row["score"] == (n - len(unreachable)) / n and row["errors"] == 0
    if not unreachable:
        assert "100.0" in format_table([row])
    if dataset == "mmlu":
        subjects = [k for k in row if k.startswith("subject/")]
        assert len(subjects) == 57 and all(row[k] == 1.0 for k in subjects)
        assert all(row[f"category/{c}"] == 1.0 for c in ("STEM", "humanities", "social sciences", "other"))


def _wrong_gsm8k(info):
    return ["The answer is 987654321"]  # no gold is that, in either extraction


def _wrong_mmlu(env):
    letters = "ABCD"
    return lambda info: [letters[(letters.index(env.unwrapped.task.answer) + 1) % 4]]


def test_wrong_answers_score_zero(tmp_path):
    need_data("gsm8k")
    need_data("mmlu")
    out = tmp_path / "wrong.jsonl"
    rollout(plan([GSM8K], episodes=100), lambda env, **_: ReplayPolicy(_wrong_gsm8k),
            output=out, progress=False)
    rollout(plan([MMLU], episodes=300, sample=True),
            lambda env, **_: ReplayPolicy(_wrong_mmlu(env)), output=out, concurrency=3, progress=False)
    rows = {r["env"]: r for r in report_rows([out])}
    assert rows[GSM8K]["episodes"] == 100 and rows[GSM8K]["score"] == 0.0
    assert rows[MMLU]["episodes"] == 300 and rows[MMLU]["score"] == 0.0


def test_mmlu_metric_is_micro_overall_per_category_and_per_subject(tmp_path):
    need_data("mmlu")
    # right on abstract_algebra (STEM, 100 q) and philosophy (humanities, 311 q), wrong on anatomy (STEM, 135 q)
    # and virology (other, 166 q)
    right = {"abstract_algebra", "philosophy"}
    tasks = ([f"abstract_algebra/{i}" for i in range(100)] + [f"anatomy/{i}" for i in range(135)]
             + [f"philosophy/{i}" for i in range(311)] + [f"virology/{i}" for i in range(166)])

    def policy(env, **_):
        def replies(info):
            task = env.unwrapped.task
            return [task.answer if task.subject in right else _wrong_mmlu(env)(info)[0]]
        return ReplayPolicy(replies)

    out = tmp_path / "mix.jsonl"
    rollout(plan([MMLU], tasks=tasks), policy, output=out, progress=False)
    (row,) = report_rows([out])
    assert row["score"] == pytest.approx(411 / 712)
    assert row["subject_macro_avg"] == pytest.approx(2 / 4)
    assert row["category/STEM"] == pytest.approx(100 / 235)  # micro within the category, as cal_mmlu
    assert row["category/humanities"] == 1.0 and row["category/other"] == 0.0
    assert "category/social sciences" not in row
    assert row["subject/abstract_algebra"] == 1.0 and row["subject/anatomy"] == 0.0
    assert "category/STEM: 42.6" in format_table([row], details=True)


# --------------------------------------------------------------------------- number helpers
@pytest.mark.parametrize("reply,expected", [
    ("She makes $18 every day.", "18"), ("1,250.50 dollars.", "1250.50"), ("The answer is -3.", "-3"),
    ("#### 72", "72"), ("no digits", None), ("", None), ("costs .5", ".5"), ("20-8", "8"),
])
def test_gsm8k_robust_takes_the_last_number(reply, expected):
    assert last_number(reply) == expected


def test_gsm8k_compares_numbers_exactly():
    assert same_number("18.00", "18") and same_number("1250", "1,250")
    assert not same_number("18.5", "18") and not same_number(None, "18") and not same_number("-", "18")


def test_mmlu_system_prompt_in_info_is_the_subjects_system_message():
    need_data("mmlu")
    env = gym.make(MMLU)
    _, info = env.reset(options={"task": "anatomy/0"})
    assert info["system_prompt"] == info["prompt"][0]["content"]
    assert info["system_prompt"].startswith("The following is a multiple-choice question about anatomy.")
