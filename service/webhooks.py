"""CRM webhook bodies → CRM events: HubSpot batches, Salesforce change events, and our own CRMEvent JSON.

Each parser reads the whole body first and returns one `Mapped` per event in it: a CRMEvent, or the reason the
event was ignored (a type we do not map, a stage or industry the mapping file lacks). A body that is not what the
source sends raises WebhookError naming the field, so nothing of a bad batch is queued.

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
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator

from configs.loader import ConfigError, load_yaml_model
from tools.crm.records import (
    CRMEvent,
    DealStage,
    DealStageChangePayload,
    EventType,
    InboundEmailPayload,
    Industry,
    NewLeadPayload,
    Region,
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

    @model_validator(mode="after")
    def _one_outcome(self) -> Mapped:
        if (self.event is None) == (self.ignored is None):
            raise ValueError("a mapped event has exactly one of event and ignored")
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


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone such as Europe/Berlin") from None
    return name


class HubSpotMapping(Strict):
    source: str = Field(default="hubspot", min_length=1, max_length=100, description="CRMEvent.source of the events made")
    deal_id: Annotated[str, _template(frozenset({"objectId", "portalId"}))] = Field(
        description="the CRM mirror's deal id for a HubSpot deal, e.g. deal-{objectId:0>4}")
    events: dict[str, EventType] = Field(description="subscriptionType → our event type; other types are ignored")
    stage_property: str = "dealstage"
    stages: dict[str, DealStage] = Field(description="dealstage value (a pipeline stage id) → our deal stage")

    @model_validator(mode="after")
    def _only_stage_changes(self) -> HubSpotMapping:
        # A HubSpot event carries ids and one changed property: a stage change is the only event it can fill.
        for kind, event_type in self.events.items():
            if (kind, event_type) != ("deal.propertyChange", "deal_stage_change"):
                raise ValueError(f"events.{kind}: {event_type} cannot be made from a HubSpot webhook, which carries only ids "
                                 "and one changed property; map deal.propertyChange: deal_stage_change or nothing")
        return self


class Place(Strict):
    region: Region
    timezone: Annotated[str, AfterValidator(_zone)]


FieldSource = str | list[str]


class FieldMap(Strict):
    """Payload fields filled from change-event fields: "Email", a nested "Name.FirstName", or a list joined by spaces.

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
    industries: dict[str, Industry] = Field(description="the Industry picklist value → our industry; other values are ignored")
    countries: dict[str, Place] = Field(default_factory=dict, description="country value → region and time zone")

    @model_validator(mode="after")
    def _fills_a_lead(self) -> LeadMap:
        self._check_keys(NewLeadPayload, {"region", "timezone"} if self.countries else set())
        return self


class EmailMap(FieldMap):
    @model_validator(mode="after")
    def _fills_an_email(self) -> EmailMap:
        self._check_keys(InboundEmailPayload, set())
        return self


class StageMap(Strict):
    deal_id: Annotated[str, _template(None)] = Field(
        description="the CRM mirror's deal id: {recordId}, or a field of the event such as an enriched external id")
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
    _check_shape(data)
    if not isinstance(data, list):
        if array_only:
            raise WebhookError(f"body: a JSON array of events was expected, got {type(data).__name__}")
        return [(data, "body")]
    if not data:
        raise WebhookError("body: the array holds no events")
    if len(data) > MAX_EVENTS:
        raise WebhookError(f"body: {len(data)} events, over the limit of {MAX_EVENTS}; split the batch")
    return [(item, f"body[{i}]") for i, item in enumerate(data)]


def _check_shape(data: Any) -> None:
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


def _show(value: Any) -> str:
    """A value from the body in a message: quoted, and short whatever the sender put there."""
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


# --- generic ----------------------------------------------------------------------------------


def parse_generic(body: bytes) -> list[Mapped]:
    """Our own CRMEvent JSON, one object or an array. The external id is "<source>:<id>", the identity of a CRMEvent."""
    events = [_validate(CRMEvent, item, where) for item, where in _items(body)]
    return [Mapped(external_id=f"{e.source}:{e.id}", kind=e.type, event=e) for e in events]


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
        """The subscription type; the generic object.propertyChange on object type 0-3 reads as deal.propertyChange."""
        family, _, action = self.subscriptionType.partition(".")
        if family == "object" and self.objectTypeId in HUBSPOT_OBJECT_TYPES:
            return f"{HUBSPOT_OBJECT_TYPES[self.objectTypeId]}.{action}"
        return self.subscriptionType

    def external_id(self) -> str:
        # HubSpot documents eventId as not guaranteed unique; with the portal, subscription and time it is, and
        # all four stay the same when HubSpot retries a delivery (attemptNumber is what changes).
        return f"hs-{self.portalId}-{self.subscriptionId}-{self.eventId}-{self.occurredAt}"


def parse_hubspot(body: bytes, mapping: HubSpotMapping, crm: CRMSource) -> list[Mapped]:
    """A HubSpot webhook batch (a JSON array of events). Only deal stage changes become events; see hubspot.yaml."""
    events = [(_validate(_HubSpotEvent, item, where), where) for item, where in _items(body, array_only=True)]
    return [_hubspot_event(event, where, mapping, crm) for event, where in events]


def _hubspot_event(event: _HubSpotEvent, where: str, mapping: HubSpotMapping, crm: CRMSource) -> Mapped:
    kind, external_id = event.kind(), event.external_id()
    if kind not in mapping.events:
        why = " (HubSpot sends only the new object's id, not its properties)" if kind.endswith(".creation") else ""
        return _ignored(external_id, kind, f"{kind} is not mapped to a salesloop event{why}")
    if event.propertyName != mapping.stage_property:
        return _ignored(external_id, kind, f"{kind} of {_show(event.propertyName)}, not of {mapping.stage_property!r}")
    if event.objectId is None or event.propertyValue is None:
        raise WebhookError(f"{where}: a {kind} event needs objectId and propertyValue")
    to_stage = mapping.stages.get(event.propertyValue)
    if to_stage is None:
        return _ignored(external_id, kind, f"{mapping.stage_property} {_show(event.propertyValue)} is not under stages in the "
                                           "HubSpot mapping; add the pipeline stage to take these changes")
    deal_id = mapping.deal_id.format(objectId=event.objectId, portalId=event.portalId)
    payload = DealStageChangePayload(deal_id=deal_id, from_stage=_current_stage(crm, deal_id, f"{where}.objectId"), to_stage=to_stage)
    return Mapped(external_id=external_id, kind=kind, event=CRMEvent(
        id=external_id, type="deal_stage_change", occurred_at=_from_ms(event.occurredAt), source=mapping.source, payload=payload))


def _current_stage(crm: CRMSource, deal_id: str, where: str) -> DealStage:
    """A stage change says only where the deal went: where it came from is the mirror's current stage."""
    try:
        return crm.deal(deal_id).stage
    except CRMDataError:
        raise WebhookError(f"{where}: deal {deal_id!r} is not in the CRM mirror; sync the mirror or fix deal_id in the mapping") from None


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
    events = [_change_event(item, where) for item, where in _items(body)]
    records = sum(max(len(header.recordIds), 1) for header, _, _ in events)
    if records > MAX_EVENTS:  # each record named is an event of its own; checked before any is looked up
        raise WebhookError(f"body: {records} events (one per record named), over the limit of {MAX_EVENTS}; split the batch")
    return [mapped for header, fields, where in events for mapped in _salesforce_event(header, fields, where, mapping, crm)]


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
    payload = _stage_change(section, header, values, where, crm) if isinstance(section, StageMap) else _filled(section, event_type, values)
    if isinstance(payload, str):
        return _ignored(external_id, kind, f"{header.entityName} {record_id}: {payload}")
    return Mapped(external_id=external_id, kind=kind, event=CRMEvent(
        id=external_id, type=event_type, occurred_at=_from_ms(header.commitTimestamp), source=mapping.source, payload=payload))


def _stage_change(section: StageMap, header: _ChangeEventHeader, values: dict[str, Any], where: str,
                  crm: CRMSource) -> DealStageChangePayload | str:
    """The payload, or why the change is ignored."""
    if section.stage_field not in header.changedFields:
        return f"changed {', '.join(header.changedFields) or 'nothing'}, not {section.stage_field}"
    value = values.get(section.stage_field)
    if not isinstance(value, str):
        raise WebhookError(f"{where}.{section.stage_field}: listed in changedFields but the event holds no text value")
    to_stage = section.stages.get(value)
    if to_stage is None:
        return f"{section.stage_field} {_show(value)} is not under deal_stage_change.stages in the Salesforce mapping; add it"
    names = {name for _, name, _, _ in string.Formatter().parse(section.deal_id) if name is not None}
    if names - {"recordId"} and len(header.recordIds) > 1:
        return f"one event for {len(header.recordIds)} records, and deal_id reads event fields that cannot tell them apart"
    missing = sorted(n for n in names if values.get(n) in (None, ""))
    if missing:
        raise WebhookError(f"{where}: no {', '.join(missing)}, which deal_id in the Salesforce mapping needs; "
                           f"add it as an enriched field of {header.entityName}ChangeEvent")
    deal_id = section.deal_id.format(**{n: values[n] for n in names})
    return DealStageChangePayload(deal_id=deal_id, from_stage=_current_stage(crm, deal_id, where), to_stage=to_stage)


def _filled(section: FieldMap, event_type: EventType, values: dict[str, Any]) -> NewLeadPayload | InboundEmailPayload | str:
    """The payload filled by the section's fields, tables and defaults, or why the record is ignored."""
    for path, expected in section.when.items():
        actual = _lookup(values, path)
        if actual != expected:
            return f"{path} is {_show(actual)}, not {expected!r}, so it does not become {event_type}"
    filled = {key: value for key, source in section.fields.items() if (value := _read(values, source)) is not None}
    if isinstance(section, LeadMap):
        problem = _apply_tables(section, filled)
        if problem:
            return problem
    model = NewLeadPayload if event_type == "new_lead" else InboundEmailPayload
    try:
        return model.model_validate({**section.defaults, **filled})
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3]]
        return f"cannot fill a {event_type} ({'; '.join(problems)}); map the field or give it a default in the mapping"


def _apply_tables(section: LeadMap, filled: dict[str, Any]) -> str | None:
    """Industry through its table (an unknown value is a lead we do not serve); region and time zone from the country."""
    if "industry" in filled:
        industry = section.industries.get(str(filled["industry"]))
        if industry is None:
            return f"industry {_show(filled['industry'])} is not under new_lead.industries in the Salesforce mapping"
        filled["industry"] = industry
    country = filled.get("country")
    place = section.countries.get(str(country))
    if place is not None:
        filled.setdefault("region", place.region)
        filled.setdefault("timezone", place.timezone)
    elif country is not None and not {"region", "timezone"} <= set(filled) | set(section.defaults):
        return f"country {_show(country)} is not under new_lead.countries in the Salesforce mapping, which gives region and time zone"
    return None


def _read(values: dict[str, Any], source: FieldSource) -> Any:
    """A field's value, or the present parts of a list joined by spaces; None when nothing is there."""
    if isinstance(source, str):
        value = _lookup(values, source)
        return None if value == "" else value
    parts = [str(v) for v in (_lookup(values, path) for path in source) if v not in (None, "")]
    return " ".join(parts) or None


def _lookup(values: dict[str, Any], path: str) -> Any:
    """The value at a dotted path such as Name.FirstName: compound fields (Name, Address) arrive as nested objects."""
    value: Any = values
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value
