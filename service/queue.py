"""A durable queue of CRM events between the webhook routes and the workers, in SQLite or PostgreSQL.

An event is committed before the route answers 2xx, so an accepted event survives a crash. Enqueueing is
idempotent on (source, external id): a redelivery finds the row already there. Workers claim an item under a short
lease that their process renews while it works (a heartbeat); an item whose lease ran out (its worker crashed or
hung) is taken back and counted as a failed attempt. A process starting up takes over at once the items of dead
processes on its own host (service/owners.py), also as a failed attempt.
Failures retry with exponential backoff; after max_attempts the item is dead until someone replays it.
Two processes never claim the same item: on SQLite every write takes the file's write lock (BEGIN IMMEDIATE); on
PostgreSQL a write locks the rows it reads, and a claim passes over rows other workers hold (FOR UPDATE SKIP LOCKED).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from configs.settings import Settings
from tools.crm.records import CRMEvent
from tools.sql import Connection, Database, SQLiteFile, open_database

QueueStatus = Literal["queued", "processing", "done", "dead"]
STATUSES: tuple[QueueStatus, ...] = ("queued", "processing", "done", "dead")
MAX_ERROR_CHARS = 2000
MIN_ID, MAX_ID = -(2**63), 2**63 - 1  # what the id column holds; ids outside name no item

SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    id {key},
    source {text} NOT NULL,
    external_id {text} NOT NULL,
    event {text} NOT NULL,
    status {text} NOT NULL CHECK (status IN ('queued', 'processing', 'done', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    replays INTEGER NOT NULL DEFAULT 0,
    received_at {instant} NOT NULL,
    next_attempt_at {instant} NOT NULL,
    lease_owner {text},
    lease_expires_at {instant},
    run_id {text},
    last_error {text},
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
    lease_owner: str | None = Field(description="the worker processing it: host/pid/process start time/worker")
    lease_expires_at: datetime | None = Field(description="after this, another worker may take it back; renewed while its worker works")
    run_id: str | None = Field(description="the run it started, once done")
    last_error: str | None


class QueueError(Exception):
    """The item cannot do what was asked in its present status (answer 409)."""


class ItemNotFound(QueueError):
    """No item with that id (answer 404)."""


class EventQueue:
    def __init__(self, db: Database | Path, max_attempts: int = 5, backoff_base_s: float = 30.0, backoff_max_s: float = 3600.0):
        """`db`: the database, or a path for a SQLite file of its own."""
        if max_attempts < 1 or backoff_base_s < 0 or backoff_max_s < backoff_base_s:
            raise ValueError("the queue needs max_attempts >= 1 and 0 <= backoff_base_s <= backoff_max_s")
        self.db = SQLiteFile(db) if isinstance(db, Path) else db
        self.max_attempts, self.backoff_base_s, self.backoff_max_s = max_attempts, backoff_base_s, backoff_max_s
        self.db.create(self.db.dialect.schema(SCHEMA))

    @classmethod
    def from_settings(cls, settings: Settings) -> EventQueue:
        """The service's queue: service.queue_path, or the PostgreSQL database that database.backend names."""
        service = settings.service
        return cls(open_database(settings.database, settings.resolve(service.queue_path)), max_attempts=service.max_attempts,
                   backoff_base_s=service.backoff_base_s, backoff_max_s=service.backoff_max_s)

    def enqueue(self, source: str, external_id: str, event: CRMEvent, received_at: datetime) -> tuple[QueuedEvent, bool]:
        """Store the event, committed before this returns; (the existing item, False) for a redelivered event."""
        return self.enqueue_many(source, [(external_id, event)], received_at)[0]

    def enqueue_many(self, source: str, events: list[tuple[str, CRMEvent]], received_at: datetime) -> list[tuple[QueuedEvent, bool]]:
        """Store a delivery's events, (external id, event) each, in one transaction: all committed before this returns,
        or none (a failure half-way, a full disk say, leaves the queue as it was). Returns (item, new) per event in order;
        an event stored before, or earlier in the same list, is (the stored item, False)."""
        at = _iso(received_at)
        rows = []
        with self.db.write() as db:
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
        with self.db.write() as db:
            self._take_back_expired(db, at)
            row = db.execute("SELECT id FROM queue WHERE status = 'queued' AND next_attempt_at <= ? ORDER BY received_at, id LIMIT 1"
                             + self.db.dialect.skip_locked, (at,)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE queue SET status = 'processing', lease_owner = ?, lease_expires_at = ? WHERE id = ?",
                       (worker, _iso(now + timedelta(seconds=lease_s)), row[0]))
            return self._get(db, row[0])

    def renew(self, held: Mapping[int, str], now: datetime, lease_s: float) -> set[int]:
        """Extend the leases of `held` (item id → owner) to now + lease_s; returns the ids renewed. An id missing from the
        answer is no longer its owner's: the lease ran out and another worker took the item back, or it was settled."""
        until = _iso(now + timedelta(seconds=lease_s))
        with self.db.write() as db:
            return {item_id for item_id, owner in held.items()
                    if db.execute("UPDATE queue SET lease_expires_at = ? WHERE id = ? AND lease_owner = ? AND status = 'processing'",
                                  (until, item_id, owner)).rowcount == 1}

    def take_over_dead(self, is_dead: Callable[[str], bool], owner: str, now: datetime, lease_s: float) -> list[QueuedEvent]:
        """Lease to `owner` the items held by owners that `is_dead` says no longer run, without waiting for their leases.

        The dead worker's attempt counts as failed, as when a lease runs out: an event that kills its process every time
        ends dead instead of being taken over forever. Returns the items now leased to `owner` (not those that died)."""
        until = _iso(now + timedelta(seconds=lease_s))
        taken = []
        with self.db.write() as db:
            rows = db.execute("SELECT id, lease_owner, attempts FROM queue WHERE status = 'processing'" + self.db.dialect.skip_locked).fetchall()
            for item_id, holder, attempts in rows:
                if holder is None or not is_dead(holder):
                    continue
                error = f"its worker {holder} died before it finished: that process no longer runs"
                if attempts + 1 >= self.max_attempts:
                    db.execute("UPDATE queue SET status = 'dead', attempts = ?, last_error = ?, lease_owner = NULL, lease_expires_at = NULL "
                               "WHERE id = ?", (attempts + 1, error, item_id))
                else:
                    db.execute("UPDATE queue SET attempts = ?, last_error = ?, lease_owner = ?, lease_expires_at = ? WHERE id = ?",
                               (attempts + 1, error, owner, until, item_id))
                    taken.append(item_id)
            return [self._get(db, item_id) for item_id in taken]

    def release(self, item_id: int, owner: str, now: datetime) -> QueuedEvent:
        """`owner` gives the item back, due now and without counting an attempt (it was counted when the item was taken
        over); if the item is no longer `owner`'s, nothing changes."""
        with self.db.write() as db:
            db.execute("UPDATE queue SET status = 'queued', next_attempt_at = ?, lease_owner = NULL, lease_expires_at = NULL "
                       "WHERE id = ? AND lease_owner = ? AND status = 'processing'", (_iso(now), item_id, owner))
            return self._get(db, item_id)

    def complete(self, item_id: int, run_id: str | None, note: str | None = None) -> QueuedEvent:
        """The item's run started (or, with no run and a `note`, the event turned out to need none); done is final,
        and completing a done item again changes nothing."""
        with self.db.write() as db:
            item = self._locked(db, item_id)
            if item.status != "done":
                # Also from queued or dead: a worker whose lease ran out may still finish, and then the work is done.
                db.execute("UPDATE queue SET status = 'done', run_id = ?, lease_owner = NULL, lease_expires_at = NULL, "
                           "last_error = COALESCE(?, last_error) WHERE id = ?", (run_id, _clip(note) if note else None, item_id))
            return self._get(db, item_id)

    def fail(self, item_id: int, error: str, now: datetime) -> QueuedEvent:
        """Count a failed attempt: retry after the backoff, or dead after max_attempts, keeping the error."""
        with self.db.write() as db:
            item = self._locked(db, item_id)
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
        with self.db.write() as db:
            item = self._locked(db, item_id)
            if item.status != "dead":
                raise QueueError(f"queue item {item_id} is {item.status}: only dead items can be replayed")
            db.execute("UPDATE queue SET status = 'queued', attempts = 0, replays = replays + 1, next_attempt_at = ? WHERE id = ?",
                       (_iso(now), item_id))
            return self._get(db, item_id)

    def erase(self, values: list[str]) -> list[int]:
        """Delete every item whose event or error mentions one of `values` (a person's name, email, phone), whatever
        its status, and leave no copy in the table's free space (nor, on SQLite, in its WAL). Returns the ids deleted."""
        needles = [v.lower() for v in values if v]
        with self.db.write() as db:
            rows = db.execute("SELECT id, event, last_error FROM queue" + self.db.dialect.lock_rows).fetchall()
            ids = [item_id for item_id, event, error in rows if any(n in f"{event}\n{error or ''}".lower() for n in needles)]
            db.executemany("DELETE FROM queue WHERE id = ?", [(i,) for i in ids])
        self.db.compact(["queue"])
        return ids

    def backoff_s(self, attempts: int) -> float:
        """The wait after the `attempts`-th failure: backoff_base_s doubling each time, at most backoff_max_s."""
        return min(self.backoff_max_s, self.backoff_base_s * 2 ** min(attempts - 1, 64))

    def get(self, item_id: int) -> QueuedEvent:
        with self.db.read() as db:
            return self._get(db, item_id)

    def unfinished(self) -> list[QueuedEvent]:
        """Every item not done (queued, processing or dead), oldest first: the events the queue still owes a run."""
        with self.db.read() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM queue WHERE status <> 'done' ORDER BY id").fetchall()
        return [_item(row) for row in rows]

    def dead_letters(self, limit: int = 100) -> list[QueuedEvent]:
        return self.list("dead", limit)

    def list(self, status: QueueStatus | None = None, limit: int = 100) -> list[QueuedEvent]:
        """Newest first."""
        where, params = ("WHERE status = ?", (status,)) if status else ("", ())
        with self.db.read() as db:
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
        with self.db.read() as db:
            rows = db.execute("SELECT source, status, COUNT(*) FROM queue GROUP BY source, status").fetchall()
        counts: dict[str, dict[str, int]] = {}
        for source, status, count in rows:
            counts.setdefault(source, dict.fromkeys(STATUSES, 0))[status] = count
        return counts

    def _take_back_expired(self, db: Connection, at: str) -> None:
        # A lease that ran out is a failed attempt: an event that kills its worker every time must end up dead,
        # not be handed out forever. It is due again at once; the lease already made it wait.
        error = "the lease ran out before the worker finished: it crashed, hung, or took longer than the lease"
        db.execute("UPDATE queue SET attempts = attempts + 1, last_error = ?, lease_owner = NULL, lease_expires_at = NULL, "
                   "status = CASE WHEN attempts + 1 >= ? THEN 'dead' ELSE 'queued' END, next_attempt_at = lease_expires_at "
                   "WHERE id IN (SELECT id FROM queue WHERE status = 'processing' AND lease_expires_at <= ?" + self.db.dialect.skip_locked
                   + ")", (error, self.max_attempts, at))

    def _locked(self, db: Connection, item_id: int) -> QueuedEvent:
        """The item, read inside a write so that no other writer changes it before this one commits."""
        return self._get(db, item_id, self.db.dialect.lock_rows)

    def _get(self, db: Connection, item_id: int, lock: str = "") -> QueuedEvent:
        if not MIN_ID <= item_id <= MAX_ID:  # the driver would refuse to bind it
            raise ItemNotFound("no queue item with that id: queue ids are 64-bit integers")
        row = db.execute(f"SELECT {_COLUMNS} FROM queue WHERE id = ?{lock}", (item_id,)).fetchone()
        if row is None:
            raise ItemNotFound(f"no queue item {item_id}")
        return _item(row)


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
