"""AgentTuning's ScienceWorld conversation and its reply handling, as pure functions.

Mirrors ``eval_heldout/science-world/eval.py`` and ``eval_utils.py`` (findValidActionNew,
is_action_failed, the loop check): a reply starting with ``Think:`` is answered "OK." without
touching the engine; any other reply loses its ``Action:`` tags and is mapped onto the valid
action sharing the most words with it, so the engine never sees free text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from agent_gym.core import Message

INIT_PROMPT = (
    "Interact with a household to solve a task. Each turn, you can choose from one of the following options:\n"
    "1. Think: You could think step-by-step to tell your reasoning and planning to solve the task, which will "
    "help you handle the task easier.\n"
    "2. Action: You could interact with the environment freely to solve the task, but remember to refer to your "
    "thought and act accordingly.\n"
    'Prepend your action with "Think: " or "Action: ", e.g. "Think: Now I have picked up the object. Next, I need '
    'to move to the location of the answer box." or "Action: go to kitchen".\n'
    "Exactly only one option could be chosen in a turn."
)
NEW_TASK = "The preceding task has ended. Now, I will start a new task.\n"
THINK_OBSERVATION = "OK."
TASK_DESCRIPTION_PREFIX = 18  # env.taskdescription()[18:] drops "Task Description:\n"

ROOMS = ("hallway", "greenhouse", "green house", "kitchen", "bathroom", "outside", "workshop", "art studio",
         "foundry", "bedroom", "living room")
_OPEN_DOORS = tuple(f"open door to {room}" for room in ROOMS)
_BAD_FOCUS = frozenset(f"focus on {x}" for x in ("agent", "air", *ROOMS))
_FOCUS_WORDS = re.compile(r"\b(?:focus|on|in|to)\b", re.IGNORECASE)
_NOT_ACTION_CHARS = re.compile(r"[^A-Za-z0-9 ]+")
FAILED_ACTION = "No known action matches that input."
MAX_FAILED_ACTIONS = 10
LOOP_WINDOW = 5


def clean(text: str) -> str:
    """Observations go into the conversation on one line: newlines and tabs become spaces."""
    return text.replace("\n", " ").replace("\t", " ")


def messages(few_shot: Sequence[str] | None) -> list[Message]:
    """The chat before the first observation: the instruction, "Ok.", then the task's one-shot example."""
    chat = [{"role": "user", "content": INIT_PROMPT}, {"role": "assistant", "content": "Ok."}]
    for i, turn in enumerate(few_shot or ()):
        chat.append({"role": "user" if i % 2 == 0 else "assistant", "content": turn})
    return chat


def first_observation(look: str, task_description: str, after_example: bool) -> str:
    """The first user turn: the room as "look around" shows it, then the task."""
    text = clean(look) + "\n" + task_description[TASK_DESCRIPTION_PREFIX:]
    return (NEW_TASK + text).strip() if after_example else text.strip()


def thought(reply: str) -> bool:
    """A ``Think:`` reply changes nothing in the world."""
    return reply.startswith("Think:")


def predicted_action(reply: str) -> str:
    """The action text of a reply: every ``Action:`` removed, whitespace stripped (as upstream)."""
    return reply.replace("Action:", "").strip()


def candidate_actions(valid: Iterable[str], look: str, inventory: str, recent: Sequence[str]) -> list[str]:
    """The actions a prediction may be mapped to (findValidActionNew's filtered set).

    The engine's valid actions plus "open door to <room>", less focusing on the agent, air or a
    room, less the last three entries of ``recent`` (upstream keeps "(action, obs)" strings there,
    so in practice only the initial "look around" is removed, for the first three replies), less
    door actions other than opening, less "focus on X" whose words do not all appear in the room
    description or the inventory. Sorted by length, ties in the engine's order, which fixes the
    order upstream left to Python's set hashing.
    """
    inventory = inventory.lower()
    seen = set(recent[-3:]) | _BAD_FOCUS
    scope = look + " " + inventory
    out: list[str] = []
    for action in [*valid, *_OPEN_DOORS]:
        if action in seen:
            continue
        seen.add(action)
        if "door" in action and "open" not in action:
            continue
        if action.startswith("focus on") and not all(w in scope for w in _FOCUS_WORDS.sub("", action).split(" ")):
            continue
        out.append(action)
    out.sort(key=len)
    return out


def map_action(prediction: str, candidates: Sequence[str]) -> tuple[str, bool]:
    """The action to execute for ``prediction`` and whether it was valid as written.

    A candidate equal to the prediction (with "green house" read as "greenhouse") is taken as is;
    otherwise the shortest candidate sharing the most distinct words with it; with no shared
    word the prediction itself. The fallback is stripped of characters other than letters,
    digits and spaces.
    """
    exact = prediction.replace("green house", "greenhouse").strip()
    if exact in candidates:
        return exact, True
    words = set(prediction.split(" "))
    best, best_overlap = prediction, 0
    for action in candidates:
        overlap = len(words.intersection(action.split(" ")))
        if overlap > best_overlap:
            best, best_overlap = action, overlap
    return _NOT_ACTION_CHARS.sub("", best), False


def action_failed(observation: str) -> bool:
    """Upstream's test for a failed action (crude on purpose: any "not" counts)."""
    return observation == FAILED_ACTION or "can't" in observation or "not" in observation or "doesn't" in observation


def history_entry(action: str, observation: str) -> str:
    """How upstream records a turn in ``recent_actions``."""
    return f"({action}, {observation})"


def in_loop(recent: Sequence[str]) -> bool:
    """Upstream's loop stop: the last five turns hold exactly two distinct entries."""
    return len(recent) >= LOOP_WINDOW and len(set(recent[-LOOP_WINDOW:])) == 2
