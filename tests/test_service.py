"""`salesloop serve` over HTTP: signed webhooks into the durable queue, workers, approvals API with roles, metrics.

The app is the real one (real graph, model, Qdrant local mode, SQLite); requests go through FastAPI's TestClient.
Workers are driven one event at a time so every assertion sees a settled state.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from agents.services import Services
from cli.app import app as cli
from configs import load_settings
from service.app import create_app
from service.signatures import HMAC_HEADER, sign_hmac_sha256, sign_hubspot_v3
from tests.conftest import FIXED_NOW, config_dict
from tools.calendar import booking_uid
from tools.cases import index_cases

SECRETS = {"SALESLOOP_WEBHOOK_SECRET": "generic-secret", "SALESLOOP_HUBSPOT_APP_SECRET": "hubspot-app-secret",
           "SALESLOOP_SALESFORCE_SECRET": "salesforce-secret"}
STAGE_DEAL = "deal-0152"  # an open demo deal in qualification


class Clock:
    """The service's clock, moved by the tests to make retries due."""

    def __init__(self):
        self.now = FIXED_NOW

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def env(tmp_path_factory, demo_source, model_dir):
    import shutil

    root = tmp_path_factory.mktemp("service")
    shutil.copytree(demo_source, root / "data")
    raw = config_dict(root / "data", model_dir)
    raw["service"] = {"max_body_bytes": 64_000, "max_attempts": 2, "backoff_base_s": 10, "backoff_max_s": 60}
    (root / "config.yaml").write_text(yaml.safe_dump(raw))
    clock = Clock()
    services = Services(load_settings(root / "config.yaml", env={}), clock=clock)
    index_cases(services.crm, services.embedder, services.vectors)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in SECRETS.items():
            patch.setenv(name, value)
        app = create_app(services, start_workers=False)
        with TestClient(app) as client:
            yield {"client": client, "app": app, "services": services, "clock": clock, "root": root}
    services.close()


@pytest.fixture(scope="module")
def tokens(env):
    store = env["app"].state.tokens
    owner = env["services"].crm.account(env["services"].crm.deal(STAGE_DEAL).account_id).owner_rep_id
    return {"owner": store.add("owner", "rep", rep_id=owner), "other": store.add("other", "rep", rep_id="rep-nobody"),
            "manager": store.add("manager", "manager"), "auditor": store.add("auditor", "auditor"),
            "admin": store.add("admin", "admin"), "owner_id": owner}


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def hubspot_post(client, events: list[dict], secret: str = SECRETS["SALESLOOP_HUBSPOT_APP_SECRET"], age_s: float = 0):
    body = json.dumps(events).encode()
    timestamp = str(int((time.time() - age_s) * 1000))
    signature = sign_hubspot_v3(secret, "POST", "http://testserver/webhooks/hubspot", body, timestamp)
    return client.post("/webhooks/hubspot", content=body,
                       headers={"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": timestamp, "Content-Type": "application/json"})


def signed_post(client, source: str, payload: object, secret: str):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post(f"/webhooks/{source}", content=body, headers={HMAC_HEADER: sign_hmac_sha256(secret, body)})


def stage_change(event_id: int) -> dict:
    """A HubSpot deal.propertyChange as HubSpot documents it: the deal moved to 'presentationscheduled'."""
    return {"eventId": event_id, "subscriptionId": 2412, "portalId": 62515, "appId": 1160452, "occurredAt": 1763884800000,
            "subscriptionType": "deal.propertyChange", "attemptNumber": 0, "objectId": int(STAGE_DEAL.split("-")[1]),
            "propertyName": "dealstage", "propertyValue": "presentationscheduled", "changeSource": "CRM_UI"}


def queue_total(env) -> int:
    return sum(env["app"].state.queue.counts().values())


def test_a_signed_hubspot_batch_is_queued_once_and_becomes_one_waiting_run(env):
    client, app = env["client"], env["app"]
    answer = hubspot_post(client, [stage_change(101), {**stage_change(102), "subscriptionType": "contact.propertyChange"}])
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert [a["new"] for a in body["accepted"]] == [True] and "contact.propertyChange" in body["ignored"][0]["reason"]
    assert [e["outcome"] for e in body["events"]] == ["accepted", "ignored"]
    again = hubspot_post(client, [{**stage_change(101), "attemptNumber": 1}])  # HubSpot's retry of the same event
    assert again.status_code == 202 and again.json()["accepted"][0]["new"] is False
    assert app.state.workers.run_once() and not app.state.workers.run_once(), "one queued event, processed once"
    (waiting,) = [r for r in app.state.orch.runs("waiting") if r.event_type == "deal_stage_change"]
    state = app.state.orch.state(waiting.run_id)
    assert state.event.source == "hubspot" and state.event.payload.deal_id == STAGE_DEAL
    assert state.route.rule.id == "trigger:stage-to-proposal" and state.route.rule in state.trace[0].inputs


@pytest.mark.parametrize(("kind", "send", "status", "message"), [
    ("wrong secret", lambda c: hubspot_post(c, [stage_change(201)], secret="guess"), 401, "does not match"),
    ("stale", lambda c: hubspot_post(c, [stage_change(202)], age_s=600), 401, "over the 300 s limit"),
    ("unsigned", lambda c: c.post("/webhooks/generic", content=b"{}"), 401, HMAC_HEADER),
    ("unknown source", lambda c: signed_post(c, "pipedrive", {}, "x"), 404, "no webhook source 'pipedrive'"),
    ("not json", lambda c: signed_post(c, "generic", b"{not json", SECRETS["SALESLOOP_WEBHOOK_SECRET"]), 400, "JSON"),
    ("wrong shape", lambda c: signed_post(c, "generic", {"id": "e1", "type": "new_lead"}, SECRETS["SALESLOOP_WEBHOOK_SECRET"]), 400, "occurred_at"),
    ("every event bad", lambda c: hubspot_post(c, [{**stage_change(203), "objectId": None}]), 400, "objectId"),
    ("oversized", lambda c: signed_post(c, "generic", {"pad": "x" * 70_000}, SECRETS["SALESLOOP_WEBHOOK_SECRET"]), 413, "max_body_bytes"),
    ("nested", lambda c: signed_post(c, "generic", json.loads("[" * 50 + "]" * 50), SECRETS["SALESLOOP_WEBHOOK_SECRET"]), 400, ""),
])
def test_bad_requests_get_a_4xx_with_a_message_and_store_nothing(env, kind, send, status, message):
    before = queue_total(env)
    answer = send(env["client"])
    assert answer.status_code == status, answer.text
    detail = answer.json()["detail"]
    assert message in detail and "Traceback" not in detail and len(detail) <= 500
    assert queue_total(env) == before


def test_salesforce_change_events_and_generic_events_are_queued(env, demo_source):
    header = {"entityName": "Opportunity", "recordIds": ["0065f00000AbCdEAAV"], "changeType": "UPDATE", "changedFields": ["StageName"],
              "transactionKey": "0005e192-9e62-2554-3880-3c3718bd6308", "sequenceNumber": 1, "commitTimestamp": 1763884800000,
              "commitNumber": 1, "commitUser": "0055f000005mc66AAA", "changeOrigin": ""}
    header["recordIds"] = [STAGE_DEAL]  # a mirror keyed by the CRM's ids: the Salesforce id is the deal id
    change = {"schema": "Jx8Hz9", "payload": {"ChangeEventHeader": header, "StageName": "Negotiation/Review"}, "event": {"replayId": 7}}
    answer = signed_post(env["client"], "salesforce", change, SECRETS["SALESLOOP_SALESFORCE_SECRET"])
    assert answer.status_code == 202, answer.text
    (accepted,) = answer.json()["accepted"]
    item = env["app"].state.queue.get(accepted["queue_id"])
    assert item.event.type == "deal_stage_change" and item.event.payload.to_stage == "negotiation" and item.source == "salesforce"
    (event_file,) = sorted((demo_source / "events").glob("*new-lead-quillstack*.json"))
    generic = signed_post(env["client"], "generic", json.loads(event_file.read_text()), SECRETS["SALESLOOP_WEBHOOK_SECRET"])
    assert generic.status_code == 202 and generic.json()["accepted"][0]["new"] is True


def test_approvals_api_lets_each_role_do_only_its_part(env, tokens):
    client, orch = env["client"], env["app"].state.orch
    (run,) = [r.run_id for r in orch.runs("waiting") if orch.state(r.run_id).event.source == "hubspot"]
    assert client.get("/api/runs").status_code == 401
    assert client.get("/api/runs", headers=auth("sl_forged")).status_code == 401
    listed = {who: [r["run"]["run_id"] for r in client.get("/api/runs", headers=auth(tokens[who])).json()["runs"]]
              for who in ("owner", "other", "manager", "auditor")}
    assert run in listed["owner"] and run in listed["manager"] and run in listed["auditor"] and listed["other"] == []
    shown = client.get(f"/api/runs/{run}", headers=auth(tokens["owner"])).json()
    assert shown["may_decide"] and shown["interrupt"]["action_request"]["action"] == "send_proposal"
    assert client.get(f"/api/runs/{run}", headers=auth(tokens["other"])).status_code == 403
    for who in ("other", "auditor", "admin"):
        refused = client.post(f"/api/runs/{run}/decision", json={"type": "accept"}, headers=auth(tokens[who]))
        assert refused.status_code == 403 and "may not" in refused.json()["detail"]
    bad = client.post(f"/api/runs/{run}/decision", json={"type": "edit", "args": None}, headers=auth(tokens["owner"]))
    assert bad.status_code in (400, 422) and "draft" in bad.json()["detail"]
    edit = {"type": "edit", "args": {"action": "send_proposal", "args": {"draft": "Edited by the owner."}}, "slot_index": 1}
    decided = client.post(f"/api/runs/{run}/decision", json=edit, headers=auth(tokens["owner"]))
    assert decided.status_code == 200, decided.text
    assert decided.json()["decision"]["rep_id"] == tokens["owner_id"] and decided.json()["applied"]["booking_uid"] == booking_uid(run)
    (record,) = env["services"].feedback.for_run(run)
    assert record.decision == "edit" and record.final_text == "Edited by the owner."
    calendars = (env["root"] / "data" / "crm" / "calendars").glob("*.ics")
    assert sum(p.read_text().count(booking_uid(run)) for p in calendars) == 1
    conflict = client.post(f"/api/runs/{run}/decision", json={"type": "response", "args": "too late"}, headers=auth(tokens["manager"]))
    assert conflict.status_code == 409 and "already decided" in conflict.json()["detail"]
    assert client.get(f"/api/runs/{run}/trace", headers=auth(tokens["auditor"])).json()["steps"][-1]["step"] == "apply"
    assert client.get("/api/audit/verify", headers=auth(tokens["auditor"])).json()["ok"]
    assert client.get("/api/audit/verify", headers=auth(tokens["owner"])).status_code == 403


def test_a_failing_event_retries_with_backoff_then_is_dead_lettered_and_replayable(env, tokens):
    client, app, clock = env["client"], env["app"], env["clock"]
    stranger = {"id": "evt-stranger", "type": "inbound_email", "occurred_at": "2026-11-20T09:00:00Z", "source": "mailbox",
                "payload": {"message_id": "<x@example.com>", "from_email": "who@unknown.example", "subject": "Hello", "body": "Pricing?"}}
    answer = signed_post(client, "generic", stranger, SECRETS["SALESLOOP_WEBHOOK_SECRET"])
    (accepted,) = answer.json()["accepted"]
    while app.state.workers.run_once():
        pass  # anything still queued from earlier tests
    item = app.state.queue.get(accepted["queue_id"])
    assert item.status == "queued" and item.attempts == 1 and "no contact with email" in item.last_error
    assert not app.state.workers.run_once(), "not due before its backoff"
    clock.now += timedelta(seconds=11)
    assert app.state.workers.run_once()
    assert app.state.queue.get(item.id).status == "dead"
    dead = client.get("/api/queue?status=dead", headers=auth(tokens["admin"])).json()["items"]
    assert [d["id"] for d in dead] == [item.id] and "no contact with email" in dead[0]["last_error"]
    listed = CliRunner().invoke(cli, ["queue", "list", "--status", "dead", "--json", "--config", str(env["root"] / "config.yaml")])
    assert listed.exit_code == 0 and [i["external_id"] for i in json.loads(listed.output)["items"]] == [item.external_id]
    assert client.post(f"/api/queue/{item.id}/replay", headers=auth(tokens["owner"])).status_code == 403
    replayed = client.post(f"/api/queue/{item.id}/replay", headers=auth(tokens["admin"]))
    assert replayed.status_code == 200 and replayed.json()["status"] == "queued"
    assert client.post("/api/queue/999999/replay", headers=auth(tokens["admin"])).status_code == 404
    assert client.get("/api/queue?status=lost", headers=auth(tokens["admin"])).status_code == 422


def test_metrics_parse_as_prometheus_text(env, tokens):
    answer = env["client"].get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(answer.text)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("salesloop_events_received_total", (("source", "hubspot"),))] == 1
    assert samples[("salesloop_events_processed_total", (("source", "hubspot"),))] == 1
    assert samples[("salesloop_events_dead_lettered_total", (("source", "generic"),))] == 0  # replayed: queued again
    assert samples[("salesloop_decisions_total", (("decision", "edit"),))] == 1
    assert samples[("salesloop_decision_rate", (("decision", "edit"),))] == 1.0
    assert ("salesloop_runs_waiting", ()) in samples
    nodes = {dict(labels)["node"] for name, labels in samples if name == "salesloop_node_latency_seconds_count"}
    assert {"normalize", "grade_lead", "retrieve_cases", "draft_proposal", "plan_schedule", "apply"} <= nodes


def test_the_openapi_document_lists_every_route(env):
    paths = env["client"].get("/openapi.json").json()["paths"]
    assert {"/webhooks/{source}", "/api/runs", "/api/runs/{run_id}", "/api/runs/{run_id}/decision", "/api/queue", "/metrics"} <= set(paths)
