"""AgentBench's ALFWorld prompt and reply handling (AgentBench.old ``tasks/alfworld``), as pure functions.

The chat: AgentBench's instruction, the agent's "OK", then the one-shot ReAct example of the game's
task type (read from AgentBench's ``alfworld_multiturn_react.json`` at run time), then
``"Here is your task. "`` + the game's intro without TextWorld's banner. A reply's action is the
text after ``ACTION:``, lower-cased, first line; one that is not an admissible command is mapped
to the admissible command with the highest sentence BLEU (NLTK, smoothing method 4) when that
BLEU is above 0.01, else sent as it is (and the engine answers "Nothing happens.").

A reply too long for any command to reach that BLEU is sent as it is without scoring it
(:func:`bleu_cannot_pass`): the same result, but a 64 KiB reply no longer holds a step for seconds.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence

INSTRUCTION = (
    "Interact with a household to solve a task. Imagine you are an intelligent agent in a household environment "
    "and your target is to perform actions to complete the task goal. At the beginning of your interactions, you "
    "will be given the detailed description of the current environment and your goal to accomplish. For each of "
    "your turn, you will be given a list of actions which you can choose one to perform in this turn. You should "
    "choose from two actions: \"THOUGHT\" or \"ACTION\". If you choose \"THOUGHT\", you should first think about "
    "the current condition and plan for your future actions, and then output your action in this turn. Your "
    "output must strictly follow this format:\"THOUGHT: your thoughts.\n ACTION: your next action\n\"; If you "
    "choose \"ACTION\", you should directly output the action in this turn. Your output must strictly follow "
    "this format:\"ACTION: your next action\n\". After your each turn, the environment will give you immediate "
    "feedback based on which you plan your next few steps. if the envrionment output \"Nothing happened\", that "
    "means the previous action is invalid and you should try more options.\n Reminder: \n1. the action must be "
    "chosen from the given available actions. Any actions except provided available actions will be regarded as "
    "illegal. \n2. Think when necessary, try to act directly more in the process.\n\n"
)
AGENT_OK = "OK. I'll follow your instructions and try my best to solve the task."
EXAMPLE_PREFIX = "Here is one example.\n"
TASK_PREFIX = "Here is your task. "
#: Game-name prefix -> key of the one-shot example, tried in this order (AgentBench's ``prefixes``).
EXAMPLE_KEYS = (
    ("pick_and_place", "put"),
    ("pick_clean_then_place", "clean"),
    ("pick_heat_then_place", "heat"),
    ("pick_cool_then_place", "cool"),
    ("look_at_obj", "examine"),
    ("pick_two_obj", "puttwo"),
)
#: Replies in a row that, all identical, end the episode as a failure.
REPEAT_LIMIT = 3
BLEU_THRESHOLD = 0.01


def example_key(game_name: str) -> str:
    """The one-shot example's key for a game named ``<task dir>/<trial dir>``."""
    for prefix, key in EXAMPLE_KEYS:
        if game_name.startswith(prefix):
            return key
    raise ValueError(f"no AgentBench example for ALFWorld game {game_name!r}: its folder must start with one of "
                     f"{[p for p, _ in EXAMPLE_KEYS]}")


def messages(examples: dict[str, Sequence[str]], game_name: str) -> list[dict[str, str]]:
    """The chat before the task: instruction, "OK", and the one-shot example as alternating turns."""
    shot = list(examples[example_key(game_name)])
    shot[0] = EXAMPLE_PREFIX + shot[0]
    chat = [{"role": "user", "content": INSTRUCTION}, {"role": "assistant", "content": AGENT_OK}]
    roles = ("user", "assistant")
    chat += [{"role": roles[i % 2], "content": text} for i, text in enumerate(shot)]
    return chat


def first_observation(intro: str) -> str:
    """``"Here is your task. "`` + the intro less its first paragraph (TextWorld's welcome banner)."""
    return TASK_PREFIX + "\n".join(intro.split("\n\n")[1:])


def observation(feedback: str) -> str:
    """The engine's feedback as AgentBench shows it (``process_ob``: no "You arrive at loc N. ")."""
    if feedback.startswith("You arrive at loc "):
        feedback = feedback[feedback.find(". ") + 2:]
    return feedback


def parse_action(reply: str) -> str:
    """The command in a reply: after ``ACTION:`` (else the whole reply), stripped, lower-cased, first line."""
    match = re.search("ACTION:(.*)\n", reply) or re.search("ACTION:(.*)", reply)
    text = match.group(1) if match else reply
    return text.strip().lower().split("\n")[0]


def bleu(reference: str, candidate: str) -> float:
    """Sentence BLEU of ``candidate`` against one reference, whitespace tokens, smoothing method 4."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    with warnings.catch_warnings():  # NLTK warns about every n-gram order without overlap
        warnings.simplefilter("ignore")
        return sentence_bleu([reference.split()], candidate.split(), smoothing_function=SmoothingFunction().method4)


def bleu_cannot_pass(candidate_tokens: int, reference_tokens: int) -> bool:
    """Whether a candidate of ``candidate_tokens`` words scores at most :data:`BLEU_THRESHOLD`
    against every reference of at most ``reference_tokens`` words, whatever its words.

    Sentence BLEU is at most its largest n-gram precision (the brevity penalty is at most 1 and the
    weights add up to 1). A precision's numerator is at most the reference's n-gram count, or, with
    no match, smoothing method 4's stand-in: ``ln(c) / (2^j k)`` with ``k = 5``, ``j >= 1`` (NLTK
    3.9), ``n - 1 + k / ln(c)`` in older NLTK (under 4 once c > 148, and the cutoff is above 400); its
    denominator is the candidate's n-gram count, ``c - n + 1 >= c - 3`` for n <= 4. So
    BLEU <= max(r, 4, ln(c) / 10) / (c - 3), at most the threshold from about 100 r words on.
    """
    c = candidate_tokens
    return c > 3 and max(reference_tokens, 4, math.log(c) / 10) / (c - 3) <= BLEU_THRESHOLD


def to_command(action: str, admissible: Sequence[str]) -> str:
    """``action`` if admissible, else the closest admissible command by BLEU (> 0.01), else ``action``."""
    if not admissible or action in admissible:
        return action
    if bleu_cannot_pass(len(action.split()), max(len(choice.split()) for choice in admissible)):
        return action  # scoring it could take seconds (NLTK counts every n-gram) and change nothing
    try:
        scores = [bleu(choice, action) for choice in admissible]
    except Exception:  # NLTK refuses some degenerate inputs; upstream then sends the action as is
        return action
    best = max(range(len(scores)), key=scores.__getitem__)  # first of the best, like numpy.argmax
    return admissible[best] if scores[best] > BLEU_THRESHOLD else action


def repeated(replies: Sequence[str]) -> bool:
    """AgentBench's loop check: more than 3 replies so far and the last 3 are identical."""
    return len(replies) > REPEAT_LIMIT and len(set(replies[-REPEAT_LIMIT:])) == 1


def expert_reply(command: str) -> str:
    return f"ACTION: {command}\n"
