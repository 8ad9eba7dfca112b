"""An append-only store of rep decisions, in SQLite or PostgreSQL; the database itself refuses updates and deletes."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from prompts.templates import ChatMessage
from provenance import SourceRef
from tools.sql import Database, SQLiteFile

REFUSAL = "feedback is append-only: add a correction record instead"
TABLE = """
CREATE TABLE IF NOT EXISTS feedback (
    id {text} PRIMARY KEY,
    run_id {text} NOT NULL,
    recorded_at {instant} NOT NULL,
    record {text} NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_run ON feedback(run_id);
"""
_SQLITE_NO_DELETE = f"""CREATE TRIGGER IF NOT EXISTS feedback_no_delete BEFORE DELETE ON feedback
BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END"""
# The guards, and how erasure lifts the delete guard inside its own transaction: other writers never see it lifted.
GUARDS = {
    "sqlite": f"""
CREATE TRIGGER IF NOT EXISTS feedback_no_update BEFORE UPDATE ON feedback
BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END;
{_SQLITE_NO_DELETE};
-- INSERT OR REPLACE deletes the old row without firing the delete trigger: a second insert of an id is a no-op.
CREATE TRIGGER IF NOT EXISTS feedback_no_replace BEFORE INSERT ON feedback
WHEN EXISTS (SELECT 1 FROM feedback WHERE id = NEW.id)
BEGIN SELECT RAISE(IGNORE); END;
""",
    "postgres": f"""
CREATE OR REPLACE FUNCTION feedback_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '{REFUSAL}'; END $$;
CREATE OR REPLACE TRIGGER feedback_no_update BEFORE UPDATE ON feedback FOR EACH ROW EXECUTE FUNCTION feedback_append_only();
CREATE OR REPLACE TRIGGER feedback_no_delete BEFORE DELETE ON feedback FOR EACH ROW EXECUTE FUNCTION feedback_append_only();
CREATE OR REPLACE TRIGGER feedback_no_truncate BEFORE TRUNCATE ON feedback FOR EACH STATEMENT EXECUTE FUNCTION feedback_append_only();
""",
}
LIFT_DELETE_GUARD = {
    "sqlite": ("DROP TRIGGER feedback_no_delete", _SQLITE_NO_DELETE),
    "postgres": ("ALTER TABLE feedback DISABLE TRIGGER feedback_no_delete", "ALTER TABLE feedback ENABLE TRIGGER feedback_no_delete"),
}


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
    def __init__(self, db: Database | Path):
        """`db`: the database, or a path for a SQLite file of its own."""
        self.db = SQLiteFile(db) if isinstance(db, Path) else db
        self.db.create(self.db.dialect.schema(TABLE) + GUARDS[self.db.dialect.name])

    def append(self, record: FeedbackRecord) -> bool:
        """Store the record; False if a record with this id is already there (a retried write)."""
        with self.db.write() as db:
            cursor = db.execute(
                "INSERT INTO feedback (id, run_id, recorded_at, record) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (record.id, record.run_id, record.recorded_at.isoformat(), record.model_dump_json()),
            )
            return cursor.rowcount == 1

    def erase(self, run_ids: list[str], lead_id: str) -> list[str]:
        """The one way records leave the store: erasing a person. Returns the ids of the records removed."""
        lift, restore = LIFT_DELETE_GUARD[self.db.dialect.name]
        of_runs = f"run_id IN ({','.join('?' * len(run_ids))}) OR " if run_ids else ""  # PostgreSQL refuses an empty IN ()
        of_lead = f"{self.db.dialect.json_text('record', 'lead_id')} = ?"
        with self.db.write() as db:
            db.execute(lift)  # first: on PostgreSQL it also locks the table, so no record added meanwhile slips past
            ids = [row[0] for row in db.execute(f"SELECT id FROM feedback WHERE {of_runs}{of_lead}", (*run_ids, lead_id)).fetchall()]
            db.executemany("DELETE FROM feedback WHERE id = ?", [(i,) for i in ids])
            db.execute(restore)
        self.db.compact(["feedback"])
        return ids

    def for_run(self, run_id: str) -> list[FeedbackRecord]:
        return self._select("WHERE run_id = ? ORDER BY recorded_at, id", (run_id,))

    def recent_finals(self, rep_id: str, since: datetime, limit: int) -> list[FeedbackRecord]:
        """The rep's adopted and edited decisions recorded at or after `since`, newest first: what memory may show."""
        rep, decision = (self.db.dialect.json_text("record", key) for key in ("rep_id", "decision"))
        where = f"WHERE {rep} = ? AND {decision} IN ('adopt', 'edit') AND recorded_at >= ?"
        return self._select(f"{where} ORDER BY recorded_at DESC, id DESC LIMIT ?", (rep_id, since.isoformat(), limit))

    def ids(self) -> set[str]:
        """Every stored record's id, without parsing the records: cheap enough to count new decisions often."""
        with self.db.read() as db:
            return {row[0] for row in db.execute("SELECT id FROM feedback").fetchall()}

    def all(self) -> list[FeedbackRecord]:
        return self._select("ORDER BY recorded_at, id", ())

    def _select(self, where: str, params: tuple) -> list[FeedbackRecord]:
        with self.db.read() as db:
            rows = db.execute(f"SELECT record FROM feedback {where}", params).fetchall()
        return [FeedbackRecord.model_validate_json(row[0]) for row in rows]
