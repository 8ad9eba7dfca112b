"""Thin webhooks made full: a worker fetches the record a `crm_change` event names, and what it is tied to, through
the CRM connector, and returns the event the graph runs (same id and source, so the same run id).

A new HubSpot contact becomes a new lead with its company and deal; a stage change of a deal the mirror lacks becomes
a stage change that carries the fetched deal, contact and account. Every fetched record is a SourceRef
(crm_record:<system>:<type>:<id>@<updatedAt>) the normalize step puts in the trace. What the CRM holds but the graph
cannot use (an industry the mapping lacks, a contact without e-mail) is a reason to ignore the event, not an error.
"""

from __future__ import annotations

from tools.crm.connector import CRMConnector, CRMObject, ConnectorError
from tools.crm.records import (
    Account,
    Contact,
    CRMChangePayload,
    CRMEvent,
    Deal,
    DealStage,
    DealStageChangePayload,
    FetchedRecords,
    Industry,
    NewLeadPayload,
)
from service.webhooks import HubSpotMapping, WebhookMapping


class Ignored(Exception):
    """The fetched records cannot make an event the graph runs; the message says why (no retry helps)."""


# The CRM's own field names for what the graph reads, per system: (HubSpot, Salesforce).
FIELDS = {
    "first_name": ("firstname", "FirstName"), "last_name": ("lastname", "LastName"), "email": ("email", "Email"),
    "phone": ("phone", "Phone"), "title": ("jobtitle", "Title"), "company_name": ("name", "Name"),
    "lead_company": ("company", "Company"), "industry": ("industry", "Industry"), "employees": ("numberofemployees", "NumberOfEmployees"),
    "country": ("country", "BillingCountry"), "state": ("state", "BillingState"), "owner": ("hubspot_owner_id", "OwnerId"),
    "deal_name": ("dealname", "Name"), "amount": ("amount", "Amount"), "stage": ("dealstage", "StageName"),
    "message": ("message", "Description"),
}


def complete(event: CRMEvent, connector: CRMConnector, mappings: dict[str, WebhookMapping]) -> CRMEvent:
    """The full event for a `crm_change` one; Ignored when the records cannot make one, ConnectorError when the CRM fails."""
    change = event.payload
    assert isinstance(change, CRMChangePayload)
    if connector.system != change.system:
        raise ConnectorError(f"event {event.id} came from {change.system} but crm.connector is {connector.system}; "
                             f"set crm.connector: {change.system} to fetch its records")
    mapping = next((m for m in mappings.values() if _system(m) == change.system), None)
    if mapping is None:
        raise ConnectorError(f"no {change.system} webhook source is configured, so its mapping is unknown; add one under service.sources")
    records = _Fetcher(connector, change.system)
    if (change.object_type == "deal" and "to_stage" in change.values) or change.change.endswith(" UPDATE"):
        payload, fetched = _stage_change(change, records, mapping)
    elif change.object_type in ("contact", "lead"):
        payload, fetched = _lead_from_contact(records.get("contact", change.record_id), records, mapping)
    elif change.object_type == "deal":
        deal = records.get("deal", change.record_id)
        contact_id = _first(deal, "contact")
        if contact_id is None:
            raise Ignored(f"{change.system} deal {deal.id} has no contact to draft for")
        payload, fetched = _lead_from_contact(records.get("contact", contact_id), records, mapping, deal)
    else:
        raise Ignored(f"a {change.object_type} alone names nobody to write to")
    return CRMEvent(id=event.id, type="new_lead" if isinstance(payload, NewLeadPayload) else "deal_stage_change",
                    occurred_at=event.occurred_at, source=event.source, payload=payload, fetched=fetched)


class _Fetcher:
    """Reads records once each and keeps their SourceRefs, in the order read."""

    def __init__(self, connector: CRMConnector, system: str):
        self.connector, self.system, self.read = connector, system, {}

    def get(self, object_type: str, record_id: str) -> CRMObject:
        key = (object_type, record_id)
        if key not in self.read:
            self.read[key] = self.connector.get(object_type, record_id)
        return self.read[key]

    def field(self, obj: CRMObject | None, name: str) -> str | None:
        if obj is None:
            return None
        return obj.text(FIELDS[name][0 if self.system == "hubspot" else 1])

    def sources(self) -> list:
        return [obj.ref() for obj in self.read.values()]


def _lead_from_contact(contact: CRMObject, records: _Fetcher, mapping: WebhookMapping,
                       deal: CRMObject | None = None) -> tuple[NewLeadPayload, FetchedRecords]:
    company_id = _first(contact, "company") or (contact.text("AccountId") if records.system == "salesforce" else None)
    company = records.get("company", company_id) if company_id else None
    if deal is None and (deal_id := _first(contact, "deal")):
        deal = records.get("deal", deal_id)
    f = records.field
    name = " ".join(p for p in (f(contact, "first_name"), f(contact, "last_name")) if p)
    email = f(contact, "email")
    if not email:
        raise Ignored(f"{records.system} contact {contact.id} has no e-mail address to write to")
    raw_industry = f(company, "industry") or f(contact, "industry")
    industry = _industry(raw_industry, mapping)
    employees = f(company, "employees") or f(contact, "employees")
    if not employees or not employees.replace(".", "", 1).isdigit() or float(employees) < 1:
        raise Ignored(f"{records.system} contact {contact.id}: its company states no number of employees, which grading needs")
    amount = f(deal, "amount")
    payload = NewLeadPayload(
        lead_id=contact.id, company=f(company, "company_name") or f(contact, "lead_company") or "unknown company", industry=industry,
        employees=int(float(employees)), country=f(company, "country") or f(contact, "country"),
        state=f(company, "state") or f(contact, "state"), contact_name=name or email, email=email, title=f(contact, "title") or "",
        phone=f(contact, "phone"), deal_id=deal.id if deal else None, message=f(contact, "message") or "",
        budget_usd=int(float(amount)) if amount and amount.replace(".", "", 1).isdigit() else None)
    return payload, FetchedRecords(sources=records.sources())


def _stage_change(change: CRMChangePayload, records: _Fetcher, mapping: WebhookMapping) -> tuple[DealStageChangePayload, FetchedRecords]:
    deal = records.get("deal", change.record_id)
    to_stage = change.values.get("to_stage") or _stage(records.field(deal, "stage"), mapping)
    if to_stage is None:
        raise Ignored(f"{records.system} deal {deal.id}: stage {records.field(deal, 'stage')!r} is not in the mapping's stages")
    contact_id = _first(deal, "contact")
    if contact_id is None:
        raise Ignored(f"{records.system} deal {deal.id} has no contact (a primary contact role) to draft for")
    contact = records.get("contact", contact_id)
    company_id = _first(deal, "company") or _first(contact, "company")
    if company_id is None:
        raise Ignored(f"{records.system} deal {deal.id} has no company")
    company = records.get("company", company_id)
    f = records.field
    employees = f(company, "employees")
    account = Account(id=company.id, name=f(company, "company_name") or "unknown company",
                      industry=_industry(f(company, "industry"), mapping),
                      employees=int(float(employees)) if employees and employees.replace(".", "", 1).isdigit() and float(employees) >= 1 else 1,
                      country=f(company, "country"), state=f(company, "state"), owner_rep_id=f(company, "owner"))
    email = f(contact, "email")
    if not email:
        raise Ignored(f"{records.system} contact {contact.id} has no e-mail address")
    person = Contact(id=contact.id, account_id=company.id, email=email, phone=f(contact, "phone"), raw_title=f(contact, "title") or "",
                     full_name=" ".join(p for p in (f(contact, "first_name"), f(contact, "last_name")) if p) or email)
    amount = f(deal, "amount")
    won_lost = {"closed_won": "won", "closed_lost": "lost"}.get(to_stage, "open")
    record = Deal(id=deal.id, account_id=company.id, contact_id=contact.id, name=f(deal, "deal_name") or deal.id,
                  product=f(deal, "deal_name") or "unknown product", stage=to_stage, outcome=won_lost,
                  amount_usd=int(float(amount)) if amount and amount.replace(".", "", 1).isdigit() else 0)
    payload = DealStageChangePayload(deal_id=deal.id, from_stage=None, to_stage=to_stage)
    return payload, FetchedRecords(account=account, contact=person, deal=record, sources=records.sources())


def _first(obj: CRMObject, object_type: str) -> str | None:
    ids = obj.associations.get(object_type) or []
    return ids[0] if ids else None


def _industry(value: str | None, mapping: WebhookMapping) -> Industry:
    table = mapping.industries if isinstance(mapping, HubSpotMapping) else (mapping.new_lead.industries if mapping.new_lead else {})
    industry = table.get(value or "")
    if industry is None:
        raise Ignored(f"industry {value!r} is not under the {_system(mapping)} mapping's industries; add it to take these leads")
    return industry


def _stage(value: str | None, mapping: WebhookMapping) -> DealStage | None:
    if isinstance(mapping, HubSpotMapping):
        return mapping.stages.get(value or "")
    return mapping.deal_stage_change.stages.get(value or "") if mapping.deal_stage_change else None


def _system(mapping: WebhookMapping) -> str:
    return "hubspot" if isinstance(mapping, HubSpotMapping) else "salesforce"
