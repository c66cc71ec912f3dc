"""The expert: the engine's gold action sequence, written so that AgentTuning's protocol keeps it.

Sent as is, a gold path often fails the protocol, not the task: the engine's planner names
objects as its parser accepts them ("focus on thermometer in inventory"), while the reply
mapping only knows the valid-action list's names ("focus on thermometer") and would pick the
word-closest action instead ("focus on orange in inventory": a wrong focus loses the task);
"look around" is refused during the first three replies; repeated waits trip the loop stop.
So the gold path is replayed once on a scratch game, and each gold action becomes the
valid-list action with the same template and objects, preceded by "Think:" turns where the
protocol's recent-action filter or loop stop would otherwise interfere. The loop stop looks at
observations, which vary between the scratch game and the episode (plants grow at random), so
thoughts go wherever five turns would hold at most two distinct commands.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from agent_gym.envs.sciworld import prompt
from agent_gym.envs.sciworld.engine import Game

_MAX_THOUGHTS = 3
# verbs the engine's parser accepts that its template list names otherwise
_ALIASES = (("examine ", "look at "),)


def _slots(template: str, action: str) -> list[list[str]]:
    """Every way ``action`` fills the OBJ slots of ``template`` (a slot may contain the separators)."""
    parts = template.split("OBJ")
    pattern = "^" + "(.+)".join(re.escape(p) for p in parts) + "$"
    if len(parts) == 1:
        return [[]] if action == template else []
    out = []
    if len(parts) == 2:
        m = re.match(pattern, action)
        return [[m.group(1)]] if m else []
    first, sep, last = parts[0], parts[1], parts[2]
    if not (action.startswith(first) and action.endswith(last)):
        return []
    body = action[len(first):len(action) - len(last)]
    for m in re.finditer(re.escape(sep), body):
        a, b = body[:m.start()], body[m.end():]
        if a and b:
            out.append([a, b])
    return out


def _objects(name: str, referents: dict[int, list[str]]) -> set[int]:
    """Objects a name may denote: the name itself or its head before " in <container>" / " containing ...".

    "cup containing red paint in art studio" and "thermometer in inventory" both qualify a
    referent ("cup", "thermometer") by where it is or what it holds, as the engine's parser allows.
    """
    heads = {name}
    for sep in (" in ", " containing ", " on "):
        idx = name.find(sep)
        while idx > 0:
            heads.add(name[:idx])
            idx = name.find(sep, idx + 1)
    return {oid for oid, names in referents.items() if heads.intersection(names)}


def equivalent(action: str, game: Game, candidates: Sequence[str]) -> str | None:
    """The candidate the engine reads as the same template on the same objects, if one exists."""
    allowed = set(candidates)
    referents = game.referents()
    words = set(action.split(" "))
    best, best_overlap = None, -1
    spellings = [action] + [canon + action[len(alias):] for alias, canon in _ALIASES if action.startswith(alias)]
    parses = [(tid, slots) for template, tid in game.templates().items()
              for text in spellings for slots in _slots(template, text)]
    if not parses:
        return None
    valid = game.valid_action_objects()
    for tid, slots in parses:
        options = [_objects(s, referents) for s in slots]
        for entry in valid:
            text = entry["action"]
            if entry["template_id"] != tid or text not in allowed or len(entry["obj_ids"]) != len(options):
                continue
            if all(oid in ids for oid, ids in zip(entry["obj_ids"], options)):
                overlap = len(words.intersection(text.split(" ")))
                if overlap > best_overlap:
                    best, best_overlap = text, overlap
    return best


def _risky(commands: Sequence[str]) -> bool:
    """Could the loop stop fire, whatever the observations? (at most two distinct commands in five)"""
    return len(commands) >= prompt.LOOP_WINDOW and len(set(commands[-prompt.LOOP_WINDOW:])) <= 2


def replies(game: Game, gold: Sequence[str], map_actions: bool = True) -> list[str]:
    """The expert's replies for a game freshly loaded and reset on the same variation as the episode's.

    The scratch game executes what the env will execute (the mapped action where no equivalent
    exists), so the replay stays in step with the episode.
    """
    recent = ["look around"]
    commands = ["look around"]  # the same turns without observations: the episode's may differ from ours
    out: list[str] = []
    thought = 0

    def think() -> None:
        nonlocal thought
        thought += 1
        text = f"Think: I follow the plan; step {thought} comes next."
        out.append(text)
        recent.append(prompt.history_entry(text, prompt.THINK_OBSERVATION))
        commands.append(text)

    for step, action in enumerate(gold):
        command = executed = action
        if map_actions:
            look, inventory = game.look(), game.inventory()
            valid = game.valid_actions()
            candidates = prompt.candidate_actions(valid, look, inventory, recent)
            if action not in candidates:
                if action in prompt.candidate_actions(valid, look, inventory, []):
                    # refused only as a recent action: let it age out of the three-entry window
                    for _ in range(3):
                        think()
                        if action in prompt.candidate_actions(valid, look, inventory, recent):
                            break
                else:
                    command = equivalent(action, game, candidates) or action
            executed = prompt.map_action(command, prompt.candidate_actions(valid, look, inventory, recent))[0]
        result = game.step(executed)
        entry = prompt.history_entry(executed, prompt.clean(result.observation))
        for _ in range(_MAX_THOUGHTS):
            if not (prompt.in_loop([*recent, entry]) or _risky([*commands, executed])):
                break
            think()
        out.append(f"Action: {command}")
        recent.append(entry)
        commands.append(executed)
        if result.completed or result.score < 0:
            # the episode's game may need the rest (a circuit closing a tick later): send it as is
            out.extend(f"Action: {a}" for a in gold[step + 1:])
            break
    return out


def plan(game: Game, task: Any, simplifications: str, map_actions: bool = True) -> list[str]:
    """Plan the gold path for ``task`` on ``game`` and turn it into replies."""
    game.load(task.task_name, task.variation, simplifications, gold=True)
    gold = game.gold_actions()
    game.reset()
    return replies(game, gold, map_actions)
