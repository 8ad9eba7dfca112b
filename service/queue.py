"""A durable SQLite queue of CRM events between the webhook routes and the workers.

An event is committed before the route answers 2xx, so an accepted event survives a crash. Enqueueing is
idempotent on (source, external id): a redelivery finds the row already there. Workers claim an item under a
lease; an item whose lease ran out (its worker crashed or hung) is taken back and counted as a failed attempt.
Failures retry with exponential backoff; after max_attempts the item is dead until someone replays it.
Every write runs under BEGIN IMMEDIATE, so two processes on one file never claim the same item.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tools.crm.records import CRMEvent
from tools.sqlite_files import compact, create_schema

QueueStatus = Literal["queued", "processing", "done", "dead"]
STATUSES: tuple[QueueStatus, ...] = ("queued", "processing", "done", "dead")
MAX_ERROR_CHARS = 2000
SQLITE_MIN_INT, SQLITE_MAX_INT = -(2**63), 2**63 - 1  # what an INTEGER column holds; ids outside name no item

SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    external_id TEXT NOT NULL,
    event TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'processing', 'done', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    replays INTEGER NOT NULL DEFAULT 0,
    received_at TEXT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    lease_owner TEXT,
    lease_expires_at TEXT,
    run_id TEXT,
    last_error TEXT,
    UNIQUE (source, external_id)
);
CREATE INDEX IF NOT EXISTS queue_due ON queue (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS queue_lease ON queue (status, lease_expires_at);
"""
_COLUMNS = ("id, source, external_id, event, status, attempts, replays, received_at, next_attempt_at, "
            "lease_owner, lease_expires_at, run_id, last_error")


class QueuedEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int
    source: str = Field(description="the webhook source that delivered it")
    external_id: str = Field(description="the source's id for the event; unique per source")
    event: CRMEvent
    status: QueueStatus
    attempts: int = Field(ge=0, description="failed attempts since it was queued or last replayed")
    replays: int = Field(ge=0, description="times it was replayed from the dead letters")
    received_at: datetime
    next_attempt_at: datetime = Field(description="not claimed before this time")
    lease_owner: str | None = Field(description="the worker processing it")
    lease_expires_at: datetime | None = Field(description="after this, another worker may take it back")
    run_id: str | None = Field(description="the run it started, once done")
    last_error: str | None


class QueueError(Exception):
    """The item cannot do what was asked in its present status (answer 409)."""


class ItemNotFound(QueueError):
    """No item with that id (answer 404)."""


class EventQueue:
    def __init__(self, path: Path, max_attempts: int = 5, backoff_base_s: float = 30.0, backoff_max_s: float = 3600.0):
        if max_attempts < 1 or backoff_base_s < 0 or backoff_max_s < backoff_base_s:
            raise ValueError("the queue needs max_attempts >= 1 and 0 <= backoff_base_s <= backoff_max_s")
        self.path = path
        self.max_attempts, self.backoff_base_s, self.backoff_max_s = max_attempts, backoff_base_s, backoff_max_s
        create_schema(path, SCHEMA, self._connect)

    def enqueue(self, source: str, external_id: str, event: CRMEvent, received_at: datetime) -> tuple[QueuedEvent, bool]:
        """Store the event, committed before this returns; (the existing item, False) for a redelivered event."""
        return self.enqueue_many(source, [(external_id, event)], received_at)[0]

    def enqueue_many(self, source: str, events: list[tuple[str, CRMEvent]], received_at: datetime) -> list[tuple[QueuedEvent, bool]]:
        """Store a delivery's events, (external id, event) each, in one transaction: all committed before this returns,
        or none (a failure half-way, a full disk say, leaves the queue as it was). Returns (item, new) per event in order;
        an event stored before, or earlier in the same list, is (the stored item, False)."""
        at = _iso(received_at)
        rows = []
        with self._write() as db:
            for external_id, event in events:
                cursor = db.execute(
                    "INSERT INTO queue (source, external_id, event, status, received_at, next_attempt_at) VALUES (?, ?, ?, 'queued', ?, ?) "
                    "ON CONFLICT (source, external_id) DO NOTHING", (source, external_id, event.model_dump_json(), at, at))
                row = db.execute(f"SELECT {_COLUMNS} FROM queue WHERE source = ? AND external_id = ?", (source, external_id)).fetchone()
                rows.append((row, cursor.rowcount == 1))
        return [(_item(row), new) for row, new in rows]

    def claim(self, worker: str, now: datetime, lease_s: float) -> QueuedEvent | None:
        """Lease the oldest due item to `worker`, after taking back the items of expired leases; None if nothing is due."""
        at = _iso(now)
        with self._write() as db:
            self._take_back_expired(db, at)
            row = db.execute("SELECT id FROM queue WHERE status = 'queued' AND next_attempt_at <= ? ORDER BY received_at, id LIMIT 1",
                             (at,)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE queue SET status = 'processing', lease_owner = ?, lease_expires_at = ? WHERE id = ?",
                       (worker, _iso(now + timedelta(seconds=lease_s)), row[0]))
            return self._get(db, row[0])

    def complete(self, item_id: int, run_id: str) -> QueuedEvent:
        """The item's run started; done is final, and completing a done item again changes nothing."""
        with self._write() as db:
            item = self._get(db, item_id)
            if item.status != "done":
                # Also from queued or dead: a worker whose lease ran out may still finish, and then the work is done.
                db.execute("UPDATE queue SET status = 'done', run_id = ?, lease_owner = NULL, lease_expires_at = NULL WHERE id = ?",
                           (run_id, item_id))
            return self._get(db, item_id)

    def fail(self, item_id: int, error: str, now: datetime) -> QueuedEvent:
        """Count a failed attempt: retry after the backoff, or dead after max_attempts, keeping the error."""
        with self._write() as db:
            item = self._get(db, item_id)
            if item.status != "processing":
                raise QueueError(f"queue item {item_id} is {item.status}, not processing: only a claimed item can fail")
            attempts = item.attempts + 1
            status = "dead" if attempts >= self.max_attempts else "queued"
            db.execute("UPDATE queue SET status = ?, attempts = ?, next_attempt_at = ?, last_error = ?, lease_owner = NULL, "
                       "lease_expires_at = NULL WHERE id = ?",
                       (status, attempts, _iso(now + timedelta(seconds=self.backoff_s(attempts))), _clip(error), item_id))
            return self._get(db, item_id)

    def replay(self, item_id: int, now: datetime) -> QueuedEvent:
        """A dead item back into the queue, due now, with its attempts reset; the replay is counted."""
        with self._write() as db:
            item = self._get(db, item_id)
            if item.status != "dead":
                raise QueueError(f"queue item {item_id} is {item.status}: only dead items can be replayed")
            db.execute("UPDATE queue SET status = 'queued', attempts = 0, replays = replays + 1, next_attempt_at = ? WHERE id = ?",
                       (_iso(now), item_id))
            return self._get(db, item_id)

    def erase(self, values: list[str]) -> list[int]:
        """Delete every item whose event or error mentions one of `values` (a person's name, email, phone), whatever
        its status, and leave no copy in free pages or the WAL. Returns the ids deleted."""
        needles = [v.lower() for v in values if v]
        with self._write() as db:
            db.execute("PRAGMA secure_delete=ON")
            rows = db.execute("SELECT id, event || char(10) || COALESCE(last_error, '') FROM queue").fetchall()
            ids = [item_id for item_id, text in rows if any(n in text.lower() for n in needles)]
            db.executemany("DELETE FROM queue WHERE id = ?", [(i,) for i in ids])
        with closing(self._connect()) as db:
            compact(db)
        return ids

    def backoff_s(self, attempts: int) -> float:
        """The wait after the `attempts`-th failure: backoff_base_s doubling each time, at most backoff_max_s."""
        return min(self.backoff_max_s, self.backoff_base_s * 2 ** min(attempts - 1, 64))

    def get(self, item_id: int) -> QueuedEvent:
        with closing(self._connect()) as db:
            return self._get(db, item_id)

    def dead_letters(self, limit: int = 100) -> list[QueuedEvent]:
        return self.list("dead", limit)

    def list(self, status: QueueStatus | None = None, limit: int = 100) -> list[QueuedEvent]:
        """Newest first."""
        where, params = ("WHERE status = ?", (status,)) if status else ("", ())
        with closing(self._connect()) as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM queue {where} ORDER BY id DESC LIMIT ?", (*params, limit)).fetchall()
        return [_item(row) for row in rows]

    def counts(self) -> dict[str, int]:
        """Items per status, every status present."""
        totals = dict.fromkeys(STATUSES, 0)
        for by_status in self.counts_by_source().values():
            for status, count in by_status.items():
                totals[status] += count
        return totals

    def counts_by_source(self) -> dict[str, dict[str, int]]:
        with closing(self._connect()) as db:
            rows = db.execute("SELECT source, status, COUNT(*) FROM queue GROUP BY source, status").fetchall()
        counts: dict[str, dict[str, int]] = {}
        for source, status, count in rows:
            counts.setdefault(source, dict.fromkeys(STATUSES, 0))[status] = count
        return counts

    def _take_back_expired(self, db: sqlite3.Connection, at: str) -> None:
        # A lease that ran out is a failed attempt: an event that kills its worker every time must end up dead,
        # not be handed out forever. It is due again at once; the lease already made it wait.
        error = "the lease ran out before the worker finished: it crashed, hung, or took longer than the lease"
        db.execute("UPDATE queue SET attempts = attempts + 1, last_error = ?, lease_owner = NULL, lease_expires_at = NULL, "
                   "status = CASE WHEN attempts + 1 >= ? THEN 'dead' ELSE 'queued' END, next_attempt_at = lease_expires_at "
                   "WHERE status = 'processing' AND lease_expires_at <= ?", (error, self.max_attempts, at))

    def _get(self, db: sqlite3.Connection, item_id: int) -> QueuedEvent:
        if not SQLITE_MIN_INT <= item_id <= SQLITE_MAX_INT:  # sqlite3 would raise OverflowError binding it
            raise ItemNotFound("no queue item with that id: queue ids are 64-bit integers")
        row = db.execute(f"SELECT {_COLUMNS} FROM queue WHERE id = ?", (item_id,)).fetchone()
        if row is None:
            raise ItemNotFound(f"no queue item {item_id}")
        return _item(row)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)  # timeout: wait for the write lock, do not fail
        db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        db.execute("PRAGMA synchronous=FULL")  # a commit is on disk before the route answers 2xx
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")  # take the write lock first: a read-then-update cannot interleave with another's
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")


def _iso(at: datetime) -> str:
    """UTC with a fixed width, so text order is time order in SQL comparisons."""
    if at.tzinfo is None:
        raise ValueError(f"{at.isoformat()} has no time zone; pass an aware datetime (UTC)")
    return at.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _clip(error: str) -> str:
    return error if len(error) <= MAX_ERROR_CHARS else error[:MAX_ERROR_CHARS - 1] + "…"


def _item(row: tuple) -> QueuedEvent:
    (id_, source, external_id, event, status, attempts, replays, received_at, next_attempt_at,
     lease_owner, lease_expires_at, run_id, last_error) = row
    return QueuedEvent(id=id_, source=source, external_id=external_id, event=CRMEvent.model_validate_json(event), status=status,
                       attempts=attempts, replays=replays, received_at=received_at, next_attempt_at=next_attempt_at,
                       lease_owner=lease_owner, lease_expires_at=lease_expires_at, run_id=run_id, last_error=last_error)
