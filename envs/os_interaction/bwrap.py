"""The default sandbox: bubblewrap over a private copy-on-write root (needs root).

A private mount namespace (``unshare -m``) gets a size-limited tmpfs holding kernel-overlay
copies of the image folder built by ``docker/os/build.sh`` (or, when it is not built, of the
host's ``/usr``, ``/etc`` and ``/var``); ``bwrap`` makes that the root with a fresh ``/proc``,
minimal ``/dev``, empty ``/root`` / ``/home`` / ``/tmp``, new pid / net / ipc / uts namespaces,
an empty environment and Docker's default capabilities less ``mknod`` and ``net_raw``. The
agent's shell and the scripts join it with ``nsenter`` (``setpriv`` caps them again). The
sandbox's processes share a pids + memory cgroup nested in the runner's own (:mod:`.cgroups`);
nothing written inside reaches the host, and it all vanishes with the namespace. What a runner
killed with ``SIGKILL`` leaves (its staging folder, its sandboxes' cgroups) the next start
removes (:func:`sweep`).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

from agent_gym.envs.os_interaction import cgroups, engine, pristine
from agent_gym.envs.os_interaction.engine import (CAPABILITIES, CAPABILITY_NUMBERS, PATH, Limits, Sandbox, SandboxError,
                                                  checker_command)
from agent_gym.processes import popen_for_life

_LAUNCH = r"""
set -e
D=$1; LOWER=$2; SIZE=$3; MASKED=("${@:5:$4}"); shift $((4 + $4))
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
  # the host's secrets (see _masked): password hashes blanked, the rest removed from the copy
  REMOVE=()
  for p in "${MASKED[@]}"; do
    case "$p" in
      /etc/shadow|/etc/shadow-|/etc/gshadow|/etc/gshadow-) sed -E 's/^([^:]*):[^:]*:/\1:*:/' "$p" > "$D/root$p" ;;
      *) REMOVE+=("$D/root$p") ;;
    esac
  done
  [ ${#REMOVE[@]} -eq 0 ] || rm -rf -- "${REMOVE[@]}"
else
  mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$D/up,workdir=$D/wk" "$D/root"
fi
exec "$@"
"""
# Root inside may write any file its mode allows: keep the kernel's knobs read-only (/proc/sys is
# global, /proc/sysrq-trigger can reboot the machine) and hide what Docker hides. The sources are
# the host's /proc, whose sysctls answer for the namespaces of the process that reads them.
_PROC_GUARDS = (
    *("--ro-bind", "/proc/sys", "/proc/sys"),
    *[a for p in ("sysrq-trigger",) if os.path.exists(f"/proc/{p}") for a in ("--ro-bind", f"/proc/{p}", f"/proc/{p}")],
    *[a for p in ("kcore", "keys", "timer_list", "sched_debug", "latency_stats", "kallsyms")
      if os.path.exists(f"/proc/{p}") for a in ("--ro-bind", "/dev/null", f"/proc/{p}")],
)
# Without an image the sandbox's /usr, /etc and /var are copies of the host's. Host state that is
# nobody's business inside (logs, mail, spools, caches, backups, other services' data) is hidden
# under an empty tmpfs; what the host keeps from its other users is masked (see _masked).
_HIDDEN = ("/var/log", "/var/backups", "/var/mail", "/var/spool", "/var/cache", "/var/tmp", "/var/run",
           "/var/lib/docker", "/var/lib/containerd", "/var/lib/mysql", "/var/lib/postgresql", "/var/lib/apt/lists",
           "/var/lib/private")
HOST_MODE = ("no OS image: copies of the host's /usr, /etc, /var with its secrets masked (password hashes "
             "blanked, files other users cannot read removed, logs, mail, caches hidden)")


def _masked() -> list[str]:
    """The host's paths under /etc and /var that other users cannot read (files without o+r,
    folders without o+rx): ``/etc/shadow`` and ``/etc/gshadow`` (kept with their hashes blanked,
    so ``useradd`` and ``passwd`` work), ssh host keys, ``/etc/ssl/private``, services' credentials.
    The agent is root inside: without this it would read them. Walked at each start (35-85 ms on a
    busy machine), so a secret added later is masked too."""
    found: list[str] = []
    stack = ["/etc", "/var"]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            if entry.path in _HIDDEN:
                continue
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except OSError:
                continue
            if stat.S_ISDIR(mode):
                if mode & 0o005 != 0o005:
                    found.append(entry.path)
                else:
                    stack.append(entry.path)
            elif not stat.S_ISLNK(mode) and not mode & 0o004:
                found.append(entry.path)
    # the password files always: blanked even where the host made them world-readable
    found += [p for p in ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-")
              if p not in found and os.path.isfile(p)]
    return sorted(found)


# The sandbox's pid 1 (bwrap --as-pid-1), as bash is in AgentBench's containers. The kernel
# never delivers a signal sent from inside the namespace to its init unless the init handles it, so
# nothing the agent runs (`kill -9 -1`, `kill -9 1`) can end the sandbox; bash would handle INT,
# TERM, ... itself, hence the traps. It reaps the orphans reparented to it (bash reaps any child on
# SIGCHLD) and blocks reading a pipe from this process, ending when that closes.
_INIT = ("trap '' HUP INT QUIT USR1 USR2 PIPE ALRM TERM TSTP TTIN TTOU URG XCPU XFSZ VTALRM PROF WINCH IO PWR SYS; "
         "while :; do read -r _ || exit 0; done")
_LAST_TRAP_BIT = 1 << (signal.SIGSYS - 1)


def _init_ready(pid: int) -> bool:
    """Whether ``pid`` has exec'd _INIT and set its traps (SIGSYS ignored: the last one set)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    match = re.search(r"^SigIgn:\s*([0-9a-f]+)", status, re.M)
    return "Name:\tbash" in status and match is not None and bool(int(match.group(1), 16) & _LAST_TRAP_BIT)


def _protect_from_oom(pid: int) -> None:
    """Keep the memory cgroup's OOM killer off pid 1: it kills the agent's processes, not the sandbox."""
    try:
        Path(f"/proc/{pid}/oom_score_adj").write_text("-1000")
    except OSError:
        pass


def sweep() -> None:
    """Remove what the sandboxes of dead processes left behind (a process killed with ``SIGKILL``
    cannot clean up; its sandbox's processes die with it, ``--die-with-parent``): staging folders
    ``/tmp/agent-gym-os-<pid>-<start>-*``, the cgroups each recorded, stale cgroups in this
    process's own (:func:`cgroups.sweep`). Ours only (same user); a live owner's are kept."""
    for folder in Path(tempfile.gettempdir()).glob(cgroups.PREFIX + "*"):
        try:
            st = folder.lstat()
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
                continue
            if cgroups.owner_alive(folder.name):
                # a folder of a version that did not name its owner: empty, and a day old
                if not _UNNAMED_STAGING.match(folder.name) or time.time() - st.st_mtime < 86400:
                    continue
                folder.rmdir()
                continue
        except OSError:
            continue
        try:
            recorded = (folder / "cgroups").read_text().splitlines()
        except OSError:
            recorded = []
        for line in recorded:
            if line and cgroups.is_sandbox_cgroup(Path(line)):
                cgroups.remove(Path(line))
        shutil.rmtree(folder, ignore_errors=True)
    cgroups.sweep()


_UNNAMED_STAGING = re.compile(r"agent-gym-os-[a-z0-9_]{8}$")  # tempfile.mkdtemp's own 8 characters


_LIVE: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_live() -> None:
    """bwrap's --die-with-parent ends the processes; this also removes cgroups and staging folders."""
    for sandbox in list(_LIVE):
        sandbox.close()


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
        self.init_pid = 0  # host pid of the sandbox's pid 1 (_INIT), which keeps the sandbox up

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
        sweep()
        _LIVE.add(self)
        owner = cgroups.PREFIX + cgroups.owner_tag()  # agent-gym-os-<pid>-<start>: see sweep()
        self._staging = tempfile.mkdtemp(prefix=owner + "-")
        if self.use_cgroups:
            try:
                planned = cgroups.plan(f"{owner}-{self.hostname}")
                # recorded before they exist: a start after this process is killed finds them here
                Path(self._staging, "cgroups").write_text("".join(f"{d}\n" for d in planned))
                cgroups.create(planned, self.limits.processes, self.limits.memory_mb << 20)
            except OSError as exc:
                self._teardown()
                raise SandboxError(f"cannot create cgroups for the sandbox's process and memory limits: {exc}") from exc
            self._cgroups = planned
        info_r, info_w = os.pipe()
        bwrap = ["bwrap", "--bind", f"{self._staging}/root", "/", "--proc", "/proc", *_PROC_GUARDS, "--dev", "/dev",
                 "--unshare-all", "--hostname", self.hostname, "--die-with-parent", "--cap-drop", "ALL",
                 *[a for c in CAPABILITIES for a in ("--cap-add", f"CAP_{c.upper()}")],
                 "--clearenv", "--setenv", "PATH", PATH, "--chdir", "/", "--info-fd", str(info_w)]
        if self.root == "/":
            bwrap += [a for h in _HIDDEN if os.path.isdir(h) and not os.path.islink(h) for a in ("--tmpfs", h)]
        bwrap += ["--as-pid-1", "--", "bash", "-c", _INIT]
        masked = _masked() if self.root == "/" else []
        argv = [*self._prefix(), "unshare", "-m", "--propagation", "private", "bash", "-c", _LAUNCH, "bash",
                self._staging, self.root, str(self.limits.disk_mb), str(len(masked)), *masked, *bwrap]
        # stdin: a pipe nobody writes to; pid 1 reads it, and ends at its end of file (this process gone)
        self._proc = popen_for_life(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
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
        # bwrap reports the pid before it has built the root: ready once pid 1 runs _INIT with its
        # signals ignored (before that an early signal could still end it)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if _init_ready(self.init_pid):
                _protect_from_oom(self.init_pid)
                return
            if self._proc.poll() is not None:
                break
            time.sleep(0.002)
        err = self._proc.stderr.read().decode(errors="replace").strip() if self._proc.poll() is not None else ""
        self._teardown()
        raise SandboxError(f"the bwrap sandbox did not come up: {err[-800:] or 'no init within 30 s'}")

    def wedged(self) -> str | None:
        """The sandbox's init or the agent's shell stopped from outside (the agent cannot stop the init;
        its shell's host pid is the child of the ``nsenter`` that started it), or its init gone: killed
        from outside, the sandbox with it (a new shell would be entered into nothing)."""
        # exiting counts as gone: the agent's shell can end (its read sees end of file) while the killed init
        # still waits in the kernel for the namespace's last processes, its state not yet a zombie's
        if self.init_pid and engine.process_exiting(self.init_pid):
            return f"the bwrap sandbox's init (host pid {self.init_pid}) is gone (killed from outside the sandbox?)"
        what = {"the bwrap sandbox's init": self.init_pid}
        if self._shell is not None and self._shell.fd >= 0:
            pid = self._shell.proc.pid
            try:
                inner = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                inner = []
            what["the bwrap sandbox's shell"] = int(inner[0]) if inner else 0
        return engine.stopped(what)

    def _enter(self, argv: list[str], *, tty: bool, env: dict[str, str]) -> list[str]:
        caps = ",".join(["-all", *(f"+{c}" for c in CAPABILITIES)])
        return [*self._prefix(), "nsenter", "-t", str(self.init_pid), "-m", "-u", "-i", "-n", "-p", "-r", "-w",
                "--", "setpriv", "--bounding-set", caps, "--inh-caps", "-all", "--",
                "env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv]

    def _changed_paths(self) -> list[str]:
        """Paths the agent created or changed under the tool folders: its writable layer, seen from
        the host through the launcher's mount namespace."""
        return pristine.changed_paths(f"/proc/{self._proc.pid}/root{self._staging}/up")

    def _enter_pristine(self, argv: list[str], env: dict[str, str]) -> list[str]:
        spec = {"pristine": self.root, "pid": self.init_pid, "changed": self._changed_paths(),
                "capabilities": sorted(CAPABILITY_NUMBERS[c] for c in CAPABILITIES), "argv": argv, "env": env}
        # the host's Python (trusted) joins the sandbox's pid, uts, ipc and net namespaces here,
        # its mount namespace itself
        return [*self._prefix(), "nsenter", "-t", str(self.init_pid), "-p", "-u", "-i", "-n", "--",
                *checker_command([sys.executable], spec)]

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        stopped: set[int] = set()
        try:
            self._stop_all(stopped)
            yield
        finally:
            for pid in stopped:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass

    def _stop_all(self, stopped: set[int]) -> None:
        """SIGSTOP every process inside, again until no new one appears (a stopped process cannot
        fork, so the list settles); each stopped pid is added to ``stopped`` as it goes."""
        for _ in range(200):
            pids = set(self._sandbox_pids()) - stopped
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGSTOP)
                except ProcessLookupError:
                    pass
            stopped |= pids

    def _sandbox_pids(self) -> list[int]:
        """Host pids of the processes inside, without pid 1 and the main ``sleep``."""
        keep = {self.init_pid}
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
        """Stop everything first (a stopped process cannot fork, so a fork bomb cannot refill the
        list while we go through it), then kill; again until nothing is left (a child forked
        between the last scan and the kill would otherwise live on and refill the pid slots)."""
        counters = [d / "pids.current" for d in self._cgroups if (d / "pids.current").exists()]
        deadline = time.monotonic() + 10
        while True:
            stopped: set[int] = set()
            self._stop_all(stopped)
            for pid in stopped | set(self._sandbox_pids()):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            # the dead hold their pid slots until pid 1 reaps them: wait, or the new shell cannot fork
            settle = min(deadline, time.monotonic() + 1)
            while time.monotonic() < settle:
                try:
                    busy = any(int(c.read_text()) > 4 for c in counters)
                except (OSError, ValueError):
                    busy = False
                if self._sandbox_pids():
                    break  # a survivor: stop and kill again
                if not busy:
                    return
                time.sleep(0.01)
            if time.monotonic() >= deadline:
                return

    def _teardown(self) -> None:
        if self._proc is not None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._proc.wait()
            self._proc.stdin.close()
            self._proc.stderr.close()
            self._proc = None
        # pid 1 dies with bwrap (--die-with-parent), and every process of its namespace with it
        for d in self._cgroups:
            cgroups.remove(d)
        self._cgroups = []
        if self._staging:
            # on the host the folder holds only the cgroups record (the sandbox's tmpfs was mounted on
            # it in the launcher's own mount namespace, gone now)
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None
        _LIVE.discard(self)
