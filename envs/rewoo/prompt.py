"""ReWOO's planner / solver prompts, plan parsing and the deterministic scorer (AgentTuning ``eval_heldout/rewoo``:
``nodes/Planner.py``, ``nodes/Solver.py``, ``algos/PWS.py``, ``utils/Evaluator.py``). Pure functions.

Planner prompt: ``prefix + tool list + few-shot + suffix + question + "\\n"`` (one user turn; upstream wrapped it
in the Llama-2 chat template with the short default system message). The plan's ``Plan:`` lines and
``#E<d> = Tool[input]`` lines are read as ``PWS._parse_plans`` / ``_parse_planner_evidences`` read them, quirks
included: an ``#E`` name longer than 3 characters (``#E10``) gets "No evidence found"; a ``#E`` line without ``=``
makes upstream's run fail (:class:`PlanError`; upstream's answer is then ``"nan"``). Solver prompt:
``prefix + question + "\\n" + worker log + suffix + question + "\\n"``, the log holding each ``Plan:`` line and
the evidence of the ``#E`` with its number (a plan without one fails upstream too).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence

#: The line that opens the planner's tool list (``Planner._generate_worker_prompt``).
TOOLS_HEADER = "Tools can be one of the following:\n"
#: Upstream's answer when a question's run failed (``np.nan`` as text).
FAILED_OUTPUT = "nan"

#: Tool descriptions of our own, used when the data directory has no ``workers.json`` (upstream's text).
OUR_DESCRIPTIONS = {
    "Wikipedia": "Searches an offline Wikipedia and returns the first paragraph of the best matching page. "
                 "Input should be a page title or a search query.",
    "LLM": "A pretrained language model. Use it for general knowledge, common sense and reasoning over "
           "evidence. Input can be any instruction.",
    "Calculator": "Computes an arithmetic expression exactly. Input should be a mathematical expression.",
    "WolframAlpha": "A computational search engine for equations and mathematical questions. "
                    "Input should be an equation or function.",
    "Google": "A web search engine for short facts about a topic. Input should be a search query.",
    "SearchSOTU": "Searches the 2023 State of the Union address and returns the passage that best matches. "
                  "Input should be a search query.",
}
OUR_LLM_INSTRUCTION = "Answer briefly, with no extra words.\n\n{input}"
OUR_JUDGE = ("You are grading an answer to a question against the reference answer.\n"
             "Question: {query}\nReference answer: {answer}\nAnswer to grade: {result}\n"
             "Does the answer to grade mean the same as the reference answer? "
             "Reply with exactly one word: CORRECT or INCORRECT.")


class PlanError(ValueError):
    """A plan upstream's parser could not take (its run failed and the output was ``"nan"``)."""


def tool_list(tools: Sequence[str], descriptions: Mapping[str, str]) -> str:
    return TOOLS_HEADER + "".join(f"{t}[input]: {descriptions.get(t, OUR_DESCRIPTIONS.get(t, ''))}\n"
                                  for t in tools) + "\n"


def planner_prompt(strings: Mapping[str, str], tools: Sequence[str], descriptions: Mapping[str, str],
                   fewshot: str, question: str) -> str:
    return strings["DEFAULT_PREFIX"] + tool_list(tools, descriptions) + fewshot + strings["DEFAULT_SUFFIX"] \
        + question + "\n"


def parse_plans(plan: str) -> list[str]:
    return [line for line in plan.splitlines() if line.startswith("Plan:")]


def parse_evidences(plan: str) -> dict[str, str]:
    """``{"#E1": "Wikipedia[x]", ...}`` in plan order (a repeated name keeps its first place, last value)."""
    out: dict[str, str] = {}
    for line in plan.splitlines():
        if len(line) >= 3 and line.startswith("#") and line[1] == "E" and line[2].isdigit():
            if "=" not in line:
                raise PlanError(f"the plan line {line!r} has no '=' (upstream's parser failed on it)")
            name, call = (part.strip() for part in line.split("=", 1))
            out[name] = call if len(name) == 3 else "No evidence found"
    return out


def split_call(call: str) -> tuple[str, str] | None:
    """``"Tool[input]"`` -> ``("Tool", "input")`` as upstream cut it (the last character dropped, whatever
    it is); ``None`` when the call has no ``[`` (the text itself is the evidence)."""
    if "[" not in call:
        return None
    tool, rest = call.split("[", 1)
    return tool, rest[:-1]


def substitute(tool_input: str, evidences: Mapping[str, str]) -> str:
    """Earlier evidence into ``#E<n>`` references, each wrapped in brackets as upstream did."""
    # each name once (a replace puts in every occurrence): a plan repeating #E1 16,000 times made as many
    # scans of a 9 MB string
    for var in dict.fromkeys(re.findall(r"#E\d+", tool_input)):
        if var in evidences:
            tool_input = tool_input.replace(var, "[" + evidences[var] + "]")
    return tool_input


def worker_log(plans: Sequence[str], evidences: Mapping[str, str]) -> str:
    """The solver's evidence block; :class:`PlanError` when a plan has no ``#E`` of its number."""
    out = ""
    for i, plan in enumerate(plans):
        key = f"#E{i + 1}"
        if key not in evidences:
            raise PlanError(f"plan {i + 1} has no evidence {key} (upstream's solver step failed on it)")
        out += f"{plan}\nEvidence:\n{evidences[key]}\n"
    return out


def solver_prompt(strings: Mapping[str, str], question: str, log: str) -> str:
    return strings["DEFAULT_PREFIX"] + question + "\n" + log + strings["DEFAULT_SUFFIX"] + question + "\n"


# ------------------------------------------------------------------------------- scoring
def normalize_answer(text: str) -> str:
    """SQuAD / HotpotQA normalisation: lower case, punctuation and a/an/the removed, spaces collapsed."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def f1_score(prediction: str, gold: str) -> float:
    """Token F1 after normalisation; a normalised yes / no / noanswer that differs scores 0 (``Evaluator.f1_score``)."""
    pred, truth = normalize_answer(prediction), normalize_answer(gold)
    if (pred in ("yes", "no", "noanswer") or truth in ("yes", "no", "noanswer")) and pred != truth:
        return 0.0
    same = sum((Counter(pred.split()) & Counter(truth.split())).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred.split()), same / len(truth.split())
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, gold: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(gold)


def judged_correct(verdict: str) -> bool:
    """Upstream's reading of the judge: correct iff the reply, stripped, is exactly ``CORRECT``."""
    return verdict.strip() == "CORRECT"
