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
import gzip
import hashlib
import http.client
import importlib
import json
import os
import shutil
import tarfile
import tempfile
import threading
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

ENV_VAR = "AGENT_GYM_DATA"


class DataMissingError(FileNotFoundError):
    """A dataset's files are not in the data directory; the message says how to get them."""


class ChecksumError(ValueError):
    """A downloaded or imported file does not have the declared sha256."""


class FetchError(OSError):
    """A download failed (offline, server down, cut short); the message names the URL and the offline way."""


@dataclasses.dataclass(frozen=True)
class DataFile:
    """One file of a dataset: its path inside the dataset folder and where upstream has it.

    ``extract``: the URL is an archive (zip / tar.*) whose members are unpacked into the
    dataset folder (less the leading folder ``strip``); ``path`` is then a file the archive
    contains, used to tell it is there.

    ``optional``: not needed by the default split (dev / train files): :meth:`Dataset.missing`
    and :meth:`Dataset.is_present` ignore it, ``import`` takes it when present, ``fetch``
    downloads it. A loader that needs it asks with ``require(name, path)``.

    ``derive``: ``"pkg.module:function"``; the URL is an upstream *source* file (a script, say)
    whose sha256 is ``sha256``; ``fetch`` downloads and checks it, then stores
    ``function(source_bytes) -> bytes`` at ``path`` (how the paper's prompt strings are taken
    from upstream scripts). ``sha256`` is the source's, so the stored file is not checked by it:
    ``derived_sha256`` is the digest of the stored (derived) file, so that a fetch checks what
    ``function`` made and an imported copy of the derived file can be verified like any other.
    """

    path: str
    url: str | None = None
    sha256: str | None = None
    extract: bool = False
    strip: str = ""
    optional: bool = False
    derive: str | None = None
    derived_sha256: str | None = None

    @property
    def stored_sha256(self) -> str | None:
        """The declared digest of the file stored at ``path``, if any (``derived_sha256`` for a
        derived file, ``sha256`` for a plain download, none for a file unpacked from an archive)."""
        if self.derive:
            return self.derived_sha256
        return None if self.extract else self.sha256

    def checks_stored_file(self) -> bool:
        """Whether the file stored at ``path`` has a declared digest (:attr:`stored_sha256`)."""
        return bool(self.stored_sha256)


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
        """Paths of the required (not ``optional``) files that are absent."""
        base = self.path(data_dir)
        return [f.path for f in self.files if not f.optional and not (base / f.path).exists()]

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


def jsonl_rows(path: str | Path) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line of a JSON-lines file (``.gz`` is read
    compressed). Raises ``ValueError`` naming ``path:line`` for a line that is not a JSON object;
    loaders raise the same way for an object that lacks their fields, so one message names the row."""
    path = Path(path)
    opener: Callable[..., object] = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{n}: not a JSON line ({exc})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{n}: a row is a JSON object, not {type(row).__name__}")
            yield n, row


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
        _download_to(url, fd, tmp, dest, sha256, timeout, progress)
        return dest
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise FetchError(f"could not download {url}: {reason}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _download_to(url: str, fd: int, tmp: Path, dest: Path, sha256: str | None, timeout: float,
                 progress: Callable[[int, int | None], None] | None) -> None:
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
        raise FetchError(f"download of {url} was cut short: {done} of {total_n} bytes")
    if sha256 and digest.hexdigest() != sha256:
        raise ChecksumError(f"{url}: sha256 is {digest.hexdigest()}, expected {sha256}")
    os.replace(tmp, dest)


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


def _derive_function(spec: str) -> Callable[[bytes], bytes]:
    module, sep, attr = spec.partition(":")
    if not sep:
        raise ValueError(f"derive={spec!r} must be 'pkg.module:function'")
    return getattr(importlib.import_module(module), attr)


def _write_atomic(target: Path, payload: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(payload)
        os.chmod(tmp_name, 0o644)  # mkstemp's 0600 would hide shared data from other users
        os.replace(tmp_name, target)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def fetch(name: str, data_dir: Path | None = None, force: bool = False,
          progress: Callable[[str, int, int | None], None] | None = None) -> Path:
    """Download a dataset's files (optional ones too) from upstream into the data directory and verify them.

    Raises :class:`FetchError` (names the URL; offline users import a local copy instead) or
    :class:`ChecksumError`; files already fetched are kept, and no empty folder is left behind.
    """
    ds = dataset(name)
    data_dir = data_dir or data_dir_path()
    base = ds.path(data_dir)
    existed = base.exists()
    fetched = 0
    try:
        for f in ds.files:
            target = base / f.path
            if target.exists() and not force:
                continue
            if not f.url:
                if f.optional:
                    continue
                raise DataMissingError(f"{name}: {f.path} has no public download; "
                                       f"get it as the dataset's docs say ({ds.homepage})")
            _fetch_file(name, base, f, progress)
            fetched += 1
    except BaseException as exc:
        if not existed:
            _remove_empty_folders(base, data_dir)
        if isinstance(exc, FetchError):
            raise FetchError(f"{exc}; without network, take a local copy with `agent-gym data import PATH`") from None
        raise
    before = _read_markers(ds, data_dir).get(name)
    if fetched and (force or before is None or before.get("source") == "fetch"):
        _write_marker(ds, data_dir, {"source": "fetch"})
    elif fetched and before is not None:  # files added to an imported copy: it keeps its origin and any edit mark
        _write_marker(ds, data_dir, {**before, "also_fetched": True})
    return base


def _fetch_file(name: str, base: Path, f: DataFile, progress: Callable[[str, int, int | None], None] | None) -> None:
    target = base / f.path
    cb = (lambda d, t, _p=f.path: progress(_p, d, t)) if progress else None
    if f.derive or f.extract:
        base.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=base.parent, prefix=".fetch-") as tmp:
            got = download(f.url, Path(tmp) / Path(f.url).name, f.sha256, progress=cb)
            if f.derive:
                derived = _derive_function(f.derive)(got.read_bytes())
                digest = hashlib.sha256(derived).hexdigest()
                if f.derived_sha256 and digest != f.derived_sha256:
                    raise ChecksumError(f"{name}: {f.path} as {f.derive} derived it from {f.url} has sha256 {digest}, "
                                        f"expected {f.derived_sha256} (the derivation changed; nothing was stored)")
                _write_atomic(target, derived)
            else:
                _extract(got, base, f.strip)
        if not target.exists():
            raise DataMissingError(f"{name}: archive {f.url} did not contain {f.path}")
    else:
        download(f.url, target, f.sha256, progress=cb)


def _remove_empty_folders(base: Path, stop: Path) -> None:
    """Remove the folders a failed fetch made and left without files (``base``, then its empty parents up to ``stop``)."""
    if base.is_dir() and not base.is_symlink() and not any(p.is_file() for p in base.rglob("*")):
        shutil.rmtree(base)
    folder = base.parent if not base.exists() else base
    while folder != stop and stop in folder.parents and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def import_local(source: Path, data_dir: Path | None = None, names: Iterable[str] | None = None,
                 link: bool = False, verify: bool = True, modified: bool = False) -> dict[str, str]:
    """Take datasets from a local folder laid out like the data directory.

    Every dataset whose root folder is in ``source`` is copied (or symlinked with ``link``),
    optional files included when present. With ``verify`` (the default) a file whose declared
    sha256 differs raises :class:`ChecksumError` before that dataset is copied. ``verify=False``
    skips that refusal; a copy that differs is then marked ``modified`` (see :func:`dataset_state`),
    and ``modified=True`` marks it so in any case (a deliberately edited copy: the CLI's
    ``--no-verify``; files without a declared checksum may have been edited too).
    Returns ``{name: "imported" | "already here" | "absent" | "incomplete: ..."}``, with
    `` (modified)`` after a copy marked modified.
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
        differing = [f.path for f in ds.files
                     if f.checks_stored_file() and (src / f.path).exists() and sha256_of(src / f.path) != f.stored_sha256]
        if differing and verify:
            raise ChecksumError(
                f"{ds.name}: {src / differing[0]} does not match its sha256 (a modified copy); "
                f"`agent-gym data import --no-verify PATH` takes it anyway and marks the data as modified")
        dest = dest_root / ds.root
        if ds.root not in copied and dest.resolve() != src:
            copied.add(ds.root)
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
            status = "imported"
        else:
            status = "imported" if ds.root in copied else "already here"
        is_modified = bool(modified or differing)
        _write_marker(ds, dest_root, {"source": "import", "from": str(src), "modified": is_modified})
        result[ds.name] = status + (" (modified)" if is_modified else "")
    return result


# ---------------------------------------------------------------------------------------------
# Where a dataset came from and whether it is the upstream one: a marker per data directory
# entry, and sha256 digests cached by (size, mtime) so that every env reset can afford to ask.

MARKER = ".agent-gym-state.json"
_HASH_CACHE_FILE = ".agent-gym-hashes.json"
_hash_cache: dict[str, tuple[int, int, str]] = {}
_hash_cache_loaded: set[Path] = set()
_hash_lock = threading.Lock()  # rollouts reset envs from many threads


def _marker_path(ds: Dataset, data_dir: Path) -> Path:
    folder = ds.path(data_dir)
    if folder.is_symlink():  # an imported link: never write into the user's own folder
        return data_dir / f".{ds.root.replace('/', '_')}{MARKER}"
    return folder / MARKER


def _read_markers(ds: Dataset, data_dir: Path) -> dict:
    try:
        return json.loads(_marker_path(ds, data_dir).read_text())
    except (OSError, ValueError):
        return {}


def _write_marker(ds: Dataset, data_dir: Path, record: dict) -> None:
    """Record how ``ds`` got into ``data_dir`` (several datasets may share one folder: one key each)."""
    path = _marker_path(ds, data_dir)
    markers = _read_markers(ds, data_dir)
    markers[ds.name] = record
    try:
        _write_atomic(path, json.dumps(markers, indent=1, sort_keys=True).encode())
    except OSError:
        pass  # a read-only data directory: the state falls back to what the checksums say


def cached_sha256(path: Path, data_dir: Path | None = None) -> str:
    """``sha256_of(path)``, cached by the file's size and mtime (in memory and in the data directory)."""
    return _cached_sha256s([Path(path)], data_dir or data_dir_path())[0]


def _cached_sha256s(paths: list[Path], data_dir: Path) -> list[str]:
    cache_file = data_dir / _HASH_CACHE_FILE
    with _hash_lock:
        if cache_file not in _hash_cache_loaded:
            _hash_cache_loaded.add(cache_file)
            try:
                _hash_cache.update({k: tuple(v) for k, v in json.loads(cache_file.read_text()).items()})
            except (OSError, ValueError):
                pass
        digests, dirty = [], False
        for path in paths:
            st = path.stat()
            key = str(path.resolve())
            hit = _hash_cache.get(key)
            if not (hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns):
                hit = _hash_cache[key] = (st.st_size, st.st_mtime_ns, sha256_of(path))
                dirty = True
            digests.append(hit[2])
        if dirty:
            try:
                _write_atomic(cache_file, json.dumps(_hash_cache).encode())
            except OSError:
                pass  # a read-only data directory: the in-memory cache still serves this process
    return digests


def dataset_state(name: str, data_dir: Path | None = None) -> dict:
    """Whether the dataset in the data directory is upstream's, for trajectories' provenance.

    Returns ``{"name", "state", "files": {path: sha256}, "source"}``; ``files`` covers the declared
    files present (cheap: digests are cached by size and mtime). ``state``:

    - ``"modified"``: a file's sha256 differs from the declared one, or the copy was imported
      as deliberately edited (``agent-gym data import --no-verify``: files without a checksum
      may differ too);
    - ``"verified"``: every file present that declares a sha256 matches it, and each file of the
      dataset declares one;
    - ``"fetched"``: downloaded by ``agent-gym data fetch`` (archives are checked on download,
      the files unpacked from them have no checksum of their own);
    - ``"unverified"``: imported, with files that declare no checksum;
    - ``"missing"``: a required file is absent.
    """
    ds = dataset(name)
    data_dir = data_dir or data_dir_path()
    base = ds.path(data_dir)
    present = [f for f in ds.files if (base / f.path).is_file()]
    files = dict(zip((f.path for f in present), _cached_sha256s([base / f.path for f in present], data_dir)))
    differing = [f.path for f in present if f.checks_stored_file() and files[f.path] != f.stored_sha256]
    marker = _read_markers(ds, data_dir).get(name, {})
    if ds.missing(data_dir):
        state = "missing"
    elif differing or marker.get("modified"):
        state = "modified"
    elif all(f.checks_stored_file() for f in ds.files if f.path in files):
        state = "verified"
    elif marker.get("source") == "fetch":
        state = "fetched"
    else:
        state = "unverified"
    return {"name": name, "state": state, "files": files, "source": marker.get("source", "unknown"),
            **({"differing": differing} if differing else {})}
