"""The engine side of the DB env: what a database must do, and which one to open.

Two engines implement it, each in its own module: :mod:`.mariadb` (a private MariaDB server,
the faithful default: upstream ran MySQL 8 in Docker) and :mod:`.sqlite` (embedded, nothing
to install). Both build the question's table as upstream's ``build_sql`` does (every column
TEXT, names escaped with ``mysql_real_escape_string``, every value ``str()``-ed, one
multi-row INSERT whose failure leaves the table empty) and render a result as
``str(cursor.fetchall())`` cut at 800 characters; SQL errors come back as text, and only a
failure of the engine itself raises (:class:`EngineError`).
"""

from __future__ import annotations

import warnings
from typing import Any, Protocol

from agent_gym.envs.db import prompt
from agent_gym.envs.db.data import Question, Table

ENGINES = ("mariadb", "sqlite")
#: Seconds one statement may run before the engine interrupts it (upstream had no limit).
STATEMENT_TIMEOUT = 30.0
#: Bytes one episode's database may hold (its tables, indexes and temporary tables); a statement
#: that grows it past the cap is stopped and rolled back, and shows :func:`storage_full`.
STORAGE_CAP = 256 << 20
#: The observation for SQL of several statements. Upstream's ``Container.execute`` sends the
#: text with mysql-connector's ``execute(sql, multi=True)``, reads the first result and commits:
#: with the other results unread, the C extension raises this and nothing is committed.
OUT_OF_SYNC = "2014 (HY000): Commands out of sync; you can't run this command now"


def storage_full(cap: int = STORAGE_CAP) -> str:
    """The observation of a statement stopped at the storage cap (MySQL's "table is full" error,
    which upstream's server gave when its disk filled, with the cap named)."""
    return (f"1114 (HY000): The table is full: this episode's database reached its storage cap of "
            f"{cap >> 20} MB; the statement was stopped and rolled back")


class EngineError(RuntimeError):
    """The database engine itself failed (not the agent's SQL); the message names the fix."""


class Database(Protocol):
    """One episode's private database holding the question's table."""

    setup_error: str | None  # upstream ignores a failed CREATE/INSERT: the table is then missing or empty

    def execute(self, sql: str) -> str:
        """Run the agent's SQL; the observation (result or error text), never an exception."""

    def table_hash(self) -> str:
        """Upstream's md5 of the table (its ``str(fetchall())``), or the error text."""

    def drop(self) -> None:
        """Remove the database."""


class Engine(Protocol):
    name: str

    def create(self, table: Table) -> Database: ...

    def version(self) -> str:
        """The engine's version (for provenance), e.g. ``10.11.6-MariaDB-0+deb12u1``; cheap."""

    def expected_hash(self, question: Question) -> str:
        """The table hash a write question must end with on this engine."""

    def close(self) -> None: ...


def create_table_sql(table: Table, quote_value: Any = None, column_type: str = "TEXT") -> tuple[str, str]:
    """Upstream's CREATE TABLE and multi-row INSERT for ``table``.

    ``quote_value(text)`` renders one value; ``None`` gives ``?`` placeholders (SQLite).
    A row of the wrong length makes the INSERT fail as a whole, as upstream's does.
    """
    cols = [prompt.mysql_escape(c) for c in table.columns]
    create = f"CREATE TABLE IF NOT EXISTS `{table.name}` ({','.join(f'`{c}` {column_type}' for c in cols)})"
    items = ",".join("(" + ",".join(quote_value(str(v)) if quote_value else "?" for v in row) + ")" for row in table.rows)
    insert = f"INSERT INTO `{table.name}` ({','.join(f'`{c}`' for c in cols)}) VALUES {items}"
    return create, insert


def escaped_columns(table: Table) -> list[str]:
    return [prompt.mysql_escape(c) for c in table.columns]


def mariadb_available() -> str | None:
    """None when the MariaDB engine can run here, else what to install."""
    from agent_gym.envs.db.mariadb import mariadb_binaries

    if mariadb_binaries() is None:
        return "mariadbd not found: apt-get install mariadb-server"
    try:
        import pymysql  # noqa: F401
    except ImportError:
        return "PyMySQL missing: pip install 'agent-gym[db]'"
    return None


def open_engine(name: str | None = None, statement_timeout: float = STATEMENT_TIMEOUT) -> Engine:
    """``mariadb`` or ``sqlite``; by default MariaDB where installed, else SQLite (with a warning)."""
    if name is None:
        missing = mariadb_available()
        if missing is not None:
            warnings.warn(f"DB env falls back to SQLite ({missing}); results can differ from upstream's MySQL",
                          stacklevel=3)
        name = "sqlite" if missing else "mariadb"
    if name == "mariadb":
        from agent_gym.envs.db.mariadb import MariaDBEngine

        return MariaDBEngine(statement_timeout=statement_timeout)
    if name == "sqlite":
        from agent_gym.envs.db.sqlite import SQLiteEngine

        return SQLiteEngine(statement_timeout=statement_timeout)
    raise ValueError(f"unknown DB engine {name!r}: choose one of {', '.join(ENGINES)}")
