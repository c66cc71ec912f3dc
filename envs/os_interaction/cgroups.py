"""The bwrap sandbox's cgroups: a pids and a memory limit per sandbox, nested in the runner's own.

Each sandbox gets ``agent-gym-os-<pid>-<start>-<hostname>`` (v1: one folder in the ``pids`` and
one in the ``memory`` hierarchy; v2: one folder) inside the cgroup that this process itself
belongs to, read from ``/proc/self/cgroup`` and ``/proc/self/mountinfo``: a memory limit put on
the runner (a systemd scope, a container, a job's cgroup) then covers its sandboxes too, which
cgroups made at the top of the hierarchy escape. The name says which process made it (pid and
start time, which tell it from a reused pid), so a later start can remove what a process killed
with no chance to clean up (``SIGKILL``) left behind: :func:`sweep`.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

PREFIX = "agent-gym-os-"
# agent-gym-os-<pid>-<start>-...: made by process <pid> that started at <start> (clock ticks since boot)
_OWNED = re.compile(r"agent-gym-os-(\d+)-(\d+)-")
# what versions before the nesting made, at the top of each hierarchy: agent-gym-os/<pid>-<hex> (v1),
# agent-gym-os-<pid>-<hex> (v2)
_LEGACY_V1 = re.compile(r"(\d+)-[0-9a-f]{12}$")
_LEGACY_V2 = re.compile(r"agent-gym-os-(\d+)-[0-9a-f]{12}$")
ROOT = Path("/sys/fs/cgroup")


class CgroupError(OSError):
    """The sandbox's cgroups cannot be made here; the message says what to do."""


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, ``/proc/<pid>/stat`` field 22), or None
    when it is gone; with the pid it names one process, even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # the name before ")" may hold spaces


def owner_tag() -> str:
    """``<pid>-<start>`` of this process, for the names of what it makes."""
    return f"{os.getpid()}-{process_start(os.getpid()) or 0}"


def owner_alive(name: str) -> bool:
    """Whether the process named in ``agent-gym-os-<pid>-<start>-...`` still runs (True for other names)."""
    match = _OWNED.match(name)
    if match is None:
        return True
    return process_start(int(match.group(1))) == match.group(2)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def runner_cgroups(proc_cgroup: str, mountinfo: str) -> dict[str, Path]:
    """The folders of a process's own cgroups, from its ``/proc/<pid>/cgroup`` and
    ``/proc/<pid>/mountinfo``: ``{"pids": ..., "memory": ...}`` for v1 hierarchies, ``{"": ...}``
    for v2. A hierarchy mounted at a sub-cgroup (a cgroup namespace, a container) maps through
    its mount root; one not mounted at all is left out."""
    mounts: list[tuple[str, Path, str, set[str]]] = []  # (root, mount point, fstype, super options)
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        fstype = fields[sep + 1]
        if fstype in ("cgroup", "cgroup2") and len(fields) > sep + 3:
            point = fields[4].replace("\\040", " ")
            mounts.append((fields[3], Path(point), fstype, set(fields[sep + 3].split(","))))
    found: dict[str, Path] = {}
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        wanted = [""] if controllers == "" else [c for c in controllers.split(",") if c in ("pids", "memory")]
        for ctl in wanted:
            for root, point, fstype, options in mounts:
                if (fstype == "cgroup2") != (ctl == "") or (ctl and ctl not in options):
                    continue
                rel = os.path.relpath(path, root) if path == root or path.startswith(root.rstrip("/") + "/") else None
                if rel is None:
                    continue  # that mount shows another part of the hierarchy
                found[ctl] = point if rel == "." else point / rel
                break
    return found


def own_cgroups() -> dict[str, Path]:
    """:func:`runner_cgroups` of this process."""
    try:
        return runner_cgroups(Path("/proc/self/cgroup").read_text(), Path("/proc/self/mountinfo").read_text())
    except OSError:
        return {}


def plan(name: str) -> list[Path]:
    """The folders :func:`create` makes for sandbox ``name``: v1 when both the pids and the memory
    hierarchies are mounted, else v2 with both controllers available. Raises :class:`CgroupError`."""
    own = own_cgroups()
    if "pids" in own and "memory" in own:
        return [own["pids"] / name, own["memory"] / name]
    if "" in own:
        try:
            available = (own[""] / "cgroup.controllers").read_text().split()
        except OSError:
            available = []
        if "pids" in available and "memory" in available:
            return [own[""] / name]
    raise CgroupError("no cgroup v1 pids and memory hierarchies nor a cgroup v2 one with both controllers "
                      "found for this process (/proc/self/cgroup)")


def create(folders: list[Path], processes: int, memory_bytes: int) -> None:
    """Make ``folders`` (from :func:`plan`) with their limits; on failure none is left. Raises
    :class:`CgroupError` naming the fix."""
    made: list[Path] = []
    try:
        for d in folders:
            v2 = (d.parent / "cgroup.subtree_control").exists()  # a v1 folder has no such file
            if v2:
                _delegate(d.parent)
            d.mkdir()
            made.append(d)
            if v2:
                (d / "pids.max").write_text(str(processes))
                (d / "memory.max").write_text(str(memory_bytes))
            elif (d / "pids.max").exists():
                (d / "pids.max").write_text(str(processes))
            else:
                (d / "memory.limit_in_bytes").write_text(str(memory_bytes))
    except OSError as exc:
        for d in reversed(made):
            remove(d)
        raise CgroupError(f"cannot make the sandbox's cgroups under this process's own ({exc}); run as root "
                          "with /sys/fs/cgroup writable (for cgroup v2, in a cgroup of its own with the pids and "
                          "memory controllers delegated, e.g. `systemd-run --scope -p Delegate=yes ...`), or "
                          "pass cgroups=False to run without the process and memory limits") from exc


def _delegate(parent: Path) -> None:
    """cgroup v2: let ``parent``'s children use the pids and memory controllers. The kernel refuses
    (EBUSY) when ``parent`` holds processes itself and is not the root: the runner must then be
    started in a cgroup of its own."""
    enabled = (parent / "cgroup.subtree_control").read_text().split()
    missing = [c for c in ("pids", "memory") if c not in enabled]
    if missing:
        (parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in missing))


def remove(folder: Path) -> bool:
    """Remove a sandbox's cgroup folder, killing whatever still runs in it; True once it is gone."""
    for _ in range(100):
        try:
            folder.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            try:
                pids = (folder / "cgroup.procs").read_text().split()
            except OSError:
                pids = []
            for p in pids:
                try:
                    os.kill(int(p), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)
    return False


def is_sandbox_cgroup(path: Path) -> bool:
    """Whether ``path`` is a cgroup folder this module makes (a safety check on recorded paths)."""
    resolved = Path(os.path.normpath(path))
    return resolved.name.startswith(PREFIX) and _OWNED.match(resolved.name) is not None and (
        resolved.is_relative_to(ROOT) or any(resolved.is_relative_to(p) for p in own_cgroups().values()))


def sweep() -> list[Path]:
    """Remove the sandbox cgroups of dead processes found in this process's own cgroups and, from
    older versions, at the top of the hierarchies; return what was removed. (A dead runner in
    another cgroup is found through the record in its staging folder, see ``bwrap.sweep``.)"""
    removed: list[Path] = []
    for parent in set(own_cgroups().values()):
        try:
            children = [c for c in parent.iterdir() if c.name.startswith(PREFIX) and c.is_dir()]
        except OSError:
            continue
        for child in children:
            if not owner_alive(child.name) and remove(child):
                removed.append(child)
    for ctl in ("pids", "memory"):
        legacy = ROOT / ctl / "agent-gym-os"
        try:
            children = [c for c in legacy.iterdir() if c.is_dir() and _LEGACY_V1.match(c.name)]
        except OSError:
            continue
        for child in children:
            if not _pid_alive(int(_LEGACY_V1.match(child.name).group(1))) and remove(child):
                removed.append(child)
        try:
            legacy.rmdir()  # empty now: gone; still in use: kept
        except OSError:
            pass
    try:
        tops = [c for c in ROOT.iterdir() if _LEGACY_V2.match(c.name)]
    except OSError:
        tops = []
    for child in tops:
        if not _pid_alive(int(_LEGACY_V2.match(child.name).group(1))) and remove(child):
            removed.append(child)
    return removed
