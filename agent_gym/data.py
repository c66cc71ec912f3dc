"""Task data: one data directory for every env, fetched from upstream or imported locally.

The data directory (``AGENT_GYM_DATA``, default the user's cache dir) holds one folder per
dataset, laid out as upstream ships it. Each dataset declares the files it needs with their
upstream URL and sha256, so ``agent-gym data fetch NAME`` can download and verify them and
``agent-gym data import PATH`` can take a local copy (how CI uses ``../shared/data``).
An env asks for its files with :func:`require`, which names the command to run when they are
missing. Declarations are data; their modules are imported only when needed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

ENV_VAR = "AGENT_GYM_DATA"


class DataMissingError(FileNotFoundError):
    """A dataset's files are not in the data directory; the message says how to get them."""


class ChecksumError(ValueError):
    """A downloaded or imported file does not have the declared sha256."""


@dataclasses.dataclass(frozen=True)
class DataFile:
    """One file of a dataset: its path inside the dataset folder and where upstream has it.

    ``extract``: the URL is an archive (zip / tar.*) whose members are unpacked into the
    dataset folder (less the leading folder ``strip``); ``path`` is then a file the archive
    contains, used to tell it is there.
    """

    path: str
    url: str | None = None
    sha256: str | None = None
    extract: bool = False
    strip: str = ""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A named set of upstream files, stored under ``<data dir>/<root>``."""

    name: str
    root: str
    files: tuple[DataFile, ...]
    description: str = ""
    license: str = ""
    homepage: str = ""

    def path(self, data_dir: Path | None = None) -> Path:
        return (data_dir or data_dir_path()) / self.root

    def missing(self, data_dir: Path | None = None) -> list[str]:
        base = self.path(data_dir)
        return [f.path for f in self.files if not (base / f.path).exists()]

    def is_present(self, data_dir: Path | None = None) -> bool:
        return not self.missing(data_dir)


# name -> "module:attribute" of a Dataset, imported on first use so that `import agent_gym` stays cheap.
_CATALOG: dict[str, str | Dataset] = {}


def register_dataset(name: str, entry: str | Dataset) -> None:
    """Make a dataset known to the data layer and the CLI (``"pkg.module:ATTR"`` or an instance)."""
    _CATALOG[name] = entry


def dataset(name: str) -> Dataset:
    """The dataset called ``name``."""
    try:
        entry = _CATALOG[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(sorted(_CATALOG))}") from None
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = getattr(importlib.import_module(module), attr)
        _CATALOG[name] = entry
    return entry


def datasets() -> list[Dataset]:
    return [dataset(n) for n in sorted(_CATALOG)]


def data_dir_path() -> Path:
    """The data directory: ``$AGENT_GYM_DATA`` or the user cache dir."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("agent-gym")) / "data"


def require(name: str, *paths: str) -> Path:
    """The dataset's folder, after checking its files (or ``paths`` in it) are there."""
    ds = dataset(name)
    base = ds.path()
    missing = [p for p in paths if not (base / p).exists()] if paths else ds.missing()
    if missing:
        raise DataMissingError(
            f"dataset {name!r} is missing from the data directory {data_dir_path()} "
            f"(first missing file: {missing[0]}). Run `agent-gym data fetch {name}` to download it, "
            f"or `agent-gym data import PATH` to take a local copy, or set {ENV_VAR} to a folder that has it."
        )
    return base


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, dest: Path, sha256: str | None, timeout: float = 60.0,
             progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Download ``url`` to ``dest`` atomically: a partial or corrupt download leaves no file.

    The bytes go to a temporary file in the same folder, are checked against ``sha256``,
    and only then renamed into place.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            total = resp.headers.get("Content-Length")
            total_n = int(total) if total and total.isdigit() else None
            done = 0
            while chunk := resp.read(1 << 16):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total_n)
        if total_n is not None and done != total_n:
            raise OSError(f"download of {url} was cut short: {done} of {total_n} bytes")
        if sha256 and digest.hexdigest() != sha256:
            raise ChecksumError(f"{url}: sha256 is {digest.hexdigest()}, expected {sha256}")
        os.replace(tmp, dest)
        return dest
    finally:
        tmp.unlink(missing_ok=True)


def _extract(archive: Path, into: Path, strip: str = "") -> None:
    """Unpack ``archive`` into ``into``, dropping the leading folder ``strip``; refuses members
    that would land outside (zip slip)."""
    with tempfile.TemporaryDirectory(dir=archive.parent) as tmp:
        out = Path(tmp)
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    if not (out / member).resolve().is_relative_to(out.resolve()):
                        raise ValueError(f"{archive.name}: member {member!r} would land outside the dataset folder")
                zf.extractall(out)
        else:
            with tarfile.open(archive) as tf:
                try:
                    tf.extractall(out, filter="data")
                except TypeError:  # Python < 3.10.12 has no extraction filters: check by hand
                    for m in tf.getmembers():
                        if m.issym() or m.islnk() or not (out / m.name).resolve().is_relative_to(out.resolve()):
                            raise ValueError(f"{archive.name}: unsafe member {m.name!r}") from None
                    tf.extractall(out)
        top = out / strip if strip else out
        into.mkdir(parents=True, exist_ok=True)
        for item in top.iterdir():
            target = into / item.name
            if target.is_dir() and item.is_dir():
                shutil.rmtree(target)
            shutil.move(str(item), str(target))


def fetch(name: str, data_dir: Path | None = None, force: bool = False,
          progress: Callable[[str, int, int | None], None] | None = None) -> Path:
    """Download a dataset's files from upstream into the data directory and verify them."""
    ds = dataset(name)
    base = ds.path(data_dir)
    for f in ds.files:
        target = base / f.path
        if target.exists() and not force:
            continue
        if not f.url:
            raise DataMissingError(f"{name}: {f.path} has no public download; get it as the dataset's docs say ({ds.homepage})")
        cb = (lambda d, t, _p=f.path: progress(_p, d, t)) if progress else None
        if f.extract:
            base.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=base.parent) as tmp:
                archive = download(f.url, Path(tmp) / Path(f.url).name, f.sha256, progress=cb)
                _extract(archive, base, f.strip)
            if not target.exists():
                raise DataMissingError(f"{name}: archive {f.url} did not contain {f.path}")
        else:
            download(f.url, target, f.sha256, progress=cb)
    return base


def import_local(source: Path, data_dir: Path | None = None, names: Iterable[str] | None = None,
                 link: bool = False, verify: bool = True) -> dict[str, str]:
    """Take datasets from a local folder laid out like the data directory.

    Every dataset whose root folder is in ``source`` is copied (or symlinked with ``link``)
    and its declared checksums verified. Returns ``{name: "imported" | "absent" | reason}``.
    """
    source = Path(source).expanduser().resolve()
    if not source.is_dir():
        raise NotADirectoryError(f"{source} is not a folder")
    dest_root = data_dir or data_dir_path()
    dest_root.mkdir(parents=True, exist_ok=True)
    result: dict[str, str] = {}
    copied: set[str] = set()  # several datasets may share one upstream folder
    for ds in (dataset(n) for n in (names or sorted(_CATALOG))):
        src = source / ds.root
        if not src.exists() or ds.missing(source):
            result[ds.name] = "absent" if not src.exists() else f"incomplete: {ds.missing(source)[0]} missing"
            continue
        if verify:
            for f in ds.files:
                if f.sha256 and not f.extract and sha256_of(src / f.path) != f.sha256:
                    raise ChecksumError(f"{ds.name}: {src / f.path} does not match its sha256")
        dest = dest_root / ds.root
        if ds.root in copied:
            result[ds.name] = "imported"
            continue
        copied.add(ds.root)
        if dest.resolve() == src:
            result[ds.name] = "already here"
            continue
        if dest.is_symlink() or dest.is_file():
            dest.unlink()
        elif dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if link:
            dest.symlink_to(src, target_is_directory=True)
        else:
            shutil.copytree(src, dest, symlinks=False)
            for p in dest.rglob("*"):  # a read-only source must not give a read-only copy
                p.chmod(p.stat().st_mode | 0o200)
            dest.chmod(dest.stat().st_mode | 0o200)
        result[ds.name] = "imported"
    return result
