"""The Docker sandbox: one container with no network per episode, from a local image, on the Docker SDK.

The daemon is the one the Docker command line would use: ``host=`` if given, else ``DOCKER_HOST``
(with ``DOCKER_TLS_VERIFY`` / ``DOCKER_CERT_PATH``), else the current docker context
(``DOCKER_CONTEXT`` or ``docker context use``), else the local socket: a remote or a rootless
daemon works as the user's own ``docker`` does. Everything goes through the Docker SDK for Python
(``pip install 'agent-gym[os-docker]'``): typed errors, container lifecycle, exec streams read with
deadlines here. The image is imported from the rootfs folder that ``docker/os/build.sh`` makes
(nothing can be pulled from Docker Hub). pid 1 is ``bash``, as in AgentBench's containers.
Containers carry labels naming the process that made them (boot id, hostname, pid, start time):
:meth:`DockerSandbox.sweep` removes those of a runner killed with ``SIGKILL``. :class:`PrivateDockerd`
starts a throwaway daemon for tests and benchmarks.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent_gym.envs.os_interaction import cgroups, engine, pristine
from agent_gym.envs.os_interaction.engine import (CAPABILITIES, CAPABILITY_NUMBERS, Limits, RunResult, Sandbox,
                                                  SandboxError, Terminal, checker_command)

try:
    import docker as sdk
    import requests
    from docker.types import Ulimit
except ImportError:  # the os-docker extra is not installed: the backend says so when used
    sdk = None

DEFAULT_IMAGE = "agent-gym/os:latest"
CREATED_BY = {"created_by": "agent-gym-os"}
OWNER_LABEL = "agent-gym-os.owner"
API_SECONDS = 30  # one call to the daemon (a restart, a create); a wait for a script has its own
INSTALL = "pip install 'agent-gym[os-docker]'"
_API_VERSIONS: dict[str, str] = {}  # per daemon URL: asked once per process, not once per episode


class DaemonUnreachable(SandboxError):
    """The Docker daemon is down or does not answer; the message names the endpoint and ``DOCKER_HOST``."""


def _owner() -> str:
    """``<boot id>/<hostname>/<pid>-<start>``: the process that made a container, as a label (the
    start time tells a reused pid apart, the boot id a reboot)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = "unknown-boot"
    return f"{boot}/{socket.gethostname()}/{cgroups.owner_tag()}"


def _labels() -> dict[str, str]:
    return {**CREATED_BY, OWNER_LABEL: _owner()}


def _daemon_errors() -> tuple[type[BaseException], ...]:
    return (sdk.errors.DockerException, requests.exceptions.RequestException, OSError)


def endpoint(host: str | None = None) -> tuple[dict[str, Any], str]:
    """The daemon to use, as the Docker command line picks it: (the SDK client's ``base_url`` /
    ``tls`` arguments, a description naming where it came from for error messages)."""
    if sdk is None:
        raise SandboxError(f"the Docker backend needs the Docker SDK for Python: {INSTALL}")
    if host:
        return {"base_url": host}, f"{host} (host=)"
    if os.environ.get("DOCKER_HOST"):
        return sdk.utils.kwargs_from_env(), f"{os.environ['DOCKER_HOST']} (DOCKER_HOST)"
    from docker.context import ContextAPI
    from docker.context.config import get_current_context_name

    name = os.environ.get("DOCKER_CONTEXT") or get_current_context_name()
    if name and name != "default":
        try:
            kwargs = ContextAPI.kwargs_from_context(name)
        except sdk.errors.DockerException as exc:
            raise DaemonUnreachable(f"docker context {name!r} cannot be read ({exc}): fix it with `docker context "
                                    f"use`, or set DOCKER_HOST") from exc
        if kwargs:
            return kwargs, f"{kwargs['base_url']} (docker context {name!r}; DOCKER_HOST unset)"
    default = sdk.constants.DEFAULT_UNIX_SOCKET.replace("http+", "")
    return {"base_url": default}, f"{default} (DOCKER_HOST unset)"


def connect(host: str | None = None, timeout: float = API_SECONDS) -> Any:
    """A ``docker.DockerClient`` for :func:`endpoint`'s daemon, checked to answer. Raises
    :class:`DaemonUnreachable` naming the endpoint and ``DOCKER_HOST``."""
    kwargs, where = endpoint(host)
    url = str(kwargs.get("base_url"))
    try:
        client = sdk.DockerClient(**kwargs, timeout=timeout, max_pool_size=32,
                                  version=_API_VERSIONS.get(url, "auto"))
        if url in _API_VERSIONS:
            client.ping()
        _API_VERSIONS[url] = client.api.api_version
        return client
    except _daemon_errors() as exc:
        raise DaemonUnreachable(f"the Docker daemon at {where} does not answer ({_why(exc)}): start dockerd, or set "
                                f"DOCKER_HOST (or host=) to a running daemon") from exc


def _why(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) <= 300 else text[:150] + " ... " + text[-150:]


class _Stream(Terminal):
    """A hijacked attach / exec connection of the Docker API, non-blocking. Bytes the HTTP client
    read past the response head into its buffer are handed out first (the process may speak before
    this side has read the head)."""

    def __init__(self, raw: Any):
        buffered = b""
        response = getattr(raw, "_response", None)
        sock = getattr(raw, "_sock", raw)  # a unix / TCP connection comes wrapped in socket.SocketIO
        sock.setblocking(False)
        if response is not None:
            reader = response.raw._fp.fp
            with contextlib.suppress(BlockingIOError, OSError, ValueError, TypeError):
                buffered = reader.read1(65536) or b""
        self.response, self.sock, self.buffered = response, sock, buffered
        self.closed = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> bytes:
        if self.buffered:
            data, self.buffered = self.buffered, b""
            return data
        try:
            return self.sock.recv(65536)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise BlockingIOError from None
        except BlockingIOError:
            raise
        except OSError:  # reset: the daemon closed the stream
            return b""

    def write(self, data: bytes) -> int:
        try:
            return self.sock.send(data)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise BlockingIOError from None

    def pending(self) -> bool:
        return bool(self.buffered) or (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                self.sock.close()
            if self.response is not None:
                with contextlib.suppress(Exception):
                    self.response.close()


def _read_frames(stream: _Stream, deadline: float, cap: int) -> tuple[bytes, bool]:
    """Read a non-TTY stream (8-byte headers: stream, 0, 0, 0, length) to its end or ``deadline``:
    (stdout and stderr as they came, the first ``cap`` bytes; whether it ended in time)."""
    raw, out, ended = bytearray(), bytearray(), False
    while not ended:
        now = time.monotonic()
        if now >= deadline:
            return bytes(out), False
        if not stream.pending():
            readable, _, _ = select.select([stream], [], [], min(0.1, deadline - now))
            if not readable:
                continue
        try:
            chunk = stream.read()
        except BlockingIOError:
            continue
        ended = not chunk
        raw += chunk
        while len(raw) >= 8:
            size = struct.unpack(">xxxxL", raw[:8])[0]
            if len(raw) < 8 + size:
                break
            if len(out) < cap:
                out += raw[8:8 + min(size, cap - len(out))]
            del raw[:8 + size]
    return bytes(out), True


class DockerSandbox(Sandbox):
    """One container per episode from a local image (``docker/os/build.sh``), with no network.

    ``host``: the daemon (``unix:///...``, ``tcp://...``, ``ssh://...``); default ``DOCKER_HOST``,
    then the current docker context. Raises :class:`DaemonUnreachable` on start when it does not
    answer, :class:`SandboxError` when the image is missing."""

    backend = "docker"

    def __init__(self, limits: Limits | None = None, image: str = DEFAULT_IMAGE, host: str | None = None):
        super().__init__(limits)
        self.image = image
        self.host = host
        self.client: Any = None
        self.container: str | None = None
        self._init_pid, self._pid_ns = 0, ""  # the container's pid 1 as a process here, and its pid namespace
        self._shell_pid: tuple[object, int] = (None, 0)  # (the Shell, its host pid)
        self._upper: str | None = None  # the container's writable layer on this host ("" when unreadable)

    @property
    def api(self) -> Any:
        """The SDK's low-level client (``docker.APIClient``), connected on first use."""
        if self.client is None:
            self.client = connect(self.host)
        return self.client.api

    def unavailable(self) -> str | None:
        """Why no episode can start (the SDK missing, the daemon down or unreachable, the image
        absent), naming the fix; None when it can. Starts nothing."""
        try:
            self.api.inspect_image(self.image)
        except SandboxError as exc:
            return str(exc)
        except sdk.errors.ImageNotFound:
            return (f"image {self.image} is missing from the Docker daemon at {endpoint(self.host)[1]}: build it with "
                    f"docker/os/build.sh")
        except _daemon_errors() as exc:
            return f"Docker is not usable at {endpoint(self.host)[1]} ({_why(exc)}): start dockerd, or set DOCKER_HOST"
        return None

    def image_id(self) -> str | None:
        """The image's id (``sha256:...``), or None when the daemon or the image is not there."""
        try:
            return self.api.inspect_image(self.image)["Id"]
        except (SandboxError, *_daemon_errors()):
            return None

    def sweep(self) -> list[str]:
        """Remove the containers of runners on this machine that died without removing them (a
        ``SIGKILL``ed process leaves its containers running); return their ids. Each container names
        its owner (boot id, hostname, pid and start time): a live owner's, or one from another
        machine or an earlier boot sharing the daemon, are kept."""
        here = _owner().rsplit("/", 1)[0] + "/"
        stale = []
        for c in self.api.containers(all=True, filters={"label": "created_by=agent-gym-os"}):
            owner = (c.get("Labels") or {}).get(OWNER_LABEL, "")
            tag = owner[len(here):] if owner.startswith(here) else ""
            if tag and not cgroups.owner_alive(f"{cgroups.PREFIX}{tag}-"):
                stale.append(c["Id"])
        for cid in stale:
            with contextlib.suppress(sdk.errors.NotFound):  # another runner's sweep got it first
                self.api.remove_container(cid, force=True)
        return stale

    def _host_config(self, **extra: Any) -> Any:
        lim = self.limits
        ulimits = [Ulimit(name="cpu", soft=lim.cpu_seconds, hard=lim.cpu_seconds),
                   Ulimit(name="fsize", soft=lim.file_mb << 20, hard=lim.file_mb << 20), Ulimit(name="core", soft=0, hard=0)]
        return self.api.create_host_config(network_mode="none", mem_limit=f"{lim.memory_mb}m",
                                           pids_limit=lim.processes, ulimits=ulimits, **extra)

    def _launch(self) -> None:
        api = self.api
        try:
            self.sweep()
            config = self._host_config(memswap_limit=f"{self.limits.memory_mb}m", cap_drop=["MKNOD", "NET_RAW"])
            created = api.create_container(self.image, ["bash"], hostname=self.hostname, stdin_open=True, tty=True,
                                           labels=_labels(), host_config=config)
            self.container = created["Id"]
            api.start(self.container)
        except sdk.errors.ImageNotFound as exc:
            self._teardown()
            raise SandboxError(f"docker sandbox unavailable: image {self.image} is missing from the daemon at "
                               f"{endpoint(self.host)[1]}: build it with docker/os/build.sh") from exc
        except _daemon_errors() as exc:
            self._teardown()
            raise SandboxError(f"the Docker sandbox could not start at {endpoint(self.host)[1]}: {_why(exc)}") from exc
        self._locate_init()

    def _local_daemon(self) -> bool:
        """Whether the daemon runs on this machine (a unix socket), so its processes are in /proc here."""
        return self.api.base_url == "http+docker://localhost"

    def _locate_init(self) -> None:
        """The container's pid 1 as a process of this machine, for :meth:`wedged` (a daemon reached
        over TCP or SSH runs elsewhere: then none)."""
        self._init_pid, self._pid_ns = 0, ""
        if not self._local_daemon():
            return
        try:
            pid = int(self.api.inspect_container(self.container)["State"]["Pid"])
            self._init_pid, self._pid_ns = pid, os.readlink(f"/proc/{pid}/ns/pid")
        except (*_daemon_errors(), KeyError, ValueError, TypeError):
            self._init_pid, self._pid_ns = 0, ""

    def wedged(self) -> str | None:
        """The container's init or the agent's shell stopped from outside, or its init gone: the
        container killed from outside (seen when the daemon runs on this machine)."""
        if not self._init_pid:
            return None
        if engine.process_exiting(self._init_pid):  # exiting counts as gone (see BwrapSandbox.wedged)
            return f"the Docker sandbox's init (host pid {self._init_pid}) is gone (container killed from outside?)"
        what = {"the Docker sandbox's init": self._init_pid}
        if self._shell is not None and self._shell.fd >= 0:
            what["the Docker sandbox's shell"] = self._find_shell_pid()
        return engine.stopped(what)

    def _find_shell_pid(self) -> int:
        """Host pid of the agent's shell: the newest ``bash`` in the container that an exec started
        (its parent, the runtime's shim, is outside the container); found once per shell."""
        if self._shell_pid[0] is self._shell:
            return self._shell_pid[1]
        best, best_start = 0, -1
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == self._init_pid:
                continue
            try:
                if os.readlink(entry / "ns" / "pid") != self._pid_ns or (entry / "comm").read_text().strip() != "bash":
                    continue
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if os.readlink(f"/proc/{fields[1]}/ns/pid") == self._pid_ns:
                    continue  # a child of something in the container: not an exec'd process
            except (OSError, IndexError):
                continue
            if int(fields[19]) > best_start:
                best, best_start = int(entry.name), int(fields[19])
        if best:
            self._shell_pid = (self._shell, best)
        return best

    def _exec(self, argv: list[str], env: dict[str, str], tty: bool) -> tuple[_Stream, str]:
        """Start ``argv`` in the container (cwd ``/``): its stream and the exec's id."""
        environment = {k: v for k, v in env.items() if k != "HOSTNAME"}  # the container's own (= self.hostname)
        try:
            made = self.api.exec_create(self.container, argv, stdin=tty, tty=tty, environment=environment, workdir="/")
            return _Stream(self.api.exec_start(made["Id"], tty=tty, socket=True)), made["Id"]
        except _daemon_errors() as exc:
            raise SandboxError(f"docker exec in the sandbox failed: {_why(exc)}") from exc

    def _terminal(self, argv: list[str], env: dict[str, str]) -> Terminal:
        return self._exec(argv, env, tty=True)[0]

    def _run_inside(self, argv: list[str], env: dict[str, str], timeout: float) -> RunResult:
        # an exec cannot be killed through the API: the container's coreutils time it out
        argv = ["timeout", "-s", "KILL", str(int(self.limits.script_seconds) + 1), *argv]
        stream, exec_id = self._exec(argv, env, tty=False)
        try:
            out, ended = _read_frames(stream, time.monotonic() + timeout, self.limits.output_bytes)
        finally:
            stream.close()
        if not ended:
            return RunResult(-1, out.decode("utf-8", errors="replace"), True)
        return RunResult(self._exit_code(exec_id), out.decode("utf-8", errors="replace"))

    def _exit_code(self, exec_id: str) -> int:
        """An ended exec's exit code (the stream may close a moment before the daemon records it)."""
        try:
            for _ in range(100):
                state = self.api.exec_inspect(exec_id)
                if not state["Running"] and state["ExitCode"] is not None:
                    return int(state["ExitCode"])
                time.sleep(0.02)
        except _daemon_errors() as exc:
            raise SandboxError(f"the Docker daemon lost a script's exit status: {_why(exc)}") from exc
        return -1

    def _run_pristine(self, argv: list[str], env: dict[str, str], timeout: float) -> RunResult:
        # A fresh container of the image (its tools untouched) joins the agent container's pid
        # namespace; the checker, run by the image's own python3, enters the rest from the agent's pid 1.
        script_timeout = ["/usr/bin/timeout", "-s", "KILL", str(int(self.limits.script_seconds) + 1)]
        spec = {"pristine": "/", "pid": 1, "namespaces": ["uts", "ipc", "net"], "changed": self._changed_paths(),
                "capabilities": sorted(CAPABILITY_NUMBERS[c] for c in CAPABILITIES), "argv": [*script_timeout, *argv],
                "env": env}
        # SYS_ADMIN builds the view (mounts, setns) and is dropped before the check runs; AppArmor's and
        # SELinux's container profiles forbid mounting at all, so the builder runs without them
        config = self._host_config(cap_add=["SYS_ADMIN", "SYS_PTRACE"],
                                   security_opt=["apparmor=unconfined", "label=disable"],
                                   pid_mode=f"container:{self.container}")
        api, checker, stream = self.api, None, None
        try:
            checker = api.create_container(self.image, checker_command(["/usr/bin/python3"], spec), labels=_labels(),
                                           host_config=config)["Id"]
            stream = _Stream(api.attach_socket(checker, params={"stdout": 1, "stderr": 1, "stream": 1}))
            api.start(checker)
            out, ended = _read_frames(stream, time.monotonic() + timeout, self.limits.output_bytes)
            if not ended:
                api.kill(checker)
            code = api.wait(checker, timeout=API_SECONDS)["StatusCode"]
            return RunResult(code if ended else -1, out.decode("utf-8", errors="replace"), not ended)
        except _daemon_errors() as exc:
            raise SandboxError(f"the Docker checker container failed: {_why(exc)}") from exc
        finally:
            if stream is not None:
                stream.close()
            if checker is not None:
                with contextlib.suppress(*_daemon_errors()):
                    api.remove_container(checker, force=True)

    def _changed_paths(self) -> list[str]:
        """Paths the agent created or changed under the tool folders, from the container's writable
        layer when this host can read it (a local overlay2 daemon; a diff through the API takes
        seconds). Otherwise none: the checker still compares the command folders itself."""
        if self._upper is None:
            try:
                upper = self.api.inspect_container(self.container)["GraphDriver"]["Data"]["UpperDir"]
            except (*_daemon_errors(), KeyError, TypeError):
                upper = ""
            self._upper = upper if self._local_daemon() and upper.startswith("/") and os.path.isdir(upper) else ""
        return pristine.changed_paths(self._upper) if self._upper else []

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        try:
            self.api.pause(self.container)
            paused = True
        except _daemon_errors():
            paused = False
        try:
            yield
        finally:
            if paused:
                with contextlib.suppress(*_daemon_errors()):
                    self.api.unpause(self.container)

    def _kill_all(self) -> None:
        # a restart kills every process at once (an exec could not even start under a fork bomb); files stay
        try:
            self.api.restart(self.container, timeout=0)
        except requests.exceptions.Timeout as exc:
            raise engine.SandboxWedged(f"the Docker daemon did not restart the sandbox's container within "
                                       f"{API_SECONDS} s") from exc
        except _daemon_errors() as exc:
            raise SandboxError(f"the Docker daemon could not restart the sandbox's container: {_why(exc)}") from exc
        self._locate_init()  # a restarted container has a new pid 1

    def _teardown(self) -> None:
        if self.container:
            with contextlib.suppress(*_daemon_errors()):  # a daemon that does not answer keeps it (labelled, see sweep)
                self.api.remove_container(self.container, force=True)
            self.container = None
        if self.client is not None:
            self.client.close()
            self.client = None


class PrivateDockerd:
    """A throwaway ``dockerd`` on its own socket and data root (no bridge, no iptables), with the
    sandbox image imported from the rootfs folder: what the tests and the benchmark use when no
    daemon is running. ``with PrivateDockerd(rootfs) as host: DockerSandbox(host=host)``."""

    def __init__(self, rootfs: str | os.PathLike, image: str = DEFAULT_IMAGE):
        self.rootfs, self.image = Path(rootfs), image
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None  # a memory-backed data root: fast to fill and empty
        self.work = Path(tempfile.mkdtemp(prefix="agent-gym-dockerd-", dir=shm))
        self.host = f"unix://{self.work}/docker.sock"
        self._daemon: subprocess.Popen | None = None

    def _client(self, timeout: float = API_SECONDS) -> Any:
        try:
            return connect(self.host, timeout)
        except DaemonUnreachable:
            return None

    def __enter__(self) -> str:
        if sdk is None:
            raise SandboxError(f"the Docker backend needs the Docker SDK for Python: {INSTALL}")
        if shutil.which("dockerd") is None or os.geteuid() != 0:
            raise SandboxError("a private dockerd needs root and dockerd (apt-get install docker.io)")
        with open(self.work / "dockerd.log", "wb") as log:
            self._daemon = subprocess.Popen(
                ["dockerd", "--data-root", str(self.work / "data"), "--exec-root", str(self.work / "exec"),
                 "--pidfile", str(self.work / "docker.pid"), "-H", self.host, "--bridge=none", "--iptables=false",
                 "--ip-masq=false"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        client = None
        for _ in range(300):
            if self._daemon.poll() is not None or (Path(self.host[7:]).exists() and (client := self._client())):
                break
            time.sleep(0.1)
        if client is None:
            log_text = (self.work / "dockerd.log").read_text(errors="replace")[-600:]
            self.__exit__()
            raise SandboxError(f"dockerd could not start here: {log_text}")
        tar = subprocess.Popen(["tar", "-C", str(self.rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        repository, _, tag = self.image.rpartition(":")
        slow = connect(self.host, timeout=600)
        try:
            slow.api.import_image(src=tar.stdout, repository=repository, tag=tag, changes=['CMD ["bash"]'],
                                  stream_src=True)
        except _daemon_errors() as exc:
            tar.kill()
            self.__exit__()
            raise SandboxError(f"docker import of {self.rootfs} failed: {_why(exc)}") from exc
        finally:
            tar.stdout.close()
            tar.wait()
            slow.close()
            client.close()
        return self.host

    def __exit__(self, *exc: object) -> None:
        if self._daemon is not None:
            client = self._client(10) if self._daemon.poll() is None else None
            if client is not None:
                with contextlib.suppress(*_daemon_errors()):
                    for c in client.api.containers(all=True):
                        client.api.remove_container(c["Id"], force=True)
                client.close()
            os.killpg(self._daemon.pid, signal.SIGTERM)  # dockerd and the containerd it started
            try:
                self._daemon.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._daemon.pid, signal.SIGKILL)
            self._daemon.wait()
            self._daemon = None
        subprocess.run(["umount", "-R", str(self.work / "exec")], capture_output=True)
        subprocess.run(["umount", "-R", str(self.work / "data")], capture_output=True)
        shutil.rmtree(self.work, ignore_errors=True)
