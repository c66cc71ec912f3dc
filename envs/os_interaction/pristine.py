"""Run a check script with the image's own tools on the agent's files (the checker the agent cannot fool).

AgentBench runs each check inside the agent's container with whatever ``python3``, ``bash``,
``awk`` and libraries the agent left there: ``ln -s /bin/true /usr/local/bin/python3`` makes every
``integer-match.py`` pass. This program builds the check's view instead, in a mount namespace of
its own that the agent never sees:

* everything the agent's processes see (its files, ``/proc`` of its pid namespace, its hostname
  and network), taken by joining the agent's namespaces;
* over it, read-only, the image's code folders (:data:`CODE_DIRS`: ``/usr/bin``, ``/usr/sbin``,
  ``/usr/lib*``, ``/usr/libexec``, ``/usr/local/lib``, and ``/bin`` ... where they are not links
  into ``/usr``): a file the agent changed there shows the image's content; where the agent only
  changed a mode or owner and the content is the image's, the check sees the agent's mode and
  owner (so "remove find's SUID bit" is judged); the image's ``/etc/alternatives``,
  ``/etc/ld.so.cache``, ``/etc/python3*``, and no ``/etc/ld.so.preload`` of the agent's;
* the agent's own commands stay visible: ``/usr/local/bin``, ``/usr/local/sbin``, and commands
  it added to ``/usr/bin`` / ``/usr/sbin`` under a name no image command has; so do files
  outside the code folders (an init script's ``/usr/stock.log``, ``/usr/share``, ``/usr/include``).

Then it drops to the sandbox's capabilities and execs the check. It is run with ``python3 -I -S
-c`` by a trusted interpreter: the host's (bwrap) or the image's in a fresh privileged container
that shares the agent container's pid namespace (Docker). Standard library only, Python 3.8+,
Linux 5.12+ (``open_tree``, ``move_mount``, ``mount_setattr``). Argument: one JSON object
(see :func:`main`). Exit 125 with a message when the view cannot be built: "refused" when the
agent made it impossible (the check fails), "failed" when this machine cannot (an error).
"""

import ctypes
import filecmp
import glob
import json
import os
import shutil
import signal
import stat
import sys

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
# syscall numbers of the new mount API, the same on every architecture (asm-generic numbering)
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442
AT_FDCWD, AT_EMPTY_PATH, AT_RECURSIVE = -100, 0x1000, 0x8000
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC = 1, 0o2000000
MOVE_MOUNT_F_EMPTY_PATH, MOUNT_ATTR_RDONLY = 0x4, 0x1
CLONE_NEWNS = 0x20000
NAMESPACE_FLAGS = {"uts": 0x04000000, "ipc": 0x08000000, "net": 0x40000000}
MS_REC, MS_PRIVATE = 0x4000, 0x40000
PR_CAPBSET_DROP, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 47, 4

# The folders whose files run as code: commands, libraries, interpreters' modules. The rest of /usr
# (data an init script put there, /usr/share, /usr/include, /usr/local/bin) stays the agent's.
CODE_DIRS = ("usr/bin", "usr/sbin", "usr/lib", "usr/lib32", "usr/lib64", "usr/libx32", "usr/libexec",
             "usr/local/lib", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
BIN_DIRS = ("usr/bin", "usr/sbin", "bin", "sbin", "usr/local/bin", "usr/local/sbin")
FAILED = 125
FAILED_PREFIX = "agent-gym checker failed:"  # engine.py turns it into a CheckerError


class Refused(Exception):
    """The check's view cannot be built (the agent removed or replaced a tool folder)."""


def _check(result, what):
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, "%s: %s" % (what, os.strerror(err)))
    return result


def clone_tree(path, read_only=True):
    """A detached copy of the mount tree at ``path`` (``open_tree(OPEN_TREE_CLONE)``), made read-only."""
    fd = _check(_libc.syscall(SYS_OPEN_TREE, AT_FDCWD, path.encode(),
                              OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE), "open_tree " + path)
    if read_only:
        attr = (ctypes.c_uint64 * 4)(MOUNT_ATTR_RDONLY, 0, 0, 0)
        _check(_libc.syscall(SYS_MOUNT_SETATTR, fd, b"", AT_EMPTY_PATH | AT_RECURSIVE, ctypes.byref(attr), 32),
               "mount_setattr " + path)
    return fd


def attach(fd, target):
    _check(_libc.syscall(SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, target.encode(), MOVE_MOUNT_F_EMPTY_PATH),
           "move_mount " + target)
    os.close(fd)


def mount(source, target, fstype, flags, data):
    _check(_libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(),
                       ctypes.c_ulong(flags), data and data.encode()), "mount " + target)


def private_namespace():
    """A mount namespace of our own whose changes propagate nowhere."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare")
    mount(None, "/", None, MS_REC | MS_PRIVATE, None)


def _same_content(a, b):
    try:
        return filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def changed_paths(upper):
    """The absolute paths under the code folders that an overlay's writable layer ``upper`` holds
    (files and symbolic links the agent created or changed; deletions are not listed)."""
    out = []
    for top in CODE_DIRS:
        for folder, dirs, files in os.walk(os.path.join(upper, top)):
            rel = "/" + os.path.relpath(folder, upper)
            out += [rel + "/" + name for name in files]
            out += [rel + "/" + name for name in dirs if os.path.islink(os.path.join(folder, name))]
    return out


def code_dir_of(rel):
    """The code folder that holds ``rel`` (the deepest one), or None."""
    holders = [d for d in CODE_DIRS if rel.startswith(d + "/")]
    return max(holders, key=len) if holders else None


def adjustments(pristine, agent_root, changed):
    """For each code folder, what the check's copy takes from the agent: the mode and owner of files
    whose content is the image's, and commands added under a name no image command has."""
    image_commands = set()
    for d in BIN_DIRS:
        try:
            image_commands.update(os.listdir(os.path.join(pristine, d)))
        except OSError:
            pass
    out = {}
    candidates = set(changed)
    for d in BIN_DIRS[:4]:  # the command folders are compared here too (a backend may not know its changes)
        there = os.path.join(agent_root, d)
        if not os.path.islink(there) and os.path.isdir(there):
            for name in os.listdir(there):
                candidates.add("/%s/%s" % (d, name))
    for path in sorted(candidates):
        rel = os.path.normpath(path).lstrip("/")
        top = code_dir_of(rel)
        if top is None:
            continue
        mine, theirs = os.path.join(pristine, rel), os.path.join(agent_root, rel)
        try:
            agent = os.lstat(theirs)
        except OSError:
            continue
        try:
            image = os.lstat(mine)
        except OSError:
            image = None
        if image is not None:
            if (stat.S_ISREG(image.st_mode) and stat.S_ISREG(agent.st_mode)
                    and (agent.st_mode, agent.st_uid, agent.st_gid) != (image.st_mode, image.st_uid, image.st_gid)
                    and _same_content(mine, theirs)):
                out.setdefault(top, []).append(("meta", rel, agent))
        elif (os.path.dirname(rel) in BIN_DIRS and os.path.basename(rel) not in image_commands
              and (stat.S_ISREG(agent.st_mode) or stat.S_ISLNK(agent.st_mode))):
            out.setdefault(top, []).append(("add", rel, agent))
    return out


def _folder_differs(image, there):
    """Whether the agent's folder shows other attributes than the image's (an overlay must show them)."""
    a, b = os.stat(image), os.stat(there)
    return (a.st_mode, a.st_uid, a.st_gid, a.st_mtime_ns) != (b.st_mode, b.st_uid, b.st_gid, b.st_mtime_ns)


def build_tool_tree(pristine, agent_root, top, changes, staging):
    """The image's folder ``top`` as an overlay on ``staging`` with the agent's allowed changes applied."""
    lower = os.path.realpath(os.path.join(pristine, top))
    name = top.replace("/", "_")
    up, work, merged = (os.path.join(staging, name + suffix) for suffix in (".up", ".work", ""))
    for d in (up, work, merged):
        os.mkdir(d)
    mount("overlay", merged, "overlay", 0, "lowerdir=%s,upperdir=%s,workdir=%s" % (lower, up, work))
    try:
        _apply(agent_root, top, changes, merged)
    except OSError as exc:
        raise Refused("cannot apply the agent's changes to /%s: %s" % (top, exc)) from exc
    return merged


def _apply(agent_root, top, changes, merged):
    for kind, rel, agent in changes:
        dest = os.path.join(merged, rel[len(top) + 1:])
        source = os.path.join(agent_root, rel)
        if kind == "meta":
            os.lchown(dest, agent.st_uid, agent.st_gid)
            os.chmod(dest, stat.S_IMODE(agent.st_mode))
        elif stat.S_ISLNK(agent.st_mode):
            os.symlink(os.readlink(source), dest)
        else:
            shutil.copyfile(source, dest)
            os.chown(dest, agent.st_uid, agent.st_gid)
            os.chmod(dest, stat.S_IMODE(agent.st_mode))
    # the folder itself as the agent sees it (`ls -lt /usr` sorts by its mtime), last: the changes above touch it
    folder = os.stat(os.path.join(agent_root, top))
    os.chown(merged, folder.st_uid, folder.st_gid)
    os.chmod(merged, stat.S_IMODE(folder.st_mode))
    os.utime(merged, ns=(folder.st_atime_ns, folder.st_mtime_ns))


def drop_capabilities(keep):
    """Bounding, inheritable and ambient sets down to ``keep``: the exec'd check (as root) gets exactly those."""
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    for cap in range(last + 1):
        if cap not in keep:
            _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "drop capability %d" % cap)
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)()
    _check(_libc.capget(ctypes.byref(header), ctypes.byref(data)), "capget")
    data[2] = data[5] = 0  # inheritable, both words
    _check(_libc.capset(ctypes.byref(header), ctypes.byref(data)), "capset")


def build_view(spec):
    pristine, pid = spec["pristine"], spec["pid"]
    # everything that lives in our own namespace is opened before we leave it
    ns_fds = [(os.open("/proc/%d/ns/%s" % (pid, name), os.O_RDONLY), NAMESPACE_FLAGS[name])
              for name in spec.get("namespaces", ())]
    mnt_fd = os.open("/proc/%d/ns/mnt" % pid, os.O_RDONLY)
    agent = "/proc/%d/root" % pid
    private_namespace()
    staging = os.path.join(pristine, "tmp")
    mount("agent-gym-check", staging, "tmpfs", 0, "mode=700")
    try:
        changes = adjustments(pristine, agent, spec.get("changed", ()))
    except OSError as exc:
        raise Refused("cannot read the agent's changes to the code folders: %s" % exc) from exc
    tools = []  # (target, detached tree)
    for top in CODE_DIRS:
        image = os.path.join(pristine, top)
        there = os.path.join(agent, top)
        if os.path.islink(image):
            if os.path.islink(there) and os.readlink(there) == os.readlink(image):
                continue  # e.g. /bin -> usr/bin: covered by /usr/bin
            if not os.path.isdir(image):
                continue
        elif not os.path.isdir(image):
            continue
        if os.path.islink(there) or not os.path.isdir(there):
            raise Refused("the agent removed or replaced /%s; the checker cannot run the image's tools" % top)
        if top in changes or _folder_differs(image, there):
            source = build_tool_tree(pristine, agent, top, changes.get(top, ()), staging)
        else:
            source = os.path.realpath(image)
        tools.append(("/" + top, clone_tree(source)))
    etc = []
    for rel in ["etc/alternatives", "etc/ld.so.cache", *sorted(
            os.path.relpath(p, pristine) for p in glob.glob(os.path.join(pristine, "etc/python3*")))]:
        image, there = os.path.join(pristine, rel), os.path.join(agent, rel)
        if os.path.exists(image) and os.path.exists(there) and os.path.isdir(image) == os.path.isdir(there):
            etc.append(("/" + rel, clone_tree(image)))
    if os.path.lexists(os.path.join(agent, "etc/ld.so.preload")):
        preload = os.path.join(pristine, "etc/ld.so.preload")
        etc.append(("/etc/ld.so.preload", clone_tree(preload if os.path.isfile(preload) else "/dev/null")))

    for fd, flag in ns_fds:
        _check(_libc.setns(fd, flag), "setns")
    _check(_libc.setns(mnt_fd, CLONE_NEWNS), "setns mnt")
    private_namespace()
    os.chdir("/")
    try:
        for target, fd in tools + etc:
            attach(fd, target)
    except OSError as exc:
        raise Refused("cannot lay the image's files over the agent's: %s" % exc) from exc


def main(argv):
    """``argv[0]``: JSON with ``pristine`` (the image's root folder as this process sees it), ``pid``
    (a process of the agent's sandbox, as this process's ``/proc`` numbers it), ``namespaces`` (more
    to join: ``uts``, ``ipc``, ``net``), ``changed`` (paths the agent created or changed, absolute),
    ``capabilities`` (numbers to keep), ``argv`` and ``env`` of the check."""
    spec = json.loads(argv[0])
    try:
        build_view(spec)
        drop_capabilities(set(spec["capabilities"]))
    except Refused as exc:  # the agent's doing: the check fails
        sys.stderr.write("agent-gym checker refused: %s\n" % exc)
        sys.stderr.flush()
        os._exit(FAILED)
    except OSError as exc:  # this machine's: the episode is an error, not a failed check
        sys.stderr.write("%s %s\n" % (FAILED_PREFIX, exc))
        sys.stderr.flush()
        os._exit(FAILED)
    # Python ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored across exec: a check's
    # `ls | head -n 2` would print "write error: Broken pipe" into the output it compares
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    os.execve(spec["argv"][0], spec["argv"], spec["env"])


if __name__ == "__main__":
    main(sys.argv[1:])
