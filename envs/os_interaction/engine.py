"""The OS task's sandbox protocol: a fresh Linux per episode, one interactive shell, side runs of scripts.

AgentBench gives each problem a new Docker container, runs init and check scripts with
``exec_run`` (non-interactive, cwd ``/``) and types the agent's commands into ONE ``bash --login``
on a TTY, so cwd and variables persist. :class:`Sandbox` is that protocol (``execute`` for the
shell, ``run`` for scripts); :class:`Shell` drives the terminal. The backends live beside it:
``bwrap.py`` (default: bubblewrap over a private copy-on-write root) and ``docker.py``.

Limits (:class:`Limits`) are the same for both: processes and memory per sandbox (cgroups),
CPU seconds and file size per process (rlimits), a wall clock per command with Ctrl-C and then a
reset of the sandbox's processes, and the bytes of output kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import re
import secrets
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from agent_gym.envs.os_interaction.data import Script
from agent_gym.envs.os_interaction.pristine import FAILED as CHECKER_FAILED
from agent_gym.envs.os_interaction.pristine import FAILED_PREFIX as CHECKER_FAILED_PREFIX


class SandboxError(RuntimeError):
    """The sandbox failed (could not start, died); the message says what to fix."""


class SandboxWedged(SandboxError):
    """The sandbox stopped answering (its init or the agent's shell stopped from outside): the episode
    cannot go on; the next reset makes a new sandbox."""


class CheckerError(SandboxError):
    """A check could not be run with the image's tools on this machine (not the agent's doing)."""


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
# A checker's PATH: the image's folders first, so a command the agent added cannot shadow an image
# command; the agent's own commands (/usr/local) still run when a check calls them by name.
CHECK_PATH = "/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/sbin:/usr/local/bin"
# capability numbers (linux/capability.h) of CAPABILITIES, for the checker's own drop
CAPABILITY_NUMBERS = {"chown": 0, "dac_override": 1, "fowner": 3, "fsetid": 4, "kill": 5, "setgid": 6, "setuid": 7,
                      "setpcap": 8, "net_bind_service": 10, "sys_chroot": 18, "audit_write": 29, "setfcap": 31}
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

    def __init__(self, argv: list[str] | Terminal, marker: bytes, limits: Limits, start_seconds: float = 30.0,
                 watch: Callable[[], str | None] | None = None):
        """``argv``: the host command line of the shell (run on a pseudo-terminal here), or a
        :class:`Terminal` already connected to one (Docker's exec stream). ``watch``: called about
        every 0.2 s while waiting for the shell; a reason it returns (the sandbox is wedged) raises
        :class:`SandboxWedged` at once instead of waiting out the deadline."""
        self.marker = marker
        self.limits = limits
        self.watch = watch
        self.terminal = argv if isinstance(argv, Terminal) else PtyProcess(argv)
        self.proc = getattr(self.terminal, "proc", None)  # the host process, for a shell started here
        self.fd = self.terminal.fileno()
        self.ended = False  # the terminal reported end of file: the shell is gone
        try:
            self.banner, ready = self._read(time.monotonic() + start_seconds)
        except SandboxError:
            self.close()
            raise
        if not ready:
            self.close()
            said = f"it said: {self.banner[-500:]!r}" if self.banner else f"no prompt within {start_seconds:g} s"
            raise SandboxError(f"the sandbox shell did not start; {said}")

    @property
    def alive(self) -> bool:
        return self.fd >= 0 and not self.ended and not self.terminal.exited()

    def execute(self, command: str, timeout: float) -> tuple[str, bool]:
        """Type ``command``; return (its output as the terminal shows it, whether it was cut off)."""
        self._drain()
        text = command.replace("\r\n", "\n").encode("utf-8", errors="replace")
        data, ready = self._read(time.monotonic() + timeout, _PASTE_START + text + _PASTE_END + b"\n")
        timed_out = not ready
        if timed_out and self.alive:
            more, ready = self._read(time.monotonic() + 2.0, b"\x03")
            # one command keeps output_bytes and the last 4 KiB (the prompt), Ctrl-C's share included
            data, cap = data + more, self.limits.output_bytes
            if len(data) > cap + 4096:
                data = data[:cap] + data[cap:][-4096:]
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
            while self.terminal.read():
                pass
        except (BlockingIOError, OSError):
            pass

    def _read(self, deadline: float, send: bytes = b"") -> tuple[bytes, bool]:
        """Send ``send`` and read until the prompt; keep the first ``output_bytes`` and the tail."""
        head, tail, dropped = bytearray(), b"", 0
        cap = self.limits.output_bytes
        marker_seen_at = last_data = None
        watched = 0.0
        while True:
            now = time.monotonic()
            if self.watch is not None and now - watched >= 0.2:
                watched = now
                wedged = self.watch()
                if wedged:
                    raise SandboxWedged(wedged)
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
            readable = readable or self.terminal.pending()
            if writable:
                try:
                    sent = self.terminal.write(send[:4096])
                    send = send[sent:]
                except BlockingIOError:
                    pass
                except OSError:
                    return bytes(head), False
            if not readable:
                if self.terminal.exited():  # the shell exited; a background job may still hold the terminal
                    self.ended = True
                    return bytes(head), False
                continue
            try:
                chunk = self.terminal.read()
            except BlockingIOError:
                continue
            if not chunk:
                self.ended = True
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
        self.terminal.close()
        self.fd = -1


class Terminal:
    """Both ends of a shell's terminal as :class:`Shell` drives it: a non-blocking stream with a file
    descriptor to wait on. ``read`` returns b"" at the end (the shell is gone) and raises
    ``BlockingIOError`` when nothing is waiting; ``pending`` says whether bytes are already
    buffered on this side (TLS), which ``select`` on the descriptor would not show."""

    def fileno(self) -> int:
        raise NotImplementedError

    def read(self) -> bytes:
        raise NotImplementedError

    def write(self, data: bytes) -> int:
        raise NotImplementedError

    def pending(self) -> bool:
        return False

    def exited(self) -> bool:
        """The shell's process is known to have ended (its output may still be waiting)."""
        return False

    def close(self) -> None:
        raise NotImplementedError


class PtyProcess(Terminal):
    """A host process (``argv``) on a new pseudo-terminal, in a session of its own."""

    def __init__(self, argv: list[str]):
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        # A parent that ignores SIGINT (a job started with `&`, nohup) would pass that on to every
        # command of the agent and make Ctrl-C useless: the shell starts with default dispositions.
        self.proc = subprocess.Popen(["env", "--default-signal=INT,QUIT", "setsid", "-c", *argv],
                                     stdin=slave, stdout=slave, stderr=slave, close_fds=True)
        os.close(slave)
        os.set_blocking(master, False)
        self.fd = master

    def fileno(self) -> int:
        return self.fd

    def read(self) -> bytes:
        try:
            return os.read(self.fd, 65536)
        except BlockingIOError:
            raise
        except OSError as exc:  # EIO: the shell and everything that held the terminal are gone
            if exc.errno == errno.EIO:
                return b""
            raise

    def write(self, data: bytes) -> int:
        return os.write(self.fd, data)

    def exited(self) -> bool:
        return self.proc.poll() is not None

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


def process_state(pid: int) -> str | None:
    """A process's state letter from ``/proc/<pid>/stat`` (``T``: stopped), or None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


#: ``PF_EXITING`` in ``/proc/<pid>/stat``'s flags (include/linux/sched.h): the process is in ``do_exit``.
PF_EXITING = 0x4


def process_exiting(pid: int) -> bool:
    """Whether a process is dying: in the kernel's exit path (a killed pid namespace's init stays there,
    its state still ``S``, until every process of the namespace is reaped), a zombie, or gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0] in ("Z", "X") or bool(int(fields[6]) & PF_EXITING)
    except (OSError, IndexError, ValueError):
        return True


def stopped(what: dict[str, int]) -> str | None:
    """The first of ``{description: host pid}`` that is stopped (SIGSTOP, or a tracer's stop), as
    "<description> (host pid N) is stopped"; None when none is."""
    for description, pid in what.items():
        if pid and process_state(pid) in ("T", "t"):
            return f"{description} (host pid {pid}) is stopped (SIGSTOP from outside the sandbox?)"
    return None


def checker_command(python: list[str], spec: dict) -> list[str]:
    """``python`` running :mod:`.pristine` on ``spec`` (its source passed inline: it runs where this
    package is not installed, in the image)."""
    source = (Path(__file__).parent / "pristine.py").read_text(encoding="utf-8")
    return [*python, "-I", "-S", "-c", source, json.dumps(spec)]


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

    def _terminal(self, argv: list[str], env: dict[str, str]) -> list[str] | Terminal:
        """The agent's shell ``argv`` on a terminal: a host command line (run on a pty here) or a
        connected :class:`Terminal`."""
        return self._enter(argv, tty=True, env=env)

    def _run_inside(self, argv: list[str], env: dict[str, str], timeout: float) -> RunResult:
        """Run ``argv`` inside the sandbox beside the shell (no terminal, cwd ``/``)."""
        return self._run_argv(self._enter(argv, tty=False, env=env), timeout)

    def _run_pristine(self, argv: list[str], env: dict[str, str], timeout: float) -> RunResult:
        """Run ``argv`` as a checker (see :mod:`.pristine`)."""
        return self._run_argv(self._enter_pristine(argv, env), timeout)

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
        return self._open_shell(30.0)

    def _open_shell(self, start_seconds: float) -> Shell:
        if self._shell is None or not self._shell.alive:
            if self._shell is not None:
                self._shell.close()
            env = {"TERM": "xterm", "HOME": "/root", "HOSTNAME": self.hostname, "PATH": PATH,
                   "PROMPT_COMMAND": "printf '%b' '" + self.marker.decode().replace("\x1b", "\\033").replace("\x07", "\\007") + "'"}
            self._shell = Shell(self._terminal(["bash", "--login"], env), self.marker, self.limits,
                                start_seconds, watch=self.wedged)
        return self._shell

    def wedged(self) -> str | None:
        """Why the sandbox cannot go on, when something outside stopped it (its init or the agent's
        shell stopped with SIGSTOP, a daemon that does not answer); None when it can. Cheap: polled."""
        return None

    def execute(self, command: str) -> str:
        """Type ``command`` into the agent's shell; a command past its time limit is interrupted
        (Ctrl-C), and if the shell does not come back, the sandbox's processes are reset.

        Raises :class:`SandboxWedged` (naming the sandbox and what stopped) as soon as the sandbox
        is seen wedged, and :class:`SandboxError` when a new shell cannot start within the command's
        time limit: a step never waits longer than ``command_seconds`` plus the 2 s Ctrl-C grace."""
        wedged = self.wedged()
        if wedged:
            raise SandboxWedged(wedged)
        began = time.monotonic()
        shell = self._open_shell(self.limits.command_seconds)  # a new one after an exit: normally milliseconds
        left = self.limits.command_seconds - (time.monotonic() - began)
        output, stuck = shell.execute(command, max(left, 0.1))
        wedged = self.wedged()
        if wedged:  # the sandbox itself was killed (or stopped) under the command: not the agent's doing
            raise SandboxWedged(wedged)
        if not self.shell_alive:  # `exit`, `exec`, killed: the next command gets a new login shell
            self._shell.close()
            self._shell = None
        elif stuck:
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

    def run(self, script: Script, *args: str, timeout: float | None = None, pristine: bool = False) -> RunResult:
        """Run a script beside the shell, as upstream's ``execute_independent`` (cwd ``/``).

        ``pristine``: run it as a checker: with the image's own tools on the agent's files and
        processes, a fixed ``PATH`` and isolated Python (see :mod:`.pristine`); upstream runs checks
        with the agent's binaries."""
        timeout = self.limits.script_seconds if timeout is None else timeout
        if script.language == "bash":
            argv = ["bash", "-c", script.code, *(["--", *args] if args else [])]
        elif script.language == "python":
            argv = ["python3", "-c", script.code, *args]
        elif script.language in ("c", "c++"):
            compiler = "gcc" if script.language == "c" else "g++"
            built = self.run(Script("bash", f'printf "%s" "$1" > /tmp/main.src && {compiler} -x {script.language} -o /tmp/a.out /tmp/main.src'),
                             script.code, pristine=pristine)
            if built.exit_code != 0:
                return built
            argv = ["/tmp/a.out", *args]
        else:
            raise ValueError(f"unsupported script language {script.language!r} (bash, python, c, c++)")
        if not pristine:
            env = {"PATH": PATH, "HOME": "/root", "HOSTNAME": self.hostname}
            return self._run_inside(argv, env, timeout)
        if argv[0] in ("bash", "python3"):  # the image's, whatever the agent put first on its PATH
            argv[0] = "/usr/bin/" + argv[0]
        if argv[0] == "/usr/bin/python3":  # no user site, no PYTHON* variables, no cwd on sys.path
            argv[1:1] = ["-I"]
        env = {"PATH": CHECK_PATH, "HOME": "/root", "HOSTNAME": self.hostname, "PYTHONNOUSERSITE": "1",
               "PYTHONSAFEPATH": "1"}
        result = self._run_pristine(argv, env, timeout)
        if result.exit_code == CHECKER_FAILED and CHECKER_FAILED_PREFIX in result.output:
            raise CheckerError(
                f"{result.output.strip()[-400:]}: the checker needs root, Linux 5.12+ (open_tree, move_mount, "
                f"mount_setattr) and overlayfs, and for Docker a local daemon that allows --cap-add SYS_ADMIN")
        return result

    def _enter_pristine(self, argv: list[str], env: dict[str, str]) -> list[str]:
        """The host command line that runs ``argv`` as a checker (see :mod:`.pristine`)."""
        raise NotImplementedError

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """The sandbox's processes stopped meanwhile (still there, as they are): nothing the agent left
        running can change files or kill processes while the checker looks."""
        yield

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
                    continue
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


def make_sandbox(backend: str = "bwrap", limits: Limits | None = None, **options: object) -> Sandbox:
    """A sandbox of the named backend (not started): ``bwrap`` or ``docker``."""
    if backend == "bwrap":
        from agent_gym.envs.os_interaction.bwrap import BwrapSandbox

        return BwrapSandbox(limits, **options)
    if backend == "docker":
        from agent_gym.envs.os_interaction.docker import DockerSandbox

        return DockerSandbox(limits, **options)
    raise ValueError(f"unknown sandbox backend {backend!r}; choose bwrap or docker")
