"""Webhook signatures and bodies: HubSpot batches and Salesforce change events, shaped as the vendors document them,
mapped onto CRM events against the demo CRM; every bad body is one bounded message naming the field."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from configs.loader import ConfigError
from service.signatures import (
    HMAC_HEADER,
    SignatureError,
    hubspot_signed_uri,
    sign_hmac_sha256,
    sign_hubspot_v3,
    verify_hmac_sha256,
    verify_hubspot_v3,
)
from service.webhooks import (
    MAPPINGS_DIR,
    MAX_ERROR_CHARS,
    HubSpotMapping,
    SalesforceMapping,
    WebhookError,
    load_mapping,
    parse_generic,
    parse_hubspot,
    parse_salesforce,
)
from tools.crm.records import Deal
from tools.crm.source import JsonSnapshotCRM

SECRET = "hs-client-secret-7d1e"
URI = "https://salesloop.example.com/webhooks/hubspot?portal=62515"
NOW_MS = 1_764_000_000_000
OCCURRED_MS = 1_763_999_990_000  # 10 s before NOW_MS


@pytest.fixture(scope="module")
def crm(demo_source: Path) -> JsonSnapshotCRM:
    return JsonSnapshotCRM(demo_source / "crm")


@pytest.fixture(scope="module")
def open_deal(demo_source: Path) -> Deal:
    deals = [Deal.model_validate(d) for d in json.loads((demo_source / "crm" / "deals.json").read_text())]
    return next(d for d in deals if d.outcome == "open" and d.stage != "negotiation")


@pytest.fixture(scope="module")
def hubspot() -> HubSpotMapping:
    return load_mapping("hubspot")


@pytest.fixture(scope="module")
def salesforce() -> SalesforceMapping:
    return load_mapping("salesforce")


def _object_id(deal: Deal) -> int:
    return int(deal.id.removeprefix("deal-"))  # the shipped template is deal-{objectId:0>4}


# --- HubSpot signatures -------------------------------------------------------------------------


def _signed(body: bytes, uri: str = URI) -> tuple[str, str]:
    return sign_hubspot_v3(SECRET, "POST", uri, body, str(NOW_MS)), str(NOW_MS)


def test_hubspot_v3_signature_is_the_documented_formula():
    body = b'[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000}]'
    source = ("POST" + URI + body.decode() + str(NOW_MS)).encode("utf-8")
    expected = base64.b64encode(hmac.new(SECRET.encode(), source, hashlib.sha256).digest()).decode()
    assert sign_hubspot_v3(SECRET, "POST", URI, body, str(NOW_MS)) == expected
    verify_hubspot_v3(SECRET, "POST", URI, body, expected, str(NOW_MS), now_ms=NOW_MS + 1000)


def test_hubspot_signed_uri_decodes_only_the_listed_escapes():
    assert hubspot_signed_uri("https://h.example/p?x=a%3Ab%2Fc%3fd%40e%20f%26g") == "https://h.example/p?x=a:b/c?d@e%20f%26g"
    body = b"[]"
    signature, ts = _signed(body, uri="https://h.example/p?next=a:b")  # HubSpot signs the decoded form
    verify_hubspot_v3(SECRET, "POST", "https://h.example/p?next=a%3Ab", body, signature, ts, now_ms=NOW_MS)


@pytest.mark.parametrize("change, expected", [
    ({"secret": "another-secret"}, "does not match"),
    ({"body": b'[{"eventId":2}]'}, "does not match"),
    ({"uri": "https://evil.example/webhooks/hubspot?portal=62515"}, "does not match"),
    ({"signature": None}, "missing X-HubSpot-Signature-v3"),
    ({"timestamp": None}, "missing X-HubSpot-Request-Timestamp"),
    ({"timestamp": "2025-11-24T16:00:00Z"}, "milliseconds since the epoch"),
    ({"now_ms": NOW_MS + 301_000}, "stale request: X-HubSpot-Request-Timestamp is 301 s old, over the 300 s limit"),
    ({"now_ms": NOW_MS - 400_000}, "400 s in the future"),
    ({"signature": "sïgnature"}, "does not match"),
])
def test_hubspot_v3_rejections_say_what_is_wrong_and_never_the_secret(change, expected):
    body = b'[{"eventId":1}]'
    signature, ts = _signed(body)
    # Signed over the real request; verified against the request with one thing changed.
    args = {"secret": SECRET, "body": body, "uri": URI, "signature": signature, "timestamp": ts, "now_ms": NOW_MS, **change}
    with pytest.raises(SignatureError) as info:
        verify_hubspot_v3(args["secret"], "POST", args["uri"], args["body"], args["signature"], args["timestamp"], args["now_ms"])
    assert expected in str(info.value)
    assert SECRET not in str(info.value)


def test_an_empty_secret_is_a_server_error_not_a_pass():
    with pytest.raises(ValueError, match="no webhook secret configured"):
        verify_hmac_sha256("", b"{}", sign_hmac_sha256("x", b"{}"))


# --- our HMAC header ----------------------------------------------------------------------------


def test_hmac_header_round_trip():
    body = b'{"id": "evt-1"}'
    header = sign_hmac_sha256(SECRET, body)
    assert header == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert HMAC_HEADER == "X-Salesloop-Signature"
    verify_hmac_sha256(SECRET, body, header)
    verify_hmac_sha256(SECRET, body, header.upper().replace("SHA256=", "sha256="))  # hex case does not matter


@pytest.mark.parametrize("secret, body, header, expected", [
    ("wrong-secret", b'{"id": "evt-1"}', None, "does not match the body"),
    (SECRET, b'{"id": "evt-2"}', None, "does not match the body"),
    (SECRET, b'{"id": "evt-1"}', "", "missing X-Salesloop-Signature header"),
    (SECRET, b'{"id": "evt-1"}', "sha1=abc", "must be sha256= followed by 64 hex digits"),
    (SECRET, b'{"id": "evt-1"}', "sha256=" + "zz" * 32, "must be sha256= followed by 64 hex digits"),
])
def test_hmac_rejections(secret, body, header, expected):
    signed = sign_hmac_sha256(SECRET, b'{"id": "evt-1"}')
    with pytest.raises(SignatureError) as info:
        verify_hmac_sha256(secret, body, signed if header is None else header)
    assert expected in str(info.value)
    assert SECRET not in str(info.value)


# --- HubSpot bodies -----------------------------------------------------------------------------


def _hubspot_event(**fields) -> dict:
    """One event of a batch, in the shape of HubSpot's documented examples."""
    return {"eventId": 3816279340, "subscriptionId": 25, "portalId": 62515, "appId": 1160452, "occurredAt": OCCURRED_MS,
            "subscriptionType": "deal.propertyChange", "attemptNumber": 0, "objectId": 151, "propertyName": "dealstage",
            "propertyValue": "contractsent", "changeSource": "CRM_UI", "sourceId": "userId:45678", **fields}


def _body(*events: dict) -> bytes:
    return json.dumps(list(events)).encode()


def test_hubspot_batch_maps_a_stage_change_fetches_a_new_contact_and_ignores_what_it_cannot_fill(hubspot, crm, open_deal):
    batch = _body(
        _hubspot_event(objectId=_object_id(open_deal)),
        {"eventId": 1, "subscriptionId": 12345, "portalId": 62515, "occurredAt": 1564113600000, "subscriptionType": "contact.creation",
         "attemptNumber": 0, "objectId": 123, "changeSource": "CRM", "changeFlag": "NEW", "appId": 54321},
        _hubspot_event(eventId=7, subscriptionType="contact.propertyChange", propertyName="lifecyclestage", propertyValue="subscriber"),
        _hubspot_event(eventId=8, propertyName="amount", propertyValue="125000"),
        _hubspot_event(eventId=9, propertyValue="1234567"),  # a custom pipeline's stage id
    )
    stage, creation, contact_change, amount, custom = parse_hubspot(batch, hubspot, crm)

    assert stage.external_id == f"hs-62515-25-3816279340-{OCCURRED_MS}" == stage.event.id
    assert stage.kind == "deal.propertyChange"
    assert stage.event.type == "deal_stage_change" and stage.event.source == "hubspot"
    assert stage.event.occurred_at == datetime(2025, 11, 24, 15, 59, 50, tzinfo=timezone.utc)
    assert stage.event.payload.model_dump() == {"deal_id": open_deal.id, "from_stage": open_deal.stage, "to_stage": "negotiation"}

    # HubSpot sends the new contact's id only: the event is queued to be completed by fetching the contact.
    assert creation.external_id == "hs-62515-12345-1-1564113600000" == creation.event.id
    assert creation.event.type == "crm_change" and creation.event.payload.model_dump() == {
        "system": "hubspot", "change": "contact.creation", "object_type": "contact", "record_id": "123", "values": {}}
    assert "contact.propertyChange is not mapped" in contact_change.ignored
    assert amount.ignored == "deal.propertyChange of 'amount', not of 'dealstage'"
    assert "dealstage '1234567' is not under stages" in custom.ignored


def test_a_retried_hubspot_delivery_keeps_its_external_id(hubspot, crm, open_deal):
    first = _hubspot_event(objectId=_object_id(open_deal))
    retry = {**first, "attemptNumber": 3}
    assert parse_hubspot(_body(first), hubspot, crm)[0].external_id == parse_hubspot(_body(retry), hubspot, crm)[0].external_id


def test_generic_object_subscription_on_deals_reads_as_a_deal_change(hubspot, crm, open_deal):
    event = _hubspot_event(subscriptionType="object.propertyChange", objectTypeId="0-3", objectId=_object_id(open_deal),
                           propertyValue="closedwon")
    mapped = parse_hubspot(_body(event), hubspot, crm)[0]
    assert mapped.kind == "deal.propertyChange"
    assert mapped.event.payload.to_stage == "closed_won"


def test_a_stage_change_of_a_deal_the_mirror_lacks_is_fetched_by_hubspots_own_id(hubspot, crm):
    [mapped] = parse_hubspot(_body(_hubspot_event(objectId=9999)), hubspot, crm)
    assert mapped.event.type == "crm_change"
    assert (mapped.event.payload.object_type, mapped.event.payload.record_id, mapped.event.payload.values) == ("deal", "9999", {"to_stage": "negotiation"})


def _problem(parse, body: bytes, *args) -> str:
    """What is wrong with a body: the whole delivery's error, or the first event's rejection."""
    try:
        mapped = parse(body, *args)
    except WebhookError as exc:
        return str(exc)
    rejected = [m.rejected for m in mapped if m.rejected]
    assert rejected, f"nothing rejected in {mapped}"
    return rejected[0]


@pytest.mark.parametrize("body, expected", [
    (b'[{"eventId": 1,', "body: not valid JSON: line 1 column 16: Expecting property name"),
    (b"\xff\xfe[]", "body: not valid JSON"),
    (b"[]", "body: the array holds no events"),
    (json.dumps(_hubspot_event()).encode(), "body: a JSON array of events was expected, got dict"),
    (_body(_hubspot_event(), {k: v for k, v in _hubspot_event().items() if k != "occurredAt"}), "body[1].occurredAt: Field required"),
    (_body(_hubspot_event(portalId="sixty-two")), "body[0].portalId: Input should be a valid integer"),
    (_body(_hubspot_event(objectId=None)), "body[0].objectId: a deal.propertyChange event names its object"),
    (_body(_hubspot_event(occurredAt=-5)), "body[0].occurredAt: Input should be greater than or equal to 0"),
    (_body(*[_hubspot_event(eventId=i) for i in range(1001)]), "body: 1001 events, over the limit of 1000"),
])
def test_malformed_hubspot_bodies_name_the_field(hubspot, crm, body, expected):
    assert _problem(parse_hubspot, body, hubspot, crm).startswith(expected)


def test_error_messages_are_bounded_and_do_not_echo_the_body(hubspot, crm):
    flood = "x" * 10_000
    for mapped in parse_hubspot(_body(*[{"subscriptionType": flood} for _ in range(5)]), hubspot, crm):
        assert len(mapped.rejected) <= MAX_ERROR_CHARS and len(mapped.kind) <= 100
        assert "xxxxxxxxxx" not in mapped.rejected


# --- Salesforce bodies --------------------------------------------------------------------------


def _header(**fields) -> dict:
    return {"entityName": "Lead", "recordIds": ["00Q5f000004XyZ1EAK"], "changeType": "CREATE",
            "changeOrigin": "com/salesforce/api/soap/60.0;client=SfdcInternalAPI/",
            "transactionKey": "00006bec-ce66-0611-9018-30a98446c9f2", "sequenceNumber": 1, "commitTimestamp": 1714156685000,
            "commitNumber": 1100670838951, "commitUser": "0055f000005mc66AAA", "nulledFields": [], "diffFields": [],
            "changedFields": [], **fields}


def _lead(**fields) -> dict:
    """A Lead CREATE change event payload: every field of the new record, compound fields nested."""
    return {"ChangeEventHeader": _header(),
            "Name": {"Salutation": "Mr.", "FirstName": "Stefan", "LastName": "Wagner"},
            "Company": "Falkenrath Antriebstechnik GmbH", "Title": "Dir. of Ops", "Email": "s.wagner@falkenrath-antriebe.de",
            "Phone": "+49 711 555 0142", "Industry": "Manufacturing", "NumberOfEmployees": 850, "AnnualRevenue": None,
            "Address": {"Street": "Industriestr. 4", "City": "Stuttgart", "PostalCode": "70565", "Country": "Germany",
                        "Latitude": None, "Longitude": None, "GeocodeAccuracy": None},
            "LeadSource": "Web", "Status": "Open - Not Contacted", "Description": "Predictive maintenance for three plants?",
            "OwnerId": "0055f000005mc66AAA", "CreatedDate": "2024-04-26T18:38:05.000Z", **fields}


def _envelope(payload: dict, replay_id: int = 12) -> dict:
    return {"schema": "Jx8Hz9ElkIUaBf-heF1ShA", "payload": payload, "event": {"replayId": replay_id}}


def _opportunity(deal_id: str | None, stage: str | None = "Proposal/Price Quote",
                 changed: tuple[str, ...] = ("StageName", "LastModifiedDate"), **header) -> dict:
    """An Opportunity UPDATE: only recordIds and the changed fields. `deal_id` None: a Salesforce id the mirror lacks."""
    header = {"entityName": "Opportunity", "recordIds": [deal_id or "0065f00000AbCdEAAV"], "changeType": "UPDATE",
              "transactionKey": "0005e192-9e62-2554-3880-3c3718bd6308", "commitTimestamp": 1608073758000,
              "changedFields": list(changed), **header}
    return {"ChangeEventHeader": _header(**header), "StageName": stage, "LastModifiedDate": "2020-12-15T23:09:18.000Z"}


def _sf(*items: dict) -> bytes:
    return json.dumps(items[0] if len(items) == 1 else list(items)).encode()


def test_salesforce_lead_create_becomes_a_new_lead(salesforce, crm):
    [mapped] = parse_salesforce(_sf(_lead()), salesforce, crm)
    assert mapped.external_id == "sf-00006bec-ce66-0611-9018-30a98446c9f2-1-00Q5f000004XyZ1EAK" == mapped.event.id
    assert mapped.kind == "Lead CREATE"
    event = mapped.event
    assert (event.type, event.source) == ("new_lead", "salesforce")
    assert event.occurred_at == datetime(2024, 4, 26, 18, 38, 5, tzinfo=timezone.utc)
    assert event.payload.model_dump(exclude_defaults=True) == {
        "lead_id": "00Q5f000004XyZ1EAK", "company": "Falkenrath Antriebstechnik GmbH", "industry": "manufacturing",
        "employees": 850, "country": "Germany", "contact_name": "Stefan Wagner",
        "email": "s.wagner@falkenrath-antriebe.de", "title": "Dir. of Ops", "phone": "+49 711 555 0142",
        "message": "Predictive maintenance for three plants?"}


def test_the_subscriber_envelope_and_the_bare_payload_are_the_same_event(salesforce, crm):
    bare = parse_salesforce(_sf(_lead()), salesforce, crm)
    wrapped = parse_salesforce(_sf(_envelope(_lead())), salesforce, crm)
    assert wrapped == bare
    both = parse_salesforce(_sf(_envelope(_lead()), _lead(ChangeEventHeader=_header(sequenceNumber=2))), salesforce, crm)
    assert [m.external_id.removesuffix("-00Q5f000004XyZ1EAK")[-2:] for m in both] == ["-1", "-2"]


def test_salesforce_opportunity_stage_update_becomes_a_stage_change(salesforce, crm, open_deal):
    [mapped] = parse_salesforce(_sf(_envelope(_opportunity(open_deal.id))), salesforce, crm)
    assert mapped.kind == "Opportunity UPDATE"
    assert mapped.event.type == "deal_stage_change"
    assert mapped.event.occurred_at == datetime(2020, 12, 15, 23, 9, 18, tzinfo=timezone.utc)
    assert mapped.event.payload.model_dump() == {"deal_id": open_deal.id, "from_stage": open_deal.stage, "to_stage": "proposal"}


def test_salesforce_email_message_create_becomes_an_inbound_email(salesforce, crm):
    email = {"ChangeEventHeader": _header(entityName="EmailMessage", recordIds=["02s5f00000AbCdEAAV"]),
             "Incoming": True, "FromAddress": "s.wagner@falkenrath-antriebe.de", "Subject": "Delivery slip",
             "TextBody": "Our rollout moves by three weeks.", "MessageIdentifier": "<20261109.0742@falkenrath-antriebe.de>"}
    [mapped] = parse_salesforce(_sf(email), salesforce, crm)
    assert mapped.event.payload.model_dump() == {"message_id": "<20261109.0742@falkenrath-antriebe.de>",
                                                 "from_email": "s.wagner@falkenrath-antriebe.de", "subject": "Delivery slip",
                                                 "body": "Our rollout moves by three weeks.", "attachments": []}
    [outgoing] = parse_salesforce(_sf({**email, "Incoming": False}), salesforce, crm)
    assert outgoing.ignored == "EmailMessage 02s5f00000AbCdEAAV: Incoming is False, not True, so it does not become inbound_email"


@pytest.mark.parametrize("event, reason", [
    (_lead(ChangeEventHeader=_header(changeType="DELETE")), "Lead DELETE is not mapped to a salesloop event"),
    (_lead(ChangeEventHeader=_header(entityName="Account")), "Account CREATE is not mapped to a salesloop event"),
    (_lead(ChangeEventHeader=_header(changeType="GAP_CREATE")), "Lead GAP_CREATE is a gap event"),
    (_lead(Industry="Banking"), "industry 'Banking' is not under new_lead.industries"),
    (_lead(Email=None), "cannot fill a new_lead (email: Field required)"),
    (_lead(NumberOfEmployees=0), "cannot fill a new_lead (employees: Input should be greater than or equal to 1)"),
    (_opportunity("deal-0151", changed=("Amount", "LastModifiedDate")), "changed Amount, LastModifiedDate, not StageName"),
    (_opportunity("deal-0151", stage="Waiting on Legal"), "StageName 'Waiting on Legal' is not under deal_stage_change.stages"),
])
def test_salesforce_changes_we_cannot_use_are_ignored_with_the_reason(salesforce, crm, event, reason):
    mapped = parse_salesforce(_sf(event), salesforce, crm)
    assert all(m.event is None for m in mapped)
    assert reason in mapped[0].ignored


def test_a_lead_without_region_time_zone_or_country_is_a_lead_all_the_same(salesforce, crm):
    """Normalize derives region and time zone from country and state, or marks them unknown (tests/test_crm_roundtrip.py)."""
    [unknown] = parse_salesforce(_sf(_lead(Address={"Country": "Atlantis"})), salesforce, crm)
    [none] = parse_salesforce(_sf(_lead(Address=None)), salesforce, crm)
    assert unknown.event.payload.country == "Atlantis" and unknown.event.payload.timezone is None
    assert none.event.payload.country is None and none.event.payload.region is None


def test_a_lead_with_flat_fields_as_rest_reads_them_maps_too(salesforce, crm):
    flat = _lead(Name=None, Address=None, FirstName="Stefan", LastName="Wagner", Country="Germany", State="Baden-Württemberg")
    [mapped] = parse_salesforce(_sf(flat), salesforce, crm)
    payload = mapped.event.payload
    assert (payload.contact_name, payload.country, payload.state) == ("Stefan Wagner", "Germany", "Baden-Württemberg")


def test_an_opportunity_update_with_only_its_id_and_stage_is_fetched_by_its_salesforce_id(salesforce, crm):
    [mapped] = parse_salesforce(_sf(_opportunity(None, stage="Closed Won")), salesforce, crm)
    assert mapped.event.type == "crm_change" and mapped.event.payload.model_dump() == {
        "system": "salesforce", "change": "Opportunity UPDATE", "object_type": "deal", "record_id": "0065f00000AbCdEAAV",
        "values": {"to_stage": "closed_won"}}
    [no_value] = parse_salesforce(_sf(_opportunity(None, stage=None)), salesforce, crm)  # the stage is read from the record
    assert no_value.event.payload.values == {}


def test_one_bad_event_is_rejected_alone(salesforce, crm):
    good, bad = parse_salesforce(_sf(_lead(), _lead(ChangeEventHeader=_header(sequenceNumber="x"))), salesforce, crm)
    assert good.event.type == "new_lead" and bad.event is None
    assert bad.rejected.startswith("body[1].ChangeEventHeader.sequenceNumber: Input should be a valid integer")


def test_a_lead_without_a_title_takes_the_mapping_default(salesforce, crm):
    [mapped] = parse_salesforce(_sf(_lead(Title=None)), salesforce, crm)
    assert mapped.event.payload.title == ""


@pytest.mark.parametrize("body, expected", [
    (_sf(_lead(ChangeEventHeader=_header(changeType="MERGE"))), "body.ChangeEventHeader.changeType: Input should be 'CREATE'"),
    (_sf(_envelope(_lead(ChangeEventHeader=_header(commitTimestamp="yesterday")))),
     "body.payload.ChangeEventHeader.commitTimestamp: Input should be a valid integer"),
    (_sf(_lead(), {"Company": "Acme"}), "body[1]: no ChangeEventHeader; send a change event payload or the envelope"),
    (_sf(_envelope("not an object")), "body.payload: no ChangeEventHeader"),
    (_sf(_lead(ChangeEventHeader=_header(recordIds=[]))), "body.ChangeEventHeader.recordIds: empty"),
    (_sf(_opportunity("deal-0151", stage=7)), "body.StageName: 7 is not text"),
])
def test_malformed_salesforce_bodies_name_the_field(salesforce, crm, body, expected):
    assert _problem(parse_salesforce, body, salesforce, crm).startswith(expected)


# --- our own CRMEvent JSON ----------------------------------------------------------------------

STAGE_EVENT = {"id": "evt-0006", "type": "deal_stage_change", "occurred_at": "2026-11-18T15:30:00Z", "source": "demo-crm",
               "payload": {"deal_id": "deal-0152", "from_stage": "qualification", "to_stage": "proposal"}}


def test_generic_events_one_or_a_list():
    [one] = parse_generic(json.dumps(STAGE_EVENT).encode())
    assert one.external_id == "demo-crm:evt-0006" and one.kind == "deal_stage_change"
    assert one.event.payload.to_stage == "proposal"
    other = {**STAGE_EVENT, "source": "web-form"}  # the same id from another source is another event
    assert [m.external_id for m in parse_generic(json.dumps([STAGE_EVENT, other]).encode())] == ["demo-crm:evt-0006", "web-form:evt-0006"]


def test_generic_event_errors_name_the_field_and_leave_the_good_events():
    broken = copy.deepcopy(STAGE_EVENT)
    broken["id"], broken["payload"]["to_stage"] = "evt-0007", "won"
    good, bad = parse_generic(json.dumps([STAGE_EVENT, broken]).encode())
    assert good.event is not None and bad.external_id == "demo-crm:evt-0007"
    assert bad.rejected.startswith("body[1].payload.to_stage: Input should be 'prospecting'")
    assert _problem(parse_generic, json.dumps({**STAGE_EVENT, "type": "meeting"}).encode()).startswith(
        "body.type: Input should be 'new_lead', 'inbound_email', 'deal_stage_change' or 'crm_change'")


# --- mapping files ------------------------------------------------------------------------------


def test_the_shipped_mapping_files_validate(hubspot, salesforce):
    assert set(hubspot.stages.values()) == {"prospecting", "qualification", "proposal", "negotiation", "closed_won", "closed_lost"}
    assert hubspot.stages["appointmentscheduled"] == "prospecting"
    assert set(salesforce.events.values()) == {"new_lead", "inbound_email", "deal_stage_change"}
    assert len(salesforce.deal_stage_change.stages) == 10


def _mapping_error(tmp_path: Path, kind: str, edit) -> str:
    raw = yaml.safe_load((MAPPINGS_DIR / f"{kind}.yaml").read_text())
    edit(raw)
    path = tmp_path / f"{kind}.yaml"
    path.write_text(json.dumps(raw))  # JSON is YAML
    with pytest.raises(ConfigError) as info:
        load_mapping(kind, path)
    assert str(info.value).startswith(f"{path}: ")
    return str(info.value)


@pytest.mark.parametrize("kind, edit, expected", [
    ("hubspot", lambda m: m["stages"].update(closedwon="won"), "stages.closedwon: Input should be 'prospecting'"),
    ("hubspot", lambda m: m.update(deal_id="deal-{objectId.__class__}"), "deal_id: Value error, {objectId.__class__}"),
    ("hubspot", lambda m: m.update(deal_id="deal-{dealname}"), "use objectId, portalId"),
    ("hubspot", lambda m: m.update(deal_id="deal-0151"), "names no field"),
    ("hubspot", lambda m: m["events"].update({"contact.creation": "deal_stage_change"}), "cannot be made from a HubSpot webhook"),
    ("hubspot", lambda m: m.update(pipeline="default"), "pipeline: unknown key"),
    ("salesforce", lambda m: m["events"].update({"Lead": "new_lead"}), "write the entity and change type"),
    ("salesforce", lambda m: m["events"].update({"Opportunity CREATE": "deal_stage_change"}), "made from UPDATE events only"),
    ("salesforce", lambda m: m["new_lead"]["fields"].pop("email"), "NewLeadPayload needs email"),
    ("salesforce", lambda m: m["new_lead"]["fields"].update(budget="AnnualRevenue"), "budget is not a NewLeadPayload field"),
    ("salesforce", lambda m: m["new_lead"].update(countries={}), "new_lead.countries: unknown key"),
    ("salesforce", lambda m: m.pop("inbound_email"), "maps to inbound_email; add the inbound_email: section"),
])
def test_a_broken_mapping_file_is_one_line_naming_file_and_key(tmp_path, kind, edit, expected):
    assert expected in _mapping_error(tmp_path, kind, edit)


def test_an_unknown_source_kind_has_no_mapping():
    with pytest.raises(ConfigError, match="no webhook mapping for source kind 'pipedrive'; use one of hubspot, salesforce"):
        load_mapping("pipedrive")
