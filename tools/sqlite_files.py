"""Making deleted rows really gone from a SQLite file: erasure must not leave personal data in free pages or a WAL."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path


def create_schema(path: Path, schema: str, connect: Callable[[], sqlite3.Connection]) -> None:
    """Make the file's folder and its tables; every store here opens its file this way."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(connect()) as db, db:
        db.executescript(schema)


def compact(db: sqlite3.Connection) -> None:
    """Fold the WAL into the file, rebuild the file without free pages, and truncate the WAL again."""
    db.execute("PRAGMA secure_delete=ON")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("VACUUM")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def compact_file(path: Path) -> None:
    with closing(sqlite3.connect(path, timeout=30, isolation_level=None)) as db:
        compact(db)
