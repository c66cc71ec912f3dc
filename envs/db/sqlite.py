"""SQLite engine: a private in-memory database per episode, nothing to install.

No file can be attached or written (ATTACH and ``VACUUM INTO`` need an attached database, and
none is allowed), values are capped at 16 MB, the database (and its temporary one) at
:data:`~agent_gym.envs.db.engine.STORAGE_CAP` (``max_page_count``, which the agent cannot set),
and a progress handler stops a statement that runs past the time limit. The table's columns
compare as MySQL 8's do (case- and accent-insensitive), so the same SQL finds the same rows on
both engines. Write questions are
scored against the gold SQL replayed on SQLite, where MySQL's ``answer_md5`` is out of reach.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import threading
import time
import unicodedata
from typing import Any

from agent_gym.envs.db import prompt
from agent_gym.envs.db.data import Question, Table
from agent_gym.envs.db.engine import (OUT_OF_SYNC, STATEMENT_TIMEOUT, STORAGE_CAP, create_table_sql, escaped_columns,
                                      storage_full)

SQLITE_COLLATION = "mysql_ai_ci"
# Pragmas the agent may read but not set: they would lift the storage cap or the memory it bounds.
_LOCKED_PRAGMAS = frozenset({"max_page_count", "page_size", "cache_size", "temp_store", "mmap_size",
                             "hard_heap_limit", "soft_heap_limit"})


# one printf conversion: flags, width (digits or *), precision (.digits or .*), length, conversion
_SPEC = re.compile(r"%([-+ #0,!]*)(\*|\d*)(?:\.(\*|\d*))?(ll|l)?(.)", re.S)


def _printf_sizes(fmt: str, args: tuple[Any, ...]) -> list[int]:
    """The widths and precisions a printf call asks for, literal or taken from its arguments (``*``)."""
    sizes, i = [], 0
    for m in _SPEC.finditer(fmt):
        if m.group(5) == "%":
            continue
        for part in (m.group(2), m.group(3)):
            if part == "*":
                value = args[i] if i < len(args) else 0
                i += 1
                sizes.append(abs(int(value)) if isinstance(value, (int, float)) else 0)
            elif part:
                sizes.append(int(part))
        i += 1  # the value converted
    return sizes


def _bounded_printf(limit: int):
    """SQLite's ``printf`` / ``format``, giving NULL at once (as SQLite does, after building the string)
    for widths and precisions past ``limit``."""
    formatter = sqlite3.connect(":memory:", check_same_thread=False)  # a plain connection: SQLite's own printf
    lock = threading.Lock()

    def printf(*args: Any) -> Any:
        if not args or args[0] is None:
            return None
        if any(n > limit for n in _printf_sizes(str(args[0]), args[1:])):
            return None  # what SQLite's own printf gives past its length limit, minus the wait
        with lock:
            return formatter.execute(f"SELECT printf({', '.join('?' * len(args))})", args).fetchone()[0]

    return printf


def _authorize(action: int, arg1: str | None, arg2: str | None, *_: Any) -> int:
    if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() in _LOCKED_PRAGMAS and arg2 is not None:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _blank(sql: str) -> bool:
    """Whether ``sql`` is no statement: only whitespace and ``;`` (a comment after the last
    ``;`` is one more, empty, statement to MySQL, so it counts here too)."""
    return not sql.replace(";", " ").strip()


def split_statements(sql: str) -> list[str]:
    """``sql`` cut into complete statements as MySQL cuts a batch (``;`` inside strings,
    comments and trigger bodies does not cut; empty statements are dropped)."""
    statements, start = [], 0
    for i, ch in enumerate(sql):
        if ch == ";" and sqlite3.complete_statement(sql[start: i + 1]):
            statements.append(sql[start: i + 1])
            start = i + 1
    statements.append(sql[start:])
    return [s for s in statements if not _blank(s)] or [sql]


@functools.lru_cache(maxsize=4096)
def _fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).casefold()


def _mysql_ai_ci(a: str, b: str) -> int:
    """MySQL 8's default collation, approximately: accents and case ignored, no padding."""
    fa, fb = _fold(a), _fold(b)
    return (fa > fb) - (fa < fb)


class SQLiteDatabase:
    """A private in-memory SQLite database; no files can be attached or written.

    The table's columns compare as MySQL's do (case- and accent-insensitive), so that
    ``WHERE name = 'montreal'`` finds ``Montréal`` on both engines.
    """

    MAX_LENGTH = 16 * 1024 * 1024  # like MariaDB's max_allowed_packet

    def __init__(self, table: Table, statement_timeout: float = STATEMENT_TIMEOUT, storage_cap: int = STORAGE_CAP):
        self.table = table
        self.statement_timeout = statement_timeout
        self.storage_cap = storage_cap
        self.conn = sqlite3.connect(":memory:", check_same_thread=False)
        self.conn.execute("PRAGMA temp_store = MEMORY")  # sorts and temporary tables: no file (first: it resets temp)
        # the cap in pages, on the database and on its temporary one (CREATE TEMP TABLE)
        for schema in ("main", "temp"):
            page = self.conn.execute(f"PRAGMA {schema}.page_size").fetchone()[0]
            self.conn.execute(f"PRAGMA {schema}.max_page_count = {max(1, storage_cap // page)}")
        self.conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        self.conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, self.MAX_LENGTH)
        self._deadline = float("inf")
        self.conn.set_progress_handler(lambda: int(time.monotonic() > self._deadline), 10_000)
        self.conn.create_collation(SQLITE_COLLATION, _mysql_ai_ci)
        # SQLite's printf builds a huge width in full before the length limit refuses it, deaf to the
        # progress handler (printf('%.*c', 1000000000, 'x') held a step 48 s): guard it, format the rest as SQLite does
        for name in ("printf", "format"):
            self.conn.create_function(name, -1, _bounded_printf(self.MAX_LENGTH), deterministic=True)
        create, insert = create_table_sql(table, column_type=f"TEXT COLLATE {SQLITE_COLLATION}")
        values = [str(v) for row in table.rows for v in row]
        self.setup_error = None
        for statement, params in ((create, ()), (insert, values)):
            try:
                self.conn.execute(statement, params)
            except sqlite3.Error as exc:
                self.setup_error = str(exc)
                break
        self.conn.commit()
        self.conn.set_authorizer(_authorize)  # after the setup: only the agent's SQL is checked

    def execute(self, sql: str) -> str:
        """Run the agent's SQL; several statements behave as on upstream's MySQL connector
        (:data:`~agent_gym.envs.db.engine.OUT_OF_SYNC`, nothing kept), except that no
        statement runs: the first is only compiled (``EXPLAIN``), so that its error, which
        upstream would show, shows."""
        self._deadline = time.monotonic() + self.statement_timeout
        try:
            statements = split_statements(sql)
            if len(statements) > 1:
                self.conn.execute("EXPLAIN " + statements[0]).fetchall()
                return OUT_OF_SYNC
            cur = self.conn.execute(statements[0])
            text = prompt.render_rows(cur) if cur.description else "[]"
            self.conn.commit()
            return text
        except (sqlite3.Error, OverflowError, ValueError) as exc:
            self.conn.rollback()
            if isinstance(exc, sqlite3.OperationalError) and str(exc) == "interrupted":
                return f"interrupted: statement time limit ({self.statement_timeout:g} s) exceeded"
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                return storage_full(self.storage_cap)
            return prompt.truncate(str(exc))
        finally:
            self._deadline = float("inf")

    def rows(self) -> list[tuple[Any, ...]]:
        cols = ",".join(f"`{c}`" for c in escaped_columns(self.table))
        return self.conn.execute(f"SELECT {cols} FROM `{self.table.name}`").fetchall()

    def table_hash(self) -> str:
        try:
            return prompt.table_hash(self.rows())
        except sqlite3.Error as exc:
            return str(exc)

    def drop(self) -> None:
        self.conn.close()


class SQLiteEngine:
    """SQLite databases; write questions are scored against the gold SQL replayed on SQLite."""

    name = "sqlite"

    def __init__(self, statement_timeout: float = STATEMENT_TIMEOUT):
        self.statement_timeout = statement_timeout
        self._expected: dict[str, str] = {}

    def create(self, table: Table) -> SQLiteDatabase:
        return SQLiteDatabase(table, self.statement_timeout)

    def version(self) -> str:
        return sqlite3.sqlite_version

    def expected_hash(self, question: Question) -> str:
        """The hash after the question's gold SQL ran on SQLite, where MySQL's ``answer_md5``
        may not be reachable (``\\n`` in a MySQL string literal is a newline, in SQLite two
        characters). Where the gold SQL fails on SQLite or changes nothing (it relied on MySQL's
        accent-insensitive matching), ``answer_md5`` stays the target: the hash is the same
        function on both engines."""
        if question.id not in self._expected:
            db = self.create(question.table)
            try:
                before = db.table_hash()
                outcomes = [db.execute(sql) for sql in question.label]
                after = db.table_hash()
            finally:
                db.drop()
            replayed = all(o == "[]" for o in outcomes) and after != before
            self._expected[question.id] = after if replayed else (question.answer_md5 or "")
        return self._expected[question.id]

    def close(self) -> None:
        pass
