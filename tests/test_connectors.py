"""The CRM connector conformance suite: the JSON snapshot, HubSpot and Salesforce read records with their
associations and write each activity exactly once, whatever the retries. HubSpot and Salesforce run against loopback
stand-ins that speak the vendors' documented wire shapes and count what they received."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import pytest

from tools.crm.connector import Activity, ConnectorError, CRMConnector, CRMUnavailable, RecordNotFound
from tools.crm.hubspot import HubSpotConnector
from tools.crm.salesforce import SalesforceConnector
from tools.crm.snapshot_connector import SnapshotConnector
from tools.crm.testing_hubspot import FakeHubSpot
from tools.crm.testing_salesforce import FakeSalesforce

AT = datetime(2026, 11, 24, 14, 0, tzinfo=timezone.utc)
KINDS = ("note", "task", "meeting", "email_draft")


@dataclass
class CRMUnderTest:
    connector: CRMConnector
    contact: str
    company: str
    deal: str
    received: Callable[[str], int]  # activity kind → records the CRM holds of it
    sleeps: list[float]


def seed_hubspot(fake: FakeHubSpot) -> tuple[str, str, str]:
    company = fake.add("companies", {"name": "Falkenrath Antriebstechnik GmbH", "industry": "MACHINERY", "numberofemployees": "850",
                                     "country": "Germany", "state": "Baden-Württemberg"})
    contact = fake.add("contacts", {"firstname": "Stefan", "lastname": "Wagner", "email": "s.wagner@falkenrath-antriebe.de",
                                    "jobtitle": "Dir. of Ops", "phone": "+49 711 555 0142", "country": "Germany"})
    deal = fake.add("deals", {"dealname": "Falkenrath predictive maintenance", "amount": "120000", "dealstage": "appointmentscheduled",
                              "pipeline": "default"})
    fake.associate("contacts", contact, "companies", company)
    fake.associate("contacts", contact, "deals", deal)
    fake.associate("deals", deal, "companies", company)
    return contact, company, deal


def seed_salesforce(fake: FakeSalesforce) -> tuple[str, str, str]:
    account = fake.add("Account", {"Name": "Falkenrath Antriebstechnik GmbH", "Industry": "Machinery", "NumberOfEmployees": 850,
                                   "BillingCountry": "Germany", "BillingState": "Baden-Württemberg", "OwnerId": "0055f000005mc66AAA"})
    contact = fake.add("Contact", {"FirstName": "Stefan", "LastName": "Wagner", "Email": "s.wagner@falkenrath-antriebe.de",
                                   "Title": "Dir. of Ops", "Phone": "+49 711 555 0142", "AccountId": account})
    deal = fake.add("Opportunity", {"Name": "Falkenrath predictive maintenance", "Amount": 120000.0, "StageName": "Prospecting",
                                    "AccountId": account, "IsClosed": False, "IsWon": False})
    fake.add("OpportunityContactRole", {"OpportunityId": deal, "ContactId": contact, "IsPrimary": True, "Role": "Decision Maker"})
    return contact, account, deal


SF_KINDS = {"note": ("Task", "Completed"), "task": ("Task", "Not Started"), "email_draft": ("Task", "Not Started"), "meeting": ("Event", None)}


@pytest.fixture(params=["snapshot", "hubspot", "salesforce"])
def crm(request, tmp_path, demo_source) -> Iterator[CRMUnderTest]:
    sleeps: list[float] = []
    if request.param == "snapshot":
        import shutil

        shutil.copytree(demo_source / "crm", tmp_path / "crm")
        connector = SnapshotConnector(tmp_path / "crm", clock=lambda: AT)
        deal = next(d for d in connector.mirror.deals() if d.contact_id and d.outcome == "open")
        yield CRMUnderTest(connector, deal.contact_id, deal.account_id, deal.id,
                           lambda kind: sum(1 for w in connector.writes() if w.kind == kind), sleeps)
    elif request.param == "hubspot":
        with FakeHubSpot() as fake:
            contact, company, deal = seed_hubspot(fake)
            connector = HubSpotConnector(fake.base_url, fake.token, "salesloop_external_id", sleep=sleeps.append)
            paths = {"note": "notes", "task": "tasks", "meeting": "meetings", "email_draft": "emails"}
            yield CRMUnderTest(connector, contact, company, deal, lambda kind: fake.created[paths[kind]], sleeps)
            connector.close()
    else:
        with FakeSalesforce() as fake:
            contact, company, deal = seed_salesforce(fake)
            connector = SalesforceConnector(fake.login_url, fake.client_id, fake.client_secret, "v60.0", fake.external_id_field,
                                            sleep=sleeps.append)

            def received(kind: str) -> int:
                sobject, status = SF_KINDS[kind]
                subtype = {"email_draft": "Email", "note": "Task", "task": "Task"}.get(kind)
                return sum(1 for r in fake.rows(sobject) if sobject == "Event" or (r["Status"], r["TaskSubtype"]) == (status, subtype))

            yield CRMUnderTest(connector, contact, company, deal, received, sleeps)
            connector.close()


def activity(kind: str, crm: CRMUnderTest, run: str = "run-0123456789abcdef") -> Activity:
    return Activity(kind=kind, external_id=f"{run}:{kind}", subject=f"salesloop {kind}", body=f"The {kind} body.", at=AT,
                    end=AT + timedelta(hours=1) if kind == "meeting" else None, contact_id=crm.contact, deal_id=crm.deal)


def test_a_contact_reads_with_its_company_and_deal(crm):
    contact = crm.connector.get("contact", crm.contact)
    assert contact.id == crm.contact and contact.properties
    assert crm.company in contact.associations["company"] and crm.deal in contact.associations["deal"]
    ref = contact.ref()
    assert ref.kind == "crm_record" and ref.id == f"{crm.connector.system}:contact:{crm.contact}" and ref.version


def test_a_deal_reads_with_its_contact_and_company(crm):
    deal = crm.connector.get("deal", crm.deal)
    assert deal.associations["contact"][0] == crm.contact and deal.associations["company"] == [crm.company]
    company = crm.connector.get("company", crm.company)
    assert company.id == crm.company and company.properties


def test_a_missing_record_is_record_not_found(crm):
    with pytest.raises(RecordNotFound):
        crm.connector.get("deal", "0060000000NoSuchAAA" if crm.connector.system == "salesforce" else "99999999")


@pytest.mark.parametrize("kind", KINDS)
def test_each_write_lands_once_however_often_it_is_retried(crm, kind):
    first = crm.connector.write(activity(kind, crm))
    again = crm.connector.write(activity(kind, crm))
    assert first.created and not again.created and first.crm_id == again.crm_id
    assert crm.received(kind) == 1
    other = crm.connector.write(activity(kind, crm, run="run-fedcba9876543210"))  # another run's write is another record
    assert other.created and other.crm_id != first.crm_id and crm.received(kind) == 2
    assert first.ref().version == first.crm_id and first.ref().id == f"crm:{crm.connector.system}"


def test_a_deal_field_update_is_accepted(crm):
    properties = {"snapshot": {"stage": "proposal"}, "hubspot": {"dealstage": "presentationscheduled"},
                  "salesforce": {"StageName": "Proposal/Price Quote"}}[crm.connector.system]
    written = crm.connector.update_deal(crm.deal, properties, "run-0123456789abcdef:stage")
    assert written.crm_id == crm.deal and written.kind == "deal_update"


# --- vendor specifics: rate limits, failures, credentials -----------------------------------------


def test_hubspot_429_waits_what_its_rate_limit_headers_say_then_succeeds():
    sleeps: list[float] = []
    with FakeHubSpot() as fake:
        contact, _, _ = seed_hubspot(fake)
        connector = HubSpotConnector(fake.base_url, fake.token, "salesloop_external_id", max_wait_s=30, sleep=sleeps.append)
        fake.rate_limit_next = 2
        assert connector.get("contact", contact).id == contact
        assert sleeps == [10.0, 10.0]  # X-HubSpot-RateLimit-Interval-Milliseconds: 10000 with Remaining: 0
        fake.rate_limit_next = 5
        with pytest.raises(CRMUnavailable, match="rate limit.*secondly limit.*retried from the queue"):
            connector.get("contact", contact)
        connector.close()


def test_hubspot_5xx_is_retried_with_backoff_and_never_shows_the_token():
    sleeps: list[float] = []
    with FakeHubSpot(token="pat-na1-very-secret") as fake:
        contact, _, deal = seed_hubspot(fake)
        connector = HubSpotConnector(fake.base_url, fake.token, "salesloop_external_id", max_retries=2, sleep=sleeps.append)
        fake.fail_writes_next = 1
        note = Activity(kind="note", external_id="run-x:note", subject="s", body="b", at=AT, contact_id=contact, deal_id=deal)
        assert connector.write(note).created and sleeps == [0.5] and fake.created["notes"] == 1
        fake.fail_writes_next = 5
        with pytest.raises(CRMUnavailable) as info:
            connector.write(note.model_copy(update={"external_id": "run-y:note"}))
        assert "500" in str(info.value) and "pat-na1-very-secret" not in str(info.value)
        assert fake.created["notes"] == 1 and sleeps == [0.5, 0.5, 1.0]
        connector.close()
        wrong = HubSpotConnector(fake.base_url, "pat-na1-guess", "salesloop_external_id")
        with pytest.raises(ConnectorError) as refused:
            wrong.get("contact", contact)
        assert "401" in str(refused.value) and "INVALID_AUTHENTICATION" in str(refused.value) and "pat-na1-guess" not in str(refused.value)
        wrong.close()


def test_salesforce_request_limit_goes_back_to_the_queue_without_waiting():
    sleeps: list[float] = []
    with FakeSalesforce() as fake:
        contact, _, _ = seed_salesforce(fake)
        connector = SalesforceConnector(fake.login_url, fake.client_id, fake.client_secret, "v60.0", fake.external_id_field,
                                        sleep=sleeps.append)
        connector.get("contact", contact)  # logs in
        fake.request_limit_next = 1
        with pytest.raises(CRMUnavailable, match="REQUEST_LIMIT_EXCEEDED"):
            connector.get("contact", contact)
        assert sleeps == []  # the org's 24-hour limit: waiting in-process cannot help
        connector.close()


def test_salesforce_logs_in_again_when_its_session_expires_and_never_shows_the_secret():
    with FakeSalesforce() as fake:
        contact, _, _ = seed_salesforce(fake)
        connector = SalesforceConnector(fake.login_url, fake.client_id, fake.client_secret, "v60.0", fake.external_id_field)
        connector.get("contact", contact)
        fake.revoke_tokens()
        assert connector.get("contact", contact).id == contact
        assert [p for _, p in fake.requests].count("/services/oauth2/token") == 2
        connector.close()
        wrong = SalesforceConnector(fake.login_url, fake.client_id, "not-the-secret", "v60.0", fake.external_id_field)
        with pytest.raises(ConnectorError) as refused:
            wrong.get("contact", contact)
        assert "invalid_client" in str(refused.value) and "not-the-secret" not in str(refused.value)
        wrong.close()


def test_salesforce_reads_use_one_composite_request():
    with FakeSalesforce() as fake:
        contact, _, deal = seed_salesforce(fake)
        connector = SalesforceConnector(fake.login_url, fake.client_id, fake.client_secret, "v60.0", fake.external_id_field)
        connector.get("deal", deal)
        api = [r for r in fake.requests if r[1] != "/services/oauth2/token"]
        assert api == [("POST", "/services/data/v60.0/composite")]
        connector.close()


def test_the_snapshot_records_its_writes_for_the_demo(tmp_path, demo_source):
    import shutil

    shutil.copytree(demo_source / "crm", tmp_path / "crm")
    connector = SnapshotConnector(tmp_path / "crm", clock=lambda: AT)
    deal = next(d for d in connector.mirror.deals() if d.contact_id)
    connector.write(Activity(kind="note", external_id="run-z:note", subject="Clauses", body="CL-1", at=AT, contact_id=deal.contact_id,
                             deal_id=deal.id))
    (line,) = (tmp_path / "crm" / "writes.jsonl").read_text().splitlines()
    assert json.loads(line)["activity"]["deal_id"] == deal.id
