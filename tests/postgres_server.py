"""A real PostgreSQL server on loopback for the test session, a fresh database in it for each test, and the
`database` fixture that runs a store's tests on both backends.

Import the fixtures a test module uses: `from tests.postgres_server import database, postgres_server, postgres_url`.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tools.sql import Database, PostgresDatabase, SQLiteFile, connect_postgres

INSTALL = "apt-get install -y postgresql"
USER = "postgres"


class PostgresServer:
    """initdb + pg_ctl on a temp data dir: trust auth, listening on 127.0.0.1 only, its socket in the same temp dir."""

    def __init__(self, bin_dir: Path, root: Path):
        self.bin_dir, self.root = bin_dir, root
        self.data, self.log = root / "data", root / "server.log"
        self.port = _free_port()
        self.url = f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        # Crash tests kill processes, never the machine: skipping fsync only makes the suite faster.
        self._run("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "--encoding=UTF8", "--no-sync")
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def create_database(self) -> str:
        """A new empty database; its URL."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def _run(self, tool: str, *args: str) -> None:
        # initdb refuses to run as root: as root, the server runs as the postgres user, which owns the temp dir.
        command = [str(self.bin_dir / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", USER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.root)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            pytest.fail(f"{tool} failed ({done.returncode}): {done.stderr.strip()}\n{log}")


def find_bin_dir() -> Path:
    """The newest installed server's bin dir; the suite fails, never skips, without one: CI must run these tests."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        pytest.fail(f"PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run `{INSTALL}`", pytrace=False)
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = find_bin_dir()
    # Not under pytest's tmp dir: that one is private to root, and the server may run as the postgres user.
    root = Path(tempfile.mkdtemp(prefix="salesloop-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, USER, USER)
    server = PostgresServer(bin_dir, root)
    try:
        server.start()
        yield server
        server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh database for one test: tests never see each other's tables."""
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    """A store test runs on both backends: a SQLite file in a folder not made yet, and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return SQLiteFile(tmp_path / "nested" / "store.sqlite")
    return PostgresDatabase(request.getfixturevalue("postgres_url"))


def stored_bytes(db: Database, table: str) -> bytes:
    """What the disk holds of `table`: the SQLite file and its WAL, or the table's own files in PostgreSQL's data dir."""
    if isinstance(db, SQLiteFile):
        return b"".join(f.read_bytes() for f in db.path.parent.iterdir() if f.name.startswith(db.path.name))
    with connect_postgres(db.url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")  # the table's dirty pages reach its files
        data_dir = Path(conn.execute("SHOW data_directory").fetchone()[0])
        relations = conn.execute("SELECT pg_relation_filepath(oid), pg_relation_filepath(reltoastrelid) FROM pg_class "
                                 "WHERE oid = %s::regclass", (table,)).fetchone()
    return b"".join((data_dir / relation).read_bytes() for relation in relations if relation)  # the table, its TOAST table
