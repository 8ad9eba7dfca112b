"""The hash-chained audit log: every kind of tampering with a copy of the log is caught and the entry named."""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from provenance.audit import AuditLog

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
def log(tmp_path) -> AuditLog:
    log = AuditLog(tmp_path / "audit.sqlite")
    for i in range(1, 7):
        log.append(f"run-{i}:step:grade", "step", f"run-{i}", {"step": "grade_lead", "sources": [f"crm_record:contact:C-{i}#full_name"]},
                   at=T0 + timedelta(minutes=i))
    return log


def _tampered(log: AuditLog, tmp_path: Path, *statements: str) -> AuditLog:
    """A copy of the log changed behind the library's back, as someone with file access could."""
    copy = tmp_path / "tampered.sqlite"
    shutil.copy(log.path, copy)
    with closing(sqlite3.connect(copy)) as db, db:
        db.execute("DROP TRIGGER audit_no_update")
        db.execute("DROP TRIGGER audit_no_delete")
        for statement in statements:
            db.execute(statement)
    return AuditLog(copy)


def test_an_intact_log_verifies(log):
    report = log.verify()
    assert report.ok and report.entries == 6 and report.first_bad_seq is None
    assert report.head_sha256 == log.entries()[-1].sha256
    assert [e.prev_sha256 for e in log.entries()[1:]] == [e.sha256 for e in log.entries()[:-1]]


def test_appending_a_logged_key_again_adds_nothing(log):
    again = log.append("run-3:step:grade", "step", "run-3", {"step": "other"})
    assert again.seq == 3 and again.data["step"] == "grade_lead"
    assert len(log.entries()) == 6


def test_the_database_refuses_updates_and_deletes(log):
    with closing(sqlite3.connect(log.path)) as db:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("UPDATE audit_log SET subject = 'x' WHERE seq = 2")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("DELETE FROM audit_log WHERE seq = 2")


def test_an_edited_entry_is_named(log, tmp_path):
    bad = _tampered(log, tmp_path, """UPDATE audit_log SET data = '{"step": "grade_lead", "sources": []}' WHERE seq = 4""")
    report = bad.verify()
    assert not report.ok and report.first_bad_seq == 4
    assert "altered" in report.problem and "run-4:step:grade" in report.problem


def test_an_entry_edited_into_nonsense_is_named(log, tmp_path):
    report = _tampered(log, tmp_path, "UPDATE audit_log SET kind = 'bribe' WHERE seq = 2").verify()
    assert not report.ok and report.first_bad_seq == 2 and "altered" in report.problem


def test_a_deleted_entry_is_named(log, tmp_path):
    report = _tampered(log, tmp_path, "DELETE FROM audit_log WHERE seq = 3").verify()
    assert not report.ok and report.first_bad_seq == 4 and "missing" in report.problem


def test_a_deleted_and_renumbered_entry_is_named(log, tmp_path):
    """Closing the gap in the numbering does not help: the next entry no longer chains."""
    report = _tampered(log, tmp_path, "DELETE FROM audit_log WHERE seq = 3", "UPDATE audit_log SET seq = seq - 1 WHERE seq > 3").verify()
    assert not report.ok and report.first_bad_seq == 3 and "does not chain" in report.problem


def test_an_inserted_entry_is_named(log, tmp_path):
    forged = log.entries()[2]  # a well-formed entry, hash and all, pretending to follow entry 2
    bad = _tampered(
        log, tmp_path,
        "UPDATE audit_log SET seq = seq + 100 WHERE seq >= 3",
        "UPDATE audit_log SET seq = seq - 99 WHERE seq >= 103",
        f"INSERT INTO audit_log VALUES (3, 'forged', '{forged.at.isoformat()}', 'decision', 'run-3', '{{}}', '{forged.prev_sha256}', '{'f' * 64}')",
    )
    report = bad.verify()
    assert not report.ok and report.first_bad_seq == 3 and "forged" in report.problem


def test_reordered_entries_are_named(log, tmp_path):
    bad = _tampered(log, tmp_path, "UPDATE audit_log SET seq = 100 WHERE seq = 2", "UPDATE audit_log SET seq = 2 WHERE seq = 5",
                    "UPDATE audit_log SET seq = 5 WHERE seq = 100")
    report = bad.verify()
    assert not report.ok and report.first_bad_seq == 2 and "does not chain" in report.problem


def test_a_cut_off_tail_is_caught_against_a_recorded_head(log, tmp_path):
    head = log.verify().head_sha256
    bad = _tampered(log, tmp_path, "DELETE FROM audit_log WHERE seq = 6")
    assert bad.verify().ok, "without an anchor a cut tail looks like a shorter log"
    report = bad.verify(expect_head=head)
    assert not report.ok and "cut off" in report.problem
