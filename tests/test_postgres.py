"""PostgreSQL chosen by config alone: a whole run through the queue, the graph and the rep's decision on a real server,
across a restart, with nothing written to the SQLite files; claims safe across processes; what only Postgres has.

The stores' own behaviour runs on both backends in test_queue.py and test_feedback_store.py.
"""

from __future__ import annotations

import json
import time
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import yaml

from agents.inbox import adopt
from agents.services import Services
from configs import load_settings
from configs.loader import ConfigError
from configs.settings import Settings
from feedback.store import FeedbackStore
from orchestrator import Orchestrator, RunError, run_id_for
from service.queue import EventQueue
from service.worker import Workers
from tests.conftest import FIXED_NOW, config_dict
from tests.postgres_server import postgres_server, postgres_url  # noqa: F401 - fixtures
from tests.test_feedback_store import _record
from tests.test_graph import demo_event
from tests.test_queue import T0, _event
from tools.cases import index_cases
from tools.sql import PostgresDatabase, connect_postgres

URL_ENV = "SALESLOOP_POSTGRES_URL"
SQLITE_STORES = ("checkpoints.sqlite", "queue.sqlite", "feedback.sqlite")
CHECKPOINT_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
# A worker in a process of its own: it claims until the queue is empty, after the parent says go.
CLAIMER = """
import json, sys
from datetime import datetime, timezone
from service.queue import EventQueue
from tools.sql import PostgresDatabase
queue = EventQueue(PostgresDatabase(sys.argv[1]))
print("ready", flush=True)
sys.stdin.readline()
claimed, now = [], datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
while (item := queue.claim(sys.argv[2], now, 60)) is not None:
    queue.complete(item.id, f"run-{item.id}")
    claimed.append(item.id)
print(json.dumps(claimed))
"""
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def pg_settings(tmp_path, data_dir, model_dir, postgres_url, monkeypatch) -> Settings:
    monkeypatch.setenv(URL_ENV, postgres_url)
    raw = config_dict(data_dir, model_dir)
    raw["database"] = {"backend": "postgres"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_settings(path, env={})


def _rows(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with connect_postgres(url) as db:
        return db.execute(sql, params).fetchall()


def test_a_run_waits_in_postgres_and_is_decided_after_a_restart(pg_settings, postgres_url, data_dir):
    event = demo_event(data_dir, "new-lead-falkenrath")
    with Services(pg_settings, clock=lambda: FIXED_NOW) as services:
        index_cases(services.crm, services.embedder, services.vectors)
        queue = EventQueue.from_settings(pg_settings)
        queue.enqueue("generic", f"{event.source}:{event.id}", event, FIXED_NOW)
        with Orchestrator(services) as orch:
            assert Workers(orch, queue, 1, lease_s=900, clock=services.clock).run_once()
            waiting = orch.info(run_id_for(event))
            assert waiting.status == "waiting" and orch.pending_interrupt(waiting.run_id)["action_request"]["args"]["draft"]

    # A new process: fresh services and orchestrator, nothing shared with the first but the database.
    with Services(pg_settings, clock=lambda: FIXED_NOW) as services, Orchestrator(services) as restarted:
        assert restarted.runs("waiting") == [waiting]
        done = restarted.decide(waiting.run_id, adopt("rep-anna"))
        assert done.status == "done" and restarted.state(waiting.run_id).applied.booked_now

        assert [(i.status, i.run_id) for i in queue.list()] == [("done", waiting.run_id)]
        stored = _rows(postgres_url, "SELECT run_id, record FROM feedback")
        assert [(run, json.loads(record)["decision"]) for run, record in stored] == [(waiting.run_id, "adopt")]

        restarted.erase_runs([waiting.run_id])
        assert restarted.info(waiting.run_id).status == "erased"
        with pytest.raises(RunError, match="was erased"):
            restarted.state(waiting.run_id)
        for table in CHECKPOINT_TABLES:
            assert _rows(postgres_url, f"SELECT count(*) FROM {table} WHERE thread_id = %s", (waiting.run_id,)) == [(0,)]
    assert not [f.name for f in data_dir.iterdir() if f.name.startswith(SQLITE_STORES)]


def test_postgres_without_its_url_fails_at_start_naming_the_variable(pg_settings, monkeypatch):
    monkeypatch.delenv(URL_ENV)
    fix = f"database.backend is postgres but the environment variable {URL_ENV} is not set: set it to the database's URL"
    with pytest.raises(ConfigError, match=fix):
        Services(pg_settings)
    with pytest.raises(ConfigError, match=fix):
        EventQueue.from_settings(pg_settings)


def test_an_unreachable_server_is_one_line_naming_where_never_the_password(pg_settings, tmp_path):
    """The CLI over a Postgres config whose server is down: exit 2, where it tried, what to check; no traceback."""
    from tests.test_cli import salesloop

    config = tmp_path / "config.yaml"  # the one pg_settings wrote: database.backend postgres
    env_url = "postgresql://salesloop:s3cret-pw@127.0.0.1:1/salesloop"
    result = salesloop("inbox", config=config, check=False, env={URL_ENV: env_url})
    assert result.returncode == 2, result.stderr
    assert "cannot connect to PostgreSQL at 127.0.0.1:1/salesloop" in result.stderr and "check the URL" in result.stderr
    assert "s3cret-pw" not in result.stderr and "Traceback" not in result.stderr


def test_two_processes_never_claim_the_same_item(postgres_url):
    queue = EventQueue(PostgresDatabase(postgres_url))
    ids = {queue.enqueue("s", f"e{n}", _event(n), T0 + timedelta(seconds=n))[0].id for n in range(80)}
    workers = [subprocess.Popen([sys.executable, "-c", CLAIMER, postgres_url, f"process-{i}"], cwd=REPO, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE) for i in range(2)]
    for worker in workers:
        assert worker.stdout.readline() == "ready\n"
    for worker in workers:  # both start claiming together
        worker.stdin.write("go\n")
        worker.stdin.flush()
    claimed = [json.loads(worker.communicate(timeout=120)[0]) for worker in workers]
    assert all(claimed), "both processes claimed items: they competed for the queue"
    assert sorted(claimed[0] + claimed[1]) == sorted(ids)  # every item once, none twice
    assert queue.counts() == {"queued": 0, "processing": 0, "done": 80, "dead": 0}


def test_instants_come_back_in_utc_whatever_the_servers_time_zone(postgres_url):
    tokyo = f"{postgres_url}?options=-c%20TimeZone%3DAsia%2FTokyo"
    item, _ = EventQueue(PostgresDatabase(tokyo)).enqueue("s", "e1", _event(1), T0)
    assert item.received_at == T0 and item.received_at.utcoffset() == timedelta(0)


def test_truncating_feedback_is_refused(postgres_url):
    store = FeedbackStore(PostgresDatabase(postgres_url))
    store.append(_record(1))
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"), connect_postgres(postgres_url) as db:
        db.execute("TRUNCATE feedback")
    assert store.all() == [_record(1)]


def test_a_process_waiting_for_the_schema_lock_does_not_deadlock_an_index_built_concurrently(postgres_url):
    """Two processes starting at once: the first holds the schema lock and LangGraph's migration builds an index
    CONCURRENTLY, which waits for every open transaction; the second, waiting for the lock, must not be one."""
    import threading

    from tools.sql import schema_lock

    with connect_postgres(postgres_url, autocommit=True) as first, connect_postgres(postgres_url, autocommit=True) as second:
        first.execute("CREATE TABLE IF NOT EXISTS lock_probe (id integer)")
        taken = threading.Event()
        errors: list[BaseException] = []

        def wait_for_lock():
            try:
                with schema_lock(second):
                    taken.set()
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        with schema_lock(first):
            waiter = threading.Thread(target=wait_for_lock)
            waiter.start()
            time.sleep(0.5)  # the second connection is now waiting for the lock
            first.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS lock_probe_idx ON lock_probe (id)")
            assert not taken.is_set(), "the lock is still held"
        waiter.join(timeout=60)
        assert errors == [] and taken.is_set()
