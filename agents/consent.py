"""Purpose checks for a run's lead: the nodes ask before they use personal data, and trace the answer."""

from __future__ import annotations

from agents.services import Services
from agents.state import LeadFact, LeadProfile
from provenance import SourceRef
from provenance.consent import ConsentCheck
from tools.crm.source import CRMDataError


def check_lead(services: Services, purpose: str, lead: LeadProfile, current: bool = False) -> ConsentCheck:
    """Check `purpose` against the lead's flags as the event brought them, or (`current`) as the CRM holds them now."""
    flags = lead.consents
    if current and lead.contact_id:
        try:
            flags = services.crm.contact(lead.contact_id).consents
        except CRMDataError:
            pass  # the contact left the CRM mirror since: the flags the run started with still apply
    return services.consent.check(purpose, flags, lead.contact_id or lead.lead_id)


def usable_facts(services: Services, purpose: str, lead: LeadProfile) -> tuple[list[LeadFact], list[SourceRef], list[str]]:
    """The facts `purpose` may use, the consent refs to trace, and a note for each fact left out."""
    check = check_lead(services, purpose, lead)
    allowed = set(services.consent.purpose(purpose).fields) if check.allowed else set()
    kept = [f for f in lead.facts if f.field in allowed]
    notes = [f"{purpose} may not use {f.field} ([{f.marker}] {f.label}): "
             + ("not among the purpose's fields in the consent policy" if check.allowed else check.reason)
             for f in lead.facts if f.field not in allowed]
    return kept, [check.ref], notes
