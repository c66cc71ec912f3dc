"""The exact first prompt our ``llama2`` rendering sends, against the string the paper's harness builds.

The paper's harnesses all render with FastChat 0.2.31's ``llama-2`` conversation; its rule
(``Conversation.get_prompt``, ``SeparatorStyle.LLAMA2``, template ``llama-2``) is re-derived here, not
imported:

* start with ``"[INST] <<SYS>>\\n{system}\\n<</SYS>>\\n\\n"`` when the system message is non-empty, else ``"[INST] "``;
* message ``i`` (roles alternate by position: ``[INST]``, ``[/INST]``): the first is written as
  ``message + " "``; later ones as ``tag + " " + message + sep`` with ``sep`` ``" "`` after a user turn
  and ``" </s><s>"`` after an assistant turn; the final empty assistant turn is the bare tag ``[/INST]``.

What each harness feeds it:

* AgentBench (held-in DB, OS, ALFWorld; ``AgentBench.old/src/agents/tgi_client.py``): no system
  message; every history message ``strip()``-ed.
* GSM8K (``eval_general/eval_gsm8k_tgi.py`` ``doc_to_text``): system "You are a helpful, respectful and
  honest assistant.", the instruction, "Ok.", 8 worked question / answer turns, then
  ``"\\nQuestion: " + question``; nothing stripped.
* MMLU (``eval_general/eval_mmlu_hf.py``): system "The following is a multiple-choice question about
  <subject>. ...", 5 dev shots as ``Question: ...\\nA. ...`` / ``Answer: X``, the test question cut at
  ``"Answer:"`` and right-stripped; the scored string is that prompt plus ``" Answer: "``.
  Rows are read as ``pandas.read_csv(header=None)`` read them; the chosen rows hold no cell that
  pandas would turn into a number or NaN, so the ``csv`` module reads the same text.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import gymnasium as gym
import pytest

import agent_gym
from agent_gym.policies.backend import Generation
from agent_gym.policies.react import ReActPolicy

gym.register_envs(agent_gym)
LLAMA2_SYSTEM = "You are a helpful, respectful and honest assistant."


def fastchat_llama2(system: str, messages: list[str | None]) -> str:
    """FastChat 0.2.31 ``get_conversation_template("llama-2")`` + ``append_message`` ... + ``get_prompt()``."""
    seps = (" ", " </s><s>")
    roles = ("[INST]", "[/INST]")
    ret = f"[INST] <<SYS>>\n{system}\n<</SYS>>\n\n" if system else "[INST] "
    for i, message in enumerate(messages):
        tag = roles[i % 2]
        if message:
            ret += message + " " if i == 0 else tag + " " + message + seps[i % 2]
        else:
            ret += tag
    return ret


class PromptCapture:
    """A backend that keeps the prompts it is given (the strings are what this test is about).

    Named as AgentLM so the policy picks its default template for AgentLM, ``llama2``, as the paper did.
    """

    model_name = "AgentLM-7b"
    context_length = 4096
    can_score = True
    kind = "capture"

    def __init__(self):
        self.prompts: list[str] = []

    def chat_template(self):
        return None

    def generate(self, prompt, **settings):
        self.prompts.append(prompt)
        return Generation("", 0, 0)

    def choice_logprobs(self, prompt, continuations):
        self.prompts.append(prompt)
        return [0.0] + [-1.0] * (len(continuations) - 1)


def first_prompt(env_id: str, task, **env_kwargs) -> tuple[str, str, dict]:
    """The string the ReAct policy sends on its first call of the episode, the observation and ``info``."""
    env = gym.make(env_id, **env_kwargs)
    try:
        obs, info = env.reset(seed=0, options={"task": task})
        backend = PromptCapture()
        policy = ReActPolicy(backend)
        assert policy.chat_template == "llama2"
        policy.reset(info)
        policy.act(obs, info)
    finally:
        env.close()
    return backend.prompts[0], obs, info


def data_dir(name: str) -> Path:
    from agent_gym.data import data_dir_path

    return Path(data_dir_path()) / name


# --------------------------------------------------------------------------- general tasks (eval_general)
def test_gsm8k_first_prompt_is_doc_to_text(require_data):
    require_data("gsm8k")
    strings = json.loads((data_dir("gsm8k") / "agenttuning_prompt.json").read_text(encoding="utf-8"))
    with open(data_dir("gsm8k") / "test.jsonl", encoding="utf-8") as fh:
        doc = json.loads(fh.readline())
    turns: list[str | None] = [strings["instruction"], strings["agent_ack"]]
    for shot in strings["shots"]:
        turns += [shot["question"], shot["answer"]] if isinstance(shot, dict) else list(shot)
    turns += ["\nQuestion: " + doc["question"], None]
    paper = fastchat_llama2(strings["system_message"], turns)
    assert strings["system_message"] == LLAMA2_SYSTEM and len(turns) == 20
    ours, _, _ = first_prompt("AgentTuning/GSM8K-v0", 0)
    assert ours == paper
    assert "grade school math question.  [/INST] Ok. </s><s>" in ours  # the instruction's own trailing space
    assert ours.endswith(f"[INST] \nQuestion: {doc['question']} [/INST]")


def _csv_rows(path: Path) -> list[list[str]]:
    """Rows as in Hendrycks' ``data.tar`` (no header, answer a letter); the HF dump we may hold has a
    ``question,choice0,...`` header and answers 0-3, so those are read back into that form."""
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    if rows and rows[0][:2] == ["question", "choice0"]:
        rows = [[*row[:5], "ABCD"[int(row[5])]] for row in rows[1:]]
    return rows


def test_mmlu_scored_prompt_is_the_papers_full_prompt(require_data):
    require_data("mmlu")
    subject = "anatomy"
    dev = _csv_rows(data_dir("mmlu") / "dev" / f"{subject}_dev.csv")[:5]
    test = _csv_rows(data_dir("mmlu") / "test" / f"{subject}_test.csv")[0]
    pandas_would_change = {"", "NA", "N/A", "NaN", "nan", "None", "null", "NULL", "#N/A", "n/a", "<NA>"}
    for row in [*dev, test]:  # text pandas keeps as it is (see the module docstring)
        assert not set(row) & pandas_would_change
        assert not any(cell.strip().lstrip("-").replace(".", "", 1).isdigit() for cell in row[1:5])
    letters = "ABCD"
    turns: list[str | None] = []
    for q, *choices, answer in dev:
        turns += [f"Question: {q}\n" + "\n".join(f"{c}. {x}" for c, x in zip(letters, choices)), "Answer: " + answer]
    question = f"Question: {test[0]}" + "".join(f"\n{c}. {x}" for c, x in zip(letters, test[1:5])) + "\nAnswer:"
    turns += [question.split("Answer:")[0].rstrip(), None]
    system = (f"The following is a multiple-choice question about {subject}. Please choose the most suitable one "
              f"among A, B, C and D as the answer to this question.")
    paper = fastchat_llama2(system, turns) + " Answer: "
    ours, _, info = first_prompt("AgentTuning/MMLU-v0", f"{subject}/0")
    assert info["choice_scoring"]["answer_prefix"] == " Answer: "
    assert ours == paper


# --------------------------------------------------------------------------- held-in tasks (AgentBench)
def agentbench_prompt(info: dict, observation: str) -> str:
    """``TGIAgent.inference`` on the episode's history: no system message, each message stripped."""
    history = [m["content"] for m in info.get("prompt") or []] + [observation]
    return fastchat_llama2("", [m.strip() for m in history] + [None])


@pytest.mark.parametrize("env_id, data, task, kwargs", [
    ("AgentTuning/DB-v0", "dbbench", 0, {}),
    ("AgentTuning/OS-v0", "agentbench_os", 0, {}),
    ("AgentTuning/Alfworld-v0", "alfworld", 0, {}),
])
def test_held_in_first_prompt_is_agentbenchs(require_data, env_id, data, task, kwargs):
    require_data(data)
    ours, obs, info = first_prompt(env_id, task, **kwargs)
    assert info["system_prompt"] == ""  # AgentBench's harness sent no system message
    assert ours == agentbench_prompt(info, obs)
    assert ours.startswith("[INST] ") and "<<SYS>>" not in ours and ours.endswith(" [/INST]")
