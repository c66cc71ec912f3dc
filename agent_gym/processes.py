"""Engine processes that live as long as the Python process, not as long as a thread.

The kernel's parent-death signal (``prctl(PR_SET_PDEATHSIG)``, used by ``setpriv --pdeathsig`` and
``bwrap --die-with-parent``) fires when the *thread* that forked the child exits. An engine started
from a short-lived thread (a request handler, one thread per episode) would die with that thread,
breaking every later episode. :func:`popen_for_life` forks from one thread per process that never ends.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from concurrent.futures import Future
from typing import Any

_lock = threading.Lock()
_launcher: tuple[int, queue.SimpleQueue] | None = None


def _loop(requests: queue.SimpleQueue) -> None:
    while True:
        args, kwargs, result = requests.get()
        try:
            result.set_result(subprocess.Popen(args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            result.set_exception(exc)


def popen_for_life(args: list[str], **kwargs: Any) -> subprocess.Popen:
    """``subprocess.Popen(args, **kwargs)``, forked from a thread that lives as long as this process.

    Raises what ``Popen`` raises (``OSError`` for a missing binary, ...), in the calling thread.
    """
    global _launcher
    with _lock:
        if _launcher is None or _launcher[0] != os.getpid():  # a forked child starts its own
            requests: queue.SimpleQueue = queue.SimpleQueue()
            threading.Thread(target=_loop, args=(requests,), name="agent-gym-launcher", daemon=True).start()
            _launcher = (os.getpid(), requests)
        requests = _launcher[1]
    result: Future = Future()
    requests.put((args, kwargs, result))
    return result.result()
