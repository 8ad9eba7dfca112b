"""The JSON snapshot as a CRM connector: reads the mirror's records, records its writes in crm/writes.jsonl.

The embedded default, so the demo and the tests show what write-back would send to a CRM without one. A write whose
external id is already in the file is found, not appended again.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, JsonValue

from provenance import sha256_text
from tools.crm.connector import Activity, CRMObject, ObjectType, RecordNotFound, WrittenRecord
from tools.crm.source import CRMDataError, JsonSnapshotCRM

WRITES_FILE = "writes.jsonl"


class SnapshotWrite(BaseModel):
    """One line of crm/writes.jsonl."""

    model_config = ConfigDict(extra="forbid")

    crm_id: str
    kind: str
    external_id: str
    written_at: datetime
    activity: Activity | None = None
    deal_id: str | None = None
    properties: dict[str, JsonValue] | None = None


class SnapshotConnector:
    system = "snapshot"

    def __init__(self, crm_dir: Path, clock: Callable[[], datetime]):
        self.mirror = JsonSnapshotCRM(crm_dir)
        self.path = crm_dir / WRITES_FILE
        self.clock = clock
        self._lock = threading.Lock()

    def close(self) -> None:
        pass

    def get(self, object_type: ObjectType, record_id: str) -> CRMObject:
        try:
            if object_type == "contact":
                contact = self.mirror.contact(record_id)
                deals = [d.id for d in self.mirror.deals() if d.contact_id == contact.id]
                return self._object(object_type, contact, {"company": [contact.account_id], "deal": deals})
            if object_type == "company":
                account = self.mirror.account(record_id)
                return self._object(object_type, account, {
                    "contact": [c.id for c in self.mirror.contacts() if c.account_id == account.id],
                    "deal": [d.id for d in self.mirror.deals() if d.account_id == account.id]})
            if object_type == "deal":
                deal = self.mirror.deal(record_id)
                return self._object(object_type, deal.model_copy(update={"chunks": []}),
                                    {"company": [deal.account_id], "contact": [deal.contact_id] if deal.contact_id else []})
        except CRMDataError as exc:
            raise RecordNotFound(str(exc)) from None
        raise RecordNotFound(f"the JSON snapshot holds no {object_type} records")

    def _object(self, object_type: ObjectType, record: BaseModel, associations: dict[str, list[str]]) -> CRMObject:
        properties = record.model_dump(mode="json")
        # The mirror keeps no modification time: the record's content hash is its version.
        return CRMObject(system=self.system, object_type=object_type, id=properties["id"], properties=properties,
                         updated_at=sha256_text(json.dumps(properties, sort_keys=True))[:16], associations=associations)

    def write(self, activity: Activity) -> WrittenRecord:
        return self._append(activity.kind, activity.external_id, activity=activity)

    def update_deal(self, deal_id: str, properties: dict[str, JsonValue], external_id: str) -> WrittenRecord:
        return self._append("deal_update", external_id, crm_id=deal_id, deal_id=deal_id, properties=properties)

    def writes(self) -> list[SnapshotWrite]:
        """Everything written so far, oldest first."""
        if not self.path.exists():
            return []
        writes = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                writes.append(SnapshotWrite.model_validate_json(line))
            except ValueError:  # a line torn by a crash mid-write: that write did not happen and is made again
                continue
        return writes

    def _append(self, kind: str, external_id: str, crm_id: str | None = None, **fields) -> WrittenRecord:
        with self._lock:
            for earlier in self.writes():
                if earlier.external_id == external_id and earlier.kind == kind:
                    return WrittenRecord(system=self.system, kind=kind, external_id=external_id, crm_id=earlier.crm_id, created=False)
            crm_id = crm_id or f"snap-{kind}-{sha256_text(external_id)[:12]}"
            line = SnapshotWrite(crm_id=crm_id, kind=kind, external_id=external_id, written_at=self.clock(), **fields)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:  # one line per write: a crash leaves at most a torn last line
                f.write(line.model_dump_json() + "\n")
                f.flush()
        return WrittenRecord(system=self.system, kind=kind, external_id=external_id, crm_id=crm_id, created=True)
