"""Real CRMs both ways, through `salesloop serve`'s app: vendor-shaped webhooks in, runs that wait for a rep, write-back
out to loopback stand-ins of Salesforce and HubSpot that count what they received.

The app, graph, model, Qdrant local mode and SQLite are the real ones; only the CRMs are stand-ins. Workers are driven
one event at a time so every assertion sees a settled state.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from datetime import timedelta

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from agents.services import Services
from configs import load_settings
from demo.crash_burst import ServeProcess
from service.app import WRITEBACK_SOURCE, create_app
from service.auth import TokenStore
from service.signatures import HMAC_HEADER, sign_hmac_sha256, sign_hubspot_v3
from tests.conftest import FIXED_NOW, config_dict
from tools.cases import index_cases
from tools.crm.testing_hubspot import FakeHubSpot
from tools.crm.testing_salesforce import FakeSalesforce
from tools.failpoints import ENV as FAILPOINT

SECRETS = {"SALESLOOP_WEBHOOK_SECRET": "generic-secret", "SALESLOOP_HUBSPOT_APP_SECRET": "hubspot-app-secret",
           "SALESLOOP_SALESFORCE_SECRET": "salesforce-secret"}


class Clock:
    def __init__(self):
        self.now = FIXED_NOW

    def __call__(self):
        return self.now


def _app(root, demo_source, model_dir, crm: dict, env: dict):
    shutil.copytree(demo_source, root / "data")
    raw = config_dict(root / "data", model_dir)
    raw["service"] = {"max_attempts": 2, "backoff_base_s": 10, "backoff_max_s": 60}
    raw["crm"] = {"connector": crm.pop("connector"), "max_retries": 0, **crm}
    (root / "config.yaml").write_text(yaml.safe_dump(raw))
    clock = Clock()
    services = Services(load_settings(root / "config.yaml", env={}), clock=clock)
    index_cases(services.crm, services.embedder, services.vectors)
    patch = pytest.MonkeyPatch()
    for name, value in {**SECRETS, **env}.items():
        patch.setenv(name, value)
    app = create_app(services, start_workers=False)
    return app, services, clock, patch


def drain(app) -> None:
    while app.state.workers.run_once():
        pass


def manager(app) -> dict:
    return {"Authorization": f"Bearer {app.state.tokens.add(f'lee-{time.monotonic_ns()}', 'manager')}"}


# --- Salesforce ------------------------------------------------------------------------------------


def change_header(entity: str, change: str, record: str, seq: int, changed: list[str] | None = None) -> dict:
    return {"entityName": entity, "recordIds": [record], "changeType": change, "changeOrigin": "com/salesforce/api/rest/60.0",
            "transactionKey": f"0005e192-9e62-2554-3880-3c3718bd{seq:04d}", "sequenceNumber": 1, "commitTimestamp": 1763884800000,
            "commitNumber": 1100670838951, "commitUser": "0055f000005mc66AAA", "changedFields": changed or [], "nulledFields": [],
            "diffFields": []}


def lead_create(record: str, seq: int, **fields) -> dict:
    """A Lead CREATE change event with the fields the issue names, flat, and no time zone or region."""
    return {"ChangeEventHeader": change_header("Lead", "CREATE", record, seq), "FirstName": "Stefan", "LastName": "Wagner",
            "Title": "Dir. of Ops", "Company": "Falkenrath Antriebstechnik GmbH", "Industry": "Manufacturing", "NumberOfEmployees": 850,
            "Country": "Germany", "Email": "s.wagner@falkenrath-antriebe.de", "Phone": "+49 711 555 0142",
            "Description": "We need predictive maintenance and a pilot timeline for three plants.", **fields}


@pytest.fixture(scope="module")
def sf(tmp_path_factory, demo_source, model_dir):
    with FakeSalesforce() as fake:
        account = fake.add("Account", {"Name": "Kessler Feinmechanik AG", "Industry": "Machinery", "NumberOfEmployees": 1200,
                                       "BillingCountry": "Germany", "OwnerId": "0055f000005mc66AAA"})
        contact = fake.add("Contact", {"FirstName": "Jana", "LastName": "Kessler", "Email": "j.kessler@kessler-feinmechanik.de",
                                       "Title": "Head of Procurement", "AccountId": account})
        opportunities = []
        for n in range(3):
            opp = fake.add("Opportunity", {"Name": f"Kessler line {n}", "Amount": 90000.0, "StageName": "Qualification",
                                           "AccountId": account})
            fake.add("OpportunityContactRole", {"OpportunityId": opp, "ContactId": contact, "IsPrimary": True})
            opportunities.append(opp)
        app, services, clock, patch = _app(tmp_path_factory.mktemp("sf"), demo_source, model_dir,
                                           {"connector": "salesforce", "salesforce": {"login_url": fake.login_url}},
                                           {"SALESLOOP_SALESFORCE_CLIENT_ID": fake.client_id,
                                            "SALESLOOP_SALESFORCE_CLIENT_SECRET": fake.client_secret})
        with TestClient(app) as client:
            yield {"fake": fake, "app": app, "client": client, "clock": clock, "opps": opportunities, "contact": contact}
        patch.undo()
        services.close()


def sf_post(client, payload) -> dict:
    body = json.dumps(payload).encode()
    answer = client.post("/webhooks/salesforce", content=body, headers={HMAC_HEADER: sign_hmac_sha256(SECRETS["SALESLOOP_SALESFORCE_SECRET"], body)})
    assert answer.status_code == 202, answer.text
    return answer.json()


def run_for(app, event_id: str):
    orch = app.state.orch
    (info,) = [r for r in orch.runs() if r.event_id == event_id]
    return info, orch.state(info.run_id)


def test_a_salesforce_lead_without_time_zone_or_region_waits_for_a_rep_in_a_derived_time_zone(sf):
    answer = sf_post(sf["client"], [lead_create("00Q5f000004XyZ1EAK", 1),
                                    lead_create("00Q5f000004XyZ2EAK", 2, Country=None, Email="m.ortiz@example.org", FirstName="Marta",
                                                LastName="Ortiz")])
    assert [e["outcome"] for e in answer["events"]] == ["accepted", "accepted"]
    drain(sf["app"])
    info, state = run_for(sf["app"], answer["events"][0]["external_id"])
    assert info.status == "waiting" and state.draft is not None and state.plan.slots
    lead = state.lead
    assert (lead.timezone, lead.region) == ("Europe/Berlin", "EMEA")
    assert lead.refs["timezone"].id == "places:country" and "from the country Germany" in lead.refs["timezone"].note
    normalize = state.trace[0]
    assert lead.refs["timezone"] in normalize.inputs and any("time zone Europe/Berlin" in n for n in normalize.notes)
    assert all(slot.start.utcoffset() == timedelta(hours=1) for slot in state.plan.slots)  # CET in late November
    assert any("slot times are in Europe/Berlin" in note for note in state.plan.notes)  # what the rep sees

    info, state = run_for(sf["app"], answer["events"][1]["external_id"])
    assert info.status == "waiting"
    assert (state.lead.timezone, state.lead.region, state.lead.country) == ("UTC", "unknown", "unknown")
    assert state.lead.refs["timezone"].id == "places:default" and state.lead.refs["region"].id == "places:default"
    assert any("the default time zone" in note for note in state.plan.notes)


def test_an_opportunity_update_with_only_its_id_and_stage_becomes_a_stage_change_run(sf):
    opp = sf["opps"][0]
    event = {"ChangeEventHeader": change_header("Opportunity", "UPDATE", opp, 10, ["StageName", "LastModifiedDate"]),
             "StageName": "Proposal/Price Quote"}
    answer = sf_post(sf["client"], {"schema": "Jx8Hz9", "payload": event, "event": {"replayId": 7}})
    (accepted,) = answer["accepted"]
    assert accepted["needs_fetch"]
    drain(sf["app"])
    info, state = run_for(sf["app"], accepted["external_id"])
    assert info.status == "waiting" and state.event.type == "deal_stage_change"
    assert state.event.payload.deal_id == opp and state.event.payload.to_stage == "proposal" and state.event.payload.from_stage is None
    assert state.lead.deal_id == opp and state.lead.contact_id == sf["contact"] and state.lead.account_name == "Kessler Feinmechanik AG"
    fetched = {ref.id for ref in state.trace[0].inputs if ref.kind == "crm_record" and ref.version}
    assert f"salesforce:deal:{opp}" in fetched and f"salesforce:contact:{sf['contact']}" in fetched


def test_in_a_mixed_delivery_the_good_events_are_accepted_and_the_bad_one_is_reported_alone(sf):
    before = sum(sf["app"].state.queue.counts().values())
    bad = {"ChangeEventHeader": {**change_header("Opportunity", "UPDATE", sf["opps"][1], 11, ["StageName"]), "sequenceNumber": "x"},
           "StageName": "Closed Won"}
    answer = sf_post(sf["client"], [lead_create("00Q5f000004XyZ3EAK", 3, Email="p.berg@example.de"), bad,
                                    {**lead_create("00Q5f000004XyZ4EAK", 4), "Industry": "Banking"}])
    assert [e["outcome"] for e in answer["events"]] == ["accepted", "rejected", "ignored"]
    assert answer["events"][1]["reason"].startswith("body[1].ChangeEventHeader.sequenceNumber: Input should be a valid integer")
    assert "industry 'Banking'" in answer["events"][2]["reason"]
    assert sum(sf["app"].state.queue.counts().values()) == before + 1
    only_bad = json.dumps([bad]).encode()
    refused = sf["client"].post("/webhooks/salesforce", content=only_bad,
                                headers={HMAC_HEADER: sign_hmac_sha256(SECRETS["SALESLOOP_SALESFORCE_SECRET"], only_bad)})
    assert refused.status_code == 400 and "sequenceNumber" in refused.json()["detail"]
    drain(sf["app"])


def test_after_an_adopt_salesforce_received_one_email_draft_one_meeting_and_one_clause_note(sf):
    fake, app, client = sf["fake"], sf["app"], sf["client"]
    opp = sf["opps"][0]
    (info,) = [r for r in app.state.orch.runs("waiting") if app.state.orch.state(r.run_id).event.payload.model_dump().get("deal_id") == opp]
    decided = client.post(f"/api/runs/{info.run_id}/decision", json={"type": "accept"}, headers=manager(app))
    assert decided.status_code == 200, decided.text
    writes = decided.json()["applied"]["crm_writes"]
    assert [(w["kind"], w["created"]) for w in writes] == [("email_draft", True), ("meeting", True), ("note", True)]
    tasks, events = fake.rows("Task"), fake.rows("Event")
    assert (fake.created["Task"], fake.created["Event"]) == (2, 1)
    assert {t["TaskSubtype"] for t in tasks} == {"Email", "Task"} and all(t["WhatId"] == opp and t["WhoId"] == sf["contact"] for t in tasks)
    assert events[0]["WhatId"] == opp and events[0]["StartDateTime"]
    apply = app.state.orch.state(info.run_id).trace[-1]
    assert {ref.version for ref in apply.inputs if ref.id == "crm:salesforce"} == {t["Id"] for t in tasks} | {events[0]["Id"]}


def test_a_write_back_cut_off_half_way_is_retried_from_the_queue_and_writes_each_record_once(sf):
    fake, app, client = sf["fake"], sf["app"], sf["client"]
    opp = sf["opps"][2]
    event = {"ChangeEventHeader": change_header("Opportunity", "UPDATE", opp, 20, ["StageName"]), "StageName": "Proposal/Price Quote"}
    sf_post(client, event)
    drain(app)
    (info,) = [r for r in app.state.orch.runs("waiting") if app.state.orch.state(r.run_id).event.payload.model_dump().get("deal_id") == opp]
    tasks, events = fake.created["Task"], fake.created["Event"]
    fake.fail_writes_at = {fake.upserts + 2}  # the e-mail draft lands, the meeting fails: the apply is cut off after one write
    answer = client.post(f"/api/runs/{info.run_id}/decision", json={"type": "accept"}, headers=manager(app))
    assert answer.status_code == 202 and answer.json()["writeback"]["status"] == "queued", answer.text
    assert "UNKNOWN_EXCEPTION" in answer.json()["writeback"]["error"]
    assert (fake.created["Task"], fake.created["Event"]) == (tasks + 1, events)
    assert app.state.orch.info(info.run_id).status == "failed"
    assert app.state.workers.run_once()  # the queue retries the apply; the first write is found, not made again
    assert app.state.orch.info(info.run_id).status == "done"
    assert (fake.created["Task"], fake.created["Event"]) == (tasks + 2, events + 1)
    writes = app.state.orch.state(info.run_id).applied.crm_writes
    assert [(w.kind, w.created) for w in writes] == [("email_draft", False), ("meeting", True), ("note", True)]
    (item,) = [i for i in app.state.queue.list("done") if i.source == WRITEBACK_SOURCE]
    assert item.run_id == info.run_id


def test_a_write_back_that_keeps_failing_is_dead_lettered_and_never_duplicates(sf):
    fake, app, client, clock = sf["fake"], sf["app"], sf["client"], sf["clock"]
    fake.add("Lead", {"LastName": "Fischer", "Company": "Fischer GmbH"}, record_id="00Q5f000004XyZ9EAK")  # the lead the event is about
    sf_post(client, lead_create("00Q5f000004XyZ9EAK", 30, Email="l.fischer@example.de", FirstName="Lena", LastName="Fischer"))
    drain(app)
    (info,) = [r for r in app.state.orch.runs("waiting") if app.state.orch.state(r.run_id).lead.lead_id == "00Q5f000004XyZ9EAK"]
    before = dict(fake.created)
    fake.fail_writes_next = 100
    assert client.post(f"/api/runs/{info.run_id}/decision", json={"type": "accept"}, headers=manager(app)).status_code == 202
    drain(app)
    clock.now += timedelta(seconds=11)
    drain(app)
    (dead,) = [i for i in app.state.queue.list("dead") if i.source == WRITEBACK_SOURCE]
    assert dead.external_id == f"{info.run_id}:apply" and "UNKNOWN_EXCEPTION" in dead.last_error
    assert dict(fake.created) == before
    fake.fail_writes_next = 0
    app.state.queue.replay(dead.id, clock.now)  # the admin replays it once Salesforce is back
    drain(app)
    assert app.state.orch.info(info.run_id).status == "done"
    assert fake.created["Task"] == before["Task"] + 2  # a lead: the e-mail draft and the clause note, WhoId the lead
    assert all(t["WhoId"] == "00Q5f000004XyZ9EAK" and "WhatId" not in t for t in fake.rows("Task")[-2:])


def test_a_rejected_draft_writes_nothing_to_the_crm(sf):
    fake, app, client = sf["fake"], sf["app"], sf["client"]
    sf_post(client, lead_create("00Q5f000004XyZ8EAK", 40, Email="o.brandt@example.de"))
    drain(app)
    (info,) = [r for r in app.state.orch.runs("waiting") if app.state.orch.state(r.run_id).lead.lead_id == "00Q5f000004XyZ8EAK"]
    before, requests = dict(fake.created), len(fake.requests)
    answer = client.post(f"/api/runs/{info.run_id}/decision", json={"type": "response", "args": "wrong tone"}, headers=manager(app))
    assert answer.status_code == 200 and answer.json()["applied"]["crm_writes"] == []
    assert dict(fake.created) == before and len(fake.requests) == requests


# --- HubSpot ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hs(tmp_path_factory, demo_source, model_dir):
    with FakeHubSpot() as fake:
        company = fake.add("companies", {"name": "Lindqvist Verktyg AB", "industry": "MACHINERY", "numberofemployees": "640",
                                         "country": "Sweden", "hubspot_owner_id": "rep-owner-7"})
        deal = fake.add("deals", {"dealname": "Lindqvist retrofit", "amount": "150000", "dealstage": "qualifiedtobuy", "pipeline": "default"})
        app, services, clock, patch = _app(tmp_path_factory.mktemp("hs"), demo_source, model_dir,
                                           {"connector": "hubspot", "hubspot": {"base_url": fake.base_url}},
                                           {"SALESLOOP_HUBSPOT_TOKEN": fake.token})
        with TestClient(app) as client:
            yield {"fake": fake, "app": app, "client": client, "company": company, "deal": deal}
        patch.undo()
        services.close()


def hs_post(client, events: list[dict]) -> dict:
    body = json.dumps(events).encode()
    timestamp = str(int(time.time() * 1000))
    signature = sign_hubspot_v3(SECRETS["SALESLOOP_HUBSPOT_APP_SECRET"], "POST", "http://testserver/webhooks/hubspot", body, timestamp)
    answer = client.post("/webhooks/hubspot", content=body, headers={"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": timestamp})
    assert answer.status_code == 202, answer.text
    return answer.json()


def test_a_hubspot_contact_creation_fetches_contact_company_and_deal_and_its_adopt_is_written_back_once(hs):
    fake, app, client = hs["fake"], hs["app"], hs["client"]
    contact = fake.add("contacts", {"firstname": "Elin", "lastname": "Lindqvist", "email": "elin@lindqvist-verktyg.se",
                                    "jobtitle": "COO", "message": "Quote for a pilot rollout on two lines?"})
    fake.associate("contacts", contact, "companies", hs["company"])
    fake.associate("contacts", contact, "deals", hs["deal"])
    answer = hs_post(client, [{"eventId": 1, "subscriptionId": 12345, "portalId": 62515, "appId": 54321, "occurredAt": 1763884800000,
                               "subscriptionType": "contact.creation", "attemptNumber": 0, "objectId": int(contact),
                               "changeSource": "CRM", "changeFlag": "NEW"}])
    assert answer["accepted"][0]["needs_fetch"]
    drain(app)
    info, state = run_for(app, answer["accepted"][0]["external_id"])
    assert info.status == "waiting" and state.lead.contact_name == "Elin Lindqvist" and state.lead.deal_id == hs["deal"]
    assert state.lead.timezone == "Europe/Stockholm" and state.lead.account_name == "Lindqvist Verktyg AB"
    fetched = {ref.id: ref.version for ref in state.trace[0].inputs if ref.kind == "crm_record" and ref.id.startswith("hubspot:")}
    updated = fake.objects["contacts"][contact]["updatedAt"]
    assert fetched == {f"hubspot:contact:{contact}": updated, f"hubspot:company:{hs['company']}": fake.objects["companies"][hs["company"]]["updatedAt"],
                       f"hubspot:deal:{hs['deal']}": fake.objects["deals"][hs["deal"]]["updatedAt"]}

    decided = client.post(f"/api/runs/{info.run_id}/decision", json={"type": "accept"}, headers=manager(app))
    assert decided.status_code == 200, decided.text
    assert (fake.created["emails"], fake.created["meetings"], fake.created["notes"]) == (1, 1, 1)
    for kind in ("emails", "meetings", "notes"):
        (record,) = fake.engagements(kind)
        assert fake.associated(kind, record["id"], "contacts") == [contact] and fake.associated(kind, record["id"], "deals") == [hs["deal"]]
    again = client.post(f"/api/runs/{info.run_id}/decision", json={"type": "accept"}, headers=manager(app))
    assert again.status_code == 200  # a retried decision is a no-op
    assert (fake.created["emails"], fake.created["meetings"], fake.created["notes"]) == (1, 1, 1)


def test_a_later_won_stage_change_is_linked_to_the_run_that_drafted_for_the_deal(hs):
    fake, app, client, deal = hs["fake"], hs["app"], hs["client"], hs["deal"]
    (drafted,) = [r for r in app.state.orch.runs("done") if app.state.orch.state(r.run_id).lead.deal_id == deal]
    fake.set_properties("deals", deal, {"dealstage": "closedwon"})  # the rep wins the deal in HubSpot
    answer = hs_post(client, [{"eventId": 2, "subscriptionId": 2412, "portalId": 62515, "appId": 54321, "occurredAt": 1764000000000,
                               "subscriptionType": "deal.propertyChange", "attemptNumber": 0, "objectId": int(deal),
                               "propertyName": "dealstage", "propertyValue": "closedwon", "changeSource": "CRM_UI"}])
    drain(app)
    closing, _ = run_for(app, answer["accepted"][0]["external_id"])
    shown = client.get(f"/api/runs/{drafted.run_id}", headers=manager(app)).json()
    assert [(o["outcome"], o["deal_id"], o["outcome_run_id"]) for o in shown["outcomes"]] == [("won", deal, closing.run_id)]


# --- A write-back killed half way ------------------------------------------------------------------


def test_an_apply_killed_after_its_first_crm_write_finishes_after_a_restart_writing_each_record_once(tmp_path, demo_source, model_dir):
    """`salesloop serve` SIGKILLs itself right after the e-mail draft reached Salesforce; the restarted process finishes
    the apply from its checkpoint, and the stand-in has still received exactly one of each record."""
    with FakeSalesforce() as fake:
        account = fake.add("Account", {"Name": "Brenner Hydraulik GmbH", "Industry": "Machinery", "NumberOfEmployees": 640,
                                       "BillingCountry": "Germany"})
        contact = fake.add("Contact", {"FirstName": "Ute", "LastName": "Brenner", "Email": "u.brenner@brenner-hydraulik.de",
                                       "Title": "Head of Operations", "AccountId": account})
        opp = fake.add("Opportunity", {"Name": "Brenner presses", "Amount": 70000.0, "StageName": "Qualification", "AccountId": account})
        fake.add("OpportunityContactRole", {"OpportunityId": opp, "ContactId": contact, "IsPrimary": True})
        shutil.copytree(demo_source, tmp_path / "data")
        raw = config_dict(tmp_path / "data", model_dir)
        raw["service"] = {"lease_s": 3600, "max_attempts": 3, "backoff_base_s": 1, "backoff_max_s": 2}
        raw["crm"] = {"connector": "salesforce", "max_retries": 0, "salesforce": {"login_url": fake.login_url},
                      "deal_update_on_adopt": {"StageName": "Negotiation/Review"}}
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump(raw))
        settings = load_settings(config, env={})
        with Services(settings) as services:  # index before any server: Qdrant local mode is one process at a time
            index_cases(services.crm, services.embedder, services.vectors)
        auth = {"Authorization": f"Bearer {TokenStore(settings.resolve(settings.service.tokens_file)).add('lee', 'manager')}"}
        env = {k: v for k, v in os.environ.items() if k != FAILPOINT} | {**SECRETS, "SALESLOOP_SALESFORCE_CLIENT_ID": fake.client_id,
               "SALESLOOP_SALESFORCE_CLIENT_SECRET": fake.client_secret}
        servers = []

        def serve(failpoint: str | None) -> ServeProcess:
            failpoints = {FAILPOINT: failpoint} if failpoint else {}
            servers.append(ServeProcess(config, {**env, **failpoints}, tmp_path, ready_timeout_s=180))
            return servers[-1].wait_ready()

        def runs(server, status: str) -> list[dict]:
            return httpx.get(f"{server.url}/api/runs", params={"status": status}, headers=auth, timeout=30).json()["runs"]

        def wait_for(check, what: str):
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                if found := check():
                    return found
                time.sleep(0.5)
            raise AssertionError(f"timed out waiting for {what}")

        try:
            server = serve("apply:after_crm_email_draft")
            body = json.dumps({"ChangeEventHeader": change_header("Opportunity", "UPDATE", opp, 50, ["StageName"]),
                               "StageName": "Proposal/Price Quote"}).encode()
            posted = httpx.post(f"{server.url}/webhooks/salesforce", content=body, timeout=60,
                                headers={HMAC_HEADER: sign_hmac_sha256(SECRETS["SALESLOOP_SALESFORCE_SECRET"], body)})
            assert posted.status_code == 202, posted.text
            (waiting,) = wait_for(lambda: runs(server, "waiting"), "the run to wait for its rep")
            run_id = waiting["run"]["run_id"]
            with pytest.raises(httpx.TransportError):
                httpx.post(f"{server.url}/api/runs/{run_id}/decision", json={"type": "accept"}, headers=auth, timeout=120)
            assert server.proc.wait(timeout=120) == -signal.SIGKILL
            assert (fake.created["Task"], fake.created["Event"]) == (1, 0), "killed after the e-mail draft, before the meeting"

            server = serve(None)
            wait_for(lambda: [r for r in runs(server, "done") if r["run"]["run_id"] == run_id], "recovery to finish the apply")
            assert (fake.created["Task"], fake.created["Event"]) == (2, 1)  # e-mail draft and clause note; the meeting
            run = httpx.get(f"{server.url}/api/runs/{run_id}", headers=auth, timeout=30).json()
            writes = run["state"]["applied"]["crm_writes"]
            assert [(w["kind"], w["created"]) for w in writes] == [("email_draft", False), ("meeting", True), ("note", True),
                                                                   ("deal_update", True)]
            assert [o["StageName"] for o in fake.rows("Opportunity") if o["Id"] == opp] == ["Negotiation/Review"]
        finally:
            for each in servers:  # a failed assertion must not leave a server behind
                if each.proc.poll() is None:
                    each.kill()
