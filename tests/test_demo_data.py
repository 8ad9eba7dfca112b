"""The demo data generator writes a valid, deterministic CRM on disk."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
from collections import Counter
from datetime import date
from pathlib import Path

import icalendar
import pypdf
import pytest

from demo.generate import DemoSummary, generate_demo
from demo.pdf import text_pdf
from tools.crm.records import Account, Contact, CRMEvent, Deal
from tools.scheduling_records import Clause, Consultant

REPO_ROOT = Path(__file__).resolve().parent.parent


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _generate(root: Path, seed: int = 7) -> DemoSummary:
    return generate_demo(root / "crm", root / "events", seed=seed)


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    _generate(root)
    return root


@pytest.fixture(scope="module")
def accounts(demo_root: Path) -> list[Account]:
    return [Account.model_validate(a) for a in json.loads((demo_root / "crm/accounts.json").read_text())]


@pytest.fixture(scope="module")
def contacts(demo_root: Path) -> list[Contact]:
    return [Contact.model_validate(c) for c in json.loads((demo_root / "crm/contacts.json").read_text())]


@pytest.fixture(scope="module")
def deals(demo_root: Path) -> list[Deal]:
    return [Deal.model_validate(d) for d in json.loads((demo_root / "crm/deals.json").read_text())]


@pytest.fixture(scope="module")
def consultants(demo_root: Path) -> list[Consultant]:
    return [Consultant.model_validate(c) for c in json.loads((demo_root / "crm/consultants.json").read_text())]


@pytest.fixture(scope="module")
def events(demo_root: Path) -> dict[str, CRMEvent]:
    return {p.name: CRMEvent.model_validate_json(p.read_text()) for p in sorted((demo_root / "events").glob("*.json"))}


def test_same_seed_gives_byte_identical_trees(tmp_path: Path) -> None:
    _generate(tmp_path / "a")
    _generate(tmp_path / "b")
    first, second = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert first == second
    assert "crm/deals.json" in first and any(name.endswith(".ics") for name in first)


def test_output_does_not_depend_on_string_hash_seed(tmp_path: Path, demo_root: Path) -> None:
    # Set iteration order changes with PYTHONHASHSEED; a separate process proves we never rely on it.
    script = "import sys; from pathlib import Path; from demo.generate import generate_demo; " \
             "generate_demo(Path(sys.argv[1]) / 'crm', Path(sys.argv[1]) / 'events')"
    env = {**os.environ, "PYTHONHASHSEED": "4321", "PYTHONPATH": str(REPO_ROOT)}
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, cwd=REPO_ROOT, check=True)
    assert _tree(tmp_path) == _tree(demo_root)


def test_other_seed_gives_other_data(tmp_path: Path, demo_root: Path) -> None:
    _generate(tmp_path, seed=8)
    assert (tmp_path / "crm/deals.json").read_bytes() != (demo_root / "crm/deals.json").read_bytes()


def test_summary_matches_files(tmp_path: Path) -> None:
    summary = _generate(tmp_path)
    crm = tmp_path / "crm"
    assert summary == DemoSummary(
        accounts=len(json.loads((crm / "accounts.json").read_text())),
        contacts=len(json.loads((crm / "contacts.json").read_text())),
        deals=len(json.loads((crm / "deals.json").read_text())),
        past_deals=sum(d["outcome"] != "open" for d in json.loads((crm / "deals.json").read_text())),
        consultants=len(json.loads((crm / "consultants.json").read_text())),
        clauses=len(json.loads((crm / "clauses.json").read_text())),
        events=len(list((tmp_path / "events").glob("*.json"))),
    )


def test_files_are_indented_utf8_json_with_trailing_newline(demo_root: Path) -> None:
    for path in [*demo_root.glob("crm/*.json"), *demo_root.glob("events/*.json")]:
        text = path.read_text(encoding="utf-8")
        assert text.endswith("\n") and text.startswith(("[\n  {", "{\n  \"")), path.name
    # ensure_ascii=False: accented names stay readable in the file.
    assert re.search(r"[éíóãú]", (demo_root / "crm/contacts.json").read_text(encoding="utf-8"))


def test_accounts_cover_industries_regions_and_sizes(accounts: list[Account]) -> None:
    assert len(accounts) == 40
    assert Counter(a.industry for a in accounts) == {
        "manufacturing": 10, "saas": 10, "education": 10, "medical_devices": 10}
    assert {a.region for a in accounts} == {"NA", "EMEA", "APAC", "LATAM"}
    assert len({a.id for a in accounts}) == len({a.name for a in accounts}) == 40
    assert min(a.employees for a in accounts) < 100 and max(a.employees for a in accounts) > 10_000
    assert {a.owner_rep_id for a in accounts} == {"rep-anna", "rep-ben", "rep-carla"}
    assert all("/" in a.timezone for a in accounts)


def test_contacts_belong_to_accounts_and_keep_messy_titles(
    accounts: list[Account], contacts: list[Contact]
) -> None:
    per_account = Counter(c.account_id for c in contacts)
    assert set(per_account) == {a.id for a in accounts}
    assert all(1 <= n <= 3 for n in per_account.values())
    assert len({c.email for c in contacts}) == len(contacts)
    assert {"Dir. of Ops", "VP Eng.", "head of procurement"} <= {c.raw_title for c in contacts}
    assert all(re.fullmatch(r"[a-z0-9._]+@[a-z0-9.]+\.[a-z]+", c.email) for c in contacts)


def test_past_deals_have_summaries_and_three_chunks(accounts: list[Account], deals: list[Deal]) -> None:
    past = [d for d in deals if d.outcome != "open"]
    assert 140 <= len(past) <= 160
    assert 0.5 <= sum(d.outcome == "won" for d in past) / len(past) <= 0.7
    assert {d.account_id for d in past} == {a.id for a in accounts}
    summaries = [d.case_summary for d in past]
    assert all(s and s.count(". ") >= 2 for s in summaries)
    assert len(set(summaries)) == len(summaries)
    for deal in past:
        assert deal.stage == ("closed_won" if deal.outcome == "won" else "closed_lost")
        assert deal.closed_on is not None and date(2024, 1, 1) <= deal.closed_on <= date(2026, 12, 31)
        assert [c.id for c in deal.chunks] == [f"{deal.id}-c1", f"{deal.id}-c2", f"{deal.id}-c3"]
        assert [c.kind for c in deal.chunks] == ["proposal_excerpt", "meeting_notes", "objection_answer"]
        assert all(c.text and "{" not in c.text for c in deal.chunks)


def test_case_summaries_are_industry_specific(accounts: list[Account], deals: list[Deal]) -> None:
    industry = {a.id: a.industry for a in accounts}
    texts: dict[str, str] = dict.fromkeys(("manufacturing", "saas", "education", "medical_devices"), "")
    for deal in deals:
        texts[industry[deal.account_id]] += deal.case_summary or ""
    # Each industry's vocabulary shows up in its own cases and nowhere else.
    own_words = {"manufacturing": "MES", "saas": "SSO", "education": "student", "medical_devices": "FDA"}
    for own, word in own_words.items():
        assert [name for name, text in texts.items() if word in text] == [own]


def test_open_deals_carry_no_history(deals: list[Deal]) -> None:
    open_deals = [d for d in deals if d.outcome == "open"]
    assert 10 <= len(open_deals) <= 14
    for deal in open_deals:
        assert deal.stage in {"prospecting", "qualification", "negotiation"}
        assert deal.closed_on is None and deal.case_summary is None and deal.chunks == []
    assert len({d.id for d in deals}) == len(deals)


def test_consultants_and_calendars(demo_root: Path, consultants: list[Consultant]) -> None:
    assert 4 <= len(consultants) <= 6
    for industry in ("manufacturing", "saas", "education", "medical_devices"):
        assert sum(industry in c.industries for c in consultants) >= 2
    assert len({c.timezone.split("/")[0] for c in consultants}) >= 4  # continents
    for consultant in consultants:
        assert consultant.work_start_hour < consultant.work_end_hour
        calendar = icalendar.Calendar.from_ical((demo_root / "crm/calendars" / consultant.calendar_file).read_bytes())
        vevents = calendar.walk("VEVENT")
        assert len(vevents) >= 5
        assert len({str(e["UID"]) for e in vevents}) == len(vevents)
        for event in vevents:
            assert {"UID", "DTSTAMP", "DTSTART", "DTEND", "SUMMARY"} <= set(event)
            assert str(event["DTSTART"].dt.tzinfo) == consultant.timezone
            assert event.decoded("DTSTART").year == 2026
        weekly = [e for e in vevents if "RRULE" in e]
        assert len(weekly) >= 3 and all(e["RRULE"]["FREQ"] == ["WEEKLY"] for e in weekly)


def test_clause_library(demo_root: Path) -> None:
    clauses = [Clause.model_validate(c) for c in json.loads((demo_root / "crm/clauses.json").read_text())]
    assert len(clauses) >= 10
    assert all(re.fullmatch(r"CL-[A-Z-]+-\d{2}", c.id) and re.fullmatch(r"\d+\.\d+", c.version) for c in clauses)
    titles = " ".join(c.title for c in clauses)
    for topic in ("liability", "GDPR", "HIPAA", "FERPA", "Part 11", "99.9%", "net 30", "net 60", "escrow"):
        assert topic in titles


def test_events_reference_real_crm_records(
    accounts: list[Account], contacts: list[Contact], deals: list[Deal], events: dict[str, CRMEvent]
) -> None:
    assert len(events) >= 7
    assert all(re.fullmatch(r"\d{2}-(new-lead|inbound-email|deal-stage-change)-[a-z0-9-]+\.json", n) for n in events)
    assert len({e.id for e in events.values()}) == len(events)
    for event in events.values():
        assert event.source == "demo-crm" and event.occurred_at.utcoffset() is not None
        assert (event.occurred_at.year, event.occurred_at.month) == (2026, 11)
    by_type: dict[str, list] = {}
    for event in events.values():
        by_type.setdefault(event.type, []).append(event.payload)

    leads = by_type["new_lead"]
    assert 2 <= len(leads) <= 3 and len({lead.industry for lead in leads}) == len(leads)
    assert not {lead.company for lead in leads} & {a.name for a in accounts}
    assert not {lead.email for lead in leads} & {c.email for c in contacts}

    known_emails = {c.email for c in contacts}
    emails = by_type["inbound_email"]
    assert len(emails) == 2 and all(e.from_email in known_emails for e in emails)

    open_stages = {d.id: d.stage for d in deals if d.outcome == "open"}
    changes = by_type["deal_stage_change"]
    assert len(changes) == 2
    for change in changes:
        assert open_stages[change.deal_id] == change.from_stage and change.to_stage == "proposal"


def test_slipping_delivery_email_carries_readable_pdf(events: dict[str, CRMEvent]) -> None:
    slip = [e.payload for e in events.values() if e.type == "inbound_email" and "slips" in e.payload.body]
    assert len(slip) == 1
    (attachment,) = slip[0].attachments
    assert attachment.content_type == "application/pdf" and attachment.filename.endswith(".pdf")
    data = base64.b64decode(attachment.content_base64)
    text = pypdf.PdfReader(io.BytesIO(data), strict=True).pages[0].extract_text()
    assert "delivery" in text.lower() and "Revised go-live: 2027-02-22" in text


def test_text_pdf_round_trips_special_characters() -> None:
    lines = ["Schedule (v2) \\ final", "José Müller", "Delivery: 2027-02-22"]
    reader = pypdf.PdfReader(io.BytesIO(text_pdf(lines)), strict=True)
    assert len(reader.pages) == 1
    assert reader.pages[0].extract_text().splitlines() == lines


def test_crash_mid_write_keeps_previous_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _generate(tmp_path)
    before = _tree(tmp_path)

    def fail(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("tools.files.os.replace", fail)
    with pytest.raises(OSError, match="disk full"):
        _generate(tmp_path, seed=8)
    # The failed run leaves neither half-written files nor temp files behind.
    assert _tree(tmp_path) == before
