"""MariaDB engine: one private ``mariadbd`` per process, a fresh database per episode.

The server starts on first use with its own datadir (copied from a template made once by
``mariadb-install-db``) and socket in a private folder (``/dev/shm`` where it has room), no
network (``--skip-networking``), file import/export confined to an empty folder, MySQL 8's
default SQL mode, a MySQL-8-like collation, ``group_concat_max_len`` 1024 and a statement
time limit. It stops when the last env using it closes, at interpreter exit, or with its
process (``setpriv --pdeathsig``, from a thread that lives as long as the process); a later
start sweeps the folders of processes that died without cleaning up. Every episode gets a database named after its table
(as upstream names it) and its own throwaway account (random password) with rights on that
database only, both created and dropped together: concurrent episodes cannot list, drop or
``KILL`` each other's work, and nothing the agent does through its account outlives the
episode. The agent's SQL runs through a fresh connection per command (upstream reconnects
before each), as a batch the way upstream's connector sends it (see :meth:`MariaDBDatabase.execute`).
"""

from __future__ import annotations

import atexit
import functools
import itertools
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent_gym.envs.db import prompt
from agent_gym.envs.db.data import Question, Table
from agent_gym.envs.db.engine import (OUT_OF_SYNC, STATEMENT_TIMEOUT, STORAGE_CAP, EngineError, create_table_sql,
                                      escaped_columns, storage_full)
from agent_gym.processes import popen_for_life

# MySQL 8.0's default sql_mode (upstream's server); MariaDB's own default is laxer.
MYSQL8_SQL_MODE = ("ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,"
                   "ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION")
# closest MariaDB 10.x collation to MySQL 8's utf8mb4_0900_ai_ci (UCA, accent/case-insensitive, no pad)
COLLATION = "utf8mb4_unicode_520_nopad_ci"
#: Episode accounts are ``agent_<n>``@localhost, one per episode, dropped with its database.
AGENT_USER_PREFIX = "agent_"
#: Rows of a result read past the 800 characters shown, to learn whether more results follow.
READ_ON_ROWS = 10_000
#: Seconds any call into the server may take (connect, an admin statement; a statement of the
#: agent's: this past its time limit). Past it the server counts as wedged: the episode ends with
#: an :class:`EngineError` and the server is restarted at the next reset.
ENGINE_DEADLINE = 10.0
#: Seconds between two looks at the size of a running statement's database: a statement that
#: writes W bytes/s stops within about W * STORAGE_POLL past the cap (200 MB/s: 10 MB).
STORAGE_POLL = 0.05
#: Bytes a MEMORY table may hold (``max_heap_table_size``, which the agent cannot raise): such a
#: table has no data file, so the statement guard counts each one at this size.
MEMORY_TABLE_MAX = 16 << 20
# Internal temporary tables (GROUP BY, ORDER BY) in memory up to 16 MB, then in files named after
# their connection, which the statement guard counts, as it counts the agent's own temporary tables
# (Aria: files; InnoDB's would share ibtmp1 with every episode). ``--maximum-*``: limits the agent
# cannot raise in its session. No ``max`` on ibdata1/ibtmp1: a full InnoDB tablespace aborts the
# server during rollback ("[FATAL] InnoDB: Error (Out of disk space) in rollback").
_STORAGE_LIMITS = (f"--tmp-disk-table-size={STORAGE_CAP}", f"--maximum-tmp-disk-table-size={STORAGE_CAP}",
                   f"--max-heap-table-size={MEMORY_TABLE_MAX}", f"--maximum-max-heap-table-size={MEMORY_TABLE_MAX}",
                   f"--tmp-table-size={MEMORY_TABLE_MAX}", f"--maximum-tmp-table-size={MEMORY_TABLE_MAX}",
                   "--default-tmp-storage-engine=Aria")
#: Files all episodes share whose growth during a statement is charged to it (undo of a batch's
#: transaction in ibdata1, explicit InnoDB temporary tables in ibtmp1).
_SHARED_FILES = ("ibdata1", "ibtmp1")
_DATA_FILES = (".ibd", ".MAD", ".MYD", ".CSV", ".ARZ", ".ARM")


def mariadb_binaries() -> tuple[str, str] | None:
    """``(mariadbd, mariadb-install-db)`` paths, or None when MariaDB is not installed."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/usr/local/mysql/bin"])
    server = shutil.which("mariadbd", path=path) or shutil.which("mysqld", path=path)
    install = shutil.which("mariadb-install-db", path=path) or shutil.which("mysql_install_db", path=path)
    return (server, install) if server and install else None


@functools.lru_cache(maxsize=1)
def _installed_version() -> str:
    """``VERSION()`` of the installed server without starting it (``mariadbd --version``)."""
    binaries = mariadb_binaries()
    if binaries is None:
        return "not installed"
    try:
        out = subprocess.run([binaries[0], "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({exc})"
    match = re.search(r"Ver\s+(\S+)", out)
    return match.group(1) if match else out.strip() or "unknown"


def _pymysql():
    try:
        import pymysql
    except ImportError:
        raise EngineError("the MariaDB engine needs PyMySQL: pip install 'agent-gym[db]' "
                          "(or use engine='sqlite')") from None
    return pymysql


def _mysql_error_text(exc: Exception, conn: Any = None) -> str:
    """An error as mysql-connector (upstream's client) prints it: ``1064 (42000): message``."""
    args = getattr(exc, "args", ())
    if len(args) != 2 or not isinstance(args[0], int):
        return str(exc)
    errno, msg = args
    state = None
    if conn is not None and errno < 2000:  # server errors have an SQLSTATE; ask for it
        try:
            with conn.cursor() as cur:
                cur.execute("GET DIAGNOSTICS CONDITION 1 @agent_gym_state = RETURNED_SQLSTATE")
                cur.execute("SELECT @agent_gym_state")
                state = cur.fetchone()[0]
        except Exception:  # noqa: BLE001 - the message alone is still the observation
            state = None
    # upstream's server was MySQL: its most common error names it, as AgentLM saw it in training
    msg = msg.replace("your MariaDB server version", "your MySQL server version")
    return f"{errno} ({state}): {msg}" if state else f"{errno}: {msg}"


def _grant_name(name: str) -> str:
    """A database name as GRANT reads it (``_`` and ``%`` are wildcards there)."""
    return name.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")


_INNODB = ("--innodb-buffer-pool-size=32M", "--innodb-log-file-size=8M")


def _ROOT() -> tuple[str, ...]:  # noqa: N802 - mariadbd refuses to run as root unless told
    return ("--user=root",) if os.geteuid() == 0 else ()


def _initial_datadir(server: str, install: str) -> Path:
    """A freshly installed datadir, made once per MariaDB build and user and then copied
    (``mariadb-install-db`` takes seconds, a copy milliseconds)."""
    import platformdirs

    stat = Path(server).stat()
    cache = Path(platformdirs.user_cache_dir("agent-gym"))
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:  # no writable home (a service user): a per-user folder in the temp dir
        cache = Path(tempfile.gettempdir()) / f"agent-gym-cache-{os.geteuid()}"
        cache.mkdir(mode=0o700, exist_ok=True)
    template = cache / f"mariadb-datadir-{stat.st_size}-{stat.st_mtime_ns}-{os.geteuid()}"
    if (template / "mysql").is_dir():
        return template
    work = Path(tempfile.mkdtemp(prefix=".mariadb-datadir-", dir=cache))
    try:
        done = subprocess.run([install, "--no-defaults", f"--datadir={work / 'data'}", *_ROOT(),
                               "--auth-root-authentication-method=normal", "--skip-test-db",
                               "--skip-name-resolve", *_INNODB],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise EngineError(f"mariadb-install-db failed: {(done.stderr or done.stdout)[-1500:]}")
        try:
            os.rename(work / "data", template)
        except OSError:  # another process made it meanwhile
            if not (template / "mysql").is_dir():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return template


def _fast_tmp() -> str | None:
    """``/dev/shm`` where it has room: DDL (a database per episode) then skips disk syncs."""
    try:
        if os.access("/dev/shm", os.W_OK) and shutil.disk_usage("/dev/shm").free > 512 << 20:
            return "/dev/shm"
    except OSError:
        pass
    return None


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from ``/proc``), or None where that
    cannot be read; with the pid it names one process, even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name before ")" may hold spaces


def _folder_prefix() -> str:
    """``agent-gym-mariadb-<pid>-<start>-``: a server folder names the process that owns it."""
    return f"agent-gym-mariadb-{os.getpid()}-{_process_start(os.getpid()) or 0}-"


_OWNED = re.compile(r"agent-gym-mariadb-(\d+)-(\d+)-")


def _owner_alive(folder: Path) -> bool:
    match = _OWNED.match(folder.name)
    if match is None:  # a folder of an older version: kept while young or while its server runs
        if time.time() - folder.stat().st_mtime < 60:
            return True
        try:
            os.kill(int((folder / "mysqld.pid").read_text().strip() or 0), 0)
            return True
        except (OSError, ValueError):
            return False
    pid, start = int(match.group(1)), match.group(2)
    now = _process_start(pid)
    if now is None and not Path("/proc/self/stat").exists():  # no /proc: the pid alone
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except OSError:
            return True
    return now == start


def _kill_orphan_server(folder: Path) -> None:
    """Kill the server of ``folder`` if it still runs (its owner died without taking it along)."""
    try:
        pid = int((folder / "mysqld.pid").read_text().strip() or 0)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if pid > 0 and str(folder).encode() in cmdline:  # that pid is this folder's mariadbd, not a reused pid
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _remove_stale_folders(parent: str | None) -> None:
    """Remove the private folders (and any server still running in them) that belong to dead
    processes: a process killed with no chance to clean up leaves its folder behind. Ours only
    (same user); a folder names its owner by pid and start time, so a reused pid is no owner."""
    for folder in Path(parent or tempfile.gettempdir()).glob("agent-gym-mariadb-*"):
        try:
            if folder.stat().st_uid != os.geteuid() or _owner_alive(folder):
                continue
        except OSError:
            continue
        _kill_orphan_server(folder)
        shutil.rmtree(folder, ignore_errors=True)


class MariaDBServer:
    """A private ``mariadbd``: one per process, shared by every env of the process.

    Leases count the engines using it; it starts with the first and stops with the last
    (and at exit). A test session can hold a lease to keep one server for the whole run.
    """

    _instances: dict[int, MariaDBServer] = {}
    _class_lock = threading.Lock()

    def __init__(self, statement_timeout: float = STATEMENT_TIMEOUT, deadline: float = ENGINE_DEADLINE):
        self.statement_timeout = statement_timeout
        self.deadline = deadline
        self.generation = 0  # one more at each start: a database belongs to one run of the server
        self._failed: str | None = None  # why the running server is unusable (wedged, unreachable)
        self._lock = threading.RLock()
        self._leases = 0
        self._proc: subprocess.Popen | None = None
        self._dir: Path | None = None
        self._names: set[str] = set()
        self._accounts = itertools.count(1)
        self.version = ""
        self.started_seconds = 0.0
        self._exit_hook = False

    @classmethod
    def shared(cls) -> MariaDBServer:
        """This process's server (a forked child gets its own)."""
        with cls._class_lock:
            server = cls._instances.get(os.getpid())
            if server is None:
                server = cls._instances[os.getpid()] = cls()
            return server

    # ---------------------------------------------------------------- lifecycle
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def datadir(self) -> Path:
        assert self._dir is not None, "server not started"
        return self._dir / "data"

    @property
    def tmpdir(self) -> Path:
        assert self._dir is not None, "server not started"
        return self._dir / "tmp"

    @property
    def socket(self) -> str:
        assert self._dir is not None, "server not started"
        return str(self._dir / "mysqld.sock")

    def acquire(self) -> None:
        with self._lock:
            self._leases += 1
            try:
                if not self.running:
                    self._start()
            except BaseException:
                self._leases -= 1
                raise

    def ensure_running(self) -> None:
        """Restart the server if it died, or missed a deadline, while leased."""
        with self._lock:
            if self._leases > 0 and (not self.running or self._failed):
                self._start()

    def mark_failed(self, why: str) -> None:
        """The server missed a deadline or cannot be reached: the next reset restarts it."""
        with self._lock:
            self._failed = self._failed or why

    @property
    def failed(self) -> str | None:
        return self._failed

    def healthy(self) -> bool:
        """Whether the server answers ``SELECT 1`` as root within the deadline."""
        if not self.running or self._failed:
            return False
        try:
            with self.connect() as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
                return True
        except Exception:  # noqa: BLE001 - any failure is an unhealthy server
            return False

    def release(self) -> None:
        with self._lock:
            self._leases = max(0, self._leases - 1)
            if self._leases == 0:
                self.stop()

    def _start(self) -> None:
        binaries = mariadb_binaries()
        if binaries is None:
            raise EngineError("MariaDB is not installed: apt-get install mariadb-server (or use engine='sqlite')")
        server, install = binaries
        self.stop()
        t0 = time.perf_counter()
        _remove_stale_folders(_fast_tmp())
        self._dir = Path(tempfile.mkdtemp(prefix=_folder_prefix(), dir=_fast_tmp()))
        (self._dir / "files").mkdir()
        (self._dir / "tmp").mkdir()
        datadir = self._dir / "data"
        shutil.copytree(_initial_datadir(server, install), datadir)
        args = [server, "--no-defaults", f"--datadir={datadir}", f"--socket={self.socket}", "--skip-networking",
                f"--pid-file={self._dir / 'mysqld.pid'}", f"--log-error={self._dir / 'error.log'}",
                "--skip-log-bin", "--skip-name-resolve", f"--secure-file-priv={self._dir / 'files'}",
                "--skip-symbolic-links",  # DATA/INDEX DIRECTORY of the agent's tables stays in the datadir
                "--character-set-server=utf8mb4", f"--collation-server={COLLATION}",
                f"--sql-mode={MYSQL8_SQL_MODE}", f"--group-concat-max-len={prompt.GROUP_CONCAT_MAX_LEN}",
                f"--max-statement-time={self.statement_timeout:g}", "--max-connections=500",
                f"--tmpdir={self._dir / 'tmp'}", *_STORAGE_LIMITS,
                *_ROOT(), *_INNODB, "--innodb-flush-log-at-trx-commit=0", "--innodb-flush-method=nosync"]
        setpriv = shutil.which("setpriv")
        if setpriv:  # the server dies with this process, even when it is killed (see agent_gym.processes)
            args = [setpriv, "--pdeathsig", "TERM", *args]
        self._proc = popen_for_life(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        if not self._exit_hook:
            atexit.register(self._stop_at_exit, os.getpid())
            self._exit_hook = True
        self._wait_ready()
        self._failed = None
        self.generation += 1
        self.started_seconds = time.perf_counter() - t0

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise EngineError(f"mariadbd exited at start (code {self._proc.returncode}): {self._log_tail()}")
            try:
                conn = self.connect()
            except Exception as exc:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline:
                    self.stop()
                    raise EngineError(f"mariadbd did not come up in {timeout:g} s ({exc}): {self._log_tail()}") from exc
                time.sleep(0.05)
                continue
            with conn:
                with conn.cursor() as cur:
                    cur.execute("SELECT VERSION()")
                    self.version = cur.fetchone()[0]
            return

    def _log_tail(self) -> str:
        try:
            return (self._dir / "error.log").read_text(errors="replace")[-1500:]  # type: ignore[operator]
        except OSError:
            return "(no error log)"

    def stop(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None and proc.poll() is None and self._failed:  # wedged (or stopped): no shutdown
                proc.kill()
                proc.wait()
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None
            self._names.clear()

    def _stop_at_exit(self, pid: int) -> None:
        if os.getpid() == pid:  # never stop the parent's server from a forked child
            self.stop()

    # ---------------------------------------------------------------- use
    def connect(self, user: str = "root", database: str | None = None, autocommit: bool = False,
                password: str = "", multi_statements: bool = False, read_timeout: float | None = None) -> Any:
        """A client connection; connecting and every read and write on it have a deadline
        (:data:`ENGINE_DEADLINE`; ``read_timeout`` for reads after the handshake), so a wedged
        server cannot hold the caller."""
        pymysql = _pymysql()
        flags = pymysql.constants.CLIENT.MULTI_STATEMENTS if multi_statements else 0
        conn = pymysql.connect(unix_socket=self.socket, user=user, password=password, database=database,
                               charset="utf8mb4", autocommit=autocommit, ssl_disabled=True,
                               connect_timeout=self.deadline, read_timeout=self.deadline,
                               write_timeout=self.deadline, client_flag=flags)
        if read_timeout is not None:  # the handshake had the deadline; later reads may wait longer
            conn._read_timeout = read_timeout  # PyMySQL applies it at the next read
        return conn

    def kill_query(self, thread_id: int) -> None:
        """Interrupt the statement running on connection ``thread_id``."""
        try:
            with self.connect() as conn, conn.cursor() as cur:
                cur.execute(f"KILL QUERY {int(thread_id)}")
        except Exception:  # noqa: BLE001 - the statement may have ended meanwhile
            pass

    def reserve(self, name: str) -> str:
        """A database name for an episode: the table's name (as upstream), unless in use."""
        with self._lock:
            candidate, n = name, 1
            while candidate in self._names:
                n += 1
                suffix = f" ({n})"
                candidate = name[: 64 - len(suffix)] + suffix
            self._names.add(candidate)
            return candidate

    def free(self, name: str) -> None:
        with self._lock:
            self._names.discard(name)

    def account_name(self) -> str:
        """A user name no other episode of this server has had."""
        return f"{AGENT_USER_PREFIX}{next(self._accounts)}"


class MariaDBDatabase:
    """One episode's database on the shared server, and the account the agent uses on it."""

    def __init__(self, engine: MariaDBEngine, name: str, table: Table, setup_error: str | None,
                 user: str, password: str, generation: int = 0, folder: Path | None = None):
        self.engine, self.name, self.table, self.setup_error = engine, name, table, setup_error
        self.user, self.password = user, password
        self.folder = folder  # the database's folder in the datadir (its name in MariaDB's file encoding)
        self.generation = generation  # the run of the server that holds this database
        self.dropped = False

    def _check_server(self) -> None:
        server = self.engine.server
        if server.generation != self.generation or not server.running:
            raise EngineError("the MariaDB server stopped during this episode (its database went with it); "
                              "the next reset restarts it")
        if server.failed:
            raise EngineError(f"the MariaDB server is unusable ({server.failed}); the next reset restarts it")

    def _engine_fault(self, exc: Exception) -> EngineError | None:
        """The :class:`EngineError` for a client error (2xxx: lost, timed out, unreachable) when the
        server is at fault, else None: the agent can lose its own connection (``KILL
        CONNECTION_ID()``), which is an observation, as upstream's client showed it."""
        server = self.engine.server
        if not _client_error(exc):
            return None
        if "timed out" in str(exc):
            server.mark_failed(f"no answer within its deadline: {exc}")
        elif server.healthy():
            return None
        else:
            server.mark_failed(f"unreachable: {exc}")
        return EngineError(f"the MariaDB server failed ({server.failed}); the next reset restarts it")

    def execute(self, sql: str) -> str:
        """Run the agent's SQL as upstream's ``Container.execute`` does: the whole text is sent
        as one batch; the observation is the first result, or the first statement's error.
        A batch with more than one result leaves upstream's connector out of sync: it shows
        :data:`OUT_OF_SYNC` and keeps nothing (DDL commits implicitly, as on MySQL)."""
        pymysql = _pymysql()
        server = self.engine.server
        self._check_server()
        try:  # a fresh connection per command, as upstream reconnects before each
            conn = server.connect(user=self.user, password=self.password, database=self.name,
                                  multi_statements=True, read_timeout=self.engine.statement_timeout + server.deadline)
        except pymysql.err.MySQLError as exc:
            fault = self._engine_fault(exc)
            if fault is not None:
                raise fault from exc
            return prompt.truncate(_mysql_error_text(exc))  # e.g. the agent dropped its database
        guard = _StatementGuard(server, conn.thread_id(), self.folder, self.engine.statement_timeout + 1.0,
                                self.engine.storage_cap, self.name)
        guard.start()
        try:
            cur = conn.cursor(pymysql.cursors.SSCursor)
            try:
                cur.execute(sql)
                rows: Iterator[Any] = iter(cur.fetchall_unbuffered() if cur.description else [])
                text = prompt.render_rows(rows)
                if text.endswith(prompt.TRUNCATED) and _goes_on(rows, READ_ON_ROWS):
                    _abandon(conn, cur)  # the rest of a huge result is not read (nor what followed it)
                    return text
                if _more_results(cur):
                    conn.rollback()
                    return storage_full(self.engine.storage_cap) if guard.reason == "storage" else OUT_OF_SYNC
                if guard.stop() == "storage":  # stopped just as it ended: keep nothing
                    conn.rollback()
                    return storage_full(self.engine.storage_cap)
                conn.commit()
                return text
            except pymysql.err.MySQLError as exc:
                fault = self._engine_fault(exc)
                if fault is not None:
                    raise fault from exc
                text = storage_full(self.engine.storage_cap) if guard.stop() == "storage" else \
                    _mysql_error_text(exc, conn)
                try:
                    conn.rollback()
                except Exception:  # noqa: BLE001
                    pass
                return prompt.truncate(text)
        finally:
            guard.stop()
            if conn.open:
                conn.close()

    def table_hash(self) -> str:
        self._check_server()
        columns = escaped_columns(self.table)
        return self.engine.admin_query(prompt.md5_query(self.table.name, columns), self.name)

    def drop(self) -> None:
        if not self.dropped:
            self.dropped = True
            self.engine.drop(self.name, self.user, self.generation)


class _StatementGuard(threading.Thread):
    """Watches one running statement of the agent's: ``KILL QUERY`` past its time limit (which
    the agent cannot lift, unlike ``max_statement_time``) or when its database outgrows the
    storage cap. The database's size is what its folder holds plus the temporary tables of its
    connection (MariaDB names them ``#sql-temptable-<pid>-<thread id>-…``, ``#sql-<pid>_<thread
    id>_…``); only growth past the cap stops a statement (InnoDB files do not shrink on rollback)."""

    def __init__(self, server: MariaDBServer, thread_id: int, folder: Path | None, limit: float, cap: int,
                 database: str = ""):
        super().__init__(name=f"agent-gym-mariadb-guard-{thread_id}", daemon=True)
        self.server, self.thread_id, self.folder, self.limit, self.cap = server, thread_id, folder, limit, cap
        self.tmpdir = server.tmpdir
        self.marks = (f"-{thread_id:x}-", f"_{thread_id:x}_")
        self.reason: str | None = None
        self.database = database
        self._root: Any = None
        self._done = threading.Event()

    def size(self) -> int:
        """Bytes held by the database's files, its connection's temporary files, and its MEMORY
        tables (a ``.frm`` with no data file that is no view): the server's figure for those of the
        database, :data:`MEMORY_TABLE_MAX` for each temporary one."""
        total = 0
        for folder, marks in ((self.folder, None), (self.tmpdir, self.marks)):
            sizes: dict[str, int] = {}
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if marks is None or any(m in entry.name for m in marks):
                            try:
                                sizes[entry.name] = entry.stat(follow_symlinks=False).st_size
                            except OSError:
                                pass
            except (OSError, TypeError):  # no such folder (the agent dropped its database)
                continue
            total += sum(sizes.values())
            memory = sum(1 for name in sizes if name.endswith(".frm") and not _is_view(folder, name)
                         and not any(name[:-4] + d in sizes for d in _DATA_FILES))
            if memory and marks is None:
                total += self._memory_tables()
            else:
                total += memory * MEMORY_TABLE_MAX
        return total

    def _memory_tables(self) -> int:
        try:
            if self._root is None:
                self._root = self.server.connect(autocommit=True)
            with self._root.cursor() as cur:
                cur.execute("SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES "
                            "WHERE TABLE_SCHEMA = %s AND ENGINE = 'MEMORY'", (self.database,))
                return int(cur.fetchone()[0])
        except Exception:  # noqa: BLE001 - the server may be going away: the statement then ends anyway
            return 0

    def shared(self) -> int:
        total = 0
        for name in _SHARED_FILES:
            try:
                total += (self.server.datadir / name).stat().st_size
            except OSError:
                pass
        return total

    def run(self) -> None:
        end = time.monotonic() + self.limit
        if self._done.wait(STORAGE_POLL):  # most statements end before a first look (no cost to them)
            return
        start_size, start_shared = (self.size(), self.shared()) if self.folder is not None else (0, 0)
        while not self._done.wait(STORAGE_POLL):
            if time.monotonic() > end:
                self.reason = "time"
            elif self.folder is not None and (
                    ((size := self.size()) > self.cap and size > start_size)
                    or size + self.shared() - start_shared > self.cap):
                self.reason = "storage"
            else:
                continue
            self.server.kill_query(self.thread_id)
            break
        if self._root is not None:
            self._root.close()

    def stop(self) -> str | None:
        """End the watch; why the statement was stopped (``"time"``, ``"storage"``) or None."""
        self._done.set()
        return self.reason


def _rollback_prepared(cur: Any) -> None:
    """Roll back every prepared XA transaction whose connection has gone. ``XA PREPARE`` in an
    agent's batch outlives its connection (and the server's restarts), holding locks on its rows
    and a metadata lock that makes ``DROP DATABASE`` wait: only agents use XA here, and a
    transaction whose connection is still open cannot be rolled back from outside (skipped)."""
    cur.execute("XA RECOVER FORMAT='SQL'")
    for *_, xid in cur.fetchall():
        try:
            cur.execute(f"XA ROLLBACK {xid.decode() if isinstance(xid, bytes) else xid}")
        except _pymysql().err.MySQLError as exc:
            if _client_error(exc):
                raise


def _is_view(folder: Any, name: str) -> bool:
    try:
        with open(os.path.join(folder, name), "rb") as f:
            return f.read(9) == b"TYPE=VIEW"
    except OSError:
        return True  # gone: counts as nothing


def _client_error(exc: Exception) -> bool:
    """A client-side error (2xxx: cannot connect, connection lost or timed out), not the server's."""
    pymysql = _pymysql()
    if isinstance(exc, pymysql.err.InterfaceError):
        return True
    args = getattr(exc, "args", ())
    return bool(args) and isinstance(args[0], int) and args[0] >= 2000


def _goes_on(rows: Iterator[Any], limit: int) -> bool:
    """Read up to ``limit`` more rows; whether the result has more still."""
    return next(itertools.islice(rows, limit, None), None) is not None


def _more_results(cur: Any) -> bool:
    """Whether the batch had results after the first; reads (and drops) all of them, so the
    server has run every statement before the transaction is rolled back."""
    more = False
    while True:
        try:
            if not cur.nextset():
                return more
            for _ in cur.fetchall_unbuffered():  # read to its end: only then is a next one known
                pass
        except _pymysql().err.MySQLError:  # a later statement failed: the server stops there
            return True
        more = True


def _abandon(conn: Any, cur: Any) -> None:
    """Close a connection in the middle of a result without reading the rest of it."""
    result = getattr(cur, "_result", None)
    if result is not None:
        result.unbuffered_active = False
    cur.connection = None
    conn.close()


class MariaDBEngine:
    """Databases on the process's private MariaDB server; one root connection per env."""

    name = "mariadb"

    def __init__(self, server: MariaDBServer | None = None, statement_timeout: float = STATEMENT_TIMEOUT,
                 storage_cap: int = STORAGE_CAP):
        _pymysql()
        self.statement_timeout = statement_timeout
        self.storage_cap = storage_cap
        if mariadb_binaries() is None:
            raise EngineError("MariaDB is not installed: apt-get install mariadb-server (or use engine='sqlite')")
        self.server = server or MariaDBServer.shared()
        self._admin: Any = None
        self._admin_generation = -1
        self._leased = False

    def _admin_conn(self, restart: bool = False) -> Any:
        """The env's root connection. ``restart`` (at reset only): a server that died or missed a
        deadline is restarted first, and once more if it cannot be reached now; elsewhere such a
        server is an :class:`EngineError` (an episode's database does not survive a restart)."""
        pymysql = _pymysql()
        if not self._leased:
            self.server.acquire()  # lazily: the server starts with the first episode
            self._leased = True
        if restart:
            self.server.ensure_running()  # a crashed or wedged server comes back for the next episode
        elif not self.server.running or self.server.failed:
            raise EngineError("the MariaDB server stopped or failed during this episode; the next reset restarts it")
        if (self._admin is not None and self._admin.open and self._admin_generation == self.server.generation):
            try:
                self._admin.ping(reconnect=False)
                return self._admin
            except Exception:  # noqa: BLE001 - reconnect below
                pass
        try:
            self._admin = self.server.connect(autocommit=True)
            with self._admin.cursor() as cur:  # DDL waits for no lock longer than the deadline
                cur.execute(f"SET SESSION lock_wait_timeout = {max(1, int(self.server.deadline))}")
            self._admin_generation = self.server.generation
            return self._admin
        except pymysql.err.MySQLError as exc:
            if not _client_error(exc):
                raise EngineError(f"the MariaDB server refused its root connection: {exc}") from exc
            self.server.mark_failed(f"unreachable: {exc}")
            if restart:
                return self._admin_conn(restart=False) if self._restart_once() else self._unreachable(exc)
            self._unreachable(exc)

    def _restart_once(self) -> bool:
        try:
            self.server.ensure_running()
            return True
        except EngineError:
            return False

    def _unreachable(self, exc: Exception) -> Any:
        raise EngineError(f"cannot reach the MariaDB server ({exc}); the next reset restarts it") from exc

    def _admin_fault(self, exc: Exception, doing: str) -> EngineError:
        if _client_error(exc):
            self.server.mark_failed(f"no answer while {doing}: {exc}")
            return EngineError(f"the MariaDB server failed while {doing} ({exc}); the next reset restarts it")
        return EngineError(f"MariaDB refused {doing}: {exc}")

    def create(self, table: Table) -> MariaDBDatabase:
        conn = self._admin_conn(restart=True)
        name = self.server.reserve(table.name)
        user, password = self.server.account_name(), secrets.token_hex(16)
        create, insert = create_table_sql(table, quote_value=lambda v: f"'{prompt.mysql_escape(v)}'")
        setup_error = None
        try:
            with conn.cursor() as cur:
                _rollback_prepared(cur)
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
                cur.execute(f"CREATE DATABASE `{name}`")
                cur.execute(f"USE `{name}`")
                for statement in (create, insert):  # upstream's batch stops at its first error
                    try:
                        cur.execute(statement)
                    except _pymysql().err.MySQLError as exc:
                        if _client_error(exc):
                            raise
                        setup_error = _mysql_error_text(exc, conn)
                        break
                # the account exists only with its database (GRANT creates it: one statement, not two, as the
                # SQL mode has no NO_AUTO_CREATE_USER); ALL on one database does not include GRANT OPTION
                cur.execute(f"GRANT ALL PRIVILEGES ON `{_grant_name(name)}`.* TO '{user}'@'localhost' "
                            f"IDENTIFIED BY '{password}'")
                cur.execute("SELECT CAST(CONVERT(%s USING filename) AS BINARY)", (name,))
                folder = self.server.datadir / os.fsdecode(cur.fetchone()[0])
        except _pymysql().err.MySQLError as exc:
            self.server.free(name)
            raise self._admin_fault(exc, f"creating database {name!r}") from exc
        return MariaDBDatabase(self, name, table, setup_error, user, password, self.server.generation, folder)

    def admin_query(self, sql: str, database: str) -> str:
        """Run ``sql`` as root in ``database``; upstream's rendering (result or error text)."""
        conn = self._admin_conn()
        try:
            with conn.cursor() as cur:
                cur.execute(f"USE `{database}`")
                cur.execute(sql)
                return prompt.truncate(str(list(cur.fetchall())))
        except _pymysql().err.MySQLError as exc:
            if _client_error(exc):
                raise self._admin_fault(exc, "reading the table") from exc
            return prompt.truncate(_mysql_error_text(exc, conn))

    def drop(self, name: str, user: str | None = None, generation: int | None = None) -> None:
        """Drop an episode's database and account; nothing to do where they went with their server
        (a database of an earlier run of the server: its name may be another episode's now)."""
        if generation is not None and generation != self.server.generation:
            return
        if not self.server.running or self.server.failed:  # the next start begins from a fresh datadir
            self.server.free(name)
            return
        try:
            with self._admin_conn().cursor() as cur:
                _rollback_prepared(cur)
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
                if user is not None:  # its grants go with it
                    cur.execute(f"DROP USER IF EXISTS '{user}'@'localhost'")
        except _pymysql().err.MySQLError as exc:
            if _client_error(exc):
                self.server.mark_failed(f"no answer while dropping {name!r}: {exc}")
            else:
                raise EngineError(f"could not drop database {name!r}: {exc}") from exc
        except EngineError:
            pass  # the server failed meanwhile: restarted, from a fresh datadir, at the next reset
        finally:
            self.server.free(name)

    def expected_hash(self, question: Question) -> str:
        return question.answer_md5 or ""

    def version(self) -> str:
        """The running server's ``VERSION()``, else what the installed ``mariadbd`` says."""
        return self.server.version or _installed_version()

    def close(self) -> None:
        if self._admin is not None and self._admin.open:
            try:
                self._admin.close()
            except Exception:  # noqa: BLE001
                pass
        self._admin = None
        if self._leased:
            self._leased = False
            self.server.release()
