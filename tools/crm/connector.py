"""The CRM connector: read a CRM's records with their associations, write activities back to them.

Three implementations, chosen by `crm.connector`: the JSON snapshot (the embedded default: reads the mirror and
records its writes in crm/writes.jsonl), HubSpot (CRM API v3) and Salesforce (REST API). Every write carries an
external id derived from the run, and every implementation finds a write it made before instead of making it again,
so a retried write-back writes exactly once. tests/test_connectors.py is the conformance suite all three pass.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue

from provenance import SourceRef

if TYPE_CHECKING:
    from configs.settings import Settings

ObjectType = Literal["contact", "company", "deal", "lead", "email"]
ActivityKind = Literal["note", "task", "meeting", "email_draft"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CRMObject(Strict):
    """One record as the CRM holds it: its own property names and values, and the ids of the records tied to it."""

    system: str = Field(description="hubspot, salesforce or snapshot")
    object_type: ObjectType
    id: str
    updated_at: str | None = Field(description="the CRM's last-modified time (or a content hash): the version a trace names")
    properties: dict[str, JsonValue]
    associations: dict[str, list[str]] = Field(default_factory=dict, description="object type → associated record ids")

    def ref(self) -> SourceRef:
        return SourceRef(kind="crm_record", id=f"{self.system}:{self.object_type}:{self.id}", version=self.updated_at,
                         note=f"fetched from {self.system}")

    def text(self, *names: str) -> str | None:
        """The first of `names` that holds a non-empty value, as text."""
        for name in names:
            value = self.properties.get(name)
            if value not in (None, ""):
                return str(value)
        return None


class Activity(Strict):
    """Something salesloop writes onto a contact's and deal's timeline; never sent to the customer."""

    kind: ActivityKind
    external_id: str = Field(min_length=1, max_length=200, description="our id for this write; the same write always has the same one")
    subject: str = Field(max_length=255)
    body: str
    at: AwareDatetime = Field(description="where it sits on the timeline (a meeting's start)")
    end: AwareDatetime | None = Field(default=None, description="a meeting's end")
    contact_id: str | None = Field(default=None, description="the CRM's contact (or Salesforce lead) it belongs to")
    deal_id: str | None = Field(default=None, description="the CRM's deal or opportunity it belongs to")


class WrittenRecord(Strict):
    """What a write left in the CRM: the CRM's id for it, and whether this call made it or found it made before."""

    system: str
    kind: ActivityKind | Literal["deal_update"]
    external_id: str
    crm_id: str
    created: bool

    def ref(self) -> SourceRef:
        return SourceRef(kind="tool", id=f"crm:{self.system}", field=self.kind, version=self.crm_id,
                         note=f"{'created' if self.created else 'already there, not written again'} ({self.external_id})")


class ConnectorError(Exception):
    """A CRM request failed in a way a person fixes (credentials, setup, a record that does not exist)."""


class RecordNotFound(ConnectorError):
    """The CRM has no record with that id."""


class CRMUnavailable(ConnectorError):
    """The CRM did not answer, answered 5xx, or rate-limited us past what we wait in-process: retry later."""


class CRMConnector(Protocol):
    system: str

    def get(self, object_type: ObjectType, record_id: str) -> CRMObject:
        """The record with the ids of its associated contacts, companies and deals; RecordNotFound if there is none."""

    def write(self, activity: Activity) -> WrittenRecord:
        """Write a note, task, meeting or logged e-mail draft associated to its contact and deal, once per external id."""

    def update_deal(self, deal_id: str, properties: dict[str, JsonValue], external_id: str) -> WrittenRecord:
        """Set fields of a deal (the CRM's own property names); setting them again changes nothing."""

    def close(self) -> None: ...


def open_connector(settings: Settings, crm_dir: Path, clock: Callable[[], datetime]) -> CRMConnector:
    """The connector `crm.connector` names; credentials come from the environment variables the settings name."""
    crm = settings.crm
    if crm.connector == "hubspot":
        from tools.crm.hubspot import HubSpotConnector

        return HubSpotConnector.from_settings(crm)
    if crm.connector == "salesforce":
        from tools.crm.salesforce import SalesforceConnector

        return SalesforceConnector.from_settings(crm)
    from tools.crm.snapshot_connector import SnapshotConnector

    return SnapshotConnector(crm_dir, clock)
