"""The SQL database a store runs on: its own SQLite file, or the PostgreSQL database that `database.backend` names.

A store writes its SQL once, with `?` placeholders; what the two spell differently (column types, row locks, JSON
fields) comes from the database's Dialect. Every operation opens its own connection, as the SQLite stores always
did: nothing to close, safe from any thread or process (put a pooler such as PgBouncer in front if connecting costs).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import psycopg
from psycopg.conninfo import conninfo_to_dict

from configs.loader import ConfigError
from configs.settings import DatabaseSettings
from tools.sqlite_files import compact, create_schema

# Any constant will do: it only has to be the same in every salesloop process that creates tables in one database.
SCHEMA_LOCK = 0x5A1E5100


@dataclass(frozen=True)
class Dialect:
    name: Literal["sqlite", "postgres"]
    key: str  # an auto-numbered 64-bit primary key
    text: str  # text that sorts byte by byte, as SQLite's does, so ORDER BY agrees on both
    instant: str  # a point in time; the stores write ISO 8601 text with its UTC offset into it
    lock_rows: str  # ends a SELECT in a write: its rows stay ours until commit (SQLite's write() locks the whole file)
    skip_locked: str  # the same, passing over rows another transaction holds instead of waiting for them
    json_field: str  # a JSON text column's top-level field as text, formatted with column= and key=

    def schema(self, template: str) -> str:
        """A schema written with {key}, {text} and {instant} for its column types."""
        return template.format(key=self.key, text=self.text, instant=self.instant)

    def json_text(self, column: str, key: str) -> str:
        return self.json_field.format(column=column, key=key)


SQLITE = Dialect("sqlite", key="INTEGER PRIMARY KEY AUTOINCREMENT", text="TEXT", instant="TEXT", lock_rows="", skip_locked="",
                 json_field="json_extract({column}, '$.{key}')")
POSTGRES = Dialect("postgres", key="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", text='TEXT COLLATE "C"', instant="TIMESTAMPTZ",
                   lock_rows=" FOR UPDATE", skip_locked=" FOR UPDATE SKIP LOCKED", json_field="({column}::jsonb ->> '{key}')")


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> tuple | None: ...

    def fetchall(self) -> list[tuple]: ...


class Connection(Protocol):
    """What the stores call: sqlite3's own connection, or psycopg's behind `?` placeholders."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any: ...


class Database(Protocol):
    dialect: Dialect

    def create(self, schema: str) -> None:
        """Run a schema of CREATE ... IF NOT EXISTS statements; safe when several processes start at once."""

    def read(self) -> AbstractContextManager[Connection]: ...

    def write(self) -> AbstractContextManager[Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""

    def compact(self, tables: Sequence[str]) -> None:
        """Leave no copy of deleted rows in `tables`' free space: erasure must reach the disk too."""


class SQLiteFile:
    dialect = SQLITE

    def __init__(self, path: Path):
        self.path = path

    def create(self, schema: str) -> None:
        create_schema(self.path, schema, self._connect)

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        with closing(self._connect()) as db:
            yield db

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")  # take the write lock first: a read-then-update cannot interleave with another's
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def compact(self, tables: Sequence[str]) -> None:
        with closing(self._connect()) as db:
            compact(db)  # VACUUM rebuilds the whole file, whatever the tables

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)  # timeout: wait for the write lock, do not fail
        db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        db.execute("PRAGMA synchronous=FULL")  # a commit is on disk before the caller is told it is
        db.execute("PRAGMA secure_delete=ON")  # only erasure deletes: what it deletes is overwritten at once
        return db


class PostgresDatabase:
    dialect = POSTGRES

    def __init__(self, url: str):
        self.url = url

    def create(self, schema: str) -> None:
        with connect_postgres(self.url, autocommit=True) as db, schema_lock(db):
            db.execute(schema)  # several statements at once: psycopg allows it without parameters

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with connect_postgres(self.url) as db:  # leaving the block commits, or rolls back on an error, and closes
            yield _Placeholders(db)

    write = read  # every psycopg connection runs its statements in one transaction until the block ends

    def compact(self, tables: Sequence[str]) -> None:
        # VACUUM FULL writes each table anew and drops the old files; plain VACUUM only marks dead rows reusable.
        with connect_postgres(self.url, autocommit=True) as db:
            for table in tables:
                db.execute(f"VACUUM FULL {table}")


class _Placeholders:
    """A psycopg connection that takes the stores' `?` placeholders (psycopg's are %s, so a literal % doubles)."""

    def __init__(self, db: psycopg.Connection):
        self._db = db

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor:
        return self._db.execute(_postgres_sql(sql), params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._db.cursor() as cursor:
            cursor.executemany(_postgres_sql(sql), rows)


def _postgres_sql(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")  # the stores' SQL has no `?` in literals, nor jsonb's ? operator


class DatabaseUnreachable(Exception):
    """The configured PostgreSQL server cannot be reached or refuses us; the message says what to check."""


def connect_postgres(url: str, **options: Any) -> psycopg.Connection:
    """A connection whose instants come back in UTC, as the SQLite stores write them, whatever the server's time zone."""
    info = conninfo_to_dict(url)
    info["options"] = f"{info.get('options', '')} -c TimeZone=UTC".strip()
    try:
        return psycopg.connect(**info, **options)
    except psycopg.OperationalError as exc:
        where = f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"  # never the password
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        raise DatabaseUnreachable(f"cannot connect to PostgreSQL at {where} ({detail}); check the URL in the database.url_env "
                                  "variable and that the server is running") from None


@contextmanager
def schema_lock(db: psycopg.Connection, timeout_s: float = 300.0) -> Iterator[None]:
    """Held while creating tables: two processes running CREATE ... IF NOT EXISTS at once can collide in Postgres.

    Taken by polling, never by waiting inside `pg_advisory_lock`: LangGraph's migrations build indexes CONCURRENTLY,
    which waits for every open transaction to end, and a statement blocked on the lock is one; so a second process
    starting at the same moment deadlocked the first. A try is a transaction that ends at once."""
    deadline = time.monotonic() + timeout_s
    while not _try_lock(db):
        if time.monotonic() > deadline:
            raise DatabaseUnreachable(f"another process has held the schema lock for over {timeout_s:.0f} s; if no salesloop "
                                      "process is starting, end the session holding it (pg_locks, advisory lock "
                                      f"{SCHEMA_LOCK}) and start again")
        time.sleep(0.05)
    try:
        yield
    finally:
        db.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))


def _try_lock(db: psycopg.Connection) -> bool:
    row = db.execute("SELECT pg_try_advisory_lock(%s) AS locked", (SCHEMA_LOCK,)).fetchone()
    return bool(row["locked"] if isinstance(row, dict) else row[0])  # the checkpointer's connection yields dicts


def postgres_url(settings: DatabaseSettings, env: Mapping[str, str] = os.environ) -> str:
    url = env.get(settings.url_env)
    if not url:
        raise ConfigError(f"database.backend is postgres but the environment variable {settings.url_env} is not set: set it to "
                          f"the database's URL, e.g. {settings.url_env}=postgresql://salesloop:PASSWORD@db-host:5432/salesloop")
    return url


def open_database(settings: DatabaseSettings, sqlite_file: Path) -> Database:
    """The store's own SQLite file, or the configured PostgreSQL database, which every store shares."""
    return PostgresDatabase(postgres_url(settings)) if settings.backend == "postgres" else SQLiteFile(sqlite_file)
