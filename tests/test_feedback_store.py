"""The feedback store is append-only: the database itself refuses updates and deletes, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from contextlib import suppress
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from feedback.store import FeedbackRecord, FeedbackStore
from prompts.templates import ChatMessage
from provenance import SourceRef
from tests.postgres_server import database, postgres_server, postgres_url, stored_bytes  # noqa: F401 - fixtures
from tools.sql import Database

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
REFUSED = (sqlite3.IntegrityError, psycopg.errors.RaiseException)  # what each database's guard raises
_ROW = "INTO feedback (id, run_id, recorded_at, record) VALUES ('fb-0001', 'run-x', '2026-01-01T00:00:00Z', '{}')"
# Overwriting through the insert path: SQLite's REPLACE deletes without firing the delete trigger; PostgreSQL upserts.
OVERWRITES = {
    "sqlite": [f"INSERT OR REPLACE {_ROW}", f"INSERT {_ROW}"],
    "postgres": [f"INSERT {_ROW} ON CONFLICT (id) DO UPDATE SET run_id = excluded.run_id, record = excluded.record", f"INSERT {_ROW}"],
}


def _record(n: int, run_id: str = "run-1", decision: str = "edit", **changes) -> FeedbackRecord:
    fields = dict(
        id=f"fb-{n:04d}",
        run_id=run_id,
        event_id="evt-0001",
        lead_id="lead-0001",
        rep_id="rep-demo",
        decision=decision,
        reason="too long" if decision != "adopt" else None,
        messages=[ChatMessage(role="system", content="You are a sales assistant."), ChatMessage(role="user", content="Write it [L1].")],
        draft="Acme needs a pilot [L1].",
        final_text=None if decision == "reject" else "Acme wants a pilot in Q1 [L1].",
        model_id="SmolLM2-135M-Instruct-Q4_1",
        model_version="a" * 64,
        adapter_id=None,
        prompt_name="draft_proposal",
        prompt_sha256="b" * 64,
        sources=[SourceRef(kind="crm_record", id="lead:lead-0001", field="company"), SourceRef(kind="human", id="rep-demo")],
        decided_at=T0 + timedelta(minutes=n),
        recorded_at=T0 + timedelta(minutes=n, seconds=1),
    )
    fields.update(changes)
    return FeedbackRecord(**fields)


@pytest.fixture
def store(database: Database) -> FeedbackStore:
    return FeedbackStore(database)


def test_append_then_read_back_equal(store):
    record = _record(1)
    assert store.append(record) is True
    assert store.all() == [record]
    assert store.for_run("run-1") == [record]
    assert store.all()[0].decided_at == record.decided_at


def test_same_id_twice_is_stored_once(store):
    first = _record(1)
    assert store.append(first) is True
    # A retried write, even with different content, does not replace or duplicate the first.
    assert store.append(_record(1, decision="reject")) is False
    assert store.all() == [first]


def test_for_run_filters_and_orders(store):
    later, earlier, other = _record(3, run_id="run-a"), _record(2, run_id="run-a"), _record(1, run_id="run-b")
    for record in (later, other, earlier):
        assert store.append(record)
    assert store.for_run("run-a") == [earlier, later]
    assert store.for_run("run-b") == [other]
    assert store.for_run("run-missing") == []
    assert [r.id for r in store.all()] == ["fb-0001", "fb-0002", "fb-0003"]


def _raw(store: FeedbackStore, sql: str) -> None:
    """SQL straight to the database, past the store's methods."""
    with store.db.write() as db:
        db.execute(sql)


def test_update_is_refused_by_the_database(store):
    store.append(_record(1))
    with pytest.raises(REFUSED, match="append-only"):
        _raw(store, "UPDATE feedback SET record = '{}' WHERE id = 'fb-0001'")
    with pytest.raises(REFUSED, match="append-only"):
        _raw(store, "UPDATE feedback SET run_id = 'run-x'")
    assert store.all() == [_record(1)]


def test_delete_is_refused_by_the_database(store):
    store.append(_record(1))
    store.append(_record(2))
    with pytest.raises(REFUSED, match="append-only"):
        _raw(store, "DELETE FROM feedback WHERE id = 'fb-0001'")
    with pytest.raises(REFUSED, match="append-only"):
        _raw(store, "DELETE FROM feedback")
    assert len(store.all()) == 2


def test_an_insert_cannot_overwrite(store, database):
    store.append(_record(1))
    for sql in OVERWRITES[database.dialect.name]:
        # SQLite's schema turns these into no-ops; PostgreSQL refuses them (the guard, or the primary key).
        with suppress(*REFUSED, psycopg.errors.UniqueViolation):
            _raw(store, sql)
    assert store.all() == [_record(1)]
    assert store.for_run("run-x") == []


def test_erasure_removes_a_persons_records_and_nothing_else(store, database):
    of_run = _record(1, run_id="run-a", lead_id="lead-0007", final_text="Dear Yuki Mori")
    of_lead = _record(2, run_id="run-b", lead_id="lead-0001")
    kept = _record(3, run_id="run-c", lead_id="lead-0002")
    for record in (of_run, of_lead, kept):
        store.append(record)
    assert sorted(store.erase(["run-a"], "lead-0001")) == ["fb-0001", "fb-0002"]
    assert store.all() == [kept]
    assert store.erase([], "lead-0001") == []
    with pytest.raises(REFUSED, match="append-only"):  # the guard is back after the erasure
        _raw(store, "DELETE FROM feedback")
    stored = stored_bytes(database, "feedback")
    assert b"Yuki Mori" not in stored and b"fb-0003" in stored


def test_records_survive_reopening(database):
    records = [_record(1), _record(2, decision="reject"), _record(3, decision="adopt")]
    first = FeedbackStore(database)
    for record in records:
        first.append(record)
    del first
    reopened = FeedbackStore(database)  # re-running the schema must not touch existing rows
    assert reopened.all() == records
    assert reopened.append(_record(2)) is False
    assert reopened.append(_record(4)) is True
    assert len(FeedbackStore(database).all()) == 4
