"""Deterministic demo CRM: accounts, contacts, deals, consultants, calendars, clauses, events.

Everything random comes from one `random.Random(seed)` consumed in a fixed order, so a
seed always yields byte-identical files; tests and demos can diff the output.
"""

from __future__ import annotations

import base64
import json
import math
import random
import unicodedata
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import icalendar
from pydantic import BaseModel, ConfigDict

from demo import content
from demo.content import Country
from demo.pdf import text_pdf
from tools.crm.records import (
    Account,
    Attachment,
    Contact,
    CRMEvent,
    Deal,
    DealStageChangePayload,
    DocumentChunk,
    InboundEmailPayload,
    NewLeadPayload,
)
from provenance.consent import ConsentFlag
from tools.files import write_atomically
from tools.scheduling_records import Clause, Consultant

INDUSTRIES = ("manufacturing", "saas", "education", "medical_devices")
ACCOUNTS_PER_INDUSTRY = 10
PAST_DEALS = 150
WON_SHARE = 0.6
OPEN_STAGES = ("qualification",) * 5 + ("prospecting",) * 4 + ("negotiation",) * 3
FIRST_CLOSE, LAST_CLOSE = date(2024, 1, 8), date(2026, 10, 30)
# Fixed so calendars never depend on when they were generated.
DTSTAMP = datetime(2026, 1, 1, tzinfo=timezone.utc)
CALENDAR_WEEK = date(2026, 1, 5)  # a Monday: recurring blocks start in this week
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR")
SLIP_WEEKS = 6
ORIGINAL_GO_LIVE = date(2027, 1, 11)


class DemoSummary(BaseModel):
    """How many records of each kind one run wrote."""

    model_config = ConfigDict(extra="forbid")

    accounts: int
    contacts: int
    deals: int
    past_deals: int
    consultants: int
    clauses: int
    events: int


class _Org(NamedTuple):
    """An account plus what contacts need but the CRM record does not store."""

    account: Account
    domain: str
    country: Country
    email_pattern: str


def generate_demo(crm_dir: Path, events_dir: Path, seed: int = 7) -> DemoSummary:
    """Write the demo CRM under `crm_dir` and sample CRM events under `events_dir`."""
    rng = random.Random(seed)
    orgs = _orgs(rng)
    contacts = _contacts(rng, orgs)
    past = _past_deals(rng, orgs, contacts)
    open_deals = _open_deals(rng, orgs, contacts, first_number=len(past) + 1)
    consultants = [_consultant(spec) for spec in content.CONSULTANTS]
    calendars = {c.calendar_file: _calendar(rng, c) for c in consultants}
    clauses = [Clause(id=i, version=v, title=t, text=x) for i, v, t, x in content.CLAUSES]
    events = _events(orgs, contacts, open_deals)

    _write_json(crm_dir / "accounts.json", [org.account for org in orgs])
    _write_json(crm_dir / "contacts.json", contacts)
    _write_json(crm_dir / "deals.json", past + open_deals)
    _write_json(crm_dir / "consultants.json", consultants)
    _write_json(crm_dir / "clauses.json", clauses)
    for name, ics in calendars.items():
        write_atomically(crm_dir / "calendars" / name, ics)
    for name, event in events.items():
        _write_json(events_dir / name, event)
    return DemoSummary(
        accounts=len(orgs), contacts=len(contacts), deals=len(past) + len(open_deals), past_deals=len(past),
        consultants=len(consultants), clauses=len(clauses), events=len(events),
    )


# --- writing -------------------------------------------------------------------------


def _write_json(path: Path, data: BaseModel | Sequence[BaseModel]) -> None:
    dumped = data.model_dump(mode="json") if isinstance(data, BaseModel) else [m.model_dump(mode="json") for m in data]
    write_atomically(path, (json.dumps(dumped, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def _ascii_slug(text: str, sep: str = "") -> str:
    # Email addresses and domains are ASCII even when names carry accents.
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return sep.join("".join(ch for ch in word if ch.isalnum()) for word in plain.split())


def _orgs(rng: random.Random) -> list[_Org]:
    stems = rng.sample(content.COMPANY_STEMS, len(INDUSTRIES) * ACCOUNTS_PER_INDUSTRY)
    drafts = []
    for industry in INDUSTRIES:
        # A fixed regional mix per industry, shuffled, so every industry spans all regions.
        regions = ["NA"] * 3 + ["EMEA"] * 3 + ["APAC"] * 2 + ["LATAM"] * 2
        rng.shuffle(regions)
        for region in regions:
            drafts.append((industry, region, stems.pop()))
    rng.shuffle(drafts)
    return [_org(rng, number, *draft) for number, draft in enumerate(drafts, start=1)]


def _org(rng: random.Random, number: int, industry: str, region: str, stem: str) -> _Org:
    country = rng.choice(content.COUNTRIES[region])
    if industry == "education":
        name = rng.choice(content.EDUCATION_PATTERNS).format(stem=stem)
        suffix = {"United States": "edu", "United Kingdom": "ac.uk"}.get(country.name, country.tld)
        domain = f"{_ascii_slug(stem)}.{suffix}"
    else:
        word = rng.choice(content.COMPANY_WORDS[industry])
        name = f"{stem} {word} {country.legal_suffix}"
        domain = f"{_ascii_slug(stem)}{_ascii_slug(word)}.{country.tld}"
    # Log-uniform: most demo customers are mid-sized, a few are very small or very large.
    employees = round(math.exp(rng.uniform(math.log(40), math.log(20_000))))
    account = Account(
        id=f"acc-{number:03d}", name=name, industry=industry, employees=employees, region=region,
        country=country.name, timezone=country.timezone, owner_rep_id=rng.choice(content.REPS),
    )
    pattern = rng.choice(("{first}.{last}", "{f}{last}", "{first}{l}", "{first}_{last}"))
    return _Org(account, domain, country, pattern)


class _TitleDeck:
    """Deals raw titles so every title appears before any repeats, skipping ones that
    make no sense for the industry (no 'Dean of IT' at a plastics plant)."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._deck: list[str] = []

    def draw(self, industry: str) -> str:
        if not self._deck:
            self._deck = list(content.TITLES)
            self._rng.shuffle(self._deck)
        for title in self._deck:
            if industry in content.TITLE_INDUSTRIES.get(title, INDUSTRIES):
                self._deck.remove(title)
                return title
        # Only industry-specific titles left for another industry: start a fresh round.
        self._deck = []
        return self.draw(industry)


def _contacts(rng: random.Random, orgs: list[_Org]) -> list[Contact]:
    deck = _TitleDeck(rng)
    contacts: list[Contact] = []
    for org in orgs:
        region = org.account.region
        # Distinct first and last names per account keep emails unique under every pattern.
        names = zip(rng.sample(content.FIRST_NAMES[region], 3), rng.sample(content.LAST_NAMES[region], 3))
        for first, last in list(names)[: rng.randint(1, 3)]:
            contacts.append(Contact(
                id=f"con-{len(contacts) + 1:04d}", account_id=org.account.id, full_name=f"{first} {last}",
                email=_email(org, first, last), phone=_phone(rng, org.country),
                raw_title=deck.draw(org.account.industry),
                consents=_consents(len(contacts)),
            ))
    return contacts


def _consents(index: int) -> dict[str, ConsentFlag]:
    # Drawn without the generator so that adding flags left every other demo value as it was.
    given = datetime(2025, 1, 6, 9, 0, tzinfo=timezone.utc) + timedelta(days=7 * index)
    return {name: ConsentFlag(granted=True, at=given, source="customer portal sign-up") for name in ("phone_marketing", "model_training")}


def _email(org: _Org, first: str, last: str) -> str:
    first_slug, last_slug = _ascii_slug(first), _ascii_slug(last)
    local = org.email_pattern.format(first=first_slug, last=last_slug, f=first_slug[0], l=last_slug[0])
    return f"{local}@{org.domain}"


def _phone(rng: random.Random, country: Country) -> str | None:
    # Real CRMs have gaps; a few contacts without a phone keep consumers honest.
    if rng.random() < 0.1:
        return None
    return "".join(str(rng.randrange(10)) if ch == "#" else ch for ch in country.phone)


# --- deals ---------------------------------------------------------------------------


def _amount(rng: random.Random, product: str, employees: int) -> int:
    size_factor = min(max((employees / 500) ** 0.5, 0.4), 5.0)
    return round(content.BASE_PRICE_USD[product] * size_factor * rng.uniform(0.8, 1.25) / 500) * 500


def _deal_counts(rng: random.Random, orgs: list[_Org]) -> list[int]:
    # Two deals each, the rest weighted towards larger accounts, which buy more often.
    counts = [2] * len(orgs)
    weights = [math.log(org.account.employees) for org in orgs]
    for index in rng.choices(range(len(orgs)), weights=weights, k=PAST_DEALS - sum(counts)):
        counts[index] += 1
    return counts


def _past_deals(rng: random.Random, orgs: list[_Org], contacts: list[Contact]) -> list[Deal]:
    plans = [org for org, count in zip(orgs, _deal_counts(rng, orgs)) for _ in range(count)]
    won_count = round(PAST_DEALS * WON_SHARE)
    outcomes = [True] * won_count + [False] * (PAST_DEALS - won_count)
    rng.shuffle(outcomes)
    span = (LAST_CLOSE - FIRST_CLOSE).days
    dated = sorted(
        ((FIRST_CLOSE + timedelta(days=rng.randrange(span + 1)), org, won) for org, won in zip(plans, outcomes)),
        key=lambda item: (item[0], item[1].account.id),
    )
    summaries: set[str] = set()
    return [
        _past_deal(rng, f"deal-{number:04d}", org, _account_contacts(contacts, org), closed_on, won, summaries)
        for number, (closed_on, org, won) in enumerate(dated, start=1)
    ]


def _account_contacts(contacts: list[Contact], org: _Org) -> list[Contact]:
    return [c for c in contacts if c.account_id == org.account.id]


def _fill(rng: random.Random, org: _Org, product: str, text: content.IndustryText) -> dict[str, Any]:
    """Random numbers and names for one deal's templates, drawn once so texts agree."""
    amount = _amount(rng, product, org.account.employees)
    values: dict[str, Any] = {
        "company": org.account.name, "product": product, "amount": amount,
        "impl": int(round(amount * rng.uniform(0.2, 0.5), -3)), "system": rng.choice(text.systems),
        "competitor": rng.choice(text.competitors), "season": rng.choice(content.SEASONS),
        "n_sites": rng.randint(2, 9), "n_lines": rng.randint(4, 30), "n_techs": rng.randint(8, 120),
        "n_users": rng.randrange(2_000, 90_000, 500), "n_students": rng.randrange(3_000, 45_000, 500),
        "n_devices": rng.randrange(300, 9_000, 50), "n_systems": rng.randint(6, 30),
        "n_questions": rng.randint(40, 260), "hours": rng.randint(20, 160), "pct": rng.randint(8, 40),
        "oee": rng.randint(45, 65), "retention": rng.randint(62, 78), "gap": rng.randrange(5_000, 60_000, 500),
        "months": rng.choice((12, 24, 36)), "weeks": rng.randint(4, 16), "days": rng.randint(10, 60),
        "minutes": rng.choice((5, 10, 15, 30)), "attendees": rng.randint(3, 9),
    }
    values["offer"] = rng.choice(text.plays[product].offers).format(**values)
    return values


def _past_deal(
    rng: random.Random, deal_id: str, org: _Org, contacts: list[Contact], closed_on: date, won: bool,
    summaries: set[str],
) -> Deal:
    text = content.INDUSTRY_TEXT[org.account.industry]
    product = rng.choice(content.PRODUCTS)
    contact = rng.choice(contacts)
    # Redraw on the rare exact repeat: identical summaries would make retrieval tests meaningless.
    while True:
        values = _fill(rng, org, product, text)
        loss_reason = None if won else rng.choice(sorted(text.losses))
        summary = _case_summary(rng, text, values, loss_reason)
        if summary not in summaries:
            summaries.add(summary)
            break
    values.update(
        contact_name=contact.full_name, contact_title=contact.raw_title,
        meeting_date=(closed_on - timedelta(days=rng.randint(14, 90))).isoformat(),
    )
    chunks = [
        DocumentChunk(id=f"{deal_id}-c1", kind="proposal_excerpt",
                      text=rng.choice(content.PROPOSAL_TEMPLATES).format(**values)),
        DocumentChunk(id=f"{deal_id}-c2", kind="meeting_notes", text=_meeting_notes(rng, text, values)),
        DocumentChunk(id=f"{deal_id}-c3", kind="objection_answer", text=_objection(rng, text, values, loss_reason)),
    ]
    return Deal(
        id=deal_id, account_id=org.account.id, contact_id=contact.id,
        name=f"{org.account.name} - {product} {rng.choice(content.DEAL_SCOPES)}", product=product,
        amount_usd=values["amount"], stage="closed_won" if won else "closed_lost", outcome="won" if won else "lost",
        closed_on=closed_on, case_summary=summary, chunks=chunks,
    )


def _case_summary(
    rng: random.Random, text: content.IndustryText, values: dict[str, Any], loss_reason: str | None
) -> str:
    play = text.plays[values["product"]]
    situation = rng.choice(play.situations).format(**values)
    verb = "We sold" if loss_reason is None else "We pitched"
    pitch = f"{verb} {values['product']} for {values['offer']} at ${values['amount']:,} per year."
    ending = rng.choice(play.wins if loss_reason is None else text.losses[loss_reason])
    return f"{situation} {pitch} {ending.format(**values)}"


def _meeting_notes(rng: random.Random, text: content.IndustryText, values: dict[str, Any]) -> str:
    concern = rng.choice(text.concerns).format(**values)
    next_step = rng.choice(text.next_steps).format(**values)
    return rng.choice(content.MEETING_TEMPLATES).format(**values, concern=concern, next_step=next_step)


def _objection(
    rng: random.Random, text: content.IndustryText, values: dict[str, Any], loss_reason: str | None
) -> str:
    topics = {**content.COMMON_OBJECTIONS, **text.objections}
    # A lost deal's objection is the one that sank it, when it is an objection at all.
    topic = loss_reason if loss_reason in topics else rng.choice(sorted(topics))
    objection, answer = rng.choice(topics[topic])
    return f"Objection: {objection.format(**values)} Our answer: {answer.format(**values)}"


def _open_deals(rng: random.Random, orgs: list[_Org], contacts: list[Contact], first_number: int) -> list[Deal]:
    # Three open deals per industry, each at a different account.
    picked = [org for industry in INDUSTRIES
              for org in rng.sample([o for o in orgs if o.account.industry == industry], 3)]
    stages = list(OPEN_STAGES)
    rng.shuffle(stages)
    deals = []
    for number, (org, stage) in enumerate(zip(picked, stages), start=first_number):
        product = rng.choice(content.PRODUCTS)
        deals.append(Deal(
            id=f"deal-{number:04d}", account_id=org.account.id,
            contact_id=_account_contacts(contacts, org)[0].id,
            name=f"{org.account.name} - {product} {rng.choice(('pilot', 'rollout', 'expansion'))}",
            product=product, amount_usd=_amount(rng, product, org.account.employees), stage=stage, outcome="open",
        ))
    return deals


# --- consultants and calendars -------------------------------------------------------


def _consultant(spec: content.ConsultantSpec) -> Consultant:
    first, last = spec.name.lower().split()
    return Consultant(
        id=spec.id, name=spec.name, email=f"{first}.{last}@salesloop.example", skills=list(spec.skills),
        industries=list(spec.industries), timezone=spec.timezone, work_start_hour=spec.work_hours[0],
        work_end_hour=spec.work_hours[1], calendar_file=f"{spec.id}.ics",
    )


def _start_in_hours(rng: random.Random, consultant: Consultant, day: date, minutes: int) -> datetime:
    # Half-hour starts that end inside the working day.
    last_start = consultant.work_end_hour * 60 - minutes
    start_minute = rng.randrange(consultant.work_start_hour * 60, last_start + 1, 30)
    return datetime(day.year, day.month, day.day, start_minute // 60, start_minute % 60,
                    tzinfo=ZoneInfo(consultant.timezone))


def _vevent(uid: str, summary: str, start: datetime, minutes: int) -> icalendar.Event:
    event = icalendar.Event()
    event.add("uid", uid)
    event.add("dtstamp", DTSTAMP)
    event.add("dtstart", start)
    event.add("dtend", start + timedelta(minutes=minutes))
    event.add("summary", summary)
    return event


def _calendar(rng: random.Random, consultant: Consultant) -> bytes:
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//salesloop//demo consultant calendar//EN")
    calendar.add("version", "2.0")
    # Weekly recurrence keeps the consultant busy on any future date without
    # generating per-date events, so output stays fixed while "now" moves on.
    for index, (summary, days, minutes) in enumerate(rng.sample(content.RECURRING_BLOCKS, 4), start=1):
        first_day = CALENDAR_WEEK + timedelta(days=WEEKDAYS.index(days[0]))
        event = _vevent(f"{consultant.id}-weekly-{index}@salesloop.example", summary,
                        _start_in_hours(rng, consultant, first_day, minutes), minutes)
        event.add("rrule", {"freq": "weekly", "byday": list(days)})
        calendar.add_component(event)
    for index, summary in enumerate(rng.sample(content.ONE_OFF_BLOCKS, 3), start=1):
        day = date(2026, 11, 2) + timedelta(weeks=rng.randint(0, 7), days=rng.randint(0, 4))
        minutes = rng.choice((60, 120, 240))
        calendar.add_component(_vevent(f"{consultant.id}-once-{index}@salesloop.example", summary,
                                       _start_in_hours(rng, consultant, day, minutes), minutes))
    # RFC 5545 wants a VTIMEZONE for every TZID used.
    calendar.add_missing_timezones()
    return calendar.to_ical()


# --- events --------------------------------------------------------------------------


def _at(day: int, hour: int, minute: int) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=timezone.utc)


def _events(orgs: list[_Org], contacts: list[Contact], open_deals: list[Deal]) -> dict[str, CRMEvent]:
    events: dict[str, CRMEvent] = {}
    for index, lead in enumerate(content.NEW_LEADS, start=1):
        slug = _ascii_slug(lead["company"].split(" ")[0], "-")
        events[f"{index:02d}-new-lead-{slug}.json"] = CRMEvent(
            id=f"evt-{index:04d}", type="new_lead", occurred_at=_at(index + 1, 8 + index, 5 * index),
            source="demo-crm", payload=NewLeadPayload(
                lead_id=f"lead-{index:04d}", **lead,
                consents={"phone_marketing": ConsentFlag(granted=True, at=_at(index + 1, 8 + index, 5 * index), source="web form")}),
        )
    by_id = {org.account.id: org for org in orgs}
    # The slipping rollout belongs to an open manufacturing deal, where delivery dates bite hardest.
    slipping = next(d for d in open_deals if by_id[d.account_id].account.industry == "manufacturing")
    asking = next(d for d in open_deals if by_id[d.account_id].account.industry == "saas")
    contact_by_id = {c.id: c for c in contacts}
    events["04-inbound-email-delivery-slip.json"] = _slip_email(
        4, by_id[slipping.account_id], slipping, contact_by_id[str(slipping.contact_id)])
    events["05-inbound-email-security-review.json"] = _security_email(
        5, by_id[asking.account_id], contact_by_id[str(asking.contact_id)])
    moving = [d for d in open_deals if d.stage == "qualification" and d.id != slipping.id][:2]
    for index, deal in enumerate(moving, start=6):
        change = DealStageChangePayload(deal_id=deal.id, from_stage=deal.stage, to_stage="proposal")
        events[f"{index:02d}-deal-stage-change-to-proposal.json"] = CRMEvent(
            id=f"evt-{index:04d}", type="deal_stage_change", occurred_at=_at(12 + index, 15, 30),
            source="demo-crm", payload=change,
        )
    return events


def _schedule_lines(org: _Org, deal: Deal, contact: Contact) -> list[str]:
    revised = ORIGINAL_GO_LIVE + timedelta(weeks=SLIP_WEEKS)
    return [
        "Revised Delivery Schedule",
        f"Customer: {org.account.name}",
        f"Project: {deal.name} ({deal.id})",
        f"Issued 2026-11-09 by {contact.full_name}, {contact.raw_title}",
        "",
        f"Original go-live: {ORIGINAL_GO_LIVE.isoformat()}",
        f"Revised go-live: {revised.isoformat()} (delivery slips by {SLIP_WEEKS} weeks)",
        "Milestones:",
        f"- New line commissioning complete: {(ORIGINAL_GO_LIVE + timedelta(weeks=2)).isoformat()}",
        f"- Hardware delivery and installation: {(ORIGINAL_GO_LIVE + timedelta(weeks=3)).isoformat()}",
        f"- Integration and acceptance testing: {(ORIGINAL_GO_LIVE + timedelta(weeks=4)).isoformat()}"
        f" to {(revised - timedelta(days=3)).isoformat()}",
        f"- Go-live and hypercare start: {revised.isoformat()}",
        "Reason: our equipment supplier delayed commissioning of the new line.",
    ]


def _slip_email(index: int, org: _Org, deal: Deal, contact: Contact) -> CRMEvent:
    revised = ORIGINAL_GO_LIVE + timedelta(weeks=SLIP_WEEKS)
    body = (
        f"Hi,\n\nheads-up from our side: our rollout date slips by six weeks. Our equipment supplier is late "
        f"commissioning the new line, so go-live moves from {ORIGINAL_GO_LIVE:%d %B} to {revised:%d %B %Y}. "
        f"The revised delivery schedule is attached.\n\nCan we keep the quoted price for {deal.product} and move "
        f"the hardware delivery accordingly? Please confirm by Friday.\n\nBest regards,\n{contact.full_name}\n"
        f"{contact.raw_title}, {org.account.name}"
    )
    pdf = text_pdf(_schedule_lines(org, deal, contact))
    return CRMEvent(
        id=f"evt-{index:04d}", type="inbound_email", occurred_at=_at(9, 7, 42), source="demo-crm",
        payload=InboundEmailPayload(
            message_id=f"<20261109.0742.rollout@{org.domain}>", from_email=contact.email,
            subject=f"Rollout date slips - revised delivery schedule ({org.account.name})", body=body,
            attachments=[Attachment(filename="revised-delivery-schedule.pdf", content_type="application/pdf",
                                    content_base64=base64.b64encode(pdf).decode("ascii"))],
        ),
    )


def _security_email(index: int, org: _Org, contact: Contact) -> CRMEvent:
    body = (
        f"Hello,\n\nbefore we can move forward our security team needs your latest SOC 2 Type II report and "
        f"answers to our vendor questionnaire (62 questions, mostly on SSO with Okta and data residency). "
        f"Could you also send pricing for 250 additional seats? We would like to start the integration in "
        f"January.\n\nThanks,\n{contact.full_name}\n{org.account.name}"
    )
    return CRMEvent(
        id=f"evt-{index:04d}", type="inbound_email", occurred_at=_at(11, 16, 3), source="demo-crm",
        payload=InboundEmailPayload(
            message_id=f"<20261111.1603.security@{org.domain}>", from_email=contact.email,
            subject="SOC 2 report and security questionnaire", body=body,
        ),
    )
