"""The paper's MiniWoB++ action language and observation text: pure functions, no browser.

Actions (AgentTuning ``eval_heldout/miniwob++/prompt.py``, matched with ``re.search`` and
``re.I`` as ``llm_agent.py:check_regex`` did; a reply must match one of them whole)::

    clickxpath <xpath>          ^clickxpath\\s.{1,}$
    clickoption <xpath>         ^clickoption\\s.{1,}$   (an <option>: selects it in its <select>)
    movemouse <xpath>           ^movemouse\\s.{1,}$
    type <text>                 ^type\\s.{1,}$          ('"' removed from the text, as upstream did)
    press <key>                 ^press\\s(enter|arrowleft|arrowright|arrowup|arrowdown|backspace)$

Upstream then split the instruction on single spaces and lower-cased the first word
(``convert_to_miniwob_action``); the same happens here. ``.`` does not match a newline, so a reply
of several lines is not an action (the RCI agent cut replies at the first backtick and removed
newlines itself: that is :func:`clean_reply`, the policy's job, not the env's).
"""

from __future__ import annotations

import dataclasses
import re

CLICKXPATH = r"^clickxpath\s.{1,}$"
CLICKOPTION = r"^clickoption\s.{1,}$"
MOVEMOUSE = r"^movemouse\s.{1,}$"
TYPE = r"^type\s.{1,}$"  # upstream's "davinci" type regex, the one its prompts were filled with
TYPE_NO_QUOTE = r'^type\s[^"]{1,}$'  # its "chatgpt" type regex; check_regex accepted either
PRESS = r"^press\s(enter|arrowleft|arrowright|arrowup|arrowdown|backspace)$"
ACTION_REGEXES = (CLICKXPATH, TYPE_NO_QUOTE, TYPE, PRESS, CLICKOPTION, MOVEMOUSE)

#: the forms an invalid reply is told about
VALID_FORMS = ("clickxpath <xpath>", "clickoption <xpath of an <option>>", "movemouse <xpath>", "type <text>",
               "press <enter|arrowleft|arrowright|arrowup|arrowdown|backspace>")

INVALID_ACTION = ("Invalid action: {reason}. Reply with exactly one instruction on one line, one of: "
                  + "; ".join(VALID_FORMS) + ".")

# AgentTuning's computergym: the HTML the agent saw was #wrap's outerHTML, plus every other child
# of <body> (dialogs, autocomplete menus, date pickers) for these tasks (main.py:get_html_state).
EXTRA_HTML_TASKS = frozenset({"click-dialog", "click-dialog-2", "use-autocomplete", "choose-date"})


@dataclasses.dataclass(frozen=True)
class Action:
    """A parsed instruction: ``kind`` is clickxpath / clickoption / movemouse / type / press;
    ``arg`` the xpath, the text to type, or the key name (lower case)."""

    kind: str
    arg: str


def matches(instruction: str) -> bool:
    """Whether ``instruction`` matches one of the paper's action regexes (case-insensitive)."""
    return any(re.search(rx, instruction, flags=re.I) for rx in ACTION_REGEXES)


def parse(reply: str) -> Action | str:
    """The :class:`Action` of a reply, or the reason it is not one (a ``str``).

    The reply is stripped of surrounding whitespace; nothing else is forgiven (no code fences, no
    "Action:" prefix, one line).
    """
    instruction = reply.strip()
    if not instruction:
        return "empty reply"
    if not matches(instruction):
        first = instruction.split(None, 1)[0].lower() if instruction.split() else ""
        if "\n" in instruction:
            return "the reply has several lines"
        if first in ("clickxpath", "clickoption", "movemouse", "type", "press"):
            return f"{first!r} needs an argument of its form"
        return f"{instruction[:60]!r} matches no action form"
    words = instruction.split(" ")
    kind = words[0].lower()
    if kind in ("clickxpath", "clickoption", "movemouse"):
        return Action(kind, " ".join(words[1:]))
    if kind == "type":
        return Action(kind, " ".join(words[1:]).replace('"', ""))
    if kind == "press":
        return Action(kind, words[1].lower())
    # the regexes allow any whitespace after the verb ("press\tenter"); upstream split on " " only and
    # raised on such an instruction: refused here, naming the fix
    return f"separate {kind.split()[0]!r} from its argument with a space"


def fill_regexes(text: str) -> str:
    """A prompt with its ``{type}``, ``{press}``, ... placeholders replaced by the regexes (upstream
    ``Prompt.replace_regex`` with ``llm = "davinci"``)."""
    return (text.replace("{type}", TYPE).replace("{press}", PRESS).replace("{clickxpath}", CLICKXPATH)
            .replace("{clickoption}", CLICKOPTION).replace("{movemouse}", MOVEMOUSE))


def page_html(task: str, body: str, extra: str) -> str:
    """The HTML the paper's agent saw: ``#wrap``, plus the rest of ``<body>`` for :data:`EXTRA_HTML_TASKS`."""
    return body + extra if task in EXTRA_HTML_TASKS else body


def observation(utterance: str, html: str) -> str:
    """The env's observation: the task's utterance and the page's HTML, in the RCI prompt's words."""
    return (f"Current task: {utterance}\n\n"
            f"Below is the HTML code of the webpage where the agent should solve a task.\n{html}")


def clean_reply(reply: str) -> str:
    """An RCI reply turned into an instruction as upstream's ``process_instruction`` did: cut at the
    first backtick, newlines removed, ``\\n`` escapes turned into newlines, stripped, quotes stripped."""
    end = reply.find("`")
    if end != -1:
        reply = reply[:end]
    reply = reply.replace("`", "").replace("\n", "").replace("\\n", "\n").strip()
    return reply.strip("'")
