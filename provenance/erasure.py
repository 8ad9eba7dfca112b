"""Erasing a contact everywhere their data went: CRM mirror, vector store, runs, feedback, datasets, calendars, masks.

The audit log is not touched (it holds ids and hashes only), so its chain still verifies; the erasure itself is one
more entry. Adapters that learned from the erased feedback cannot be un-trained: they are marked for retraining.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from agents.services import Services
from feedback.export import MANIFEST_FILE
from finetune.records import DatasetFile, DatasetManifest
from orchestrator import Orchestrator
from provenance.lineage import adapters_trained_on
from provenance.records import sha256_bytes
from service.queue import EventQueue
from tools.cases import index_cases
from tools.crm.records import Contact
from tools.data_dir import erase_contact_from_backups
from tools.files import write_atomically

ERASED = "[erased]"
# Weights and tensors cannot hold a name as text; skipping them keeps the final scan fast.
_BINARY_SUFFIXES = {".safetensors", ".gguf", ".pt", ".bin", ".npy"}


class ErasureReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact_id: str
    runs_erased: list[str]
    feedback_erased: list[str]
    deals_redacted: list[str]
    cases_reindexed: int
    meetings_changed: int
    event_files_changed: list[str]
    dataset_rows_removed: int
    mask_mappings_erased: int
    queued_events_erased: int
    adapters_to_retrain: list[str]
    audit_seq: int
    leftovers: list[str]


def identifiers(contact: Contact) -> list[str]:
    """What identifies the person in free text: name, email, phone."""
    return [value for value in (contact.full_name, contact.email, contact.phone) if value]


def redactor(values: list[str]) -> Callable[[str], str]:
    pattern = re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)), re.IGNORECASE)
    return lambda text: pattern.sub(ERASED, text)


def mentions(text: str, values: list[str]) -> bool:
    lowered = text.lower()
    # JSON files may hold the \u-escaped spelling of a name with accents.
    return any(v.lower() in lowered or json.dumps(v.lower())[1:-1] in lowered for v in values)


def erase_contact(services: Services, orch: Orchestrator, contact_id: str, now: datetime) -> ErasureReport:
    contact = services.crm.contact(contact_id)
    values = identifiers(contact)
    data_dir = services.settings.data_dir
    runs = orch.runs_mentioning(values)
    feedback_ids = services.feedback.erase(runs, contact.id)
    orch.erase_runs(runs)
    deals = services.crm.erase_contact(contact.id, redactor(values))
    reindexed = index_cases(services.crm, services.embedder, services.vectors)  # changed deals overwrite their points
    services.vectors.compact()
    retrain = adapters_trained_on(services.adapters, set(feedback_ids))
    report = ErasureReport(
        contact_id=contact.id, runs_erased=runs, feedback_erased=feedback_ids, deals_redacted=deals, cases_reindexed=reindexed,
        meetings_changed=services.calendar.erase_attendee(contact.email),
        event_files_changed=_erase_events(data_dir / "events", values, data_dir),
        dataset_rows_removed=_scrub_datasets(data_dir, values, set(feedback_ids)),
        mask_mappings_erased=services.masks.erase_contact(contact.id),
        queued_events_erased=_erase_queue(services, values),
        adapters_to_retrain=retrain, audit_seq=0, leftovers=[],
    )
    if retrain:
        services.adapters.mark_for_retraining(retrain, f"learned from feedback of contact {contact.id}, erased {now:%Y-%m-%d}")
    entry = services.audit.append(f"erasure:{contact.id}:{now.isoformat()}", "erasure", contact.id,
                                  report.model_dump(mode="json", exclude={"contact_id", "audit_seq", "leftovers"}), at=now)
    erase_contact_from_backups(data_dir, contact.id)  # migration backups of the CRM mirror hold the contact too
    return report.model_copy(update={"audit_seq": entry.seq, "leftovers": find_mentions(data_dir, values)})


def find_mentions(root: Path, values: list[str]) -> list[str]:
    """Files under `root` that still hold any of `values`: the erasure's own check, and an auditor's."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix not in _BINARY_SUFFIXES):
        if mentions(path.read_bytes().decode("utf-8", errors="replace"), values):
            found.append(str(path.relative_to(root)))
    return found


def _erase_queue(services: Services, values: list[str]) -> int:
    """Webhook events the service queued: their bodies hold the person's data whatever their status."""
    settings = services.settings
    if settings.database.backend == "sqlite" and not settings.resolve(settings.service.queue_path).exists():
        return 0  # the service never ran: there is no queue file to erase from, and none to create
    return len(EventQueue.from_settings(settings).erase(values))


def _erase_events(events_dir: Path, values: list[str], root: Path) -> list[str]:
    """Event files kept in the data dir (inputs of `salesloop event`/`demo`): drop the events that mention the person."""
    changed = []
    for path in sorted(events_dir.glob("*.json")) if events_dir.is_dir() else []:
        text = path.read_text(encoding="utf-8")
        if not mentions(text, values):
            continue
        data = json.loads(text)
        kept = [e for e in data if not mentions(json.dumps(e), values)] if isinstance(data, list) else []
        if kept:
            write_atomically(path, (json.dumps(kept, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
        else:
            path.unlink()
        changed.append(str(path.relative_to(root)))
    return changed


def _scrub_datasets(root: Path, values: list[str], feedback_ids: set[str]) -> int:
    """Drop every JSONL line that mentions the person; dataset manifests get their counts, hashes and ids updated."""
    removed = 0
    for path in sorted(root.rglob("*.jsonl")):
        lines = path.read_bytes().decode("utf-8").splitlines(keepends=True)
        kept = [line for line in lines if not mentions(line, values)]
        if len(kept) != len(lines):
            write_atomically(path, "".join(kept).encode("utf-8"))
            removed += len(lines) - len(kept)
            _update_manifest(path.parent, len(lines) - len(kept), feedback_ids)
    return removed


def _update_manifest(directory: Path, removed: int, feedback_ids: set[str]) -> None:
    path = directory / MANIFEST_FILE
    if not path.is_file():
        return
    manifest = DatasetManifest.model_validate_json(path.read_bytes())
    files = [DatasetFile(name=f.name, count=_count_lines(directory / f.name), sha256=sha256_bytes((directory / f.name).read_bytes()))
             for f in manifest.files]
    excluded = {**manifest.excluded, "erased": manifest.excluded.get("erased", 0) + removed}
    updated = manifest.model_copy(update={
        "files": files, "excluded": excluded,
        "train_record_ids": [i for i in manifest.train_record_ids if i not in feedback_ids],
        "eval_record_ids": [i for i in manifest.eval_record_ids if i not in feedback_ids],
    })
    write_atomically(path, (updated.model_dump_json(indent=2) + "\n").encode())


def _count_lines(path: Path) -> int:
    return sum(1 for line in path.read_bytes().splitlines() if line.strip())
