"""The browser behind WebArena: headless Chromium driven by Selenium, observed through DevTools.

The only module that talks to the browser. What it reproduces of WebArena's ``browser_env``
(AgentTuning's copy, which ran Playwright):

- a 1280x720 viewport, device scale 1 (``run.py`` defaults; set per tab with
  ``Emulation.setDeviceMetricsOverride``);
- the observation (``processors.py:TextObervationProcessor``): the open tabs' titles, then the
  accessibility tree (``Accessibility.getFullAXTree``), each node's box from
  ``DOMSnapshot.captureSnapshot`` (a node's box united with its subtree's, ``retrieve_viewport_info``),
  nodes outside the viewport dropped, rendered ``[nodeId] role 'name' prop: value`` with one tab of
  indent per level, empty structural nodes skipped and StaticText that repeats one of the 3 lines
  before it removed;
- actions as ``actions.py:execute_action`` did them: clicks and hovers as mouse events at the
  element's centre (``Input.dispatchMouseEvent``), typing as key events into what the click
  focused, ``scroll`` by one window height in JavaScript, tabs in creation order;
- login state (``storage_state``: Playwright's JSON of cookies and localStorage) put in before the
  start page loads.

Differences: Selenium, not Playwright (the design card's choice); the viewport's size is
``innerWidth``/``innerHeight`` where upstream read ``window.screen`` (Playwright set both to the
viewport); each episode reuses the browser after clearing its cookies, storage and tabs, where
upstream launched a new one.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

VIEWPORT = (1280, 720)
IGNORED_PROPERTIES = ("focusable", "editable", "readonly", "level", "settable", "multiline", "invalid")
_EMPTY_ROLES = ("generic", "img", "list", "strong", "paragraph", "banner", "navigation", "Section", "LabelText",
                "Legend", "listitem")
PAGE_LOAD_TIMEOUT = 60.0


class BrowserError(RuntimeError):
    """The browser could not be started or stopped answering (the message names the fix)."""


def _launch(viewport: tuple[int, int]) -> Any:
    """A headless Chromium from :mod:`agent_gym.browser` (reaped on close, crash and exit)."""
    from agent_gym import browser as chromium

    try:
        return chromium.Browser(window_size=viewport, command_timeout=PAGE_LOAD_TIMEOUT)
    except ImportError:
        raise BrowserError('WebArena drives Chromium with Selenium: pip install -e ".[web]"') from None
    except chromium.BrowserError as exc:
        raise BrowserError(str(exc)) from exc


class Browser:
    """One headless Chromium with WebArena's observation and actions. Not thread-safe: one per env."""

    def __init__(self, viewport: tuple[int, int] = VIEWPORT):
        self.viewport = viewport
        self.chromium = _launch(viewport)
        self.driver = self.chromium.driver
        self.tabs: list[str] = [self.driver.current_window_handle]
        self.current = self.tabs[0]
        self._metrics(self.current)
        self._origins: set[str] = set()
        #: node id -> {"text", "bound"} of the last observation (``obs_nodes_info``)
        self.nodes: dict[str, dict[str, Any]] = {}
        self._window: dict[str, float] = {}

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self.driver = None
        chromium = getattr(self, "chromium", None)
        if chromium is not None:
            chromium.close()

    @property
    def alive(self) -> bool:
        return self.driver is not None and self.chromium.alive()

    def cdp(self, cmd: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.driver.execute_cdp_cmd(cmd, params or {})

    def _metrics(self, handle: str) -> None:
        """WebArena's viewport on a tab (``new_context(viewport=..., device_scale_factor=1)``)."""
        if self.driver.current_window_handle != handle:
            self.driver.switch_to.window(handle)
        self.cdp("Emulation.setDeviceMetricsOverride", {"width": self.viewport[0], "height": self.viewport[1],
                                                        "deviceScaleFactor": 1, "mobile": False})

    def start(self, urls: Sequence[str], storage_state: Mapping[str, Any] | None = None,
              geolocation: Mapping[str, Any] | None = None) -> None:
        """A fresh episode: no cookies, storage or tabs of the last one; the login state in; one
        tab per start URL (the first one current, as ``ScriptBrowserEnv.setup``)."""
        self.sync_tabs()
        keep = self.tabs[0]
        for handle in self.tabs[1:]:
            self.driver.switch_to.window(handle)
            self.driver.close()
        self.driver.switch_to.window(keep)
        self.tabs, self.current = [keep], keep
        self.driver.get("about:blank")
        self.cdp("Network.enable")
        self.cdp("Network.clearBrowserCookies")
        for origin in self._origins:
            self.cdp("Storage.clearDataForOrigin", {"origin": origin, "storageTypes": "all"})
        self._origins = set()
        if geolocation:
            self.cdp("Emulation.setGeolocationOverride", {"latitude": geolocation["latitude"],
                                                          "longitude": geolocation["longitude"],
                                                          "accuracy": geolocation.get("accuracy", 0)})
        else:
            self.cdp("Emulation.clearGeolocationOverride")
        if storage_state:
            self._load_state(storage_state)
        urls = list(urls) or ["about:blank"]
        for i, url in enumerate(urls):
            if i:
                self.driver.switch_to.new_window("tab")
                self.tabs.append(self.driver.current_window_handle)
                self._metrics(self.tabs[-1])
            self._goto(url)
            if str(self.driver.execute_script("return document.documentURI")).startswith("chrome-error://"):
                raise ConnectionError(f"Chromium could not load the start page {url}")  # Playwright's goto raised too
        self.focus(0)

    def _load_state(self, state: Mapping[str, Any]) -> None:
        cookies = []
        for c in state.get("cookies") or []:
            cookie = {k: c[k] for k in ("name", "value", "domain", "path", "secure", "httpOnly") if k in c}
            if c.get("expires", -1) not in (-1, None):
                cookie["expires"] = c["expires"]
            if c.get("sameSite") in ("Strict", "Lax", "None"):
                cookie["sameSite"] = c["sameSite"]
            cookies.append(cookie)
        if cookies:
            self.cdp("Network.setCookies", {"cookies": cookies})
        for entry in state.get("origins") or []:  # localStorage needs a page of that origin
            items = entry.get("localStorage") or []
            if not items:
                continue
            self._goto(entry["origin"])
            self.driver.execute_script(
                "for (const [k, v] of arguments[0]) window.localStorage.setItem(k, v);",
                [[i["name"], i["value"]] for i in items])

    # ------------------------------------------------------------------ tabs
    def sync_tabs(self) -> None:
        """Keep :attr:`tabs` in creation order with the tabs pages opened themselves (``target=_blank``)."""
        handles = self.driver.window_handles
        self.tabs = [h for h in self.tabs if h in handles] + [h for h in handles if h not in self.tabs]
        if self.current not in self.tabs:
            self.current = self.tabs[-1]
            self.driver.switch_to.window(self.current)

    def focus(self, index: int) -> None:
        self.sync_tabs()
        handle = self.tabs[index]
        self.driver.switch_to.window(handle)
        self.current = handle
        self._metrics(handle)
        self.cdp("Page.bringToFront")

    def new_tab(self) -> None:
        self.driver.switch_to.new_window("tab")
        self.current = self.driver.current_window_handle
        self.tabs.append(self.current)
        self._metrics(self.current)

    def close_tab(self) -> None:
        """Close the current tab; the last one left becomes current (a new blank one if none is left)."""
        self.sync_tabs()
        closing = self.current
        if len(self.tabs) == 1:  # chromedriver ends the session with its last window
            self.new_tab()
            self.driver.switch_to.window(closing)
        self.driver.close()
        self.tabs.remove(closing)
        self.current = self.tabs[-1]
        self.driver.switch_to.window(self.current)

    def tab_titles(self) -> str:
        """``Tab 0 (current): title | Tab 1: title`` (``process``'s first line)."""
        self.sync_tabs()
        titles = {t["targetId"]: t.get("title", "") for t in self.cdp("Target.getTargets")["targetInfos"]}
        return " | ".join(f"Tab {i} (current): {titles.get(h, '')}" if h == self.current else f"Tab {i}: {titles.get(h, '')}"
                          for i, h in enumerate(self.tabs))

    # ------------------------------------------------------------------ page
    @property
    def url(self) -> str:
        return self.driver.current_url

    def _goto(self, url: str) -> None:
        self.driver.get(url)
        self._remember(url)

    def _remember(self, url: str) -> None:
        match = re.match(r"(https?://[^/?#]+)", url or "")
        if match:
            self._origins.add(match.group(1))

    def goto(self, url: str) -> None:
        """The agent's ``goto``: http(s) and ``about:`` only. ``ValueError`` for any other scheme: a
        ``file:`` URL would show this machine's files, ``javascript:`` / ``data:`` would run the agent's
        own script in (or instead of) the site an evaluator reads; no WebArena task needs one."""
        scheme = url.split(":", 1)[0].strip().lower() if ":" in url else ""
        if scheme not in ("http", "https", "about"):
            raise ValueError(f"goto only opens http(s) URLs, not {url[:100]!r}")
        self._goto(url)

    def html(self) -> str:
        """The page's HTML as serialised now (Playwright's ``page.content()``)."""
        return self.driver.execute_script(
            "return (document.doctype ? new XMLSerializer().serializeToString(document.doctype) : '')"
            " + document.documentElement.outerHTML;")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression on the page (``page.evaluate(f"() => {expr}")``)."""
        return self.driver.execute_script(f"return (() => {expression})();")

    def settle(self, seconds: float) -> None:
        """``sleep_after_execution``, then wait (at most 10 s) for the document to finish loading."""
        if seconds > 0:
            time.sleep(seconds)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.driver.execute_script("return document.readyState") == "complete":
                    break
            except Exception:  # noqa: BLE001 - a page between two documents
                pass
            time.sleep(0.05)
        self._remember(self.url)

    # ------------------------------------------------------------------ observation
    def observe(self) -> str:
        """Tab titles, a blank line, then the viewport's accessibility tree (not yet token-cut)."""
        self.sync_tabs()
        titles = self.tab_titles()
        tree = self._accessibility_tree()
        text, self.nodes = render_tree(tree)
        return f"{titles}\n\n{clean_tree(text)}"

    def _accessibility_tree(self) -> list[dict[str, Any]]:
        snapshot = self.cdp("DOMSnapshot.captureSnapshot",
                            {"computedStyles": [], "includeDOMRects": True, "includePaintOrder": True})
        window = self.driver.execute_script(
            "return [window.pageXOffset, window.pageYOffset, window.innerWidth, window.innerHeight];")
        left, top, width, height = (float(v) for v in window)
        self._window = {"left": left, "top": top, "right": left + width, "bottom": top + height}
        boxes = _snapshot_boxes(snapshot, self.viewport[0])
        nodes = self.cdp("Accessibility.getFullAXTree")["nodes"]
        return viewport_nodes(_with_boxes(nodes, boxes), self._window)

    def element_center(self, element_id: str) -> tuple[float, float]:
        """The viewport point at the centre of a node of the last observation (``get_element_center``)."""
        x, y, w, h = self.nodes[element_id]["bound"]
        return x - self._window.get("left", 0) + w / 2, y - self._window.get("top", 0) + h / 2

    # ------------------------------------------------------------------ actions
    def mouse(self, x: float, y: float, click: bool) -> None:
        self.cdp("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
        if click:
            for kind in ("mousePressed", "mouseReleased"):
                self.cdp("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def type_text(self, text: str) -> None:
        """Keystrokes into the focused element; a newline is the Enter key."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        ActionChains(self.driver).send_keys(text.replace("\n", Keys.ENTER)).perform()

    def press(self, key_comb: str) -> None:
        """A key or combination in Playwright's names (``Enter``, ``Control+a``, ``Meta+Shift+ArrowDown``)."""
        from selenium.webdriver.common.action_chains import ActionChains

        keys = [_selenium_key(k) for k in (key_comb.split("+") if key_comb != "+" else ["+"])]
        chain = ActionChains(self.driver)
        for key in keys[:-1]:
            chain.key_down(key)
        chain.send_keys(keys[-1])
        for key in reversed(keys[:-1]):
            chain.key_up(key)
        chain.perform()

    def scroll(self, direction: str) -> None:
        sign = "-" if direction == "up" else "+"
        self.driver.execute_script(
            "const el = document.scrollingElement || document.body;"
            f" el.scrollTop = el.scrollTop {sign} window.innerHeight;")

    def back(self) -> None:
        self.driver.back()

    def forward(self) -> None:
        self.driver.forward()


_KEY_NAMES = {"control": "CONTROL", "ctrl": "CONTROL", "shift": "SHIFT", "alt": "ALT", "meta": "META",
              "command": "COMMAND", "enter": "ENTER", "return": "RETURN", "tab": "TAB", "escape": "ESCAPE",
              "esc": "ESCAPE", "backspace": "BACKSPACE", "delete": "DELETE", "arrowup": "ARROW_UP",
              "arrowdown": "ARROW_DOWN", "arrowleft": "ARROW_LEFT", "arrowright": "ARROW_RIGHT", "pageup": "PAGE_UP",
              "pagedown": "PAGE_DOWN", "home": "HOME", "end": "END", "insert": "INSERT", "space": "SPACE",
              **{f"f{i}": f"F{i}" for i in range(1, 13)}}


def _selenium_key(name: str) -> str:
    from selenium.webdriver.common.keys import Keys

    if len(name) == 1:
        return name
    attr = _KEY_NAMES.get(name.strip().lower())
    if attr is None:
        raise ValueError(f"Unknown key: {name!r}")
    return getattr(Keys, attr)


# ---------------------------------------------------------------------- tree processing (pure)
def _snapshot_boxes(snapshot: Mapping[str, Any], viewport_width: int) -> dict[int, tuple[Any, Any]]:
    """backendNodeId -> (box, union box of its subtree), boxes ``[x, y, w, h]`` in page
    coordinates (``fetch_browser_info`` + ``retrieve_viewport_info``)."""
    document = snapshot["documents"][0]
    nodes, layout = document["nodes"], document["layout"]
    bounds = [list(b) for b in layout["bounds"]]
    if bounds and bounds[0][2]:
        n = bounds[0][2] / viewport_width  # upstream's calibration by the root box's width
        bounds = [[v / n for v in b] for b in bounds]
    cursor_of = {}
    for cursor, idx in enumerate(layout["nodeIndex"]):
        cursor_of.setdefault(idx, cursor)
    children: dict[int, list[int]] = defaultdict(list)
    for idx, parent in enumerate(nodes["parentIndex"]):
        if parent != -1:
            children[parent].append(idx)
    union: dict[int, list[float] | None] = {}

    def valid(b: list[float] | None) -> bool:
        return b is not None and abs(b[2]) > 1e-8 and abs(b[3]) > 1e-8

    # post-order without recursion (deep pages overflow Python's stack)
    stack: list[tuple[int, bool]] = [(0, False)]
    while stack:
        idx, done = stack.pop()
        if not done:
            stack.append((idx, True))
            stack.extend((c, False) for c in children[idx])
            continue
        if idx not in cursor_of:
            union[idx] = None
            continue
        own = bounds[cursor_of[idx]]
        boxes = [b for b in [own] + [union.get(c) for c in children[idx]] if valid(b)]
        if not boxes:
            union[idx] = [0.0, 0.0, 0.0, 0.0]
            continue
        x0 = min(b[0] for b in boxes)
        y0 = min(b[1] for b in boxes)
        x1 = max(b[0] + b[2] for b in boxes)
        y1 = max(b[1] + b[3] for b in boxes)
        union[idx] = [x0, y0, x1 - x0, y1 - y0]
    backend_ids = nodes["backendNodeId"]
    return {backend_ids[idx]: (bounds[cursor], union.get(idx)) for idx, cursor in cursor_of.items()}


def _with_boxes(ax_nodes: list[dict[str, Any]], boxes: Mapping[int, tuple[Any, Any]]) -> list[dict[str, Any]]:
    """The AX nodes (first of each id) with ``bound`` / ``union_bound``; a node without a layout
    box takes its nearest ancestor's that has one (``fetch_page_accessibility_tree``)."""
    seen, out = set(), []
    for node in ax_nodes:
        if node["nodeId"] not in seen:
            seen.add(node["nodeId"])
            out.append(dict(node))
    by_id = {n["nodeId"]: n for n in out}
    refine = []
    for node in out:
        backend = node.get("backendDOMNodeId")
        if backend is None:
            node["bound"] = node["union_bound"] = None
        elif backend in boxes:
            node["bound"], node["union_bound"] = boxes[backend]
        else:
            refine.append(node)
    for node in refine:
        parent = None
        child = node
        while child.get("parentId") in by_id:
            parent = by_id[child["parentId"]]
            child = parent
            if parent.get("union_bound") is not None:
                break
        node["bound"] = parent.get("bound") if parent else None
        node["union_bound"] = parent.get("union_bound") if parent else None
    return out


def viewport_nodes(nodes: list[dict[str, Any]], window: Mapping[str, float]) -> list[dict[str, Any]]:
    """The nodes whose united box overlaps the viewport (``current_viewport_accessibility_tree``)."""
    kept = []
    for node in nodes:
        box = node.get("union_bound")
        if not box:
            continue
        x, y, w, h = box
        if x < window["right"] and x + w >= window["left"] and y < window["bottom"] and y + h >= window["top"]:
            kept.append(node)
    return kept


def _node_line(node: Mapping[str, Any]) -> tuple[str, bool]:
    """``[id] role 'name' props`` and whether the node is shown (``parse_accessibility_tree``)."""
    try:
        role = node["role"]["value"]
        name = node["name"]["value"]
        line = f"[{node['nodeId']}] {role} {name!r}"
        props = []
        for prop in node.get("properties", []):
            try:
                if prop["name"] in IGNORED_PROPERTIES:
                    continue
                props.append(f'{prop["name"]}: {prop["value"]["value"]}')
            except KeyError:
                pass
        if props:
            line += " " + " ".join(props)
        valid = bool(line.strip())
        if not name.strip():
            if not props:
                valid = valid and role not in _EMPTY_ROLES
            elif role == "listitem":
                valid = False
        return line, valid
    except Exception:  # noqa: BLE001 - a node without role or name is not shown (as upstream)
        return "", False


def render_tree(nodes: list[dict[str, Any]]) -> tuple[str, dict[str, dict[str, Any]]]:
    """The tree as text, and node id -> ``{"text", "bound"}`` of the nodes shown."""
    if not nodes:
        return "", {}
    index = {n["nodeId"]: i for i, n in enumerate(nodes)}
    shown: dict[str, dict[str, Any]] = {}
    lines: list[str] = []
    stack = [(0, 0)]
    while stack:  # pre-order, children in order
        i, depth = stack.pop()
        node = nodes[i]
        line, valid = _node_line(node)
        if valid:
            lines.append("\t" * depth + line)
            shown[node["nodeId"]] = {"text": line, "bound": node.get("bound")}
        child_depth = depth + 1 if valid else depth
        for child in reversed(node.get("childIds", [])):
            if child in index:
                stack.append((index[child], child_depth))
    return "\n".join(lines), shown


def clean_tree(text: str) -> str:
    """Drop a StaticText line whose text is in one of the 3 kept lines before it (``clean_accesibility_tree``)."""
    kept: list[str] = []
    for line in text.split("\n"):
        if "statictext" in line.lower():
            match = re.search(r"\[\d+\] StaticText '([^']+)'", line)
            if match and all(match.group(1) not in prev for prev in kept[-3:]):
                kept.append(line)
        else:
            kept.append(line)
    return "\n".join(kept)


def load_storage_state(path: str | Path) -> dict[str, Any]:
    """A Playwright storage-state file (``auto_login.py``'s ``.auth/<site>_state.json``)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
