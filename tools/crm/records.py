"""CRM records as the CRM mirror holds them, and the events a CRM sends us."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationInfo,
    field_validator,
)

from provenance.consent import ConsentFlag
from provenance.records import SourceRef

Industry = Literal["manufacturing", "saas", "education", "medical_devices"]
Region = Literal["NA", "EMEA", "APAC", "LATAM"]
DealStage = Literal["prospecting", "qualification", "proposal", "negotiation", "closed_won", "closed_lost"]
ChunkKind = Literal["proposal_excerpt", "meeting_notes", "objection_answer"]
EventType = Literal["new_lead", "inbound_email", "deal_stage_change", "crm_change"]
# Counts in events come from outside: past 2**53 JSON readers (the inbox's JavaScript) lose digits, and past 2**63
# neither SQLite nor the checkpoint's msgpack can hold them. No lead has more employees, visits or budget than this.
MAX_COUNT = 2**53 - 1


def _in_utc(value: datetime) -> datetime:
    """The same instant in UTC: JSON keeps an offset only to the minute, so one with seconds (a zone's historic local
    mean time, e.g. -07:04:20) would come back from the queue as another instant."""
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:  # 0001-01-01T00:00+05:00 is before the first instant a datetime holds
        raise ValueError("the time is out of range in UTC") from None


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_in_utc)]


def _check_utf8(text: object) -> None:
    if isinstance(text, str) and not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text holds a lone UTF-16 surrogate (\\ud800-\\udfff), which UTF-8 cannot hold") from None


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        # A lone surrogate ("\\ud800" in JSON) passes a str field but cannot be written as UTF-8: not to the queue, the
        # checkpoint, an answer or a file. Refused here, where the record is made, not where it is first written.
        for text in value.keys() if isinstance(value, dict) else value if isinstance(value, list) else (value,):
            _check_utf8(text)
        return value


class Account(Record):
    id: str
    name: str
    industry: Industry
    employees: int = Field(ge=1)
    # A CRM's company record seldom holds a sales region or a time zone: normalize derives them (tools/crm/places.py).
    region: Region | None = None
    country: str | None = None
    state: str | None = Field(default=None, description="state or province, which some countries' time zones need")
    timezone: str | None = Field(default=None, description="IANA time zone, e.g. Europe/Berlin")
    owner_rep_id: str | None = None


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
    employees: int = Field(ge=1, le=MAX_COUNT)
    # Real leads seldom carry a region or a time zone, often no country: normalize derives what is missing and says how.
    region: Region | None = None
    country: str | None = None
    state: str | None = Field(default=None, description="state or province: the time zone of a country with several")
    timezone: str | None = None
    contact_name: str
    email: str
    title: str = ""
    phone: str | None = None
    deal_id: str | None = Field(default=None, description="the CRM's deal this lead came with, if any: write-back goes to it too")
    budget_usd: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    message: str = ""
    web_visits: int = Field(default=0, ge=0, le=MAX_COUNT)
    email_opens: int = Field(default=0, ge=0, le=MAX_COUNT)
    demo_requested: bool = False
    consents: dict[str, ConsentFlag] = Field(default_factory=dict, description="the form's consent checkboxes")

    @field_validator("consents", mode="after")
    @classmethod
    def _consents_storable(cls, consents: dict[str, ConsentFlag]) -> dict[str, ConsentFlag]:
        # ConsentFlag is provenance's model: its text and time get the checks a Record's fields get. The time goes to
        # UTC as CRMEvent.occurred_at does: an offset with seconds would not survive the queue's JSON.
        for flag in consents.values():
            _check_utf8(flag.source)
        return {name: flag if flag.at.utcoffset() is None else flag.model_copy(update={"at": _in_utc(flag.at)})
                for name, flag in consents.items()}


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
    from_stage: DealStage | None = Field(description="None when the deal was not known before: a CRM sends only the new stage")
    to_stage: DealStage


class CRMChangePayload(Record):
    """A CRM's webhook that names a record but not its fields (HubSpot sends ids only, a Salesforce UPDATE only what
    changed): a worker fetches the record through the CRM connector and turns this into a full event before it runs."""

    system: Literal["hubspot", "salesforce"] = Field(description="the webhook source kind whose mapping completes it")
    change: str = Field(min_length=1, max_length=100, description="the source's own type: 'contact.creation', 'Opportunity UPDATE'")
    object_type: Literal["contact", "company", "deal", "lead", "email"]
    record_id: str = Field(min_length=1, max_length=100, description="the CRM's id of the record")
    values: dict[str, JsonValue] = Field(default_factory=dict, description="the values the webhook did carry, e.g. the new stage")


class FetchedRecords(Record):
    """Records a worker fetched through the CRM connector to complete a thin webhook; they travel with the event, so
    a run reads what the CRM held when the event came, and its trace names each record and version."""

    account: Account | None = None
    contact: Contact | None = None
    deal: Deal | None = None
    sources: list[SourceRef] = Field(default_factory=list, description="crm_record:<system>:<type>:<id>@<updatedAt> per record")


EventPayload = NewLeadPayload | InboundEmailPayload | DealStageChangePayload | CRMChangePayload
PAYLOAD_BY_TYPE: dict[str, type[Record]] = {
    "new_lead": NewLeadPayload,
    "inbound_email": InboundEmailPayload,
    "deal_stage_change": DealStageChangePayload,
    "crm_change": CRMChangePayload,
}


class CRMEvent(Record):
    """One thing that happened in the CRM; the payload's shape is fixed by the type."""

    id: Annotated[str, Field(min_length=1, max_length=200)]
    type: EventType
    occurred_at: UtcDatetime = Field(description="with a time zone or offset; held in UTC")
    source: Annotated[str, Field(min_length=1, max_length=100)]
    payload: EventPayload
    fetched: FetchedRecords | None = Field(default=None, description="records fetched from the CRM to complete a thin webhook")

    @field_validator("payload", mode="before")
    @classmethod
    def _payload_matches_type(cls, value: Any, info: ValidationInfo) -> Any:
        event_type = info.data.get("type")
        model = PAYLOAD_BY_TYPE.get(event_type) if isinstance(event_type, str) else None
        if model is None or isinstance(value, model):
            return value
        return model.model_validate(value)
