"""Headless Chromium through Selenium, small and never left behind.

Web envs (MiniWoB++, WebArena) drive Debian's ``chromium`` through ``chromedriver`` with Selenium.
This module is the one place that starts them, so that every browser gets the same small
footprint and the same guarantee: **no chromium or chromedriver process outlives its Python
process**, whether the env is closed, the program raises, the interpreter exits or the Python
process is killed with SIGKILL.

API::

    from agent_gym.browser import Browser, shared_browser

    browser = Browser()                       # one chromium + chromedriver (about 2 s to start)
    window = browser.new_window("file:///...")  # a top-level window of its own (own page, own focus)
    with window.use() as driver:              # the Selenium WebDriver, switched to this window,
        driver.execute_script("return 1")     # under the browser's lock (one command at a time)
    window.close()
    browser.close()                           # idempotent; also run at interpreter exit

    browser = shared_browser()                # one Browser per process and key, reference counted:
    browser.release()                         # the last release closes it

* :func:`find_chromium` resolves the binaries: ``AGENT_GYM_CHROMIUM`` / ``AGENT_GYM_CHROMEDRIVER``,
  else ``MINIWOB_CHROME_BINARY`` / ``MINIWOB_CHROMEDRIVER``, else ``chromium`` and ``chromedriver``
  on ``PATH`` (Debian: ``apt-get install chromium chromium-driver``). Selenium Manager is never
  asked (it would try the network): the driver path is always given and ``SE_AVOID_STATS=true``.
* Reaping: every process of a browser carries ``AGENT_GYM_BROWSER=<tag>`` in its environment
  or its profile folder (``agent-gym-browser-<tag>-*``) on its command line (chromium inherits
  chromedriver's environment, and so do the crashpad handlers, which leave the process group
  with ``setsid``: that is why processes are found by tag, not by group). A small guard process, started with the browser, waits on a
  pipe only this Python process holds; when the pipe closes (close, exit, crash, SIGKILL) it kills
  every process with that tag and removes the browser's profile folder. :func:`browser_pids`
  lists a tag's live processes (tests count them); :func:`reap` kills them now.
* Footprint: one renderer per window, no GPU process work, no extensions, crash reporter,
  component updates or background networking; a profile folder of its own in ``$TMPDIR``.

Errors: :class:`BrowserError` (a ``RuntimeError``) names the fix: a missing binary says what to
install, a browser that would not start gives chromedriver's message.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

#: the environment variable that marks every process of a browser (value: the browser's tag)
TAG_VAR = "AGENT_GYM_BROWSER"

#: Chromium switches for a small headless browser (``--headless=new`` is the only headless mode left).
CHROMIUM_ARGS: tuple[str, ...] = (
    "--headless=new",
    "--no-sandbox",  # root in containers; the pages are local task pages
    "--disable-gpu",
    "--disable-dev-shm-usage",  # /dev/shm is small in containers
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--disable-crash-reporter",
    "--disable-breakpad",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
    "--metrics-recording-only",
    "--password-store=basic",
    "--disable-features=Translate,OptimizationHints,MediaRouter,OnDeviceModel",
)

# The guard: waits until the parent's pipe closes, then kills every process carrying the tag and
# removes the profile folder. Standard library only; started with -I -S so it costs a few MB.
_GUARD = r"""
import os, shutil, signal, sys, time
tag, folder = sys.argv[1], sys.argv[2]
try:
    sys.stdin.buffer.read()
except BaseException:
    pass
def tagged():
    mark = ("%s=%s" % (sys.argv[3], tag)).encode()
    folder_mark = ("agent-gym-browser-%s-" % tag).encode()
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open("/proc/%s/environ" % name, "rb") as fh:
                ours = mark in fh.read().split(b"\0")
            if not ours:
                with open("/proc/%s/cmdline" % name, "rb") as fh:
                    ours = folder_mark in fh.read()
            if ours:
                out.append(int(name))
        except OSError:
            pass
    return out
for _ in range(20):
    pids = tagged()
    if not pids:
        break
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    time.sleep(0.05)
shutil.rmtree(folder, ignore_errors=True)
"""


class BrowserError(RuntimeError):
    """Chromium or chromedriver is missing or would not start; the message names the fix."""


def find_chromium() -> tuple[str, str]:
    """``(chromium, chromedriver)`` paths; raises :class:`BrowserError` naming what to install.

    Looked up in ``AGENT_GYM_CHROMIUM`` / ``AGENT_GYM_CHROMEDRIVER``, then ``MINIWOB_CHROME_BINARY`` /
    ``MINIWOB_CHROMEDRIVER`` (the ``miniwob`` package's names), then ``PATH`` (``chromium``,
    ``chromium-browser``, ``google-chrome``; ``chromedriver``).
    """
    chrome = os.environ.get("AGENT_GYM_CHROMIUM") or os.environ.get("MINIWOB_CHROME_BINARY")
    driver = os.environ.get("AGENT_GYM_CHROMEDRIVER") or os.environ.get("MINIWOB_CHROMEDRIVER")
    if not chrome:
        chrome = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    if not driver:
        driver = shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", chrome), ("chromedriver", driver))
               if not path or not os.access(path, os.X_OK)]
    if missing:
        raise BrowserError(f"{' and '.join(missing)} not found: apt-get install chromium chromium-driver "
                           f"(or set AGENT_GYM_CHROMIUM and AGENT_GYM_CHROMEDRIVER to the binaries)")
    return str(chrome), str(driver)


def browser_pids(tag: str | None = None) -> list[int]:
    """Live processes started by agent-gym browsers (zombies excluded): those of ``tag``, or all.

    A process belongs to a browser when its environment has ``AGENT_GYM_BROWSER=<tag>``
    (chromedriver, chromium, crashpad) or its command line names the browser's profile folder
    (Chromium's helpers, started with an environment of their own).
    """
    env_mark = f"{TAG_VAR}={tag}".encode() if tag is not None else f"{TAG_VAR}=".encode()
    folder_mark = f"agent-gym-browser-{tag}-".encode() if tag is not None else b"agent-gym-browser-"
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue
            with open(f"/proc/{name}/environ", "rb") as fh:
                entries = fh.read().split(b"\0")
            ours = (env_mark in entries) if tag is not None else any(e.startswith(env_mark) for e in entries)
            if not ours:
                with open(f"/proc/{name}/cmdline", "rb") as fh:
                    ours = folder_mark in fh.read()
        except OSError:
            continue
        if ours:
            out.append(int(name))
    return sorted(out)


def reap(tag: str) -> int:
    """Kill every process of browser ``tag`` now (SIGKILL); returns how many were signalled."""
    pids = browser_pids(tag)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


class Window:
    """One top-level window of a :class:`Browser`: its own page, history, focus and timers."""

    def __init__(self, browser: Browser, handle: str):
        self.browser = browser
        self.handle = handle
        self.closed = False

    @contextlib.contextmanager
    def use(self) -> Iterator[Any]:
        """The browser's WebDriver switched to this window, held under the browser's lock.

        Raises :class:`BrowserError` if the window or the browser was closed.
        """
        with self.browser.lock:
            if self.closed:
                raise BrowserError("this browser window was closed")
            driver = self.browser.driver
            if self.browser._current != self.handle:
                driver.switch_to.window(self.handle)
                self.browser._current = self.handle
            yield driver

    def close(self) -> None:
        """Close the window (idempotent; the browser stays up)."""
        if self.closed:
            return
        self.closed = True
        self.browser._close_window(self.handle)


class Browser:
    """A headless Chromium with its chromedriver, reaped whatever happens to this process.

    ``Browser(args=(), window_size=(1280, 1024), command_timeout=60.0)``: ``args`` are extra
    Chromium switches added to :data:`CHROMIUM_ARGS`; ``command_timeout`` (seconds) bounds each
    WebDriver command, so a hung page raises instead of blocking forever. Starting takes about
    2 s. Attributes: ``driver`` (Selenium ``WebDriver``; use :meth:`Window.use` when several
    windows share it), ``lock`` (an ``RLock`` serialising commands), ``tag`` (the process marker),
    ``pids()`` (live processes), ``versions`` (``{"chromium": ..., "chromedriver": ...}``).
    """

    def __init__(self, args: Sequence[str] = (), window_size: tuple[int, int] = (1280, 1024),
                 command_timeout: float = 60.0):
        os.environ.setdefault("SE_AVOID_STATS", "true")  # Selenium Manager: never, not even for stats
        chrome, chromedriver = find_chromium()
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service

        self.tag = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.lock = threading.RLock()
        self.closed = False
        self._owner = os.getpid()
        self._windows: set[str] = set()
        self._current: str | None = None
        self.profile = tempfile.mkdtemp(prefix=f"agent-gym-browser-{self.tag}-")
        # The guard first, so that nothing this browser starts can be left behind.
        read_end, self._guard_pipe = os.pipe()
        self._guard = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _GUARD, self.tag, self.profile, TAG_VAR],
            stdin=read_end, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal must not kill the guard before the browser
        )
        os.close(read_end)
        env = {**os.environ, TAG_VAR: self.tag}
        options = webdriver.ChromeOptions()
        options.binary_location = chrome
        for arg in (*CHROMIUM_ARGS, f"--window-size={window_size[0]},{window_size[1]}",
                    f"--user-data-dir={self.profile}", *args):
            options.add_argument(arg)
        service = Service(executable_path=chromedriver, env=env,
                          popen_kw={"start_new_session": True})  # keeps Ctrl-C from the browser
        try:
            self.driver = webdriver.Chrome(service=service, options=options)
        except WebDriverException as exc:
            self._stop_guard()
            raise BrowserError(f"chromium did not start ({chrome}, {chromedriver}): {exc.msg or exc}") from exc
        except BaseException:
            self._stop_guard()
            raise
        self.driver.command_executor.client_config.timeout = command_timeout
        self.driver.set_page_load_timeout(command_timeout)
        self.driver.set_script_timeout(command_timeout)
        self._first = self.driver.current_window_handle
        self._current = self._first
        caps = self.driver.capabilities
        self.versions = {"chromium": str(caps.get("browserVersion", "")),
                         "chromedriver": str(caps.get("chrome", {}).get("chromedriverVersion", "")).split(" ")[0]}
        _live.add(self)

    # ------------------------------------------------------------------ windows
    def new_window(self, url: str | None = None) -> Window:
        """Open a new top-level window (the browser's first, blank one is reused once) and load ``url``."""
        with self.lock:
            self._check()
            if self._first is not None and not self._windows:
                handle, self._first = self._first, None
                if self._current != handle:
                    self.driver.switch_to.window(handle)
            else:
                self.driver.switch_to.new_window("window")
                handle = self.driver.current_window_handle
            self._current = handle
            self._windows.add(handle)
            if url is not None:
                self.driver.get(url)
            return Window(self, handle)

    def _close_window(self, handle: str) -> None:
        with self.lock:
            if self.closed or handle not in self._windows:
                return
            self._windows.discard(handle)
            if not self._windows:  # chromedriver ends the session with the last window: keep it, blank
                self._first = handle
                with contextlib.suppress(Exception):
                    if self._current != handle:
                        self.driver.switch_to.window(handle)
                    self._current = handle
                    self.driver.get("about:blank")
                return
            with contextlib.suppress(Exception):
                if self._current != handle:
                    self.driver.switch_to.window(handle)
                self.driver.close()
            self._current = None

    def _check(self) -> None:
        if self.closed:
            raise BrowserError("the browser was closed")
        if os.getpid() != self._owner:
            raise BrowserError("a browser cannot be used from a forked child process: make one in the child")

    # ---------------------------------------------------------------- lifecycle
    def pids(self) -> list[int]:
        """The live processes of this browser (chromedriver, chromium and its helpers)."""
        return browser_pids(self.tag)

    def alive(self) -> bool:
        """Whether chromedriver still answers."""
        if self.closed:
            return False
        try:
            with self.lock:
                self.driver.current_window_handle  # noqa: B018 - a round trip
            return True
        except Exception:  # noqa: BLE001
            return False

    def close(self) -> None:
        """Quit chromium and chromedriver and reap whatever is left (idempotent)."""
        if self.closed or os.getpid() != self._owner:
            return
        with self.lock:
            if self.closed:
                return
            self.closed = True
            _live.discard(self)
            quitter = threading.Thread(target=self._quit, daemon=True)
            quitter.start()
            quitter.join(10.0)  # a wedged chromedriver must not hold up close: the guard kills it
            self._stop_guard()

    def _quit(self) -> None:
        with contextlib.suppress(Exception):
            self.driver.quit()

    def _stop_guard(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._guard_pipe)
        try:
            self._guard.wait(10.0)
        except subprocess.TimeoutExpired:
            self._guard.kill()
        reap(self.tag)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ sharing
    def release(self) -> None:
        """Drop one reference taken by :func:`shared_browser`; the last one closes the browser."""
        with _shared_lock:
            key = next((k for k, v in _shared.items() if v[0] is self), None)
            if key is None:
                self.close()
                return
            browser, count = _shared[key]
            if count > 1:
                _shared[key] = (browser, count - 1)
                return
            del _shared[key]
        self.close()


_live: weakref.WeakSet[Browser] = weakref.WeakSet()
_shared: dict[tuple[int, str], tuple[Browser, int]] = {}
_shared_lock = threading.Lock()


def shared_browser(key: str = "default", **kwargs: Any) -> Browser:
    """The process's shared :class:`Browser` for ``key`` (started on first use), with one more reference.

    Each caller calls :meth:`Browser.release` once when done. A browser that died (chromedriver gone)
    is replaced. ``kwargs`` go to :class:`Browser` when one is started.
    """
    with _shared_lock:
        slot = (os.getpid(), key)
        entry = _shared.get(slot)
        if entry is not None and not entry[0].closed and entry[0].alive():
            _shared[slot] = (entry[0], entry[1] + 1)
            return entry[0]
        if entry is not None:
            entry[0].close()
        browser = Browser(**kwargs)
        _shared[slot] = (browser, 1)
        return browser


@atexit.register
def _close_all() -> None:
    for browser in list(_live):
        with contextlib.suppress(Exception):
            browser.close()
