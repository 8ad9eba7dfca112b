"""Node 1: map the event's payload onto lead, contact and account, with the CRM field behind each value."""

from __future__ import annotations

from dataclasses import dataclass, field

from langgraph.runtime import Runtime

from agents.services import Services
from agents.state import LeadFact, LeadProfile, RunState
from agents.titles import normalize_title
from agents.tracing import StepTimer
from provenance import SourceRef, sha256_text
from tools.attachments import attachment_text
from tools.crm.places import Place, PlaceTable, derive_place
from tools.crm.records import Account, Contact, CRMEvent, Deal, DealStageChangePayload, FetchedRecords, InboundEmailPayload, NewLeadPayload
from tools.crm.source import CRMDataError, CRMSource


@dataclass
class _Fields:
    """Profile values collected with the source each one was read from."""

    values: dict[str, object] = field(default_factory=dict)
    refs: dict[str, SourceRef] = field(default_factory=dict)

    def put(self, name: str, value: object, ref: SourceRef) -> None:
        self.values[name] = value
        self.refs[name] = ref


def normalize(state: RunState, runtime: Runtime[Services]) -> dict:
    timer = StepTimer("normalize", state.run_id)
    services = runtime.context
    fields = _collect(state.event, _FetchedFirst(state.event.fetched, services.crm))
    place_notes = _place(fields, services.places)
    title = normalize_title(str(fields.values["raw_title"]), services.settings.titles)
    title_ref = SourceRef(kind="rule", id="titles", field=title.synonym or "no match", note=f"{fields.values['raw_title']} -> {title.role}/{title.seniority}")
    profile = LeadProfile(
        **fields.values,
        role=title.role,
        seniority=title.seniority,
        decision_maker=title.decision_maker,
        facts=_facts(fields, title.role, title.seniority),
        refs={**fields.refs, "role": title_ref},
    )
    summary = f"lead {profile.lead_id}: {profile.contact_name} ({profile.role}/{profile.seniority}) at {profile.account_name}, {profile.industry}"
    fetched = state.event.fetched.sources if state.event.fetched else []
    refs = list(dict.fromkeys([_event_ref(state.event), state.route.rule, *fetched, *fields.refs.values(), title_ref]))
    trace = timer.finish(refs, summary, notes=place_notes)
    return {"lead": profile, "trace": [trace]}


class _FetchedFirst:
    """The records a worker fetched with the event, else the CRM mirror: a thin webhook's deal need not be mirrored."""

    def __init__(self, fetched: FetchedRecords | None, mirror: CRMSource):
        self.fetched, self.mirror = fetched, mirror

    def account(self, account_id: str) -> Account:
        found = self.fetched.account if self.fetched else None
        return found if found is not None and found.id == account_id else self.mirror.account(account_id)

    def contact(self, contact_id: str) -> Contact:
        found = self.fetched.contact if self.fetched else None
        return found if found is not None and found.id == contact_id else self.mirror.contact(contact_id)

    def contact_by_email(self, email: str) -> Contact | None:
        return self.mirror.contact_by_email(email)

    def deal(self, deal_id: str) -> Deal:
        found = self.fetched.deal if self.fetched else None
        return found if found is not None and found.id == deal_id else self.mirror.deal(deal_id)


def _place(f: _Fields, table: PlaceTable) -> list[str]:
    """Region and time zone as stated, or derived from country and state, or unknown and the default time zone.
    Each derived value's source is the rule that decided it, and a note says so where the rep reads the trace."""
    place = derive_place(table, f.values.pop("country"), f.values.pop("state", None), f.values["region"], f.values["timezone"])
    country_ref = f.refs.pop("country")
    f.put("country", place.country or "unknown", country_ref)
    if place.region_rule != "stated":
        f.put("region", place.region, SourceRef(kind="rule", id=f"places:{place.region_rule}", field="region",
                                                note=place.explain_region(), version=_PLACES_VERSION))
    if place.timezone_rule != "stated":
        f.put("timezone", place.timezone, SourceRef(kind="rule", id=f"places:{place.timezone_rule}", field="timezone",
                                                    note=place.explain_timezone(), version=_PLACES_VERSION))
    f.refs.pop("state", None)
    return [f"time zone {place.explain_timezone()}", f"sales region {place.explain_region()}"]


_PLACES_VERSION = "configs/places.yaml"


def _event_ref(event: CRMEvent) -> SourceRef:
    return SourceRef(kind="crm_record", id=f"event:{event.id}", field=event.type, version=sha256_text(event.model_dump_json()), note=f"from {event.source}")


def _collect(event: CRMEvent, crm: CRMSource) -> _Fields:
    payload = event.payload
    if isinstance(payload, NewLeadPayload):
        return _from_new_lead(payload)
    if isinstance(payload, InboundEmailPayload):
        return _from_email(event, payload, crm)
    if isinstance(payload, DealStageChangePayload):
        return _from_stage_change(payload, crm)
    raise TypeError(f"no normalizer for payload {type(payload).__name__}")


def _from_new_lead(p: NewLeadPayload) -> _Fields:
    f = _Fields()
    rec = f"lead:{p.lead_id}"
    for name, attr in [("account_name", "company"), ("industry", "industry"), ("employees", "employees"), ("region", "region"),
                       ("country", "country"), ("state", "state"), ("timezone", "timezone"), ("contact_name", "contact_name"),
                       ("email", "email"), ("raw_title", "title"), ("budget_usd", "budget_usd"), ("request", "message")]:
        f.put(name, getattr(p, attr), SourceRef(kind="crm_record", id=rec, field=attr))
    f.values.update(lead_id=p.lead_id, account_id=None, contact_id=None, owner_rep_id=None, deal_id=p.deal_id)
    f.put("consents", p.consents, SourceRef(kind="crm_record", id=rec, field="consents"))
    f.put("engagement", {"web_visit": p.web_visits, "email_open": p.email_opens, "demo_request": int(p.demo_requested)},
          SourceRef(kind="crm_record", id=rec, field="web_visits,email_opens,demo_requested"))
    return f


def _from_email(event: CRMEvent, p: InboundEmailPayload, crm: CRMSource) -> _Fields:
    contact = crm.contact_by_email(p.from_email)
    if contact is None:
        raise CRMDataError(f"event {event.id}: no contact with email {p.from_email!r} in the CRM mirror; sync the contact first or send a new_lead event")
    f = _from_contact(contact, crm.account(contact.account_id))
    parts = [f"Subject: {p.subject}", p.body] + [f"Attachment {a.filename}: {attachment_text(a)}" for a in p.attachments]
    f.put("request", "\n".join(parts), SourceRef(kind="crm_record", id=f"email:{p.message_id}", field="subject,body,attachments",
                                                 version=sha256_text("\n".join(parts))))
    f.put("engagement", {"inbound_email": 1}, SourceRef(kind="crm_record", id=f"email:{p.message_id}", field="from_email"))
    return f


def _from_stage_change(p: DealStageChangePayload, crm: CRMSource) -> _Fields:
    deal = crm.deal(p.deal_id)
    if deal.contact_id is None:
        raise CRMDataError(f"deal {deal.id} has no contact; set its contact in the CRM before moving it to {p.to_stage}")
    f = _from_contact(crm.contact(deal.contact_id), crm.account(deal.account_id))
    rec = f"deal:{deal.id}"
    f.put("deal_id", deal.id, SourceRef(kind="crm_record", id=rec, field="id"))
    f.put("deal_stage", p.to_stage, SourceRef(kind="crm_record", id=rec, field="stage", note=f"{p.from_stage or 'unknown'} -> {p.to_stage}"))
    f.put("budget_usd", deal.amount_usd, SourceRef(kind="crm_record", id=rec, field="amount_usd"))
    f.put("request", f"Deal {deal.name} for {deal.product} moved to {p.to_stage}.", SourceRef(kind="crm_record", id=rec, field="name,product"))
    f.put("engagement", {"stage_change": 1}, SourceRef(kind="crm_record", id=rec, field="stage"))
    return f


def _from_contact(contact: Contact, account: Account) -> _Fields:
    f = _Fields()
    acc, con = f"account:{account.id}", f"contact:{contact.id}"
    for name, attr in [("industry", "industry"), ("employees", "employees"), ("region", "region"), ("country", "country"),
                       ("state", "state"), ("timezone", "timezone"), ("owner_rep_id", "owner_rep_id"), ("account_id", "id")]:
        f.put(name, getattr(account, attr), SourceRef(kind="crm_record", id=acc, field=attr))
    f.put("account_name", account.name, SourceRef(kind="crm_record", id=acc, field="name"))
    for name, attr in [("contact_name", "full_name"), ("email", "email"), ("raw_title", "raw_title"), ("contact_id", "id"),
                       ("consents", "consents")]:
        f.put(name, getattr(contact, attr), SourceRef(kind="crm_record", id=con, field=attr))
    f.values.update(lead_id=contact.id, budget_usd=None)
    return f


def _facts(f: _Fields, role: str, seniority: str) -> list[LeadFact]:
    """The facts the draft may cite, each numbered [L#] and tied to the field it came from."""
    v, r = f.values, f.refs
    rows = [
        ("account_name", "Company", f"{v['account_name']} ({v['country']})", r["account_name"]),
        ("industry", "Industry", str(v["industry"]).replace("_", " "), r["industry"]),
        ("employees", "Company size", f"{v['employees']} employees", r["employees"]),
        ("contact_name", "Contact", f"{v['contact_name']}, {role.replace('_', ' ')} ({seniority.replace('_', ' ')})", r["raw_title"]),
    ]
    if v.get("budget_usd"):
        rows.append(("budget_usd", "Budget", f"USD {v['budget_usd']:,}", r["budget_usd"]))
    if v.get("deal_stage"):
        rows.append(("deal_stage", "Deal stage", str(v["deal_stage"]), r["deal_stage"]))
    if v.get("request"):
        rows.append(("request", "Customer request", _clip(str(v["request"]), 600), r["request"]))
    return [LeadFact(marker=f"L{i}", field=name, label=label, value=value, source=ref) for i, (name, label, value, ref) in enumerate(rows, 1)]


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
