"""CRM webhook bodies → CRM events: HubSpot batches, Salesforce change events, and our own CRMEvent JSON.

Each parser reads the whole body first and returns one `Mapped` per event in it: a CRMEvent to queue, the reason the
event was ignored (a type we do not map, a stage or industry the mapping file lacks), or the reason it was rejected
(it is not what the source sends, naming the field). Events are mapped independently: one bad event is reported
alone and the good ones of its delivery are queued. A body that is not JSON, or not a batch, raises WebhookError.

A webhook that names a record without its fields (HubSpot sends ids only; a Salesforce UPDATE only what changed) and
whose record the CRM mirror lacks becomes a `crm_change` event: a worker fetches the record through the CRM connector
(service/completion.py) and turns it into a full event before it runs. Salesforce and HubSpot ids are used as they are.

How a source's events map onto ours lives in configs/webhooks/<source>.yaml (HubSpotMapping, SalesforceMapping).
Wire models ignore fields they do not read: HubSpot and Salesforce add fields over time, and a new one must not
turn every delivery into an error.
"""

from __future__ import annotations

import json
import string
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator

from configs.loader import ConfigError, load_yaml_model
from provenance import sha256_text
from tools.crm.records import (
    CRMChangePayload,
    CRMEvent,
    DealStage,
    DealStageChangePayload,
    EventType,
    InboundEmailPayload,
    Industry,
    NewLeadPayload,
)
from tools.crm.source import CRMDataError, CRMSource

MAPPINGS_DIR = Path(__file__).resolve().parent.parent / "configs" / "webhooks"
MAX_EVENTS = 1000  # per body, also after a Salesforce event is split per record; HubSpot sends at most 100 per request
MAX_DEPTH = 32  # nesting of a body; the deepest any source sends is about 6 (a Salesforce envelope's compound fields)
MAX_ERROR_CHARS = 300
MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: the last instant a datetime holds
MAX_ID = 2**63 - 1  # HubSpot's ids and Salesforce's sequence numbers are 64-bit; larger ones are not theirs
# The queue's idempotency key: a generic event's "<source>:<id>" (100 + 1 + 200), HubSpot's and Salesforce's shorter.
MAX_EXTERNAL_ID = 301
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# HubSpot's generic "object.*" subscriptions name the object by type id; 0-3 is deals (0-1 contacts, 0-2 companies).
HUBSPOT_OBJECT_TYPES = {"0-1": "contact", "0-2": "company", "0-3": "deal"}
SALESFORCE_CHANGES = ("CREATE", "UPDATE", "DELETE", "UNDELETE")
SalesforceChange = Literal["CREATE", "UPDATE", "DELETE", "UNDELETE",
                           "GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW"]
W = TypeVar("W", bound=BaseModel)


class WebhookError(Exception):
    """The body is not what the source sends; the message names the field and is safe to return (answer 400)."""

    def __init__(self, message: str):
        super().__init__(message if len(message) <= MAX_ERROR_CHARS else message[:MAX_ERROR_CHARS - 1] + "…")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Mapped(Strict):
    """One event of a delivery: the CRMEvent to queue, or why it was ignored."""

    external_id: str = Field(min_length=1, max_length=MAX_EXTERNAL_ID, description="the source's id for this event; the queue's idempotency key")
    kind: str = Field(description="the source's type: a HubSpot subscriptionType, 'Lead CREATE', or our event type")
    event: CRMEvent | None = None
    ignored: str | None = Field(default=None, description="why no event was made; the source needs no retry")
    rejected: str | None = Field(default=None, description="why the event is not what the source sends, naming the field")

    @model_validator(mode="after")
    def _one_outcome(self) -> Mapped:
        if sum(x is not None for x in (self.event, self.ignored, self.rejected)) != 1:
            raise ValueError("a mapped event has exactly one of event, ignored and rejected")
        return self


# --- mapping files ----------------------------------------------------------------------------


def _template(allowed: frozenset[str] | None) -> AfterValidator:
    """An id template such as "deal-{objectId:0>4}": plain names only (no attribute or index access), checked at load."""

    def check(template: str) -> str:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
        if not names:
            raise ValueError(f"{template!r} names no field: every event would map to the same record")
        for name in names:
            if not name.isidentifier() or (allowed is not None and name not in allowed):
                known = f"use {', '.join(sorted(allowed))}" if allowed else "use a plain field name"
                raise ValueError(f"{{{name}}} in {template!r}: {known}")
        template.format(**{name: 1 if allowed else "x" for name in names})  # a bad format spec fails here, not per event
        return template

    return AfterValidator(check)


HUBSPOT_EVENTS = {("deal.propertyChange", "deal_stage_change"), ("contact.creation", "new_lead"), ("deal.creation", "new_lead")}


class HubSpotMapping(Strict):
    source: str = Field(default="hubspot", min_length=1, max_length=100, description="CRMEvent.source of the events made")
    deal_id: Annotated[str, _template(frozenset({"objectId", "portalId"}))] = Field(
        description="the CRM mirror's deal id for a HubSpot deal, e.g. deal-{objectId:0>4}; a deal the mirror lacks is "
                    "fetched from HubSpot by its own id")
    events: dict[str, EventType] = Field(description="subscriptionType → our event type; other types are ignored")
    stage_property: str = "dealstage"
    stages: dict[str, DealStage] = Field(description="dealstage value (a pipeline stage id) → our deal stage")
    industries: dict[str, Industry] = Field(default_factory=dict, description="a company's industry value → ours; other values are ignored")

    @model_validator(mode="after")
    def _known_events(self) -> HubSpotMapping:
        # A HubSpot event carries ids and one changed property: the rest is fetched, for these events only.
        for kind, event_type in self.events.items():
            if (kind, event_type) not in HUBSPOT_EVENTS:
                allowed = ", ".join(f"{k}: {t}" for k, t in sorted(HUBSPOT_EVENTS))
                raise ValueError(f"events.{kind}: {event_type} cannot be made from a HubSpot webhook; map one of {allowed}")
        return self


FieldSource = str | list[str]


class FieldMap(Strict):
    """Payload fields filled from change-event fields: "Email", a nested "Name.FirstName", or a list joined by spaces.
    "Name.FirstName|FirstName" takes the first alternative that holds a value (change events nest compound fields,
    REST records do not).

    "recordId" is the Salesforce id of the record. A field that is missing, null or empty takes its default.
    """

    fields: dict[str, FieldSource]
    defaults: dict[str, JsonValue] = Field(default_factory=dict)
    when: dict[str, JsonValue] = Field(default_factory=dict, description="only events whose fields hold these values; others are ignored")

    def _check_keys(self, model: type[BaseModel], derived: set[str]) -> None:
        mappable = set(model.model_fields) - {"consents", "attachments"}
        for key in [*self.fields, *self.defaults]:
            if key not in mappable:
                raise ValueError(f"{key} is not a {model.__name__} field; use one of {', '.join(sorted(mappable))}")
        required = {n for n, f in model.model_fields.items() if f.is_required()}
        unfilled = required - set(self.fields) - set(self.defaults) - derived
        if unfilled:
            raise ValueError(f"{model.__name__} needs {', '.join(sorted(unfilled))}: add it under fields or defaults")


class LeadMap(FieldMap):
    """Region and time zone are derived from country and state when a lead lacks them (configs/places.yaml)."""

    industries: dict[str, Industry] = Field(description="the Industry picklist value → our industry; other values are ignored")

    @model_validator(mode="after")
    def _fills_a_lead(self) -> LeadMap:
        self._check_keys(NewLeadPayload, set())
        return self


class EmailMap(FieldMap):
    @model_validator(mode="after")
    def _fills_an_email(self) -> EmailMap:
        self._check_keys(InboundEmailPayload, set())
        return self


class StageMap(Strict):
    deal_id: Annotated[str, _template(None)] = Field(
        default="{recordId}", description="the deal's id: {recordId} (the Salesforce id, fetched when the mirror lacks it), "
                                          "or a field of the event such as an enriched external id")
    stage_field: str = "StageName"
    stages: dict[str, DealStage] = Field(description="StageName value → our deal stage")


class SalesforceMapping(Strict):
    source: str = Field(default="salesforce", min_length=1, max_length=100)
    events: dict[str, EventType] = Field(description='"<entityName> <changeType>" → our event type; other changes are ignored')
    new_lead: LeadMap | None = None
    inbound_email: EmailMap | None = None
    deal_stage_change: StageMap | None = None

    @model_validator(mode="after")
    def _routes(self) -> SalesforceMapping:
        # A CREATE carries every field of the record, an UPDATE only the changed ones: each event needs its kind.
        needs = {"new_lead": "CREATE", "inbound_email": "CREATE", "deal_stage_change": "UPDATE"}
        for key, event_type in self.events.items():
            entity, _, change = key.partition(" ")
            if not entity or change not in SALESFORCE_CHANGES:
                raise ValueError(f"events.{key}: write the entity and change type, e.g. 'Lead CREATE' ({', '.join(SALESFORCE_CHANGES)})")
            if change != needs[event_type]:
                raise ValueError(f"events.{key}: {event_type} is made from {needs[event_type]} events only")
            if getattr(self, event_type) is None:
                raise ValueError(f"events.{key}: maps to {event_type}; add the {event_type}: section that says how")
        return self


WebhookMapping = HubSpotMapping | SalesforceMapping
_MAPPING_MODELS: dict[str, type[HubSpotMapping | SalesforceMapping]] = {"hubspot": HubSpotMapping, "salesforce": SalesforceMapping}


def load_mapping(kind: str, path: Path | None = None) -> WebhookMapping:
    """The mapping for a source kind, from `path` or the shipped configs/webhooks/<kind>.yaml; ConfigError names file and key."""
    model = _MAPPING_MODELS.get(kind)
    if model is None:
        raise ConfigError(f"no webhook mapping for source kind {kind!r}; use one of {', '.join(sorted(_MAPPING_MODELS))}")
    return load_yaml_model(path or MAPPINGS_DIR / f"{kind}.yaml", model)


# --- shared -----------------------------------------------------------------------------------


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _items(body: bytes, array_only: bool = False) -> list[tuple[Any, str]]:
    """The body's events, each with where it is: an array is a batch ("body[2]"), an object one event ("body")."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        # ValueError: JSONDecodeError, UnicodeDecodeError (not UTF-8), and a number past Python's int-to-str digit limit.
        if isinstance(exc, json.JSONDecodeError):
            detail = f": line {exc.lineno} column {exc.colno}: {exc.msg}"
        elif isinstance(exc, RecursionError):
            detail = f": nested deeper than {MAX_DEPTH} levels"
        elif isinstance(exc, UnicodeDecodeError):
            detail = ": not UTF-8"
        else:
            detail = ": a number has too many digits"
        raise WebhookError(f"body: not valid JSON{detail}") from None
    check_shape(data)
    if not isinstance(data, list):
        if array_only:
            raise WebhookError(f"body: a JSON array of events was expected, got {type(data).__name__}")
        return [(data, "body")]
    if not data:
        raise WebhookError("body: the array holds no events")
    if len(data) > MAX_EVENTS:
        raise WebhookError(f"body: {len(data)} events, over the limit of {MAX_EVENTS}; split the batch")
    return [(item, f"body[{i}]") for i, item in enumerate(data)]


def check_shape(data: Any) -> None:
    """No source nests deeper than MAX_DEPTH or sends text that is not Unicode (a lone surrogate such as "\\ud800" is
    valid JSON but cannot be stored or answered as UTF-8). Checked without recursion, before anything reads the values:
    messages, str() and pydantic then only ever see shallow, encodable data."""
    # Each entry keeps its place as a (key, parent) chain, spelled out only for the message.
    stack: list[tuple[Any, int, tuple | None]] = [(data, 0, None)]
    while stack:
        value, depth, trail = stack.pop()
        if isinstance(value, str):
            _check_text(value, trail)
        elif isinstance(value, (dict, list)):
            if depth >= MAX_DEPTH:
                raise WebhookError(f"{_where(trail)}: nested deeper than {MAX_DEPTH} levels")
            if isinstance(value, dict):
                for key, item in value.items():
                    _check_text(key, (key, trail))
                    stack.append((item, depth + 1, (key, trail)))
            else:
                stack.extend((item, depth + 1, (i, trail)) for i, item in enumerate(value))


def _check_text(text: str, trail: tuple | None) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise WebhookError(f"{_where(trail)}: text holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape)") from None


def _where(trail: tuple | None) -> str:
    """body.payload[2].x for a (key, parent) chain; short and encodable, since the keys are the sender's."""
    parts = []
    while trail is not None:
        key, trail = trail
        parts.append(f"[{key}]" if isinstance(key, int) else "." + key.encode("utf-8", "backslashreplace").decode()[:40])
    where = "body" + "".join(reversed(parts))
    return where if len(where) <= 120 else where[:119] + "…"


def _validate(model: type[W], value: Any, where: str) -> W:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        problems = [f"{'.'.join([where, *map(str, e['loc'])])}: {e['msg']}" for e in exc.errors()[:3]]
        raise WebhookError("; ".join(problems)) from None


def _from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _ignored(external_id: str, kind: str, reason: str) -> Mapped:
    return Mapped(external_id=external_id, kind=kind, ignored=reason[:MAX_ERROR_CHARS])


def _rejected(external_id: str, kind: str, error: WebhookError) -> Mapped:
    return Mapped(external_id=external_id[:MAX_EXTERNAL_ID], kind=kind[:100], rejected=str(error))


def _fallback_id(prefix: str, item: Any) -> str:
    """An id for an event too broken to have its own: the same broken event always gets the same one."""
    return f"{prefix}-unreadable-{sha256_text(json.dumps(item, sort_keys=True, default=str))[:16]}"


def _thin(external_id: str, kind: str, system: str, object_type: str, record_id: str, occurred_at: datetime, source: str,
          values: dict[str, Any] | None = None) -> Mapped:
    """An event whose record must be fetched from the CRM before it can run (service/completion.py)."""
    payload = CRMChangePayload(system=system, change=kind, object_type=object_type, record_id=record_id, values=values or {})
    return Mapped(external_id=external_id, kind=kind, event=CRMEvent(id=external_id, type="crm_change", occurred_at=occurred_at,
                                                                   source=source, payload=payload))


def _show(value: Any) -> str:
    """A value from the body in a message: quoted, and short whatever the sender put there."""
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


# --- generic ----------------------------------------------------------------------------------


def parse_generic(body: bytes) -> list[Mapped]:
    """Our own CRMEvent JSON, one object or an array. The external id is "<source>:<id>", the identity of a CRMEvent."""
    mapped = []
    for item, where in _items(body):
        try:
            event = _validate(CRMEvent, item, where)
        except WebhookError as exc:
            known = item if isinstance(item, dict) else {}
            external_id = f"{known.get('source')}:{known.get('id')}" if known.get("source") and known.get("id") else _fallback_id("generic", item)
            mapped.append(_rejected(str(external_id), str(known.get("type", "unknown")), exc))
            continue
        mapped.append(Mapped(external_id=f"{event.source}:{event.id}", kind=event.type, event=event))
    return mapped


# --- HubSpot ----------------------------------------------------------------------------------


class _HubSpotEvent(_Wire):
    eventId: int = Field(ge=0, le=MAX_ID)
    subscriptionId: int = Field(ge=0, le=MAX_ID)
    portalId: int = Field(ge=0, le=MAX_ID)
    occurredAt: int = Field(ge=0, le=MAX_MS)
    subscriptionType: str = Field(min_length=1, max_length=100)
    objectId: int | None = Field(default=None, ge=0, le=MAX_ID)  # association events name two objects instead
    objectTypeId: str | None = None
    propertyName: str | None = None
    propertyValue: str | None = None

    def kind(self) -> str:
        """The subscription type; the generic object.* types on object types 0-1/0-2/0-3 read as contact/company/deal.*"""
        family, _, action = self.subscriptionType.partition(".")
        if family == "object" and self.objectTypeId in HUBSPOT_OBJECT_TYPES:
            return f"{HUBSPOT_OBJECT_TYPES[self.objectTypeId]}.{action}"
        return self.subscriptionType

    def external_id(self) -> str:
        # HubSpot documents eventId as not guaranteed unique; with the portal, subscription and time it is, and
        # all four stay the same when HubSpot retries a delivery (attemptNumber is what changes).
        return f"hs-{self.portalId}-{self.subscriptionId}-{self.eventId}-{self.occurredAt}"


def parse_hubspot(body: bytes, mapping: HubSpotMapping, crm: CRMSource) -> list[Mapped]:
    """A HubSpot webhook batch (a JSON array of events); see hubspot.yaml for what each subscription type becomes."""
    mapped = []
    for item, where in _items(body, array_only=True):
        try:
            event = _validate(_HubSpotEvent, item, where)
        except WebhookError as exc:
            known = item if isinstance(item, dict) else {}
            mapped.append(_rejected(_fallback_id("hs", item), str(known.get("subscriptionType", "unknown")), exc))
            continue
        try:
            mapped.append(_hubspot_event(event, where, mapping, crm))
        except WebhookError as exc:
            mapped.append(_rejected(event.external_id(), event.kind(), exc))
    return mapped


def _hubspot_event(event: _HubSpotEvent, where: str, mapping: HubSpotMapping, crm: CRMSource) -> Mapped:
    kind, external_id = event.kind(), event.external_id()
    event_type = mapping.events.get(kind)
    if event_type is None:
        return _ignored(external_id, kind, f"{kind} is not mapped to a salesloop event")
    if event.objectId is None:
        raise WebhookError(f"{where}.objectId: a {kind} event names its object")
    occurred = _from_ms(event.occurredAt)
    if event_type == "new_lead":  # HubSpot sends the new object's id only: the worker fetches it and what it is tied to
        return _thin(external_id, kind, "hubspot", kind.partition(".")[0], str(event.objectId), occurred, mapping.source)
    if event.propertyName != mapping.stage_property:
        return _ignored(external_id, kind, f"{kind} of {_show(event.propertyName)}, not of {mapping.stage_property!r}")
    if event.propertyValue is None:
        raise WebhookError(f"{where}.propertyValue: a {kind} event of {mapping.stage_property} needs the new value")
    to_stage = mapping.stages.get(event.propertyValue)
    if to_stage is None:
        return _ignored(external_id, kind, f"{mapping.stage_property} {_show(event.propertyValue)} is not under stages in the "
                                           "HubSpot mapping; add the pipeline stage to take these changes")
    deal_id = mapping.deal_id.format(objectId=event.objectId, portalId=event.portalId)
    from_stage = _current_stage(crm, deal_id)
    if from_stage is None:  # not mirrored: fetch the deal, its contact and company from HubSpot by HubSpot's own id
        return _thin(external_id, kind, "hubspot", "deal", str(event.objectId), occurred, mapping.source, {"to_stage": to_stage})
    payload = DealStageChangePayload(deal_id=deal_id, from_stage=from_stage, to_stage=to_stage)
    return Mapped(external_id=external_id, kind=kind, event=CRMEvent(
        id=external_id, type="deal_stage_change", occurred_at=occurred, source=mapping.source, payload=payload))


def _current_stage(crm: CRMSource, deal_id: str) -> DealStage | None:
    """A stage change says only where the deal went: where it came from is the mirror's current stage, if it has the deal."""
    try:
        return crm.deal(deal_id).stage
    except CRMDataError:
        return None


# --- Salesforce -------------------------------------------------------------------------------


class _ChangeEventHeader(_Wire):
    entityName: str = Field(min_length=1, max_length=100)
    recordIds: list[Annotated[str, Field(min_length=1, max_length=40)]]
    changeType: SalesforceChange
    changedFields: list[str] = Field(default_factory=list)
    commitTimestamp: int = Field(ge=0, le=MAX_MS)
    transactionKey: str = Field(min_length=1, max_length=100)
    sequenceNumber: int = Field(ge=0, le=MAX_ID)

    def external_id(self, record_id: str = "") -> str:
        # transactionKey + sequenceNumber identify a change event in both shapes we accept; replayId exists only in
        # the envelope and is a position in one channel's stream. One event can name several records.
        return f"sf-{self.transactionKey}-{self.sequenceNumber}" + (f"-{record_id}" if record_id else "")


def parse_salesforce(body: bytes, mapping: SalesforceMapping, crm: CRMSource) -> list[Mapped]:
    """Change Data Capture events: one or a JSON array of them, each either the bare event payload
    ({"ChangeEventHeader": {...}, <fields>}) or the envelope a subscriber receives ({"schema", "payload", "event"})."""
    events: list[tuple[_ChangeEventHeader, dict[str, Any], str] | Mapped] = []
    for item, where in _items(body):
        try:
            events.append(_change_event(item, where))
        except WebhookError as exc:
            events.append(_rejected(_fallback_id("sf", item), "unknown", exc))
    records = sum(max(len(e[0].recordIds), 1) for e in events if isinstance(e, tuple))
    if records > MAX_EVENTS:  # each record named is an event of its own; checked before any is looked up
        raise WebhookError(f"body: {records} events (one per record named), over the limit of {MAX_EVENTS}; split the batch")
    mapped = []
    for entry in events:
        if isinstance(entry, Mapped):
            mapped.append(entry)
            continue
        header, fields, where = entry
        try:
            mapped.extend(_salesforce_event(header, fields, where, mapping, crm))
        except WebhookError as exc:
            mapped.append(_rejected(header.external_id(), f"{header.entityName} {header.changeType}", exc))
    return mapped


def _change_event(item: Any, where: str) -> tuple[_ChangeEventHeader, dict[str, Any], str]:
    if isinstance(item, dict) and "ChangeEventHeader" not in item and "payload" in item:
        item, where = item["payload"], f"{where}.payload"
    if not isinstance(item, dict) or "ChangeEventHeader" not in item:
        raise WebhookError(f"{where}: no ChangeEventHeader; send a change event payload or the envelope {{schema, payload, event}}")
    return _validate(_ChangeEventHeader, item["ChangeEventHeader"], f"{where}.ChangeEventHeader"), item, where


def _salesforce_event(header: _ChangeEventHeader, fields: dict[str, Any], where: str, mapping: SalesforceMapping,
                      crm: CRMSource) -> list[Mapped]:
    kind = f"{header.entityName} {header.changeType}"
    if header.changeType.startswith("GAP_"):
        return [_ignored(header.external_id(), kind, f"{kind} is a gap event: Salesforce sent no field values; "
                                                     "read the records from Salesforce to catch up")]
    if not header.recordIds:
        raise WebhookError(f"{where}.ChangeEventHeader.recordIds: empty; a {header.changeType} event names its records")
    event_type = mapping.events.get(kind)
    results = []
    for record_id in header.recordIds:
        external_id = header.external_id(record_id)
        if event_type is None:
            results.append(_ignored(external_id, kind, f"{kind} is not mapped to a salesloop event"))
        elif record_id.endswith("*"):
            results.append(_ignored(external_id, kind, f"{kind} names records by the wildcard {record_id!r} (a field type conversion)"))
        else:
            results.append(_salesforce_record(event_type, header, record_id, fields, where, mapping, crm))
    return results


def _salesforce_record(event_type: EventType, header: _ChangeEventHeader, record_id: str, fields: dict[str, Any], where: str,
                       mapping: SalesforceMapping, crm: CRMSource) -> Mapped:
    kind, external_id = f"{header.entityName} {header.changeType}", header.external_id(record_id)
    values = {**fields, "recordId": record_id}
    section = getattr(mapping, event_type)  # the mapping's validator makes sure each mapped type has its section
    occurred = _from_ms(header.commitTimestamp)
    if isinstance(section, StageMap):
        payload = _stage_change(section, header, values, where, crm)
        if isinstance(payload, tuple):  # the mirror lacks the deal, or the event lacks the stage: fetch the opportunity
            to_stage, why = payload
            return _thin(external_id, kind, "salesforce", "deal", record_id, occurred, mapping.source,
                         {"to_stage": to_stage} if to_stage else {})
    else:
        payload = _filled(section, event_type, values)
    if isinstance(payload, str):
        return _ignored(external_id, kind, f"{header.entityName} {record_id}: {payload}")
    return Mapped(external_id=external_id, kind=kind, event=CRMEvent(
        id=external_id, type=event_type, occurred_at=occurred, source=mapping.source, payload=payload))


def _stage_change(section: StageMap, header: _ChangeEventHeader, values: dict[str, Any], where: str,
                  crm: CRMSource) -> DealStageChangePayload | str | tuple[DealStage | None, str]:
    """The payload; why the change is ignored; or (the new stage if known, why) when the opportunity must be fetched."""
    if section.stage_field not in header.changedFields:
        return f"changed {', '.join(header.changedFields) or 'nothing'}, not {section.stage_field}"
    value = values.get(section.stage_field)
    if value is not None and not isinstance(value, str):
        raise WebhookError(f"{where}.{section.stage_field}: {_show(value)} is not text")
    to_stage = section.stages.get(value) if value else None
    if value and to_stage is None:
        return f"{section.stage_field} {_show(value)} is not under deal_stage_change.stages in the Salesforce mapping; add it"
    names = {name for _, name, _, _ in string.Formatter().parse(section.deal_id) if name is not None}
    if names - {"recordId"} and len(header.recordIds) > 1:
        return f"one event for {len(header.recordIds)} records, and deal_id reads event fields that cannot tell them apart"
    if any(values.get(n) in (None, "") for n in names) or to_stage is None:
        return to_stage, "the event lacks fields the mirror id or the stage needs"
    deal_id = section.deal_id.format(**{n: values[n] for n in names})
    from_stage = _current_stage(crm, deal_id)
    if from_stage is None:
        return to_stage, f"deal {deal_id} is not in the CRM mirror"
    return DealStageChangePayload(deal_id=deal_id, from_stage=from_stage, to_stage=to_stage)


def _filled(section: FieldMap, event_type: EventType, values: dict[str, Any]) -> NewLeadPayload | InboundEmailPayload | str:
    """The payload filled by the section's fields, tables and defaults, or why the record is ignored."""
    for path, expected in section.when.items():
        actual = _lookup(values, path)
        if actual != expected:
            return f"{path} is {_show(actual)}, not {expected!r}, so it does not become {event_type}"
    filled = {key: value for key, source in section.fields.items() if (value := _read(values, source)) is not None}
    if isinstance(section, LeadMap) and "industry" in filled:
        industry = section.industries.get(str(filled["industry"]))
        if industry is None:
            return f"industry {_show(filled['industry'])} is not under new_lead.industries in the Salesforce mapping"
        filled["industry"] = industry
    model = NewLeadPayload if event_type == "new_lead" else InboundEmailPayload
    try:
        return model.model_validate({**section.defaults, **filled})
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3]]
        return f"cannot fill a {event_type} ({'; '.join(problems)}); map the field or give it a default in the mapping"


def _read(values: dict[str, Any], source: FieldSource) -> Any:
    """A field's value ("A|B": the first alternative with one), or the present parts of a list joined by spaces."""
    if isinstance(source, str):
        for path in source.split("|"):
            value = _lookup(values, path)
            if value not in (None, ""):
                return value
        return None
    parts = [str(v) for v in (_read(values, path) for path in source) if v not in (None, "")]
    return " ".join(parts) or None


def _lookup(values: dict[str, Any], path: str) -> Any:
    """The value at a dotted path such as Name.FirstName: compound fields (Name, Address) arrive as nested objects."""
    value: Any = values
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value
