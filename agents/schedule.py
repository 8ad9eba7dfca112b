"""Node 4: propose consultant slots and contract clauses. Nothing is booked until a rep agrees."""

from __future__ import annotations

import re

from langgraph.runtime import Runtime
from pydantic import BaseModel, ConfigDict

from agents.consent import check_lead
from agents.services import Services
from agents.state import RunState, SchedulePlan
from agents.tracing import StepTimer
from provenance import SourceRef
from tools.calendar import BusyEvent, Calendar, booking_uid, find_free_slots, match_consultants
from tools.clauses import select_clauses
from tools.scheduling_records import Slot

CALL_PURPOSE = "consultant_call"


def plan_schedule(state: RunState, runtime: Runtime[Services]) -> dict:
    timer = StepTimer("plan_schedule", state.run_id)
    services = runtime.context
    call = check_lead(services, CALL_PURPOSE, state.lead)
    if call.allowed:
        plan, refs = _slots(state, services)
    else:
        plan, refs = SchedulePlan(consultant=None, slots=[], clauses=[], notes=[f"no call proposed: {call.reason}"]), []
    if state.conflicts:  # planning again because the rep's slot was taken: say so where the rep reads the new slots
        plan = plan.model_copy(update={"notes": [f"{state.conflicts[-1].describe()}; choose one of these new slots", *plan.notes]})
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


class SlotStatus(BaseModel):
    """A proposed slot as it stands now: `taken_by` is the event that holds its time, if one was booked since the plan."""

    model_config = ConfigDict(extra="forbid")

    index: int
    slot: Slot
    taken_by: BusyEvent | None


def slot_status(calendar: Calendar, state: RunState) -> list[SlotStatus]:
    """The proposed slots of a run not yet applied, each checked against the consultant's calendar now.

    The run's own booking does not count: it is what the rep chose. Apply checks again, under the lock, when it books."""
    plan = state.plan
    if plan is None or plan.consultant is None or not plan.slots or state.applied is not None:
        return []
    events = calendar.events(plan.consultant.consultant, min(s.start for s in plan.slots), max(s.end for s in plan.slots))
    others = [e for e in events if e.uid != booking_uid(state.run_id)]
    return [SlotStatus(index=i, slot=slot, taken_by=next((e for e in others if e.start < slot.end and slot.start < e.end), None))
            for i, slot in enumerate(plan.slots)]


def _zone_notes(lead) -> list[str]:
    """A time zone the CRM did not state is shown to the rep with the rule that chose it, a default most of all."""
    ref = lead.refs.get("timezone")
    if ref is None or ref.kind != "rule":
        return []
    return [f"slot times are in {ref.note} ({ref.id})"]
