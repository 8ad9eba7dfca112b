"""The feedback store is append-only: the SQLite database itself refuses updates and deletes."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import datetime, timedelta, timezone

import pytest

from feedback.store import FeedbackRecord, FeedbackStore
from prompts.templates import ChatMessage
from provenance import SourceRef

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)


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
def store(tmp_path) -> FeedbackStore:
    return FeedbackStore(tmp_path / "nested" / "feedback.sqlite")


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
    with closing(sqlite3.connect(store.path)) as db, db:
        db.execute(sql)


def test_update_is_refused_by_the_database(store):
    store.append(_record(1))
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        _raw(store, "UPDATE feedback SET record = '{}' WHERE id = 'fb-0001'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        _raw(store, "UPDATE feedback SET run_id = 'run-x'")
    assert store.all() == [_record(1)]


def test_delete_is_refused_by_the_database(store):
    store.append(_record(1))
    store.append(_record(2))
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        _raw(store, "DELETE FROM feedback WHERE id = 'fb-0001'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        _raw(store, "DELETE FROM feedback")
    assert len(store.all()) == 2


def test_insert_or_replace_cannot_overwrite(store):
    store.append(_record(1))
    # REPLACE deletes the old row without firing the delete trigger; the schema must still keep the original.
    _raw(store, "INSERT OR REPLACE INTO feedback (id, run_id, recorded_at, record) VALUES ('fb-0001', 'run-x', 'x', '{}')")
    _raw(store, "INSERT INTO feedback (id, run_id, recorded_at, record) VALUES ('fb-0001', 'run-y', 'y', '{}')")
    assert store.all() == [_record(1)]
    assert store.for_run("run-x") == []


def test_records_survive_reopening(tmp_path):
    path = tmp_path / "feedback.sqlite"
    records = [_record(1), _record(2, decision="reject"), _record(3, decision="adopt")]
    first = FeedbackStore(path)
    for record in records:
        first.append(record)
    del first
    reopened = FeedbackStore(path)  # re-running the schema must not touch existing rows
    assert reopened.all() == records
    assert reopened.append(_record(2)) is False
    assert reopened.append(_record(4)) is True
    assert len(FeedbackStore(path).all()) == 4
