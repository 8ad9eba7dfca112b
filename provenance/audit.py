"""The audit log: append-only and hash-chained, so an auditor can prove no entry was edited, dropped, added or moved.

Each entry holds the SHA-256 of the one before it and its own hash over its content. Entries carry ids and content
hashes only, never personal data, so erasing a customer never has to touch (and break) the chain.
The database refuses updates and deletes; `verify` catches what someone did to the file behind its back.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from provenance.records import StepTrace, sha256_text
from tools.sqlite_files import create_schema

AuditKind = Literal["step", "decision", "booking", "training", "promotion", "rollback", "erasure", "consent",
                    # continuous learning in the service (service/learning.py): one round's steps
                    "round_started", "round_finished", "round_failed", "gate_passed", "gate_failed",
                    "awaiting_approval"]
GENESIS = "0" * 64

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    data TEXT NOT NULL,
    prev_sha256 TEXT NOT NULL,
    sha256 TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""
_COLUMNS = "seq, key, at, kind, subject, data, prev_sha256, sha256"


class AuditEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seq: int = Field(ge=1)
    key: str = Field(description="what the entry is about, unique: appending the same key twice is a no-op")
    at: datetime
    kind: AuditKind
    subject: str = Field(description="run id, adapter version or contact id")
    data: dict[str, JsonValue] = Field(description="ids and content hashes only")
    prev_sha256: str
    sha256: str

    def content_hash(self) -> str:
        body = self.model_dump(mode="json", exclude={"sha256"})
        return sha256_text(json.dumps(body, sort_keys=True, separators=(",", ":")))


class AuditReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ok: bool
    entries: int
    head_sha256: str = Field(description="hash of the last entry: record it elsewhere to detect a truncated tail later")
    first_bad_seq: int | None = None
    problem: str | None = None


class AuditError(Exception):
    """The audit log cannot be read (not a database, or a different schema)."""


class AuditLog:
    def __init__(self, path: Path):
        self.path = path
        create_schema(path, SCHEMA, self._connect)

    def _connect(self) -> sqlite3.Connection:
        # No WAL: a plain journal keeps the log one self-contained file an auditor can copy.
        return sqlite3.connect(self.path, timeout=30, isolation_level=None)

    def append(self, key: str, kind: AuditKind, subject: str, data: dict[str, JsonValue], at: datetime | None = None) -> AuditEntry:
        """Chain a new entry to the head; if `key` is already logged, return that entry (a retried step logs once)."""
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")  # one writer at a time across processes: the head cannot move under us
            try:
                existing = db.execute(f"SELECT {_COLUMNS} FROM audit_log WHERE key = ?", (key,)).fetchone()
                if existing:
                    db.execute("COMMIT")
                    return _entry(existing)
                head = db.execute("SELECT seq, sha256 FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
                seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS)
                draft = AuditEntry(seq=seq, key=key, at=at or datetime.now(timezone.utc), kind=kind, subject=subject, data=data,
                                   prev_sha256=prev, sha256="")
                entry = draft.model_copy(update={"sha256": draft.content_hash()})
                db.execute(f"INSERT INTO audit_log ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _row(entry))
                db.execute("COMMIT")
                return entry
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def entries(self, subject: str | None = None, kind: AuditKind | None = None) -> list[AuditEntry]:
        where, params = [], []
        for column, value in (("subject", subject), ("kind", kind)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        query = f"SELECT {_COLUMNS} FROM audit_log" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq"
        with closing(self._connect()) as db:
            return [_entry(row) for row in db.execute(query, params)]

    def verify(self, expect_head: str | None = None) -> AuditReport:
        """Walk the chain from the first entry; report the first entry that does not follow from the one before."""
        try:
            with closing(self._connect()) as db:
                rows = db.execute(f"SELECT {_COLUMNS} FROM audit_log ORDER BY seq").fetchall()
        except sqlite3.DatabaseError as exc:
            raise AuditError(f"cannot read the audit log {self.path}: {exc}") from None
        prev, expected_seq = GENESIS, 1
        for row in rows:
            try:
                entry = _entry(row)
            except ValueError as exc:  # a hand-edited field that no longer parses
                return AuditReport(ok=False, entries=len(rows), head_sha256=rows[-1][7], first_bad_seq=row[0],
                                   problem=f"entry {row[0]} ({row[1]}) was altered: it no longer parses ({type(exc).__name__})")
            problem = _problem(entry, prev, expected_seq)
            if problem:
                return AuditReport(ok=False, entries=len(rows), head_sha256=rows[-1][7], first_bad_seq=entry.seq, problem=problem)
            prev, expected_seq = entry.sha256, entry.seq + 1
        if expect_head is not None and expect_head != prev:
            return AuditReport(ok=False, entries=len(rows), head_sha256=prev, first_bad_seq=len(rows),
                               problem=f"the head is {prev[:12]}…, not the recorded {expect_head[:12]}…: entries were cut off or added at the end")
        return AuditReport(ok=True, entries=len(rows), head_sha256=prev)


def log_step(log: AuditLog, trace: StepTrace) -> AuditEntry:
    """One graph step: which sources it read (ids, never values), with which prompt, model and adapter."""
    digest = sha256_text(trace.model_dump_json())
    data: dict[str, JsonValue] = {
        "step": trace.step, "status": trace.status, "fallback": trace.fallback, "trace_sha256": digest,
        "sources": [ref.label() for ref in trace.inputs],
        "model_id": trace.model_id, "adapter_id": trace.adapter_id, "prompt_sha256": trace.prompt_sha256,
    }
    return log.append(f"{trace.run_id}:step:{trace.step}:{digest[:16]}", "step", trace.run_id, data, at=trace.ended_at)


def _problem(entry: AuditEntry, prev: str, expected_seq: int) -> str | None:
    if entry.seq != expected_seq:
        return f"entry {entry.seq} ({entry.key}) follows entry {expected_seq - 1}: entries are missing or out of order"
    if entry.prev_sha256 != prev:
        return f"entry {entry.seq} ({entry.key}) does not chain to the entry before it: an entry before it was removed, inserted or moved"
    if entry.content_hash() != entry.sha256:
        return f"entry {entry.seq} ({entry.key}) was altered: its content no longer matches its hash"
    return None


def _row(entry: AuditEntry) -> tuple:
    return (entry.seq, entry.key, entry.at.isoformat(), entry.kind, entry.subject,
            json.dumps(entry.data, sort_keys=True), entry.prev_sha256, entry.sha256)


def _entry(row: tuple) -> AuditEntry:
    seq, key, at, kind, subject, data, prev, sha = row
    return AuditEntry(seq=seq, key=key, at=at, kind=kind, subject=subject, data=json.loads(data), prev_sha256=prev, sha256=sha)
