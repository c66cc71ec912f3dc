"""Sandboxes for the OS task: a fresh Linux per episode, one interactive shell, side runs of scripts.

AgentBench gives each problem a new Docker container, runs init and check scripts with
``exec_run`` (non-interactive, cwd ``/``) and types the agent's commands into ONE ``bash --login``
on a TTY, so cwd and variables persist. Both backends here do the same:

* :class:`BwrapSandbox` (default): as root, a private mount namespace (``unshare -m``) gets a
  size-limited tmpfs holding kernel-overlay copies of the host's ``/usr``, ``/etc`` and ``/var``
  (or of a rootfs folder); ``bwrap`` makes that the root with fresh ``/proc``, ``/dev``, empty
  ``/root``, ``/home``, ``/tmp``, new pid / net / ipc / uts namespaces and Docker's default
  capabilities less ``mknod`` and ``net_raw``. Other processes join it with ``nsenter``. Nothing
  the agent writes reaches the host, and everything vanishes with the namespace.
* :class:`DockerSandbox`: ``docker run --network none`` of a locally built image (``docker/os``).

Limits (:class:`Limits`) are the same for both: processes and memory per sandbox (cgroups),
CPU seconds and file size per process (rlimits), a wall clock per command with Ctrl-C and then a
reset of the sandbox's processes, and the bytes of output kept.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import os
import re
import secrets
import select
import shlex
import shutil
import signal
import struct
import subprocess
import tempfile
import termios
import time
from pathlib import Path

from agent_gym.envs.os_interaction.data import Script


class SandboxError(RuntimeError):
    """The sandbox failed (could not start, died); the message says what to fix."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-sandbox and per-command limits (upstream has none but a 5 s socket read timeout)."""

    command_seconds: float = 10.0  # wall clock of one agent command, then Ctrl-C
    script_seconds: float = 120.0  # wall clock of one init / check script
    cpu_seconds: int = 60  # CPU time of any one process (RLIMIT_CPU)
    memory_mb: int = 1024  # all processes of the sandbox together (cgroup)
    processes: int = 256  # all processes of the sandbox together (cgroup pids)
    disk_mb: int = 1024  # the private writable layer (bwrap: tmpfs size)
    file_mb: int = 256  # largest file a process may write (RLIMIT_FSIZE)
    output_bytes: int = 256 * 1024  # output kept per command (the agent sees 780 characters)


@dataclasses.dataclass(frozen=True)
class RunResult:
    exit_code: int
    output: str
    timed_out: bool = False


# Docker's default capability set, less mknod (no devices cgroup here) and net_raw.
CAPABILITIES = ("chown", "dac_override", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
                "net_bind_service", "sys_chroot", "audit_write", "setfcap")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PASTE_START, _PASTE_END = b"\x1b[200~", b"\x1b[201~"
_PASTE_OFF = b"\x1b[?2004l"
_UPSTREAM_PROMPT = re.compile(rb"\x1b.+@.+[#$] $")  # the prompt AgentBench waits for
_PROMPT_END = re.compile(rb"[#$>] $")


class Shell:
    """One interactive ``bash --login`` on a pseudo-terminal, driven like a person typing.

    A command is pasted (bracketed paste, so a multi-line block runs as one unit and gives one
    prompt), the echo of the input is dropped, and output is read until the shell's next prompt:
    recognised by a random marker that ``PROMPT_COMMAND`` prints, or else by AgentBench's own
    prompt pattern followed by a quiet moment (a shell that lost the marker, e.g. after ``su -``).
    """

    def __init__(self, argv: list[str], marker: bytes, limits: Limits):
        self.marker = marker
        self.limits = limits
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.proc = subprocess.Popen(["setsid", "-c", *argv], stdin=slave, stdout=slave, stderr=slave, close_fds=True)
        os.close(slave)
        os.set_blocking(master, False)
        self.fd = master
        self.banner, ready = self._read(time.monotonic() + 30)
        if not ready:
            self.close()
            raise SandboxError(f"the sandbox shell did not start; it said: {self.banner[-500:]!r}")

    @property
    def alive(self) -> bool:
        return self.fd >= 0 and self.proc.poll() is None

    def execute(self, command: str, timeout: float) -> tuple[str, bool]:
        """Type ``command``; return (its output as the terminal shows it, whether it was cut off)."""
        self._drain()
        text = command.replace("\r\n", "\n").encode("utf-8", errors="replace")
        data, ready = self._read(time.monotonic() + timeout, _PASTE_START + text + _PASTE_END + b"\n")
        timed_out = not ready
        if timed_out and self.alive:
            more, ready = self._read(time.monotonic() + 2.0, b"\x03")
            data += more
        return self._clean(data), timed_out and not ready

    def _clean(self, data: bytes) -> str:
        echo_end = data.find(_PASTE_OFF)  # bash turns bracketed paste off once the input is read
        if echo_end >= 0:
            data = data[echo_end + len(_PASTE_OFF):].removeprefix(b"\r")
        elif b"\r\n" in data:
            data = data.split(b"\r\n", 1)[1]
        return data.replace(self.marker, b"").decode("utf-8", errors="replace")

    def _drain(self) -> None:
        """Drop output produced between commands (background jobs), as it is not this command's."""
        try:
            while os.read(self.fd, 65536):
                pass
        except (BlockingIOError, OSError):
            pass

    def _read(self, deadline: float, send: bytes = b"") -> tuple[bytes, bool]:
        """Send ``send`` and read until the prompt; keep the first ``output_bytes`` and the tail."""
        head, tail, dropped = bytearray(), b"", 0
        cap = self.limits.output_bytes
        marker_seen_at = last_data = None
        while True:
            now = time.monotonic()
            if marker_seen_at is not None and (_PROMPT_END.search(tail) or now - last_data > 0.05):
                break
            if (marker_seen_at is None and last_data is not None and now - last_data > 0.3
                    and _UPSTREAM_PROMPT.search(tail[-300:])):
                break
            if now >= deadline:
                return bytes(head), False
            want_write = [self.fd] if send else []
            try:
                readable, writable, _ = select.select([self.fd], want_write, [], min(0.05, deadline - now))
            except (OSError, ValueError):
                return bytes(head), False
            if writable:
                try:
                    sent = os.write(self.fd, send[:4096])
                    send = send[sent:]
                except BlockingIOError:
                    pass
                except OSError:
                    return bytes(head), False
            if not readable:
                continue
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                continue
            except OSError as exc:  # EIO: the shell is gone
                if exc.errno == errno.EIO:
                    return bytes(head), False
                raise
            if not chunk:
                return bytes(head), False
            last_data = time.monotonic()
            room = cap - len(head)
            head += chunk[:max(room, 0)]
            dropped += max(len(chunk) - max(room, 0), 0)
            tail = (tail + chunk)[-4096:]
            if marker_seen_at is None and self.marker in tail:
                marker_seen_at = last_data
                tail = tail[tail.rfind(self.marker) + len(self.marker):]
        if dropped:  # the prompt that ended the command belongs at the end, after the kept head
            head += tail
        return bytes(head), True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


class Sandbox:
    """A fresh Linux for one episode: ``start``, ``execute`` (the agent's shell), ``run`` (a script
    beside it, as ``exec_run``), ``close``. Subclasses say how to launch and how to enter it."""

    backend = ""

    def __init__(self, limits: Limits | None = None):
        self.limits = limits or Limits()
        self.hostname = secrets.token_hex(6)
        self.marker = b"\x1b]7734;" + secrets.token_hex(8).encode() + b"\x07"
        self._shell: Shell | None = None
        self.resets = 0

    # ------------------------------------------------------------------ backend hooks
    def _launch(self) -> None:
        raise NotImplementedError

    def _enter(self, argv: list[str], *, tty: bool, env: dict[str, str]) -> list[str]:
        """The host command line that runs ``argv`` inside the sandbox."""
        raise NotImplementedError

    def _teardown(self) -> None:
        raise NotImplementedError

    def _kill_all(self) -> None:
        """Kill every process of the sandbox but its init (the agent's shell included)."""
        raise NotImplementedError

    # ---------------------------------------------------------------------- protocol
    def start(self) -> Sandbox:
        self._launch()
        return self

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def shell(self) -> Shell:
        if self._shell is None or not self._shell.alive:
            if self._shell is not None:
                self._shell.close()
            env = {"TERM": "xterm", "HOME": "/root", "HOSTNAME": self.hostname, "PATH": PATH,
                   "PROMPT_COMMAND": "printf '%b' '" + self.marker.decode().replace("\x1b", "\\033").replace("\x07", "\\007") + "'"}
            self._shell = Shell(self._enter(["bash", "--login"], tty=True, env=env), self.marker, self.limits)
        return self._shell

    def execute(self, command: str) -> str:
        """Type ``command`` into the agent's shell; a command past its time limit is interrupted
        (Ctrl-C), and if the shell does not come back, the sandbox's processes are reset."""
        output, stuck = self.shell.execute(command, self.limits.command_seconds)
        if stuck or not self.shell_alive:
            self.reset_processes()
        return output

    @property
    def shell_alive(self) -> bool:
        return self._shell is not None and self._shell.alive

    def reset_processes(self) -> None:
        """Kill every process (the shell too); the next command gets a new login shell (files stay)."""
        self.resets += 1
        if self._shell is not None:
            self._shell.close()
            self._shell = None
        self._kill_all()

    def run(self, script: Script, *args: str, timeout: float | None = None) -> RunResult:
        """Run a script beside the shell, as upstream's ``execute_independent`` (cwd ``/``)."""
        timeout = self.limits.script_seconds if timeout is None else timeout
        if script.language == "bash":
            argv = ["bash", "-c", script.code, *(["--", *args] if args else [])]
        elif script.language == "python":
            argv = ["python3", "-c", script.code, *args]
        elif script.language in ("c", "c++"):
            compiler = "gcc" if script.language == "c" else "g++"
            built = self.run(Script("bash", f'printf "%s" "$1" > /tmp/main.src && {compiler} -x {script.language} -o /tmp/a.out /tmp/main.src'), script.code)
            if built.exit_code != 0:
                return built
            argv = ["/tmp/a.out", *args]
        else:
            raise ValueError(f"unsupported script language {script.language!r} (bash, python, c, c++)")
        env = {"PATH": PATH, "HOME": "/root", "HOSTNAME": self.hostname}
        return self._run_argv(self._enter(argv, tty=False, env=env), timeout)

    def _run_argv(self, host_argv: list[str], timeout: float) -> RunResult:
        proc = subprocess.Popen(host_argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        out, cap, deadline, timed_out = bytearray(), self.limits.output_bytes, time.monotonic() + timeout, False
        fd = proc.stdout.fileno()
        os.set_blocking(fd, False)
        while True:
            exited = proc.poll() is not None
            readable, _, _ = select.select([fd], [], [], 0.05 if exited else 0.1)
            chunk = b""
            if readable:
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    chunk = b"-"  # spurious wake-up: keep going
                    continue
                if chunk:
                    out += chunk[: max(cap - len(out), 0)]
            # done when the process exited and nothing more is waiting (a background child may keep the pipe open)
            if exited and not chunk:
                break
            if time.monotonic() > deadline:
                timed_out = True
                self._kill_run(proc)
                break
        proc.stdout.close()
        code = proc.wait()
        return RunResult(-1 if timed_out else code, out.decode("utf-8", errors="replace"), timed_out)

    def _kill_run(self, proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        if self._shell is not None:
            self._shell.close()
            self._shell = None
        self._teardown()


# ---------------------------------------------------------------------------- bubblewrap
_LAUNCH = r"""
set -e
D=$1; LOWER=$2; SIZE=$3; shift 3
mount -t tmpfs -o "size=${SIZE}m,mode=755" agent-gym-os "$D"
mkdir "$D/root" "$D/up" "$D/wk"
if [ "$LOWER" = / ]; then
  for d in usr etc var bin sbin lib lib32 lib64 libx32; do
    if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$D/root/$d"
    elif [ -d "/$d" ]; then
      mkdir "$D/up/$d" "$D/wk/$d" "$D/root/$d"
      mount -t overlay overlay -o "lowerdir=/$d,upperdir=$D/up/$d,workdir=$D/wk/$d" "$D/root/$d"
    fi
  done
  for d in root home tmp proc dev sys run mnt media opt srv boot; do mkdir -p "$D/root/$d"; done
  chmod 700 "$D/root/root"; chmod 1777 "$D/root/tmp"
  cp -a /etc/skel/. "$D/root/root/" 2>/dev/null || true
else
  mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$D/up,workdir=$D/wk" "$D/root"
fi
exec "$@"
"""
# host folders under /var that are nobody's business inside the sandbox
_HIDDEN = ("/var/lib/docker", "/var/lib/containerd", "/var/lib/mysql", "/var/tmp", "/var/run", "/var/lib/apt/lists")


def _cgroup_dirs(name: str, limits: Limits) -> list[Path]:
    """Create the sandbox's cgroups (v1 pids + memory, or v2) and return their folders."""
    base = Path("/sys/fs/cgroup")
    made: list[Path] = []
    try:
        if (base / "pids" / "cgroup.procs").exists() and (base / "memory" / "cgroup.procs").exists():
            for ctl, settings in (("pids", {"pids.max": str(limits.processes)}),
                                  ("memory", {"memory.limit_in_bytes": str(limits.memory_mb << 20)})):
                d = base / ctl / "agent-gym-os" / name
                d.mkdir(parents=True)
                made.append(d)
                for key, value in settings.items():
                    (d / key).write_text(value)
        elif (base / "cgroup.controllers").exists():
            d = base / f"agent-gym-os-{name}"
            d.mkdir()
            made.append(d)
            (d / "pids.max").write_text(str(limits.processes))
            (d / "memory.max").write_text(str(limits.memory_mb << 20))
        else:
            raise OSError("no cgroup v1 pids/memory or cgroup v2 hierarchy under /sys/fs/cgroup")
    except OSError as exc:
        for d in reversed(made):
            d.rmdir()
        raise SandboxError(
            f"cannot create cgroups for the sandbox's process and memory limits ({exc}); run as root with "
            "/sys/fs/cgroup writable, or pass cgroups=False to run without those two limits") from exc
    return made


def default_rootfs() -> Path | None:
    """The image folder ``docker/os/build.sh`` makes: ``$AGENT_GYM_OS_ROOTFS`` or the user cache's
    ``agent-gym/os-rootfs``; None when it is not built."""
    env = os.environ.get("AGENT_GYM_OS_ROOTFS")
    if env:
        path = Path(env)
    else:
        import platformdirs

        path = Path(platformdirs.user_cache_dir("agent-gym")) / "os-rootfs"
    return path if (path / "bin" / "bash").exists() else None


class BwrapSandbox(Sandbox):
    """bubblewrap over a private copy-on-write root (see the module docstring). Needs root."""

    backend = "bwrap"

    def __init__(self, limits: Limits | None = None, root: str | os.PathLike | None = None, cgroups: bool = True):
        """``root``: the folder whose copy-on-write copy is the sandbox's ``/``: the image built by
        ``docker/os/build.sh`` (the default when it exists, see :func:`default_rootfs`) or ``"/"``
        for the host's own ``/usr``, ``/etc`` and ``/var``."""
        super().__init__(limits)
        found = default_rootfs()
        self.root = str(root) if root is not None else str(found) if found else "/"
        self.use_cgroups = cgroups
        self._cgroups: list[Path] = []
        self._proc: subprocess.Popen | None = None
        self._staging: str | None = None
        self.init_pid = 0  # host pid of the sandbox's pid 1

    @staticmethod
    def unavailable() -> str | None:
        """Why this backend cannot run here (None when it can)."""
        missing = [t for t in ("bwrap", "unshare", "nsenter", "setpriv", "prlimit", "setsid") if shutil.which(t) is None]
        if missing:
            return f"missing {', '.join(missing)}: install Debian's bubblewrap and util-linux (apt-get install bubblewrap util-linux)"
        if os.geteuid() != 0:
            return "the bwrap sandbox mounts an overlay root and needs root (or use the docker backend)"
        return None

    def _prefix(self) -> list[str]:
        """Join the cgroups and set the rlimits, then exec the rest (for every process we start)."""
        joins = " && ".join(f"echo $$ > {shlex.quote(str(d / 'cgroup.procs'))}" for d in self._cgroups)
        lim = self.limits
        return ["sh", "-c", (joins + " && " if joins else "") + 'exec "$@"', "sh",
                "prlimit", f"--cpu={lim.cpu_seconds}", f"--fsize={lim.file_mb << 20}", "--core=0", "--"]

    def _launch(self) -> None:
        reason = self.unavailable()
        if reason:
            raise SandboxError(f"bubblewrap sandbox unavailable: {reason}")
        if self.root != "/" and not Path(self.root, "bin").exists():
            raise SandboxError(f"{self.root} is not a root filesystem (no bin/); build one with docker/os/build.sh")
        name = f"{os.getpid()}-{self.hostname}"
        self._cgroups = _cgroup_dirs(name, self.limits) if self.use_cgroups else []
        self._staging = tempfile.mkdtemp(prefix="agent-gym-os-")
        info_r, info_w = os.pipe()
        bwrap = ["bwrap", "--bind", f"{self._staging}/root", "/", "--proc", "/proc", "--dev", "/dev",
                 "--unshare-all", "--hostname", self.hostname, "--die-with-parent", "--cap-drop", "ALL",
                 *[a for c in CAPABILITIES for a in ("--cap-add", f"CAP_{c.upper()}")],
                 "--clearenv", "--setenv", "PATH", PATH, "--chdir", "/", "--info-fd", str(info_w)]
        if self.root == "/":
            bwrap += [a for h in _HIDDEN if os.path.isdir(h) and not os.path.islink(h) for a in ("--tmpfs", h)]
        bwrap += ["--", "sleep", "infinity"]
        argv = [*self._prefix(), "unshare", "-m", "--propagation", "private", "sh", "-c", _LAUNCH, "sh",
                self._staging, self.root, str(self.limits.disk_mb), *bwrap]
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      pass_fds=(info_w,), start_new_session=True)
        os.close(info_w)
        with os.fdopen(info_r, "rb") as info:
            text = info.read(4096).decode()  # bwrap closes it once the sandbox is set up
        match = re.search(r'"child-pid"\s*:\s*(\d+)', text)
        if not match:
            err = self._proc.stderr.read().decode(errors="replace") if self._proc.poll() is not None else ""
            self._teardown()
            raise SandboxError(f"bwrap did not start the sandbox: {err.strip()[-800:] or 'no child pid reported'}")
        self.init_pid = int(match.group(1))
        # bwrap reports the pid before it has built the root: ready once pid 1 has exec'd the main command
        children = Path(f"/proc/{self.init_pid}/task/{self.init_pid}/children")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if any(Path(f"/proc/{c}/comm").read_text().strip() == "sleep" for c in children.read_text().split()):
                    return
            except OSError:
                pass
            time.sleep(0.002)
        self._teardown()
        raise SandboxError("the bwrap sandbox did not come up within 30 s")

    def _enter(self, argv: list[str], *, tty: bool, env: dict[str, str]) -> list[str]:
        caps = ",".join(["-all", *(f"+{c}" for c in CAPABILITIES)])
        return [*self._prefix(), "nsenter", "-t", str(self.init_pid), "-m", "-u", "-i", "-n", "-p", "-r", "-w",
                "--", "setpriv", "--bounding-set", caps, "--inh-caps", "-all", "--",
                "env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv]

    def _sandbox_pids(self) -> list[int]:
        """Host pids of the processes inside, without pid 1 and the main ``sleep``."""
        keep = {self.init_pid}
        try:
            keep |= {int(p) for p in Path(f"/proc/{self.init_pid}/task/{self.init_pid}/children").read_text().split()}
        except OSError:
            pass
        pids: set[int] = set()
        if self._cgroups:
            for d in self._cgroups:
                try:
                    pids |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
                except OSError:
                    pass
        else:  # without cgroups: every process in the sandbox's pid namespace
            try:
                ns = os.readlink(f"/proc/{self.init_pid}/ns/pid")
            except OSError:
                return []
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    try:
                        if os.readlink(entry / "ns" / "pid") == ns:
                            pids.add(int(entry.name))
                    except OSError:
                        continue
        outer = {self._proc.pid} if self._proc else set()
        return sorted(pids - keep - outer)

    def _kill_all(self) -> None:
        for _ in range(20):  # a fork bomb refills the list while we kill: repeat until empty
            pids = self._sandbox_pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)

    def _teardown(self) -> None:
        if self._proc is not None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._proc.wait()
            self._proc.stderr.close()
            self._proc = None
        # pid 1 dies with bwrap (--die-with-parent), and every process of its namespace with it
        for d in self._cgroups:
            for _ in range(100):
                try:
                    d.rmdir()
                    break
                except OSError:
                    for p in (d / "cgroup.procs").read_text().split() if (d / "cgroup.procs").exists() else ():
                        try:
                            os.kill(int(p), signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    time.sleep(0.02)
        self._cgroups = []
        if self._staging:
            try:
                os.rmdir(self._staging)
            except OSError:
                pass
            self._staging = None


# ---------------------------------------------------------------------------- Docker
DEFAULT_IMAGE = "agent-gym/os:latest"


class DockerSandbox(Sandbox):
    """One container per episode from a local image (``docker/os/build.sh``), ``--network none``."""

    backend = "docker"

    def __init__(self, limits: Limits | None = None, image: str = DEFAULT_IMAGE, host: str | None = None):
        super().__init__(limits)
        self.image = image
        self.host = host or os.environ.get("DOCKER_HOST")
        self.container: str | None = None

    def _docker(self) -> list[str]:
        return ["docker", *(["-H", self.host] if self.host else [])]

    def unavailable(self) -> str | None:
        if shutil.which("docker") is None:
            return "no docker client: install docker.io (apt-get install docker.io) and start dockerd"
        try:
            probe = subprocess.run([*self._docker(), "image", "inspect", "--format", "{{.Id}}", self.image],
                                   capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            return "the Docker daemon does not answer"
        if probe.returncode != 0:
            err = probe.stderr.strip()
            if "No such image" in err or "No such object" in err:
                return f"image {self.image} is missing: build it with docker/os/build.sh"
            return f"Docker is not usable: {err[-300:]}"
        return None

    def _launch(self) -> None:
        reason = self.unavailable()
        if reason:
            raise SandboxError(f"docker sandbox unavailable: {reason}")
        lim = self.limits
        run = subprocess.run(
            [*self._docker(), "run", "-d", "-i", "-t", "--rm", "--network", "none", "--hostname", self.hostname,
             "--memory", f"{lim.memory_mb}m", "--memory-swap", f"{lim.memory_mb}m", "--pids-limit", str(lim.processes),
             "--ulimit", f"cpu={lim.cpu_seconds}:{lim.cpu_seconds}", "--ulimit", f"fsize={lim.file_mb << 20}",
             "--ulimit", "core=0", "--cap-drop", "MKNOD", "--cap-drop", "NET_RAW",
             "--label", "created_by=agent-gym-os", self.image, "bash"],
            capture_output=True, text=True, timeout=120)
        if run.returncode != 0:
            raise SandboxError(f"docker run failed: {run.stderr.strip()[-800:]}")
        self.container = run.stdout.strip()

    def _enter(self, argv: list[str], *, tty: bool, env: dict[str, str]) -> list[str]:
        envs = [a for k, v in env.items() if k not in ("PATH", "HOSTNAME") for a in ("-e", f"{k}={v}")]
        if not tty:  # docker exec cannot be killed from outside: let the container's coreutils time it out
            argv = ["timeout", "-s", "KILL", str(int(self.limits.script_seconds) + 1), *argv]
        return [*self._docker(), "exec", "-i", *(["-t"] if tty else []), "-w", "/", *envs, self.container, *argv]

    def _kill_all(self) -> None:
        subprocess.run([*self._docker(), "exec", self.container, "kill", "-9", "-1"], capture_output=True, timeout=60)

    def _teardown(self) -> None:
        if self.container:
            subprocess.run([*self._docker(), "rm", "-f", self.container], capture_output=True, timeout=120)
            self.container = None


BACKENDS = {"bwrap": BwrapSandbox, "docker": DockerSandbox}


def make_sandbox(backend: str = "bwrap", limits: Limits | None = None, **options: object) -> Sandbox:
    """A sandbox of the named backend (not started)."""
    try:
        cls = BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown sandbox backend {backend!r}; choose one of {', '.join(BACKENDS)}") from None
    return cls(limits, **options)


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

    def _ok(self) -> bool:
        return subprocess.run(["docker", "-H", self.host, "version"], capture_output=True).returncode == 0

    def __enter__(self) -> str:
        if shutil.which("dockerd") is None or os.geteuid() != 0:
            raise SandboxError("a private dockerd needs root and dockerd (apt-get install docker.io)")
        with open(self.work / "dockerd.log", "wb") as log:
            self._daemon = subprocess.Popen(
                ["dockerd", "--data-root", str(self.work / "data"), "--exec-root", str(self.work / "exec"),
                 "--pidfile", str(self.work / "docker.pid"), "-H", self.host, "--bridge=none", "--iptables=false",
                 "--ip-masq=false"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        for _ in range(150):
            if self._ok() or self._daemon.poll() is not None:
                break
            time.sleep(0.2)
        if not self._ok():
            log_text = (self.work / "dockerd.log").read_text(errors="replace")[-600:]
            self.__exit__()
            raise SandboxError(f"dockerd could not start here: {log_text}")
        tar = subprocess.Popen(["tar", "-C", str(self.rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(["docker", "-H", self.host, "import", "-c", 'CMD ["bash"]', "-", self.image],
                                  stdin=tar.stdout, capture_output=True, text=True)
        tar.wait()
        if imported.returncode != 0:
            self.__exit__()
            raise SandboxError(f"docker import of {self.rootfs} failed: {imported.stderr[-400:]}")
        return self.host

    def __exit__(self, *exc: object) -> None:
        if self._daemon is not None:
            left = subprocess.run(["docker", "-H", self.host, "ps", "-aq"], capture_output=True, text=True).stdout.split()
            if left:
                subprocess.run(["docker", "-H", self.host, "rm", "-f", *left], capture_output=True)
            os.killpg(self._daemon.pid, signal.SIGTERM)  # dockerd and the containerd it started
            try:
                self._daemon.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(self._daemon.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._daemon.wait()
            self._daemon = None
        subprocess.run(["umount", "-R", str(self.work / "exec")], capture_output=True)
        subprocess.run(["umount", "-R", str(self.work / "data")], capture_output=True)
        shutil.rmtree(self.work, ignore_errors=True)
