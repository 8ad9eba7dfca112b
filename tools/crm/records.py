"""CRM records as the CRM mirror holds them, and the events a CRM sends us."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from provenance.consent import ConsentFlag

Industry = Literal["manufacturing", "saas", "education", "medical_devices"]
Region = Literal["NA", "EMEA", "APAC", "LATAM"]
DealStage = Literal["prospecting", "qualification", "proposal", "negotiation", "closed_won", "closed_lost"]
ChunkKind = Literal["proposal_excerpt", "meeting_notes", "objection_answer"]
EventType = Literal["new_lead", "inbound_email", "deal_stage_change"]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Account(Record):
    id: str
    name: str
    industry: Industry
    employees: int = Field(ge=1)
    region: Region
    country: str
    timezone: str = Field(description="IANA time zone, e.g. Europe/Berlin")
    owner_rep_id: str


class Contact(Record):
    id: str
    account_id: str
    full_name: str
    email: str
    phone: str | None = None
    raw_title: str = Field(description="job title exactly as typed in the CRM")
    consents: dict[str, ConsentFlag] = Field(default_factory=dict, description="consent name (configs/consent.yaml) → the contact's answer")


class DocumentChunk(Record):
    id: str
    kind: ChunkKind
    text: str


class Deal(Record):
    """An opportunity; closed ones carry the case summary and documents we learn from."""

    id: str
    account_id: str
    contact_id: str | None = None
    name: str
    product: str
    amount_usd: int = Field(ge=0)
    stage: DealStage
    outcome: Literal["won", "lost", "open"]
    closed_on: date | None = None
    case_summary: str | None = None
    chunks: list[DocumentChunk] = Field(default_factory=list)


class NewLeadPayload(Record):
    """A lead as a web form or marketing tool creates it."""

    lead_id: str
    company: str
    industry: Industry
    employees: int = Field(ge=1)
    region: Region
    country: str
    timezone: str
    contact_name: str
    email: str
    title: str
    phone: str | None = None
    budget_usd: int | None = Field(default=None, ge=0)
    message: str = ""
    web_visits: int = Field(default=0, ge=0)
    email_opens: int = Field(default=0, ge=0)
    demo_requested: bool = False
    consents: dict[str, ConsentFlag] = Field(default_factory=dict, description="the form's consent checkboxes")


class Attachment(Record):
    filename: str
    content_type: str
    content_base64: str


class InboundEmailPayload(Record):
    message_id: str
    from_email: str
    subject: str
    body: str
    attachments: list[Attachment] = Field(default_factory=list)


class DealStageChangePayload(Record):
    deal_id: str
    from_stage: DealStage
    to_stage: DealStage


EventPayload = NewLeadPayload | InboundEmailPayload | DealStageChangePayload
PAYLOAD_BY_TYPE: dict[str, type[Record]] = {
    "new_lead": NewLeadPayload,
    "inbound_email": InboundEmailPayload,
    "deal_stage_change": DealStageChangePayload,
}


class CRMEvent(Record):
    """One thing that happened in the CRM; the payload's shape is fixed by the type."""

    id: Annotated[str, Field(min_length=1, max_length=200)]
    type: EventType
    occurred_at: datetime
    source: Annotated[str, Field(min_length=1, max_length=100)]
    payload: EventPayload

    @field_validator("payload", mode="before")
    @classmethod
    def _payload_matches_type(cls, value: Any, info: ValidationInfo) -> Any:
        event_type = info.data.get("type")
        model = PAYLOAD_BY_TYPE.get(event_type) if isinstance(event_type, str) else None
        if model is None or isinstance(value, model):
            return value
        return model.model_validate(value)
