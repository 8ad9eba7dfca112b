"""Event files: one event or a list, all validated before any runs; every problem is one line naming where it is."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tools.crm.event_file import EventFileError, load_events
from tools.crm.records import DealStageChangePayload, InboundEmailPayload, NewLeadPayload

NEW_LEAD = {
    "id": "evt-1",
    "type": "new_lead",
    "occurred_at": "2026-11-02T09:05:00Z",
    "source": "test-crm",
    "payload": {
        "lead_id": "lead-1",
        "company": "Acme Gears",
        "industry": "manufacturing",
        "employees": 850,
        "region": "EMEA",
        "country": "Germany",
        "timezone": "Europe/Berlin",
        "contact_name": "Stefan Wagner",
        "email": "s.wagner@acme.example",
        "title": "Dir. of Ops",
        "budget_usd": 120000,
        "message": "Can we see a demo?",
    },
}
EMAIL = {
    "id": "evt-2",
    "type": "inbound_email",
    "occurred_at": "2026-11-09T07:42:00Z",
    "source": "test-crm",
    "payload": {"message_id": "<m1@acme.example>", "from_email": "s.wagner@acme.example", "subject": "Pricing", "body": "Hi"},
}
STAGE = {
    "id": "evt-3",
    "type": "deal_stage_change",
    "occurred_at": "2026-11-18T15:30:00Z",
    "source": "test-crm",
    "payload": {"deal_id": "deal-0152", "from_stage": "qualification", "to_stage": "proposal"},
}


def _write(tmp_path: Path, content: object, raw: str | bytes | None = None) -> Path:
    path = tmp_path / "events.json"
    if isinstance(raw, bytes):
        path.write_bytes(raw)
    else:
        path.write_text(raw if raw is not None else json.dumps(content))
    return path


def _error(path: Path) -> str:
    with pytest.raises(EventFileError) as info:
        load_events(path)
    message = str(info.value)
    assert "\n" not in message, f"one line expected: {message!r}"
    assert message.startswith(f"{path}: "), f"the file comes first: {message!r}"
    return message


def _with(event: dict, **changes) -> dict:
    event = copy.deepcopy(event)
    for dotted, value in changes.items():
        node = event
        *parents, last = dotted.split("__")
        for key in parents:
            node = node[key]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
    return event


_DELETE = object()


def test_one_event(tmp_path):
    (event,) = load_events(_write(tmp_path, NEW_LEAD))
    assert event.id == "evt-1" and event.type == "new_lead"
    assert isinstance(event.payload, NewLeadPayload)
    assert event.payload.budget_usd == 120000
    assert event.occurred_at.tzinfo is not None


def test_a_list_keeps_order_and_payload_types(tmp_path):
    events = load_events(_write(tmp_path, [NEW_LEAD, EMAIL, STAGE]))
    assert [e.id for e in events] == ["evt-1", "evt-2", "evt-3"]
    assert [type(e.payload) for e in events] == [NewLeadPayload, InboundEmailPayload, DealStageChangePayload]


def test_demo_events_load(demo_source):
    files = sorted((demo_source / "events").glob("*.json"))
    assert files
    for path in files:
        assert len(load_events(path)) == 1


def test_missing_required_field_in_a_list(tmp_path):
    message = _error(_write(tmp_path, [NEW_LEAD, _with(EMAIL, payload__subject=_DELETE)]))
    assert "event[1]" in message
    assert "payload.subject" in message
    assert "Field required" in message


def test_missing_top_level_field(tmp_path):
    message = _error(_write(tmp_path, _with(NEW_LEAD, source=_DELETE)))
    assert "event: source: Field required" in message


def test_unknown_event_type(tmp_path):
    message = _error(_write(tmp_path, _with(NEW_LEAD, type="lead_deleted")))
    assert "event: type:" in message
    assert "new_lead" in message and "inbound_email" in message and "deal_stage_change" in message


def test_payload_of_the_wrong_shape_for_its_type(tmp_path):
    # A stage-change payload under a new_lead event: validated as a new_lead payload, so its fields are missing.
    message = _error(_write(tmp_path, [NEW_LEAD, _with(STAGE, id="evt-9", type="new_lead")]))
    assert "event[1]" in message
    assert "payload.lead_id" in message
    # The other order: a new_lead payload where an email is expected.
    message = _error(_write(tmp_path, _with(NEW_LEAD, type="inbound_email")))
    assert "payload.message_id" in message


def test_wrong_value_type_names_the_dotted_field(tmp_path):
    message = _error(_write(tmp_path, _with(NEW_LEAD, payload__employees="many")))
    assert "payload.employees" in message
    message = _error(_write(tmp_path, _with(EMAIL, payload__attachments=[{"filename": "a.pdf"}])))
    assert "payload.attachments.0.content_type" in message


def test_unknown_payload_field_is_refused(tmp_path):
    message = _error(_write(tmp_path, _with(NEW_LEAD, payload__budget="lots")))
    assert "payload.budget" in message


def test_payload_that_is_not_an_object(tmp_path):
    message = _error(_write(tmp_path, _with(NEW_LEAD, payload="hello")))
    assert "payload" in message


def test_list_item_that_is_not_an_object(tmp_path):
    message = _error(_write(tmp_path, [NEW_LEAD, 42]))
    assert "event[1]" in message


def test_invalid_json(tmp_path):
    message = _error(_write(tmp_path, None, raw='{"id": "evt-1", '))
    assert "not valid JSON" in message
    assert "line 1" in message


def test_not_utf8(tmp_path):
    message = _error(_write(tmp_path, None, raw=b'{"id": "\xff\xfe\xfa"}'))
    assert "not valid JSON" in message


def test_empty_list(tmp_path):
    message = _error(_write(tmp_path, []))
    assert "no events" in message


def test_duplicate_ids(tmp_path):
    message = _error(_write(tmp_path, [NEW_LEAD, EMAIL, _with(STAGE, id="evt-1")]))
    assert "'evt-1'" in message and "twice" in message


def test_same_id_from_different_sources_is_fine(tmp_path):
    events = load_events(_write(tmp_path, [NEW_LEAD, _with(EMAIL, id="evt-1", source="other-crm")]))
    assert [(e.source, e.id) for e in events] == [("test-crm", "evt-1"), ("other-crm", "evt-1")]


def test_missing_file(tmp_path):
    message = _error(tmp_path / "nope.json")
    assert "no such file" in message


def test_directory_instead_of_file(tmp_path):
    message = _error(tmp_path)
    assert "cannot read" in message
