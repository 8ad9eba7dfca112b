"""The data directory's schema version, and the migrations that bring an older directory forward.

`salesloop-data.json` in the data dir names the layout its files are in:

    {"schema": 2, "created_by": "salesloop 0.1.0",
     "migrations": [{"from": 1, "to": 2, "at": "2026-11-25T12:00:00Z", "backups": ["crm/contacts.json.v1.bak"]}]}

A directory holding data but no such file was written before versions existed: schema 1.

Schema history
  1  contacts.json: each contact may carry `training_consent: bool` (true when absent).
  2  contacts.json: `consents: {name: {granted, at, source}}` (provenance/consent.py); training_consent is gone.
     Nothing else is rewritten, because nothing else needs it:
     - feedback.sqlite: schema 2 only added triggers (created IF NOT EXISTS whenever the store opens) and
       FeedbackRecord.adapter_sha256, which defaults to None, so schema-1 rows load as they are.
     - checkpoints.sqlite: RunState gained `route` and its parts gained fields, all with defaults, so langgraph rebuilds
       schema-1 checkpoints as they are. Two fields added since have no default (LeadFact.field,
       ProposalDraft.adapter_sha256): langgraph then falls back to model_construct and leaves them unset, which
       tests/test_data_dir.py checks; giving them defaults in agents/state.py is the fix, not rewriting checkpoints.
     - registry.json, dataset manifests: only gained fields with defaults; audit, masks, queue and tokens are new files.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from provenance.consent import ConsentFlag
from tools.files import write_atomically

CURRENT_SCHEMA = 2
STATE_FILE = "salesloop-data.json"
LOCK_FILE = ".salesloop-data.lock"
MIGRATED_CONSENT_SOURCE = "migrated from training_consent (schema 1)"


class DataDirError(Exception):
    """The data directory cannot be used by this salesloop as it is; the message says what to do."""


class Migration(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_schema: int = Field(alias="from")
    to: int
    at: datetime
    backups: list[str] = Field(default_factory=list, description="copies of the files it rewrote, relative to the data dir")


class DataDirState(BaseModel):
    """The contents of salesloop-data.json."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_version: int = Field(alias="schema", ge=1)
    created_by: str
    migrations: list[Migration] = Field(default_factory=list)


class DataDirInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: Path
    schema_version: int
    created_by: str
    migrations: list[Migration] = Field(description="every migration the directory went through")
    applied: list[Migration] = Field(description="the migrations this call ran (empty when it was already current)")


def ensure_current(data_dir: Path, crm_dir: Path, clock: Callable[[], datetime] | None = None) -> DataDirInfo:
    """Bring `data_dir` to CURRENT_SCHEMA (creating it if absent), or refuse one written by a newer salesloop."""
    state, applied = _read(data_dir), []
    if state is None or state.schema_version < CURRENT_SCHEMA:
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataDirError(f"cannot create the data dir {data_dir} ({exc}); point SALESLOOP_DATA_DIR "
                               "(or data_dir in the config) at a writable directory") from None
        with _locked(data_dir):  # two processes starting on an old directory must not both migrate it
            state, applied = _bring_forward(data_dir, crm_dir, _read(data_dir), clock or _utc_now)
    return DataDirInfo(path=data_dir, schema_version=state.schema_version, created_by=state.created_by,
                       migrations=state.migrations, applied=applied)


def _bring_forward(data_dir: Path, crm_dir: Path, state: DataDirState | None,
                   clock: Callable[[], datetime]) -> tuple[DataDirState, list[Migration]]:
    if state is None and not _has_data(data_dir, crm_dir):
        state = DataDirState(schema_version=CURRENT_SCHEMA, created_by=_this_salesloop())
        _write(data_dir, state)
        return state, []
    state = state or DataDirState(schema_version=1, created_by="an earlier salesloop (schema 1, before data dir versions)")
    applied = []
    while state.schema_version < CURRENT_SCHEMA:
        step = state.schema_version
        backups = MIGRATIONS[step](data_dir, crm_dir)
        record = Migration(from_schema=step, to=step + 1, at=clock(), backups=[_relative(b, data_dir) for b in backups])
        state = state.model_copy(update={"schema_version": step + 1, "migrations": [*state.migrations, record]})
        _write(data_dir, state)  # each step is committed on its own: a crash resumes at the step it interrupted
        applied.append(record)
    return state, applied


def _read(data_dir: Path) -> DataDirState | None:
    path = data_dir / STATE_FILE
    try:
        raw = json.loads(path.read_bytes())
    except (FileNotFoundError, NotADirectoryError):  # no directory yet, or a file in its place: ensure_current says so
        return None
    except (OSError, ValueError) as exc:
        raise _unreadable(path, exc) from None
    schema = raw.get("schema") if isinstance(raw, dict) else None
    # Checked before the rest is validated: a newer salesloop may have added keys this one does not know.
    if isinstance(schema, int) and schema > CURRENT_SCHEMA:
        raise DataDirError(f"data dir {data_dir} was written by a newer salesloop (schema {schema}; this is {CURRENT_SCHEMA}): "
                           "upgrade salesloop, or point SALESLOOP_DATA_DIR at another directory")
    try:
        return DataDirState.model_validate(raw)
    except ValidationError as exc:
        raise _unreadable(path, exc) from None


def _unreadable(path: Path, exc: Exception) -> DataDirError:
    detail = (str(exc).strip().splitlines() or [""])[0][:200]
    return DataDirError(f"{path} is unreadable ({detail}); restore it, or delete it to have salesloop detect the schema "
                        "again (its migrations are safe to rerun)")


def _write(data_dir: Path, state: DataDirState) -> None:
    write_atomically(data_dir / STATE_FILE, (state.model_dump_json(indent=2, by_alias=True) + "\n").encode("utf-8"))


def _has_data(data_dir: Path, crm_dir: Path) -> bool:
    ours = {STATE_FILE, LOCK_FILE}
    return any(p.name not in ours for p in data_dir.iterdir()) or (crm_dir / "contacts.json").exists()


@contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """flock a lock file that is never deleted, so every process locks the same inode."""
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _this_salesloop() -> str:
    try:
        return f"salesloop {metadata.version('salesloop')}"
    except metadata.PackageNotFoundError:  # run from a checkout that was never pip-installed
        return "salesloop (not installed)"


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _relative(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


# ---------------------------------------------------------------- migrations: schema N → N+1, each idempotent


def _v1_to_v2(data_dir: Path, crm_dir: Path) -> list[Path]:
    """contacts.json: `training_consent` becomes a `model_training` consent flag; everything else is left as it was."""
    path = crm_dir / "contacts.json"
    backup = path.with_name(path.name + ".v1.bak")
    contacts = _contacts(path)
    if not any("training_consent" in c for c in contacts):
        return [backup] if backup.is_file() else []  # already migrated, perhaps by a run that stopped before recording it
    _backup(path, backup)
    # The backup keeps the original's mtime: the last time a flag could have changed, so the best "when" we have.
    at = datetime.fromtimestamp(backup.stat().st_mtime, timezone.utc)
    migrated = [_contact_v2(c, at, path) for c in contacts]
    write_atomically(path, (json.dumps(migrated, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return [backup]


def _contacts(path: Path) -> list[dict]:
    try:
        contacts = json.loads(path.read_bytes())
    except FileNotFoundError:
        return []  # no CRM mirror yet: nothing to migrate
    except (OSError, ValueError) as exc:
        raise DataDirError(f"cannot migrate {path} to schema 2: it is not readable JSON ({exc}); "
                           "restore it from its .v1.bak or your CRM export, then rerun") from None
    if not isinstance(contacts, list) or not all(isinstance(c, dict) for c in contacts):
        raise DataDirError(f"cannot migrate {path} to schema 2: it is not a JSON list of contacts; "
                           "restore it from its .v1.bak or your CRM export, then rerun")
    return contacts


def _contact_v2(contact: dict, at: datetime, path: Path) -> dict:
    if "training_consent" not in contact:
        return contact
    try:  # read the way schema-1 salesloop read it (pydantic's bool), so "false" or 0 mean what they meant then
        granted = TypeAdapter(bool).validate_python(contact["training_consent"])
    except ValidationError:
        raise DataDirError(f"cannot migrate {path} to schema 2: contact {contact.get('id')!r} has training_consent="
                           f"{contact['training_consent']!r}; set it to true or false, then rerun") from None
    migrated = {k: v for k, v in contact.items() if k != "training_consent"}
    if not granted:
        flag = ConsentFlag(granted=False, at=at, source=MIGRATED_CONSENT_SOURCE).model_dump(mode="json")
        # A schema-2 flag already there is newer than the boolean it would replace.
        migrated["consents"] = {"model_training": flag, **(contact.get("consents") or {})}
    # true was the default: dropping it lets the consent policy's default apply, as for any contact who never answered.
    return migrated


def _backup(path: Path, backup: Path) -> None:
    """Copy `path` once: a rerun after a crash must not replace the original with the half-migrated file."""
    if backup.exists():
        return
    stat = path.stat()
    write_atomically(backup, path.read_bytes())
    os.utime(backup, ns=(stat.st_atime_ns, stat.st_mtime_ns))


MIGRATIONS: dict[int, Callable[[Path, Path], list[Path]]] = {1: _v1_to_v2}


# ---------------------------------------------------------------- backups and erasure


def backups(data_dir: Path) -> list[Path]:
    """The backup files the migrations made, as recorded: they hold personal data, so erasure must reach them."""
    state = _read(data_dir)
    recorded = [b for m in state.migrations for b in m.backups] if state else []
    return [p for p in dict.fromkeys(data_dir / b for b in recorded) if p.is_file()]


def erase_contact_from_backups(data_dir: Path, contact_id: str) -> list[str]:
    """Drop the contact's record from every migration backup (JSON lists of records); returns the backups changed."""
    changed = []
    for path in backups(data_dir):
        records = json.loads(path.read_bytes())
        kept = [r for r in records if not (isinstance(r, dict) and r.get("id") == contact_id)]
        if len(kept) != len(records):
            write_atomically(path, (json.dumps(kept, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
            changed.append(_relative(path, data_dir))
    return changed
