"""Hostile input: never a 5xx, never a stack trace in a response, never partial state.

Three layers, all against the real code (the app is the real one, built once per module like tests/test_service.py,
with no workers and no model: nothing here starts a run):
  * hypothesis over the event models and the webhook parsers: arbitrary JSON values (deep nesting, huge text,
    lone surrogates, NaN, huge numbers), raw bytes (invalid UTF-8), and valid events with hostile edits
    (wrong types, unknown fields, a type that does not match the payload). Only ValidationError / WebhookError
    may come out, and every event the model accepts survives JSON unchanged, as the queue stores it;
  * schemathesis over the OpenAPI document: every operation with generated (and deliberately invalid) data, as an
    admin and with no or a random token: never a 5xx, never a traceback;
  * signed webhook deliveries of generated bodies for the generic, HubSpot and Salesforce routes, ids drawn from a
    small pool so duplicates happen within a batch and across requests: after each, the queue holds exactly the
    events the 202 answer calls new, and nothing at all after a 4xx; plus one explicit test per known hostile shape.

Hypothesis writes nothing into the repository: database=None, and its caches go to the temporary directory.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from agents.services import Services
from configs import load_settings
from service.app import create_app
from service.signatures import HMAC_HEADER, sign_hmac_sha256, sign_hubspot_v3
from service.webhooks import (
    MAX_EVENTS,
    WebhookError,
    check_shape,
    load_mapping,
    parse_generic,
    parse_hubspot,
    parse_salesforce,
)
from tests.conftest import FIXED_NOW, config_dict
from tools.crm.event_file import EventFileError, load_events
from tools.crm.records import MAX_COUNT, CRMEvent

# Hypothesis keeps caches under ./.hypothesis unless told otherwise; the repository is no place for them.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "salesloop-hypothesis")

SECRETS = {"SALESLOOP_WEBHOOK_SECRET": "generic-secret", "SALESLOOP_HUBSPOT_APP_SECRET": "hubspot-app-secret",
           "SALESLOOP_SALESFORCE_SECRET": "salesforce-secret"}
MAX_BODY = 16_000  # service.max_body_bytes here: small, so generated bodies cross it
STAGE_DEAL_OBJECT = 152  # deal-0152: an open demo deal (tests/test_service.py)
LEAKS = ("Traceback", 'File "', "site-packages")


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                                           HealthCheck.large_base_example])


# --- strategies -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """JSON text put into a body as is: what json.dumps would refuse or cannot make (5000-digit numbers, 1e400)."""

    text: str


ANY_CHAR = st.characters(exclude_categories=())  # lone surrogates included
ANY_TEXT = st.text(ANY_CHAR, max_size=30)
CLEAN_TEXT = st.text(max_size=30)  # any valid Unicode: NUL, controls, RTL marks, combining marks, astral planes
HUGE_TEXT = st.builds(lambda c, n: c * n, ANY_CHAR, st.integers(5_000, 60_000))
NUMBERS = st.integers() | st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**300, -(10**4000)]) | st.floats()
RAW_LITERALS = st.sampled_from([Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("1e400"), Raw("-1e400"), Raw("9" * 5000),
                                Raw("-" + "1" * 4301), Raw("0." + "0" * 5000 + "1"), Raw("1e-400"), Raw("1E+99999")])
DEEP = st.integers(50, 3000).map(lambda n: Raw("[" * n + "]" * n)) | st.integers(50, 3000).map(
    lambda n: Raw('{"a":' * n + "1" + "}" * n))
FIELDS = st.sampled_from(["id", "type", "occurred_at", "source", "payload", "deal_id", "from_stage", "to_stage", "lead_id",
                          "employees", "message", "consents", "attachments", "eventId", "objectId", "ChangeEventHeader",
                          "recordIds", "__proto__", "constructor", ""])
KEYS = FIELDS | ANY_TEXT
SCALARS = st.none() | st.booleans() | NUMBERS | ANY_TEXT | CLEAN_TEXT


def json_like(leaves: st.SearchStrategy) -> st.SearchStrategy:
    return st.recursive(leaves, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(KEYS, kids, max_size=4),
                        max_leaves=12)


PY_VALUES = json_like(SCALARS | HUGE_TEXT)  # Python values, as json.loads makes them
WIRE_VALUES = json_like(SCALARS | RAW_LITERALS | DEEP)  # what may be written into a body


def dump(value: Any, ascii_only: bool = True) -> bytes:
    """JSON text for a value with Raw parts; lone surrogates become \\ud800 escapes, or raw (invalid UTF-8) bytes."""

    def text(v: Any) -> str:
        if isinstance(v, Raw):
            return v.text
        if isinstance(v, dict):
            return "{" + ",".join(json.dumps(k, ensure_ascii=ascii_only) + ":" + text(x) for k, x in v.items()) + "}"
        if isinstance(v, list):
            return "[" + ",".join(text(x) for x in v) + "]"
        return json.dumps(v, ensure_ascii=ascii_only)

    return text(value).encode("utf-8", "surrogatepass")


AWARE_TIMES = st.datetimes(timezones=st.just(timezone.utc) | st.timezones())  # zones' historic offsets have seconds
TIMES = st.datetimes(timezones=st.none() | st.just(timezone.utc) | st.timezones())
INDUSTRIES = st.sampled_from(["manufacturing", "saas", "education", "medical_devices"])
REGIONS = st.sampled_from(["NA", "EMEA", "APAC", "LATAM"])
STAGES = st.sampled_from(["prospecting", "qualification", "proposal", "negotiation", "closed_won", "closed_lost"])
COUNTS = st.integers(min_value=0, max_value=MAX_COUNT)


IDS = st.text(min_size=1, max_size=200)  # CRMEvent.id and .source: 1-200 and 1-100 characters
SOURCES = st.text(min_size=1, max_size=100)


def event_dicts(ids: st.SearchStrategy = IDS, text: st.SearchStrategy = CLEAN_TEXT, sources: st.SearchStrategy = SOURCES,
                times: st.SearchStrategy = AWARE_TIMES) -> st.SearchStrategy[dict]:
    """CRM events of every type as Python values, every field drawn; valid when the text strategies make valid text
    and the times are aware."""
    consents = st.dictionaries(text, st.fixed_dictionaries({"granted": st.booleans(), "at": AWARE_TIMES},
                                                           optional={"source": st.none() | text}), max_size=2)
    lead = st.fixed_dictionaries(
        {"lead_id": text, "company": text, "industry": INDUSTRIES, "employees": st.integers(1, MAX_COUNT), "region": REGIONS,
         "country": text, "timezone": text, "contact_name": text, "email": text, "title": text},
        optional={"phone": st.none() | text, "budget_usd": st.none() | COUNTS, "message": text, "web_visits": COUNTS,
                  "email_opens": COUNTS, "demo_requested": st.booleans(), "consents": consents})
    attachment = st.fixed_dictionaries({"filename": text, "content_type": text, "content_base64": text})
    email = st.fixed_dictionaries({"message_id": text, "from_email": text, "subject": text, "body": text},
                                  optional={"attachments": st.lists(attachment, max_size=2)})
    stage = st.fixed_dictionaries({"deal_id": text, "from_stage": STAGES, "to_stage": STAGES})
    typed = st.sampled_from([("new_lead", lead), ("inbound_email", email), ("deal_stage_change", stage)])
    return typed.flatmap(lambda kind: st.fixed_dictionaries(
        {"id": ids, "type": st.just(kind[0]), "occurred_at": times, "source": sources, "payload": kind[1]}))


def events(**strategies: st.SearchStrategy) -> st.SearchStrategy[CRMEvent]:
    """Valid CRM events of every type (text without lone surrogates, which no valid event holds)."""
    return event_dicts(**strategies).map(CRMEvent.model_validate)


@st.composite
def hostile_edit(draw, item: dict, values: st.SearchStrategy) -> dict:
    """One event with one hostile change: a field deleted, set to anything, an unknown field added, the type swapped."""
    item = copy.deepcopy(item)
    target = item["payload"] if draw(st.booleans()) and isinstance(item.get("payload"), dict) else item
    how = draw(st.sampled_from(["delete", "replace", "unknown", "retype", "huge"]))
    if how == "delete" and target:
        del target[draw(st.sampled_from(sorted(target)))]
    elif how == "replace" and target:
        target[draw(st.sampled_from(sorted(target)))] = draw(values)
    elif how == "unknown":
        target[draw(KEYS)] = draw(values)
    elif how == "retype":
        item["type"] = draw(st.sampled_from(["new_lead", "inbound_email", "deal_stage_change", "NEW_LEAD", ""]))
    elif target:
        target[draw(st.sampled_from(sorted(target)))] = draw(HUGE_TEXT)
    return item


# --- 1. the event models and the parsers -------------------------------------------------------------------------


@fuzz(400)
@given(value=PY_VALUES)
def test_the_event_model_refuses_anything_with_a_validation_error_only(value):
    try:
        event = CRMEvent.model_validate(value)
    except ValidationError:
        return
    assert CRMEvent.model_validate_json(event.model_dump_json()) == event  # pragma: no cover - random dicts never pass


@fuzz(300)
@given(event=event_dicts(ids=st.text(ANY_CHAR, min_size=1, max_size=200), text=ANY_TEXT, times=TIMES), data=st.data())
def test_hostile_edits_of_an_event_are_refused_or_survive_json_unchanged(event, data):
    """Whatever the model accepts (lone surrogates and edits included) is what the queue can store and read back."""
    edited = data.draw(hostile_edit(event, PY_VALUES)) if data.draw(st.booleans()) else event
    try:
        accepted = CRMEvent.model_validate(edited)
    except ValidationError:
        return
    text = accepted.model_dump_json()
    assert CRMEvent.model_validate_json(text) == accepted
    text.encode("utf-8")  # strict: storable and sendable as it is


@pytest.mark.parametrize("change", [
    {"payload_company": "\ud800"}, {"payload_message": "ok \udfff"}, {"payload_phone": "\ud83d"},
    {"payload_consents": {"\udc00": {"granted": True, "at": "2026-11-20T09:00:00Z"}}},
    {"payload_consents": {"email": {"granted": True, "at": "2026-11-20T09:00:00Z", "source": "\ud800"}}},
    {"id": "\ud800"}, {"source": "\udbff"},
])
def test_the_model_refuses_text_that_utf8_cannot_hold(change):
    with pytest.raises(ValidationError, match="surrogate|unicode"):
        CRMEvent.model_validate(a_lead("evt-s", **change))


@fuzz(300)
@given(event=events())
def test_valid_events_round_trip_through_json_unchanged(event):
    text = event.model_dump_json()
    back = CRMEvent.model_validate_json(text)
    assert back == event and back.model_dump_json() == text
    assert CRMEvent.model_validate(json.loads(text)) == event  # also as parse_generic reads a body


@pytest.fixture(scope="module")
def mappings():
    return {"hubspot": load_mapping("hubspot"), "salesforce": load_mapping("salesforce")}


class _NoCRM:
    """A CRM mirror with no deals: lookups fail as for an unknown deal."""

    def deal(self, deal_id: str):
        from tools.crm.source import CRMDataError

        raise CRMDataError(f"no deal {deal_id}")


def parsers(mappings) -> list:
    return [parse_generic, lambda b: parse_hubspot(b, mappings["hubspot"], _NoCRM()),
            lambda b: parse_salesforce(b, mappings["salesforce"], _NoCRM())]


BODIES = (st.binary(max_size=300)
          | WIRE_VALUES.map(dump)
          | WIRE_VALUES.map(lambda v: dump(v, ascii_only=False))  # raw UTF-8, lone surrogates as invalid bytes
          | st.tuples(WIRE_VALUES.map(dump), st.binary(min_size=1, max_size=6), st.integers(0, 10**6)).map(
              lambda t: t[0][:t[2] % (len(t[0]) + 1)] + t[1] + t[0][t[2] % (len(t[0]) + 1):]))


@fuzz(400)
@given(body=BODIES)
def test_webhook_parsers_raise_only_webhook_error(mappings, body):
    for parse in parsers(mappings):
        try:
            mapped = parse(body)
        except WebhookError as exc:
            assert 0 < len(str(exc)) <= 300
            continue
        for item in mapped:  # what a parser returns is what the route answers and stores: all of it serialisable
            item.model_dump_json().encode("utf-8")


@fuzz(150)
@given(batch=st.lists(events(ids=st.text(min_size=1, max_size=200)), min_size=1, max_size=4), data=st.data())
def test_parse_generic_maps_each_event_alone(batch, data):
    items = [e.model_dump(mode="json") for e in batch]
    if data.draw(st.booleans()):
        at = data.draw(st.integers(0, len(items) - 1))
        items[at] = data.draw(hostile_edit(items[at], WIRE_VALUES))
    body = dump(items)
    try:
        parsed = json.loads(body)
        check_shape(parsed)
    except (ValueError, RecursionError, WebhookError):
        with pytest.raises(WebhookError):
            parse_generic(body)
        return
    mapped = parse_generic(body)
    assert len(mapped) == len(parsed)
    for item, m in zip(parsed, mapped):
        try:
            expected = CRMEvent.model_validate(item)
        except ValidationError:
            assert m.event is None and m.rejected, m  # a bad event is rejected alone, with its reason
            continue
        assert m.event == expected and m.external_id == f"{expected.source}:{expected.id}"


@fuzz(150)
@given(body=BODIES | st.lists(event_dicts(), min_size=1, max_size=3).map(
    lambda items: json.dumps(items, default=str).encode()))
def test_event_files_raise_only_event_file_error(body):
    """`salesloop run --event FILE` reads the same JSON: only EventFileError, and what loads survives the queue's JSON."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "events.json"
        path.write_bytes(body)
        try:
            loaded = load_events(path)
        except EventFileError as exc:
            assert str(exc).startswith(str(path))
            return
    assert all(CRMEvent.model_validate_json(e.model_dump_json()) == e for e in loaded)


def test_parsers_refuse_extremes_with_webhook_error(mappings):
    """The whole delivery is refused, or every event in it is rejected (which the route answers 400)."""
    bodies = [b"[" * 100_000, b'{"a":' * 100_000, b"9" * 5000, b'{"id": ' + b"1" * 5000 + b"}", b"\xff\xfe\x00",
              b'"\xed\xa0\x80"', b'{"id": "\\ud800"}', b"NaN", b"[" + b"{}," * (MAX_EVENTS) + b"{}]", b"", b"\xef\xbb\xbf{}",
              b"[]", b"null", b"1e400", b"[" + b"1," * 100 + b"1]"]
    for body in bodies:
        for parse in parsers(mappings):
            try:
                mapped = parse(body)
            except WebhookError:
                continue
            assert all(m.rejected for m in mapped), (body[:40], mapped[:2])


# --- 2. the service ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env(tmp_path_factory, demo_source):
    root = tmp_path_factory.mktemp("hostile")
    shutil.copytree(demo_source, root / "data")
    # No model directory: these tests must never need the model, and would fail loudly if anything loaded it.
    raw = config_dict(root / "data", root / "no-model")
    raw["service"] = {"max_body_bytes": MAX_BODY}
    (root / "config.yaml").write_text(yaml.safe_dump(raw))
    services = Services(load_settings(root / "config.yaml", env={}), clock=lambda: FIXED_NOW)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in SECRETS.items():
            patch.setenv(name, value)
        app = create_app(services, start_workers=False)
        store = app.state.tokens
        tokens = {role: store.add(f"hostile-{role}", role, rep_id="rep-nobody" if role == "rep" else None)
                  for role in ("admin", "auditor", "manager", "rep")}
        with TestClient(app) as client:
            yield {"client": client, "app": app, "services": services, "tokens": tokens, "queue": app.state.queue}
    services.close()


def stored(env) -> set[tuple[str, str]]:
    rows = [(item.source, item.external_id) for item in env["queue"].list(limit=1_000_000)]
    assert len(rows) == len(set(rows))
    return set(rows)


def no_leak(answer) -> None:
    assert answer.status_code < 500, f"{answer.status_code}: {answer.text[:1000]}"
    for leak in LEAKS:
        assert leak not in answer.text, answer.text[:1000]
    if answer.status_code >= 400:
        detail = answer.json()["detail"]
        assert isinstance(detail, str) and 0 < len(detail) <= 500, answer.text[:1000]


def settled(answer, source: str, before: set, after: set) -> dict | None:
    """No partial state: a 4xx stores nothing; a 202 stores exactly the events it calls new, each once."""
    if answer.status_code != 202:
        assert after == before, f"{answer.status_code} but the queue changed: {sorted(after - before)[:5]}"
        return None
    body = answer.json()
    seen = set(before)
    for accepted in body["accepted"]:
        key = (source, accepted["external_id"])
        assert accepted["new"] == (key not in seen), accepted
        seen.add(key)
    assert after == seen, "the queue holds something the answer does not mention, or lacks something it accepted"
    return body


def post_signed(env, source: str, body: bytes, headers: dict | None = None):
    secret = SECRETS["SALESLOOP_SALESFORCE_SECRET" if source == "salesforce" else "SALESLOOP_WEBHOOK_SECRET"]
    return env["client"].post(f"/webhooks/{source}", content=body,
                              headers={HMAC_HEADER: sign_hmac_sha256(secret, body), "Content-Type": "application/json",
                                       **(headers or {})})


def post_hubspot(env, body: bytes, timestamp: str | None = None, headers: dict | None = None):
    timestamp = timestamp or str(int(time.time() * 1000))
    signature = sign_hubspot_v3(SECRETS["SALESLOOP_HUBSPOT_APP_SECRET"], "POST", "http://testserver/webhooks/hubspot", body, timestamp)
    return env["client"].post("/webhooks/hubspot", content=body, headers={
        "X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": timestamp, **(headers or {})})


def deliver(env, source: str, body: bytes, **kwargs):
    before = stored(env)
    answer = post_hubspot(env, body, **kwargs) if source == "hubspot" else post_signed(env, source, body, **kwargs)
    no_leak(answer)
    return answer, settled(answer, source, before, stored(env))


# --- 2a. schemathesis over the OpenAPI document --------------------------------------------------------------------


# schemathesis' own pytest integration (schema.parametrize) does not run under pytest 9, so each operation's
# strategies go to a plain hypothesis test here. Its ASGI client runs the app's lifespan and its pytest plugin ends it
# after the test, which closes the app's orchestrator: it gets an app of its own, on the same files.


def test_every_operation_answers_without_a_5xx_or_a_traceback(env):
    """Each operation of the OpenAPI document, with valid and with invalid generated data (path, query, headers, body),
    as an admin, as a rep, and with no token or the generated one: never a 5xx or a traceback, and nothing stored."""
    api = schemathesis.openapi.from_asgi("/openapi.json", create_app(env["services"], start_workers=False))
    operations = [result.ok() for result in api.get_all_operations()]
    assert {"/webhooks/{source}", "/api/runs/{run_id}/decision", "/api/queue/{item_id}/replay"} <= {op.path for op in operations}
    before = stored(env)
    for operation in operations:
        cases = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(GenerationMode.NEGATIVE)

        @fuzz(30)
        @given(case=cases)
        def answers_sanely(case):
            for token in (env["tokens"]["admin"], env["tokens"]["rep"], None):
                response = case.call(headers={"Authorization": f"Bearer {token}"} if token else None)
                case.validate_response(response, checks=[not_a_server_error])
                for leak in LEAKS:
                    assert leak not in response.text, response.text[:1000]
                content_type = "".join(response.headers.get("content-type", []))  # schemathesis: a list per header
                if response.status_code >= 400 and content_type.startswith("application/json"):
                    assert isinstance(response.json().get("detail"), str), response.text[:1000]

        try:
            answers_sanely()
        except BaseException as exc:
            exc.add_note(f"operation: {operation.label}")
            raise
    assert stored(env) == before, "an unsigned webhook stored something"


# --- 2b. signed deliveries of generated bodies -----------------------------------------------------------------------

POOL = st.sampled_from([f"evt-{i}" for i in range(6)])  # duplicates within a batch and across requests
GENERIC_EVENTS = events(ids=POOL | st.text(min_size=1, max_size=200), sources=st.sampled_from(["hostile", "crm"]))


@st.composite
def generic_deliveries(draw) -> bytes:
    shape = draw(st.sampled_from(["batch", "batch", "one", "value", "bytes"]))
    if shape == "bytes":
        return draw(st.binary(max_size=200))
    if shape == "value":
        return draw(BODIES)
    items = [e.model_dump(mode="json") for e in draw(st.lists(GENERIC_EVENTS, min_size=1, max_size=4))]
    if draw(st.booleans()):
        at = draw(st.integers(0, len(items) - 1))
        items[at] = draw(hostile_edit(items[at], WIRE_VALUES))
    if draw(st.integers(0, 4)) == 0:
        items.append(items[0])  # the same event twice in one batch
    return dump(items[0] if shape == "one" else items, ascii_only=draw(st.booleans()))


@fuzz(150)
@given(body=generic_deliveries())
def test_signed_generic_deliveries_store_each_good_event(env, body):
    answer, accepted = deliver(env, "generic", body)
    try:
        parsed = json.loads(body)
        check_shape(parsed)
        items = parsed if isinstance(parsed, list) else [parsed]
    except (ValueError, RecursionError, WebhookError):
        items = None
    valid = []
    for item in items or []:
        try:
            valid.append(CRMEvent.model_validate(item))
        except ValidationError:
            pass  # rejected alone; the rest of the delivery is stored
    if len(body) > MAX_BODY:
        assert answer.status_code == 413
    elif items is None or not items or len(items) > MAX_EVENTS or not valid:
        assert answer.status_code == 400, answer.text[:500]
    else:
        assert answer.status_code == 202, answer.text[:500]
        assert [a["external_id"] for a in accepted["accepted"]] == [f"{e.source}:{e.id}" for e in valid]
        assert len(accepted["rejected"]) == len(items) - len(valid)
        stored_events = {i.external_id: i.event for i in env["queue"].list(limit=10_000) if i.source == "generic"}
        for a in accepted["accepted"]:
            if a["new"]:
                assert stored_events[a["external_id"]] == next(e for e in valid if f"{e.source}:{e.id}" == a["external_id"])


def hubspot_events() -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(
        {"eventId": st.integers(1, 4), "subscriptionId": st.just(2412), "portalId": st.just(62515),
         "occurredAt": st.sampled_from([1763884800000, 1763884900000]),
         "subscriptionType": st.sampled_from(["deal.propertyChange", "object.propertyChange", "contact.creation",
                                              "deal.deletion"]) | ANY_TEXT,
         "objectId": st.sampled_from([STAGE_DEAL_OBJECT, 1, 9999, -1, 2**63, 10**30]) | NUMBERS,
         "propertyName": st.sampled_from(["dealstage", "amount"]) | ANY_TEXT | st.none(),
         "propertyValue": st.sampled_from(["presentationscheduled", "closedwon", "qualifiedtobuy", "999"]) | ANY_TEXT},
        optional={"objectTypeId": st.sampled_from(["0-3", "0-1", "9-9"]), "attemptNumber": st.integers(0, 5),
                  "changeSource": CLEAN_TEXT, "appId": NUMBERS})


@st.composite
def hubspot_deliveries(draw) -> bytes:
    if draw(st.integers(0, 4)) == 0:
        return draw(BODIES)
    items = draw(st.lists(hubspot_events(), min_size=1, max_size=4))
    if draw(st.booleans()):
        at = draw(st.integers(0, len(items) - 1))
        key = draw(st.sampled_from(sorted(items[at])) | KEYS)
        items[at][key] = draw(WIRE_VALUES)
    return dump(items, ascii_only=draw(st.booleans()))


def salesforce_events() -> st.SearchStrategy[dict]:
    header = st.fixed_dictionaries(
        {"entityName": st.sampled_from(["Opportunity", "Lead", "EmailMessage", "Account"]) | ANY_TEXT,
         "recordIds": st.lists(st.sampled_from(["0065f00000AbCdEAAV", "00Q5f00000XyZAAA", "001*"]) | ANY_TEXT, max_size=3),
         "changeType": st.sampled_from(["CREATE", "UPDATE", "DELETE", "GAP_OVERFLOW"]) | ANY_TEXT,
         "changedFields": st.lists(st.sampled_from(["StageName", "Name"]) | ANY_TEXT, max_size=3),
         "transactionKey": st.sampled_from(["tx-1", "tx-2"]) | ANY_TEXT,
         "sequenceNumber": st.integers(0, 3) | NUMBERS, "commitTimestamp": st.sampled_from([1763884800000]) | NUMBERS},
        optional={"commitNumber": NUMBERS, "commitUser": CLEAN_TEXT})
    fields = st.fixed_dictionaries({}, optional={
        "StageName": st.sampled_from(["Negotiation/Review", "Closed Won", "Nope"]) | WIRE_VALUES,
        "Salesloop_Deal_Id__c": st.sampled_from(["deal-0152", "deal-9999"]) | WIRE_VALUES,
        "Company": CLEAN_TEXT | WIRE_VALUES, "Industry": st.sampled_from(["Technology", "Mining"]) | WIRE_VALUES,
        "Name": st.fixed_dictionaries({"FirstName": CLEAN_TEXT, "LastName": CLEAN_TEXT}) | WIRE_VALUES,
        "Email": CLEAN_TEXT, "NumberOfEmployees": NUMBERS | WIRE_VALUES,
        "Address": st.fixed_dictionaries({"Country": st.sampled_from(["Germany", "Atlantis"]) | WIRE_VALUES}),
        "Incoming": st.booleans() | WIRE_VALUES, "MessageIdentifier": CLEAN_TEXT, "FromAddress": CLEAN_TEXT,
        "TextBody": CLEAN_TEXT | HUGE_TEXT})
    payload = st.tuples(header, fields).map(lambda t: {"ChangeEventHeader": t[0], **t[1]})
    return payload | payload.map(lambda p: {"schema": "Jx8Hz9", "payload": p, "event": {"replayId": 7}})


@st.composite
def salesforce_deliveries(draw) -> bytes:
    if draw(st.integers(0, 4)) == 0:
        return draw(BODIES)
    items = draw(st.lists(salesforce_events(), min_size=1, max_size=3))
    return dump(items[0] if len(items) == 1 and draw(st.booleans()) else items, ascii_only=draw(st.booleans()))


@pytest.mark.parametrize(("source", "prefix", "deliveries"), [("hubspot", "hs-", hubspot_deliveries), ("salesforce", "sf-", salesforce_deliveries)])
@fuzz(120)
@given(data=st.data())
def test_signed_crm_deliveries_store_what_they_accept(env, source, prefix, deliveries, data):
    body = data.draw(deliveries())
    answer, accepted = deliver(env, source, body)
    if len(body) > MAX_BODY:
        assert answer.status_code == 413
    if accepted is not None:
        assert all(i["external_id"].startswith(prefix) for i in accepted["accepted"] + accepted["ignored"])


# --- 2c. explicit hostile shapes ----------------------------------------------------------------------------------


def a_lead(event_id: str, **changes: Any) -> dict:
    event = {"id": event_id, "type": "new_lead", "occurred_at": "2026-11-20T09:00:00Z", "source": "hostile",
             "payload": {"lead_id": f"lead-{event_id}", "company": "Acme", "industry": "saas", "employees": 50, "region": "EMEA",
                         "country": "Germany", "timezone": "Europe/Berlin", "contact_name": "Ada", "email": "ada@example.com",
                         "title": "CTO"}}
    for key, value in changes.items():
        (event["payload"] if key in event["payload"] or key.startswith("payload_") else event)[key.removeprefix("payload_")] = value
    return event


def raw_event(**raw_fields: str) -> bytes:
    """A lead event with payload fields written as raw JSON text (numbers json.dumps would not write, NaN)."""
    text = json.dumps(a_lead("evt-raw", **{f"payload_{name}": f"@{name}@" for name in raw_fields}))
    for name, raw in raw_fields.items():
        text = text.replace(f'"@{name}@"', raw)
    return text.encode()


EXPLICIT = [
    ("deeply nested array", b"[" * 100_000 + b"]" * 100_000, 413),  # 200 kB: over the limit before it is parsed
    ("deeply nested, within the limit", b"[" * 7000 + b"]" * 7000, 400),
    ("deep object inside an event", json.dumps(a_lead("evt-d")).encode().replace(b'"Acme"', b'{"a":' * 2500 + b"1" + b"}" * 2500), 400),
    ("invalid UTF-8", b'{"id": "\xff\xfe", "type": "new_lead"}', 400),
    ("a lone surrogate as raw bytes", json.dumps(a_lead("evt-\udcff"), ensure_ascii=False).encode("utf-8", "surrogatepass"), 400),
    ("a lone surrogate escape", json.dumps(a_lead("evt-\ud800")).encode(), 400),
    ("a surrogate escape in a key", json.dumps({**a_lead("evt-k"), "\udfff": 1}).encode(), 400),
    ("a number of 5000 digits", raw_event(employees="9" * 5000), 400),
    ("a number of 5000 digits alone", b"9" * 5000, 400),
    ("a number past float range", raw_event(employees="1e400"), 400),
    ("NaN", raw_event(employees="NaN"), 400),
    ("Infinity", raw_event(web_visits="Infinity"), 400),
    ("-Infinity as the occurred_at", json.dumps(a_lead("evt-i")).encode().replace(b'"2026-11-20T09:00:00Z"', b"-Infinity"), 400),
    ("an unknown field", json.dumps(a_lead("evt-u", payload_favourite_colour="green")).encode(), 400),
    ("an unknown top-level field", json.dumps({**a_lead("evt-u2"), "extra": {"x": 1}}).encode(), 400),
    ("a string for a number", json.dumps(a_lead("evt-t", employees="fifty")).encode(), 400),
    ("a list for the payload", json.dumps(a_lead("evt-t2", payload=[1, 2])).encode(), 400),
    ("an object for the id", json.dumps(a_lead({"$ne": 1})).encode(), 400),
    ("a payload of another type", json.dumps(a_lead("evt-t3", type="deal_stage_change")).encode(), 400),
    ("a float for a count", json.dumps(a_lead("evt-t4", employees=1.5)).encode(), 400),
    ("a naive time", json.dumps(a_lead("evt-t5", occurred_at="2026-11-20T09:00:00")).encode(), 400),
    ("a time out of range in UTC", json.dumps(a_lead("evt-t6", occurred_at="0001-01-01T00:00:00+05:00")).encode(), 400),
    ("a batch of bad events only", json.dumps([a_lead("evt-b1", employees=0), a_lead("evt-b2", employees=-1)]).encode(), 400),
    ("an empty batch", b"[]", 400),
    ("too many events", json.dumps([a_lead(f"evt-m{i}") for i in range(MAX_EVENTS + 1)]).encode(), 413),
    ("an empty body", b"", 400),
    ("a UTF-8 BOM", b"\xef\xbb\xbf" + json.dumps(a_lead("evt-bom")).encode(), 202),  # json.loads reads it as UTF-8
    ("the longest id and source", json.dumps({**a_lead("e" * 200), "source": "s" * 100}).encode(), 202),
    ("a 200-character id", json.dumps(a_lead("x" * 200)).encode(), 202),
    ("an id too long", json.dumps(a_lead("x" * 201)).encode(), 400),
    ("an id of odd characters", json.dumps(a_lead("\u202e\x00<script>'; DROP TABLE queue;--")).encode(), 202),
    ("a huge count", json.dumps(a_lead("evt-big", employees=10**400)).encode(), 400),
]


@pytest.mark.parametrize(("body", "status"), [pytest.param(b, s, id=name) for name, b, s in EXPLICIT])
def test_hostile_generic_bodies_get_the_right_4xx_and_store_nothing(env, body, status):
    answer, _ = deliver(env, "generic", body)
    assert answer.status_code == status, answer.text[:500]


def test_a_batch_with_one_bad_event_stores_the_good_one_and_rejects_the_bad_one_alone(env):
    answer, body = deliver(env, "generic", json.dumps([a_lead("evt-g1"), a_lead("evt-g2", employees=0)]).encode())
    assert answer.status_code == 202 and [e["outcome"] for e in body["events"]] == ["accepted", "rejected"]
    assert body["rejected"][0]["reason"].startswith("body[1].payload.employees")


def test_duplicate_ids_in_one_batch_and_across_requests_are_stored_once(env):
    event = a_lead("evt-dup")
    answer, body = deliver(env, "generic", json.dumps([event, event, {**event, "payload": {**event["payload"], "company": "Other"}}]).encode())
    assert answer.status_code == 202 and [a["new"] for a in body["accepted"]] == [True, False, False]
    assert len({a["queue_id"] for a in body["accepted"]}) == 1
    again, body = deliver(env, "generic", json.dumps(event).encode())
    assert again.status_code == 202 and body["accepted"][0]["new"] is False
    (item,) = [i for i in env["queue"].list(limit=10_000) if i.external_id == "hostile:evt-dup"]
    assert item.event.payload.company == "Acme", "the first delivery is the one kept"


def test_bodies_over_the_limit_are_refused_whatever_content_length_says(env):
    big = json.dumps(a_lead("evt-big-body", payload_message="x" * MAX_BODY)).encode()
    exact = json.dumps(a_lead("evt-fits", payload_message="")).encode()
    exact = exact.replace(b'"message": ""', b'"message": "' + b"y" * (MAX_BODY - len(exact)) + b'"')
    assert len(exact) == MAX_BODY and len(big) > MAX_BODY
    assert deliver(env, "generic", exact)[0].status_code == 202
    assert deliver(env, "generic", exact + b" ")[0].status_code == 413  # one byte over
    assert deliver(env, "generic", big)[0].status_code == 413
    # A Content-Length smaller than the body (the body is still read, and counted) and a chunked body without one.
    assert deliver(env, "generic", big, headers={"Content-Length": "10"})[0].status_code == 413
    before = stored(env)
    chunks = (big[i:i + 1000] for i in range(0, len(big), 1000))
    answer = env["client"].post("/webhooks/generic", content=chunks, headers={HMAC_HEADER: sign_hmac_sha256(SECRETS["SALESLOOP_WEBHOOK_SECRET"], big)})
    no_leak(answer)
    assert answer.status_code == 413 and stored(env) == before
    for declared in ("999999999999999999999999", str(MAX_BODY + 1), "-1", "abc", "1e3", " 5"):
        answer, _ = deliver(env, "generic", b"{}", headers={"Content-Length": declared})
        assert answer.status_code in (400, 413), (declared, answer.text)


def test_a_content_length_of_thousands_of_digits_gets_a_413(env):
    answer, _ = deliver(env, "generic", b"{}", headers={"Content-Length": "9" * 5000})
    assert answer.status_code == 413


def test_unknown_sources_and_bad_signatures_store_nothing(env):
    body = json.dumps(a_lead("evt-unsigned")).encode()
    for path, headers, status in [
        ("/webhooks/pipedrive", {HMAC_HEADER: sign_hmac_sha256("x", body)}, 404),
        ("/webhooks/" + "a" * 5000, {}, 404),
        ("/webhooks/%00%ff", {}, 404),
        ("/webhooks/generic", {}, 401),
        ("/webhooks/generic", {HMAC_HEADER: "sha256=" + "0" * 64}, 401),
        ("/webhooks/generic", {HMAC_HEADER: "sha256=" + "z" * 64}, 401),
        ("/webhooks/generic", {HMAC_HEADER: ("sha256=" + "é" * 64).encode("latin-1")}, 401),
        ("/webhooks/generic", {HMAC_HEADER: sign_hmac_sha256(SECRETS["SALESLOOP_WEBHOOK_SECRET"], body) + "00"}, 401),
        ("/webhooks/hubspot", {}, 401),
        ("/webhooks/salesforce", {HMAC_HEADER: sign_hmac_sha256(SECRETS["SALESLOOP_WEBHOOK_SECRET"], body)}, 401),
    ]:
        before = stored(env)
        answer = env["client"].post(path, content=body, headers=headers)
        no_leak(answer)
        assert answer.status_code == status and stored(env) == before, (path, answer.text)


@pytest.mark.parametrize("timestamp", ["9" * 5000, "9" * 400, "0" * 30, "1" * 19, "-1", "1.5e12", "١٢٣", "", " "])
def test_hubspot_timestamps_of_any_shape_get_a_401(env, timestamp):
    body = json.dumps([{"eventId": 1, "subscriptionId": 1, "portalId": 1, "occurredAt": 1, "subscriptionType": "x"}]).encode()
    before = stored(env)
    signature = sign_hubspot_v3(SECRETS["SALESLOOP_HUBSPOT_APP_SECRET"], "POST", "http://testserver/webhooks/hubspot", body,
                                timestamp)
    answer = env["client"].post("/webhooks/hubspot", content=body, headers={
        "X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": timestamp.encode("utf-8")})
    no_leak(answer)
    assert answer.status_code == 401 and stored(env) == before


def hs_event(**changes: Any) -> dict:
    return {"eventId": 7, "subscriptionId": 2412, "portalId": 62515, "occurredAt": 1763884800000,
            "subscriptionType": "deal.propertyChange", "objectId": STAGE_DEAL_OBJECT, "propertyName": "dealstage",
            "propertyValue": "presentationscheduled", **changes}


@pytest.mark.parametrize(("events_", "status"), [
    ([hs_event(eventId=10**100, portalId=10**100, subscriptionId=10**100)], (202, 400)),
    ([hs_event(subscriptionType="contact.creation", eventId=2**64, portalId=-(2**70))], (202, 400)),
    ([hs_event(objectId=10**30)], (400,)),
    ([hs_event(objectId=-152)], (400,)),
    ([hs_event(occurredAt=-1)], (400,)),
    ([hs_event(occurredAt=10**20)], (400,)),
    ([hs_event(propertyValue=None)], (400,)),
    ([hs_event(eventId="7")], (202, 400)),
    ([hs_event(eventId=7.5)], (400,)),
    ([hs_event(eventId=float("nan"))], (400,)),
    ([hs_event(subscriptionType="\ud800")], (400,)),
    ([hs_event(propertyName="\ud800" * 3, subscriptionType="deal.propertyChange")], (400,)),
    ([hs_event(), hs_event(objectId=9999)], (202,)),  # a deal the mirror lacks: queued to be fetched from HubSpot
    ([hs_event(), hs_event(objectId=-5)], (202,)),  # one bad event: rejected alone, the good one stored
    ([hs_event(eventId=8), hs_event(eventId=8)], (202,)),  # the same event twice: stored once
    (hs_event(), (400,)),
    ([], (400,)),
])
def test_hostile_hubspot_batches(env, events_, status):
    answer, _ = deliver(env, "hubspot", json.dumps(events_).encode())
    assert answer.status_code in status, answer.text[:500]


@pytest.mark.parametrize("change", [
    {"sequenceNumber": 10**200}, {"sequenceNumber": -1}, {"transactionKey": "t" * 101}, {"recordIds": ["r" * 41]},
    {"recordIds": [str(i) for i in range(MAX_EVENTS + 1)]}, {"recordIds": []}, {"commitTimestamp": 10**20},
    {"changeType": "ERASE"}, {"entityName": "\ud800"}, {"recordIds": ["\ud800"]}, {"changedFields": "StageName"},
])
def test_hostile_salesforce_headers(env, change):
    header = {"entityName": "Lead", "recordIds": ["00Q5f00000XyZAAA"], "changeType": "CREATE", "changedFields": [],
              "transactionKey": "tx-hostile", "sequenceNumber": 1, "commitTimestamp": 1763884800000, **change}
    answer, _ = deliver(env, "salesforce", json.dumps({"ChangeEventHeader": header, "Company": "Acme", "Industry": "Technology",
                                                          "Name": {"FirstName": "A", "LastName": "B"}, "Email": "a@b.example",
                                                          "Address": {"Country": "Germany"}, "NumberOfEmployees": 5}).encode())
    assert answer.status_code in (202, 400, 413), answer.text[:500]


@pytest.mark.parametrize("fields", [
    {"Address": {"Country": [[[[[]]]]]}, "Industry": {"a": [1]}},
    {"Address": {"Country": json.loads("[" * 900 + "]" * 900)}},
    {"Industry": json.loads("[" * 900 + "]" * 900)},
    {"Name": json.loads('{"a":' * 900 + "1" + "}" * 900)},
    {"NumberOfEmployees": float("inf")},
    {"NumberOfEmployees": 10**4000},
])
def test_deep_or_odd_salesforce_field_values(env, fields):
    header = {"entityName": "Lead", "recordIds": ["00Q5f00000XyZAAB"], "changeType": "CREATE", "changedFields": [],
              "transactionKey": "tx-deep", "sequenceNumber": 1, "commitTimestamp": 1763884800000}
    base = {"Company": "Acme", "Industry": "Technology", "Name": {"FirstName": "A", "LastName": "B"}, "Email": "a@b.example",
            "Address": {"Country": "Germany"}, "NumberOfEmployees": 5}
    answer, _ = deliver(env, "salesforce", json.dumps({"ChangeEventHeader": header, **base, **fields}).encode())
    assert answer.status_code in (202, 400), answer.text[:500]


@pytest.mark.parametrize(("method", "path", "body"), [
    ("post", "/api/queue/99999999999999999999999/replay", None),
    ("post", f"/api/queue/{2**63}/replay", None),
    ("post", "/api/queue/" + "9" * 5000 + "/replay", None),
    ("post", "/api/queue/-1/replay", None),
    ("post", "/api/queue/1e3/replay", None),
    ("get", "/api/queue?status=%00", None),
    ("get", "/api/runs?status=" + "x" * 10_000, None),
    ("get", "/api/runs/" + "r" * 10_000, None),
    ("get", "/api/runs/%ED%A0%80", None),
    ("get", "/api/runs/..%2F..%2Fetc%2Fpasswd/trace", None),
    ("post", "/api/runs/nope/decision", b"[" * 50_000),
    ("post", "/api/runs/nope/decision", b'{"type": "accept", "\\ud800": 1}'),
    ("post", "/api/runs/nope/decision", b'{"type": "\\udfff"}'),
    ("post", "/api/runs/nope/decision", b'{"type": "accept", "slot_index": ' + b"9" * 5000 + b"}"),
    ("post", "/api/runs/nope/decision", b'{"type": "accept", "slot_index": NaN}'),
    ("post", "/api/runs/nope/decision", b"\xff\xfe"),
    ("post", "/api/runs/nope/decision", b'{"type": "edit", "args": {"action": "x", "args": {"draft": "' + b"d" * 200_000 + b'"}}}'),
])
def test_hostile_api_requests(env, method, path, body):
    before = stored(env)
    headers = {"Authorization": f"Bearer {env['tokens']['admin']}", "Content-Type": "application/json"}
    answer = getattr(env["client"], method)(path, headers=headers, **({"content": body} if body is not None else {}))
    no_leak(answer)
    assert 400 <= answer.status_code < 500 and stored(env) == before, answer.text[:500]


@pytest.mark.parametrize("authorization", ["Bearer", "Bearer ", "Bearer " + "x" * 100_000, "Basic Zm9vOmJhcg==", "bearer sl_x",
                                           "Bearer \xe9\xff", "Bearer sl_" + "\x7f" * 10])
def test_hostile_tokens_get_a_401(env, authorization):
    answer = env["client"].get("/api/queue", headers={"Authorization": authorization.encode("latin-1")})
    no_leak(answer)
    assert answer.status_code == 401


def test_a_delivery_is_queued_in_one_transaction(env):
    """enqueue_many stores all of a delivery's events or, failing half-way, none of them."""
    queue = env["queue"]
    good = CRMEvent.model_validate(a_lead("evt-tx-1"))
    broken = CRMEvent.model_construct(**{**dict(good), "id": "evt-tx-2", "payload": object()})  # fails to serialise
    before = stored(env)
    with pytest.raises(PydanticSerializationError):
        queue.enqueue_many("generic", [("hostile:evt-tx-1", good), ("hostile:evt-tx-2", broken)], FIXED_NOW)
    assert stored(env) == before
    results = queue.enqueue_many("generic", [("hostile:evt-tx-1", good), ("hostile:evt-tx-1", good)], FIXED_NOW)
    assert [new for _, new in results] == [True, False] and results[0][0].id == results[1][0].id
    assert stored(env) == before | {("generic", "hostile:evt-tx-1")}


def test_nothing_hostile_reached_the_queue_unreadable(env):
    """Every stored event reads back (listing the queue would 500 otherwise), and the listing is a 200."""
    items = env["queue"].list(limit=100_000)
    assert all(isinstance(i.event, CRMEvent) for i in items)
    answer = env["client"].get("/api/queue", headers={"Authorization": f"Bearer {env['tokens']['admin']}"})
    no_leak(answer)
    assert answer.status_code == 200
    assert not math.isnan(sum(answer.json()["counts"].values()))
