"""Scripted experts: the replies that solve a MiniWoB++ task, read off its utterance and HTML.

They speak the paper's action language, so they also test the env's parser and actions end to
end. :func:`solve` returns ``None`` for a task it has no script for (:data:`SOLVERS` lists those
it has).
"""

from __future__ import annotations

import re
from collections.abc import Callable

_ORDINAL = re.compile(r"(\d+)(?:st|nd|rd|th)")


def lit(text: str) -> str:
    """``text`` as an XPath string literal."""
    if '"' not in text:
        return f'"{text}"'
    if "'" not in text:
        return f"'{text}'"
    return "concat(" + ", '\"', ".join(f'"{part}"' for part in text.split('"')) + ")"


def _quoted(utterance: str) -> list[str]:
    return re.findall(r'"([^"]*)"', utterance)


def _click_test(u: str, html: str) -> list[str]:
    return ['clickxpath //*[@id="subbtn"]']


def _click_test_2(u: str, html: str) -> list[str]:
    return [f"clickxpath //button[text()={lit(u.split('button ', 1)[1].rstrip('.'))}]"]


def _click_button(u: str, html: str) -> list[str]:
    return [f"clickxpath //div[@id='area']//button[text()={lit(_quoted(u)[0])}]"]


def _click_link(u: str, html: str) -> list[str]:
    return [f"clickxpath //span[@class='alink' and text()={lit(_quoted(u)[0])}]"]


def _enter_text(u: str, html: str) -> list[str]:
    return ['clickxpath //*[@id="tt"]', f"type {_quoted(u)[0]}", 'clickxpath //*[@id="subbtn"]']


def _enter_password(u: str, html: str) -> list[str]:
    word = _quoted(u)[0]
    return ['clickxpath //*[@id="password"]', f"type {word}", 'clickxpath //*[@id="verify"]', f"type {word}",
            'clickxpath //*[@id="subbtn"]']


def _login_user(u: str, html: str) -> list[str]:
    user, password = _quoted(u)[:2]
    return ['clickxpath //*[@id="username"]', f"type {user}", 'clickxpath //*[@id="password"]',
            f"type {password}", 'clickxpath //*[@id="subbtn"]']


def _focus_text(u: str, html: str) -> list[str]:
    return ['clickxpath //*[@id="tt"]']


def _focus_text_2(u: str, html: str) -> list[str]:
    return [f"clickxpath (//div[@id='area']/input)[{_ORDINAL.search(u).group(1)}]"]


def _click_button_sequence(u: str, html: str) -> list[str]:
    return ['clickxpath //button[text()="ONE"]', 'clickxpath //button[text()="TWO"]']


def _click_dialog(u: str, html: str) -> list[str]:
    return ["clickxpath //button[@title='Close']"]


def _select_labels(u: str, html: str) -> list[str]:  # click-checkboxes, click-option
    wanted = u[len("Select "):u.rindex(" and click Submit")]
    names = [] if wanted == "nothing" else [w.strip() for w in wanted.split(",") if w.strip()]
    return [f"clickxpath //div[@id='boxes']//label[normalize-space(.)={lit(name)}]/input" for name in names] + \
        ['clickxpath //*[@id="subbtn"]']


def _choose_list(u: str, html: str) -> list[str]:
    name = u[len("Select "):u.rindex(" from the list")]
    return [f"clickoption //select[@id='options']/option[text()={lit(name)}]", "clickxpath //div[@id='area']/button"]


def _click_tab(u: str, html: str) -> list[str]:
    return [f"clickxpath //a[@class='ui-tabs-anchor' and text()={lit(u[len('Click on '):].rstrip('.'))}]"]


SOLVERS: dict[str, Callable[[str, str], list[str]]] = {
    "click-test": _click_test,
    "click-test-2": _click_test_2,
    "click-button": _click_button,
    "click-link": _click_link,
    "enter-text": _enter_text,
    "enter-text-dynamic": _enter_text,
    "enter-password": _enter_password,
    "login-user": _login_user,
    "focus-text": _focus_text,
    "focus-text-2": _focus_text_2,
    "click-button-sequence": _click_button_sequence,
    "click-dialog": _click_dialog,
    "click-checkboxes": _select_labels,
    "click-option": _select_labels,
    "choose-list": _choose_list,
    "click-tab": _click_tab,
}


def solve(task: str, utterance: str, html: str) -> list[str] | None:
    """The replies that solve this episode of ``task`` (``None``: no script for the task)."""
    solver = SOLVERS.get(task)
    return solver(utterance, html) if solver else None
