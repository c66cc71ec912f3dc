"""The only code that talks to the browser: MiniWoB++ task pages in headless Chromium.

Each env gets one window of a browser shared by every MiniWoB env of the process
(:func:`agent_gym.browser.shared_browser`), which costs far less than upstream's browser per env.
The pages are the ``miniwob`` wheel's; an episode is driven with the page's own JavaScript as
AgentTuning's computergym did: ``core.endEpisode(0)``, ``Math.seedrandom(seed)``,
``core.setDataMode("train")``, ``core.startEpisodeReal()``, then ``WOB_DONE_GLOBAL`` /
``WOB_REWARD_GLOBAL`` after each action. computergym's ``core.js`` had a 1,000,000 ms episode
time (not the 10 s of stock MiniWoB++), so an LLM agent was not timed out; the same is set here
(:data:`EPISODE_MAX_TIME_MS`). Actions are performed with Selenium as computergym's
``MiniWoBElementClickXpath`` / ``MiniWoBElementClickOption`` / ``MiniWoBMoveXpath`` / ``MiniWoBType``
did (see :meth:`Page.perform`).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

from agent_gym.browser import BrowserError, shared_browser

#: computergym's core.js episode time (ms); stock MiniWoB++ has 10000
EPISODE_MAX_TIME_MS = 1_000_000
#: how long a freshly started episode may take to say WOB_TASK_READY (upstream: 20 x 50 ms)
READY_TIMEOUT_S = 5.0

# One round trip for the whole state (computergym's get_state): utterance, #wrap's HTML, the rest of <body> (computergym's
# html_extra: every child but the reward display, click canvas, sync cover and #wrap), and the reward.
_STATE_JS = """
core.getDOMInfo();  // computergym read the DOM first: its data-wob_ref attributes were in the agent's HTML
var u = core.getUtterance();
var extra = '';
var skip = {'reward-display': 1, 'click-canvas': 1, 'sync-task-cover': 1, 'wrap': 1};
var kids = document.body.children;
for (var i = 0; i < kids.length; i++) { if (!skip[kids[i].id]) extra += kids[i].outerHTML; }
var wrap = document.getElementById('wrap');
return {utterance: (u && typeof u === 'object') ? u.utterance : u, body: wrap ? wrap.outerHTML : '',
        extra: extra, done: WOB_DONE_GLOBAL, reward: WOB_REWARD_GLOBAL, raw_reward: WOB_RAW_REWARD_GLOBAL,
        reason: WOB_REWARD_REASON};
"""
_FORGET_REFS = ("document.querySelectorAll('[data-wob_ref]').forEach(function (e) {"
                " delete e.dataset.wob_ref; delete e.dataset.wob_eps; });")
_META_JS = ("return {done: WOB_DONE_GLOBAL, reward: WOB_REWARD_GLOBAL, raw_reward: WOB_RAW_REWARD_GLOBAL,"
            " reason: WOB_REWARD_REASON};")

# One round trip before an xpath action (computergym made one per check: done, find_elements, and per element
# is_displayed, is_enabled and tag_name). The same checks: Selenium's own isDisplayed atom (what
# ``element_to_be_clickable`` runs), WebDriver's "enabled" (``:disabled``), the lower-case tag name. An
# xpath that selects non-elements or does not parse is invalid, as chromedriver's find_elements has it.
_FIND_JS = """
var xpath = arguments[0];
if (WOB_DONE_GLOBAL) return {done: true};
var found;
try { found = document.evaluate(xpath, document, null, XPathResult.ORDERED_NODE_SNAPSHOT_TYPE, null); }
catch (e) { return {done: false, invalid: true}; }
var elements = [], clickable = [], tags = [];
for (var i = 0; i < found.snapshotLength; i++) {
  var el = found.snapshotItem(i);
  if (el.nodeType !== 1) return {done: false, invalid: true};
  elements.push(el);
  tags.push(el.tagName.toLowerCase());
  if (isDisplayed) {
    var enabled = true;
    try { enabled = !el.matches(':disabled'); } catch (e) {}
    clickable.push(Boolean(isDisplayed(el)) && enabled);
  }
}
return {done: false, invalid: false, elements: elements, clickable: clickable, tags: tags};
"""
#: how long a pointer move to an element before a click or a hover takes (ms). computergym used
#: ``ActionChains(driver)``, whose moves take Selenium's default 250 ms (:data:`UPSTREAM_POINTER_MOVE_MS`).
#: Chromedriver does not interpolate such a move: it waits out the duration, then dispatches the same
#: single pointermove / mouseover / mouseenter / mousemove events at the target that a 0 ms move
#: dispatches at once (measured, and pinned by a test that compares the page's event logs). With
#: computergym's 1000 s episode time the wait changes no reward's sign, so the default skips it; the
#: env option ``pointer_move_ms=250`` restores upstream's wall-clock timing.
POINTER_MOVE_MS = 0
UPSTREAM_POINTER_MOVE_MS = 250

_KEYS = {"enter": "\n", "space": " ", "arrowleft": "LEFT", "arrowright": "RIGHT", "arrowup": "UP",
         "arrowdown": "DOWN", "backspace": "BACKSPACE"}


@functools.lru_cache(maxsize=2)
def _find_js(clickability: bool) -> str:
    """:data:`_FIND_JS`, with Selenium's isDisplayed atom (what ``WebElement.is_displayed`` sends) when
    ``clickability`` is asked for."""
    import pkgutil

    atom = pkgutil.get_data("selenium.webdriver.remote", "isDisplayed.js").decode("utf8") if clickability else "null"
    return f"var isDisplayed = ({atom});\n{_FIND_JS}"


@functools.lru_cache(maxsize=1)
def html_dir() -> Path:
    """The ``miniwob`` wheel's task pages (``.../miniwob/html/miniwob``); names what to install."""
    try:
        import miniwob
    except ImportError as exc:
        raise BrowserError("MiniWoB++ needs the miniwob package: pip install -e '.[web]'") from exc
    return Path(miniwob.__file__).parent / "html" / "miniwob"


def engine_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("miniwob", "selenium"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "missing"
    return out


class Page:
    """One MiniWoB++ task page in a window of the process's shared browser."""

    def __init__(self, browser_key: str = "miniwob", pointer_move_ms: int = POINTER_MOVE_MS):
        self.pointer_move_ms = pointer_move_ms  # the wait of a pointer move (see POINTER_MOVE_MS)
        self._key = browser_key
        self.browser = shared_browser(browser_key)
        self.window = self.browser.new_window()
        self.task: str | None = None

    def versions(self) -> dict[str, str]:
        return {**engine_versions(), **self.browser.versions}

    def begin(self, task: str, seed: int) -> dict[str, Any]:
        """Load ``task``'s page (if another is loaded) and start an episode with ``seed``; returns :meth:`state`."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC
        from selenium.webdriver.support.wait import WebDriverWait

        path = html_dir() / f"{task}.html"
        if not path.is_file():
            raise ValueError(f"the miniwob package has no task page {task!r}")
        with self.window.use() as driver:
            if self.task != task:
                self.task = None
                driver.get(path.as_uri())
                WebDriverWait(driver, 10).until(EC.presence_of_element_located((By.ID, "sync-task-cover")))
                self.task = task
            # WOB_EPISODE_ID (data-wob_eps in the HTML) counts the page's episodes and elements that
            # outlive an episode keep their data-wob_ref: both reset, so that an episode's observation
            # does not depend on what the window played before
            # one round trip: start the episode and, when the task is ready at once (most are), read the state
            state = driver.execute_script(
                f"core.endEpisode(0); WOB_EPISODE_ID = 0; {_FORGET_REFS} Math.seedrandom({seed!r}); core.setDataMode('train');"
                f" core.EPISODE_MAX_TIME = {EPISODE_MAX_TIME_MS}; core.startEpisodeReal();"
                f" if (!WOB_TASK_READY) return null; {_STATE_JS}")
            deadline = time.monotonic() + READY_TIMEOUT_S
            while state is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"MiniWoB++ task {task} did not get ready in {READY_TIMEOUT_S} s")
                time.sleep(0.05)
                state = driver.execute_script(f"if (!WOB_TASK_READY) return null; {_STATE_JS}")
            return state

    def state(self) -> dict[str, Any]:
        """``{utterance, body, extra, done, reward, raw_reward, reason}`` of the page now."""
        with self.window.use() as driver:
            return driver.execute_script(_STATE_JS)

    def metadata(self) -> dict[str, Any]:
        """``{done, reward, raw_reward, reason}`` (``reward``: MiniWoB's time-discounted reward, -1..1)."""
        with self.window.use() as driver:
            return driver.execute_script(_META_JS)

    def perform(self, kind: str, arg: str) -> str | None:
        """Perform one parsed action; returns a note when it did nothing (``None`` when it acted).

        As computergym: ``clickxpath`` clicks the first matching element that is clickable (a
        ``<button>`` by ``element.click()``, an ``<option>`` by selecting it, anything else by moving
        the mouse there and clicking; an intercepted click sends Enter to the element instead);
        ``clickoption`` selects an ``<option>`` by its visible text in its parent ``<select>``;
        ``movemouse`` moves the mouse over every match; ``type`` sends keystrokes to the focused
        element; ``press`` sends one key. Raises ``ValueError`` for a ``movemouse`` that matched
        nothing it could move to (upstream: the episode fails).
        """
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
        from selenium.webdriver.support import expected_conditions as EC
        from selenium.webdriver.support.ui import Select

        with self.window.use() as driver:
            if kind in ("type", "press"):
                if self.metadata_unlocked(driver)["done"]:
                    return "the episode had already ended"
                text = arg if kind == "type" else _KEYS[arg]
                text = getattr(Keys, text) if kind == "press" and len(text) > 1 else text
                ActionChains(driver, duration=self.pointer_move_ms).send_keys(text).perform()
                return None
            found = driver.execute_script(_find_js(kind == "clickxpath"), arg)
            if found["done"]:
                return "the episode had already ended"
            elements = None if found["invalid"] else found["elements"]
            if not elements:
                if kind == "movemouse":
                    raise ValueError(f"movemouse: no element matches {arg!r}")
                return f"no element matches the xpath {arg!r}" if elements is not None else f"invalid xpath {arg!r}"
            if kind == "clickoption":
                try:
                    option = elements[0]
                    Select(option.find_element(By.XPATH, "./..")).select_by_visible_text(option.text)
                    return None
                except WebDriverException as exc:
                    return f"clickoption failed: {type(exc).__name__}"
            if kind == "movemouse":
                moved = False
                for element in elements:
                    try:
                        ActionChains(driver, duration=self.pointer_move_ms).move_to_element(element).perform()
                        moved = True
                    except WebDriverException:
                        pass
                if not moved:
                    raise ValueError(f"movemouse: no element matching {arg!r} could be reached")
                return None
            touched = False  # a click that raised may have changed the page: check the next element live
            for element, clickable, tag in zip(elements, found["clickable"], found["tags"]):  # clickxpath
                try:
                    if touched:  # computergym: WebDriverWait(driver, 0.1).until(element_to_be_clickable), one check
                        clickable, tag = bool(EC.element_to_be_clickable(element)(driver)), element.tag_name
                    if not clickable:
                        continue
                    touched = True
                    if tag == "button":
                        element.click()
                    elif tag == "option":
                        Select(element.find_element(By.XPATH, "..")).select_by_visible_text(element.text)
                    else:
                        ActionChains(driver, duration=self.pointer_move_ms).move_to_element(element).click().perform()
                    return None
                except WebDriverException as exc:
                    if "intercept" in str(exc):
                        element.send_keys(Keys.ENTER)
                        return None
            return "no matching element could be clicked"

    @staticmethod
    def metadata_unlocked(driver: Any) -> dict[str, Any]:
        return driver.execute_script(_META_JS)

    def close(self) -> None:
        if self.window is not None:
            self.window.close()
            self.browser.release()
            self.window = None
