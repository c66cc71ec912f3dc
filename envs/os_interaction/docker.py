"""The Docker sandbox: one ``docker run --network none`` container per episode, from a local image.

The image is imported from the rootfs folder that ``docker/os/build.sh`` makes (nothing can be
pulled from Docker Hub). pid 1 is ``bash``, as in AgentBench's containers. :class:`PrivateDockerd`
starts a throwaway daemon for tests and benchmarks.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from agent_gym.envs.os_interaction import cgroups, engine, pristine
from agent_gym.envs.os_interaction.engine import (CAPABILITIES, CAPABILITY_NUMBERS, Limits, Sandbox, SandboxError,
                                                  checker_command)

DEFAULT_IMAGE = "agent-gym/os:latest"


def _owner() -> str:
    """``<boot id>/<hostname>/<pid>-<start>``: the process that made a container, as a label."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = "unknown-boot"
    return f"{boot}/{socket.gethostname()}/{cgroups.owner_tag()}"


class DockerSandbox(Sandbox):
    """One container per episode from a local image (``docker/os/build.sh``), ``--network none``."""

    backend = "docker"

    def __init__(self, limits: Limits | None = None, image: str = DEFAULT_IMAGE, host: str | None = None):
        super().__init__(limits)
        self.image = image
        self.host = host or os.environ.get("DOCKER_HOST")
        self.container: str | None = None
        self._init_pid, self._pid_ns = 0, ""  # the container's pid 1 as a process here, and its pid namespace
        self._shell_pid: tuple[object, int] = (None, 0)  # (the Shell, its host pid)
        self._upper: str | None = None  # the container's writable layer on this host ("" when unreadable)

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
            return f"Docker is not usable ({err[-300:]}): start dockerd, or pass host=... / set DOCKER_HOST"
        return None

    def image_id(self) -> str | None:
        """The image's id (``sha256:...``), or None when the daemon or the image is not there."""
        try:
            probe = subprocess.run([*self._docker(), "image", "inspect", "--format", "{{.Id}}", self.image],
                                   capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return probe.stdout.strip() if probe.returncode == 0 else None

    def sweep(self) -> list[str]:
        """Remove the containers of runners on this machine that died without removing them (a
        ``SIGKILL``ed process leaves its ``docker run -d`` containers running); return their ids.
        Each container names its owner (boot id, hostname, pid and start time): a live owner's, or
        one from another machine sharing the daemon, are kept."""
        listed = subprocess.run([*self._docker(), "ps", "-a", "--filter", "label=created_by=agent-gym-os", "--format",
                                 '{{.ID}}\t{{.Label "agent-gym-os.owner"}}'],
                                capture_output=True, text=True, timeout=60)
        here = _owner().rsplit("/", 1)[0] + "/"
        stale = []
        for line in listed.stdout.splitlines():
            cid, _, owner = line.partition("\t")
            tag = owner[len(here):] if owner.startswith(here) else ""
            if tag and not cgroups.owner_alive(f"{cgroups.PREFIX}{tag}-"):
                stale.append(cid)
        if stale:
            subprocess.run([*self._docker(), "rm", "-f", *stale], capture_output=True, timeout=120)
        return stale

    def _launch(self) -> None:
        reason = self.unavailable()
        if reason:
            raise SandboxError(f"docker sandbox unavailable: {reason}")
        self.sweep()
        lim = self.limits
        run = subprocess.run(
            [*self._docker(), "run", "-d", "-i", "-t", "--network", "none", "--hostname", self.hostname,
             "--memory", f"{lim.memory_mb}m", "--memory-swap", f"{lim.memory_mb}m", "--pids-limit", str(lim.processes),
             "--ulimit", f"cpu={lim.cpu_seconds}:{lim.cpu_seconds}", "--ulimit", f"fsize={lim.file_mb << 20}",
             "--ulimit", "core=0", "--cap-drop", "MKNOD", "--cap-drop", "NET_RAW",
             "--label", "created_by=agent-gym-os", "--label", f"agent-gym-os.owner={_owner()}", self.image, "bash"],
            capture_output=True, text=True, timeout=120)
        if run.returncode != 0:
            raise SandboxError(f"docker run failed: {run.stderr.strip()[-800:]}")
        self.container = run.stdout.strip()
        self._locate_init()

    def _locate_init(self) -> None:
        """The container's pid 1 as a process of this machine, for :meth:`wedged` (a daemon reached
        over TCP may run elsewhere: then none)."""
        if self.host and not self.host.startswith("unix://"):
            self._init_pid, self._pid_ns = 0, ""
            return
        probe = subprocess.run([*self._docker(), "inspect", "--format", "{{.State.Pid}}", self.container],
                               capture_output=True, text=True, timeout=60)
        pid = int(probe.stdout.strip()) if probe.returncode == 0 and probe.stdout.strip().isdigit() else 0
        try:
            self._init_pid, self._pid_ns = pid, os.readlink(f"/proc/{pid}/ns/pid")
        except OSError:
            self._init_pid, self._pid_ns = 0, ""

    def wedged(self) -> str | None:
        """The container's init or the agent's shell stopped from outside (seen when the daemon runs
        on this machine)."""
        if not self._init_pid:
            return None
        what = {"the Docker sandbox's init": self._init_pid}
        if self._shell is not None and self._shell.fd >= 0:
            what["the Docker sandbox's shell"] = self._find_shell_pid()
        return engine.stopped(what)

    def _find_shell_pid(self) -> int:
        """Host pid of the agent's shell: the newest ``bash`` in the container that ``docker exec``
        started (its parent, the runtime's shim, is outside the container); found once per shell."""
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

    def _enter(self, argv: list[str], *, tty: bool, env: dict[str, str]) -> list[str]:
        envs = [a for k, v in env.items() if k not in ("PATH", "HOSTNAME") for a in ("-e", f"{k}={v}")]
        if not tty:  # docker exec cannot be killed from outside: let the container's coreutils time it out
            argv = ["timeout", "-s", "KILL", str(int(self.limits.script_seconds) + 1), *argv]
        return [*self._docker(), "exec", "-i", *(["-t"] if tty else []), "-w", "/", *envs, self.container, *argv]

    def _enter_pristine(self, argv: list[str], env: dict[str, str]) -> list[str]:
        # A fresh container of the image (its tools untouched) joins the agent container's pid
        # namespace; the checker, run by the image's own python3, enters the rest from the agent's pid 1.
        changed = self._changed_paths()
        timeout = ["/usr/bin/timeout", "-s", "KILL", str(int(self.limits.script_seconds) + 1)]
        spec = {"pristine": "/", "pid": 1, "namespaces": ["uts", "ipc", "net"], "changed": changed,
                "capabilities": sorted(CAPABILITY_NUMBERS[c] for c in CAPABILITIES), "argv": [*timeout, *argv],
                "env": env}
        lim = self.limits
        # SYS_ADMIN builds the view (mounts, setns) and is dropped before the check runs; AppArmor's and
        # SELinux's container profiles forbid mounting at all, so the builder runs without them
        return [*self._docker(), "run", "--rm", "--cap-add", "SYS_ADMIN", "--cap-add", "SYS_PTRACE",
                "--security-opt", "apparmor=unconfined", "--security-opt", "label=disable",
                "--pid", f"container:{self.container}",
                "--network", "none", "--memory", f"{lim.memory_mb}m", "--pids-limit", str(lim.processes),
                "--ulimit", f"cpu={lim.cpu_seconds}:{lim.cpu_seconds}", "--ulimit", f"fsize={lim.file_mb << 20}",
                "--ulimit", "core=0", "--label", "created_by=agent-gym-os", "--label", f"agent-gym-os.owner={_owner()}",
                self.image,
                *checker_command(["/usr/bin/python3"], spec)]

    def _changed_paths(self) -> list[str]:
        """Paths the agent created or changed under the tool folders, from the container's writable
        layer when this host can read it (a local overlay2 daemon; ``docker diff`` takes seconds).
        Otherwise none: the checker still compares the command folders itself."""
        if self._upper is None:
            probe = subprocess.run([*self._docker(), "inspect", "--format", "{{.GraphDriver.Data.UpperDir}}",
                                    self.container], capture_output=True, text=True, timeout=60)
            upper = probe.stdout.strip()
            self._upper = upper if probe.returncode == 0 and upper.startswith("/") and os.path.isdir(upper) else ""
        return pristine.changed_paths(self._upper) if self._upper else []

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        paused = subprocess.run([*self._docker(), "pause", self.container], capture_output=True, timeout=120)
        try:
            yield
        finally:
            if paused.returncode == 0:
                subprocess.run([*self._docker(), "unpause", self.container], capture_output=True, timeout=120)

    def _kill_all(self) -> None:
        # a restart kills every process at once (an exec could not even start under a fork bomb); files stay
        try:
            subprocess.run([*self._docker(), "restart", "-t", "0", self.container], capture_output=True, timeout=30)
        except subprocess.TimeoutExpired as exc:
            raise engine.SandboxWedged("the Docker daemon did not restart the sandbox's container within 30 s") from exc
        self._locate_init()  # a restarted container has a new pid 1

    def _teardown(self) -> None:
        if self.container:
            try:
                subprocess.run([*self._docker(), "rm", "-f", self.container], capture_output=True, timeout=120)
            except subprocess.TimeoutExpired:
                pass  # a daemon that does not answer: the container is left to it (labelled, see sweep)
            self.container = None



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
