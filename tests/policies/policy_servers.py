"""Starting ``agent-gym serve`` for tests and benchmarks: a real server process on a free port."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(*args: str, timeout: float = 120.0) -> Iterator[tuple[subprocess.Popen, str]]:
    """Run ``agent-gym serve`` (the real server, in its own process) until the block ends."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "agent_gym.policies.serve", "--port", str(port), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, url, timeout)
        yield proc, url
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 10 s, for a server still running."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_healthy(proc: subprocess.Popen, url: str, timeout: float) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"agent-gym serve exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            if requests.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"agent-gym serve at {url} not healthy after {timeout} s")
