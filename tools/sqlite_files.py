"""Making deleted rows really gone from a SQLite file: erasure must not leave personal data in free pages or a WAL."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path


def compact(db: sqlite3.Connection) -> None:
    """Fold the WAL into the file, rebuild the file without free pages, and truncate the WAL again."""
    db.execute("PRAGMA secure_delete=ON")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("VACUUM")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def compact_file(path: Path) -> None:
    with closing(sqlite3.connect(path, timeout=30, isolation_level=None)) as db:
        compact(db)
