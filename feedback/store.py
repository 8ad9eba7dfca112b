"""An append-only SQLite store of rep decisions; the database itself refuses updates and deletes."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from prompts.templates import ChatMessage
from provenance import SourceRef
from tools.sqlite_files import compact, create_schema

_NO_DELETE = """CREATE TRIGGER IF NOT EXISTS feedback_no_delete BEFORE DELETE ON feedback
BEGIN SELECT RAISE(ABORT, 'feedback is append-only: add a correction record instead'); END"""
SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_run ON feedback(run_id);
CREATE TRIGGER IF NOT EXISTS feedback_no_update BEFORE UPDATE ON feedback
BEGIN SELECT RAISE(ABORT, 'feedback is append-only: add a correction record instead'); END;
{no_delete};
-- INSERT OR REPLACE deletes the old row without firing the delete trigger: a second insert of an id is a no-op.
CREATE TRIGGER IF NOT EXISTS feedback_no_replace BEFORE INSERT ON feedback
WHEN EXISTS (SELECT 1 FROM feedback WHERE id = NEW.id)
BEGIN SELECT RAISE(IGNORE); END;
""".format(no_delete=_NO_DELETE)


class FeedbackRecord(BaseModel):
    """One rep decision with everything needed to train on it and to trace it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    run_id: str
    event_id: str
    lead_id: str
    rep_id: str
    decision: Literal["adopt", "edit", "reject"]
    reason: str | None
    messages: list[ChatMessage] = Field(description="the exact chat the model was sent")
    draft: str
    final_text: str | None = Field(description="what the rep approved; None after a reject")
    model_id: str
    model_version: str
    adapter_id: str | None
    adapter_sha256: str | None = None
    prompt_name: str
    prompt_sha256: str
    sources: list[SourceRef]
    decided_at: datetime
    recorded_at: datetime


class FeedbackStore:
    def __init__(self, path: Path):
        self.path = path
        create_schema(path, SCHEMA, self._connect)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def append(self, record: FeedbackRecord) -> bool:
        """Store the record; False if a record with this id is already there (a retried write)."""
        with closing(self._connect()) as db, db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO feedback (id, run_id, recorded_at, record) VALUES (?, ?, ?, ?)",
                (record.id, record.run_id, record.recorded_at.isoformat(), record.model_dump_json()),
            )
            return cursor.rowcount == 1

    def erase(self, run_ids: list[str], lead_id: str) -> list[str]:
        """The one way records leave the store: erasing a person. Returns the ids of the records removed."""
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as db:
            db.execute("PRAGMA secure_delete=ON")
            db.execute("BEGIN IMMEDIATE")
            marks = ",".join("?" * len(run_ids))
            ids = [row[0] for row in db.execute(
                f"SELECT id FROM feedback WHERE run_id IN ({marks}) OR json_extract(record, '$.lead_id') = ?", (*run_ids, lead_id))]
            # The delete guard is lifted inside the transaction only: other writers never see the store unguarded.
            db.execute("DROP TRIGGER feedback_no_delete")
            db.executemany("DELETE FROM feedback WHERE id = ?", [(i,) for i in ids])
            db.execute(_NO_DELETE)
            db.execute("COMMIT")
            compact(db)
        return ids

    def for_run(self, run_id: str) -> list[FeedbackRecord]:
        return self._select("WHERE run_id = ? ORDER BY recorded_at, id", (run_id,))

    def all(self) -> list[FeedbackRecord]:
        return self._select("ORDER BY recorded_at, id", ())

    def _select(self, where: str, params: tuple) -> list[FeedbackRecord]:
        with closing(self._connect()) as db:
            rows = db.execute(f"SELECT record FROM feedback {where}", params).fetchall()
        return [FeedbackRecord.model_validate_json(row[0]) for row in rows]
