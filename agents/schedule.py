"""Node 5: propose consultant slots and contract clauses. Nothing is booked until a rep agrees."""

from __future__ import annotations

import re

from langgraph.runtime import Runtime

from agents.consent import check_lead
from agents.services import Services
from agents.state import RunState, SchedulePlan
from agents.tracing import StepTimer
from provenance import SourceRef
from tools.calendar import find_free_slots, match_consultants
from tools.clauses import select_clauses

CALL_PURPOSE = "consultant_call"


def plan_schedule(state: RunState, runtime: Runtime[Services]) -> dict:
    timer = StepTimer("plan_schedule", state.run_id)
    services = runtime.context
    call = check_lead(services, CALL_PURPOSE, state.lead)
    if call.allowed:
        plan, refs = _slots(state, services)
    else:
        plan, refs = SchedulePlan(consultant=None, slots=[], clauses=[], notes=[f"no call proposed: {call.reason}"]), []
    refs.append(call.ref)
    settings = services.settings
    lead = state.lead
    choices = select_clauses(settings.clauses.rules, services.clause_library, lead.industry, lead.region, lead.employees)
    plan = plan.model_copy(update={"clauses": choices, "notes": [*_zone_notes(lead), *plan.notes]})
    refs += [lead.refs["industry"], lead.refs["region"], lead.refs["employees"]]
    refs += [SourceRef(kind="rule", id=f"clause_rule:{c.rule_id}", field=c.clause.id, version=c.clause.version) for c in choices]
    who = plan.consultant.consultant.name if plan.consultant else "nobody"
    summary = f"{len(plan.slots)} slots with {who}; clauses {', '.join(c.clause.id for c in choices) or 'none'}"
    return {"plan": plan, "trace": [timer.finish(refs, summary, notes=plan.notes)]}


def _slots(state: RunState, services: Services) -> tuple[SchedulePlan, list[SourceRef]]:
    """The best-matching consultant who has free time; the next one if the first is booked up."""
    lead = state.lead
    settings = services.settings.scheduling
    keywords = set(re.findall(r"[a-z0-9]+", f"{lead.industry} {lead.request} {lead.role}".lower()))
    matches = match_consultants(services.consultants, lead.industry, keywords)
    refs = [lead.refs["timezone"], SourceRef(kind="tool", id="consultant_match", note=f"{len(matches)} consultants cover {lead.industry}")]
    not_before = max(services.clock(), state.event.occurred_at)
    notes: list[str] = []
    for match in matches:
        slots = find_free_slots(services.calendar, match.consultant, lead.timezone, not_before, settings.meeting_minutes,
                                settings.slots, settings.horizon_days, tuple(settings.lead_hours))
        refs.append(SourceRef(kind="tool", id="calendar", field=match.consultant.calendar_file, note=f"{len(slots)} free slots"))
        if slots:
            return SchedulePlan(consultant=match, slots=slots, clauses=[], notes=notes), refs
        notes.append(f"{match.consultant.name} has no free slot in the next {settings.horizon_days} days")
    notes.append(f"no consultant covering {lead.industry} has free time; schedule by hand")
    return SchedulePlan(consultant=None, slots=[], clauses=[], notes=notes), refs


def _zone_notes(lead) -> list[str]:
    """A time zone the CRM did not state is shown to the rep with the rule that chose it, a default most of all."""
    ref = lead.refs.get("timezone")
    if ref is None or ref.kind != "rule":
        return []
    return [f"slot times are in {ref.note} ({ref.id})"]
