"""Node 7: act on the rep's decision. Each side effect is idempotent on the run id, so a retry repeats nothing.

The slot is checked again when it is booked, under the calendar's lock: if another booking took it since the plan was
made, nothing is booked, sent or stored, and the run goes back to the rep with fresh slots (plan_schedule runs again).

After an adopt or edit: the feedback record, the consultant's booking (.ics), and the write-back to the CRM through
its connector: the final text as a logged e-mail draft, the meeting, the clauses as a note, each on the contact's
and deal's timeline, each with an external id derived from the run. A rejected draft writes nothing to the CRM.
"""

from __future__ import annotations

from langgraph.graph import END
from langgraph.runtime import Runtime

from agents.consent import check_lead
from agents.inbox import InvalidDecision
from agents.schedule import CALL_PURPOSE
from agents.services import Services
from agents.state import ApplyResult, RunState, SlotConflict
from agents.tracing import StepTimer
from feedback.store import FeedbackRecord
from provenance import SourceRef, sha256_text
from tools.calendar import Booking, BusyEvent, SlotTaken, booking_uid
from tools.crm.connector import Activity, WrittenRecord
from tools.failpoints import failpoint
from tools.scheduling_records import Slot


def apply_decision(state: RunState, runtime: Runtime[Services]) -> dict:
    timer = StepTimer("apply", state.run_id)
    services = runtime.context
    record = feedback_record(state, services)
    result = ApplyResult(booking_uid=None, booked_now=False, booked_slot=None, clause_ids=[], feedback_id=record.id)
    booking_refs: list[SourceRef] = []
    if state.decision.decision != "reject":
        try:
            result, booking_refs = _book(state, services, result)
        except SlotTaken as taken:
            return _send_back(state, services, timer, taken.holder)
    failpoint("apply:before_feedback")
    stored = services.feedback.append(record)
    _audit_decision(state, services, record)
    refs = [SourceRef(kind="human", id=state.decision.rep_id, field=state.decision.decision),
            SourceRef(kind="tool", id="feedback_store", field=record.id, note="stored" if stored else "already stored"), *booking_refs]
    if state.decision.decision != "reject":
        # A CRM that fails here fails the step; the retry finds the booking and feedback already made (idempotent).
        written = write_back(state, services, result)
        result = result.model_copy(update={"crm_writes": written})
        refs += [w.ref() for w in written]
    summary = _summary(state, result)
    return {"applied": result, "trace": [timer.finish(refs, summary)]}


def after_apply(state: RunState) -> str:
    """A decision sent back (its slot was taken) plans again and waits for the rep; an applied one ends the run."""
    return "plan_schedule" if state.applied is None else END


def _book(state: RunState, services: Services, result: ApplyResult) -> tuple[ApplyResult, list[SourceRef]]:
    plan, lead, decision = state.plan, state.lead, state.decision
    clause_ids = [c.clause.id for c in plan.clauses]
    refs = [SourceRef(kind="rule", id=f"clause_rule:{c.rule_id}", field=c.clause.id, version=c.clause.version) for c in plan.clauses]
    if not plan.slots or plan.consultant is None:
        return result.model_copy(update={"clause_ids": clause_ids}), refs
    # Consent may have been withdrawn while the draft waited for the rep: ask the CRM again before booking.
    call = check_lead(services, CALL_PURPOSE, lead, current=True)
    refs.append(call.ref)
    if not call.allowed:
        return result.model_copy(update={"clause_ids": clause_ids}), refs
    slot = _chosen_slot(state)
    consultant = plan.consultant.consultant
    booking = Booking(
        uid=booking_uid(state.run_id),
        consultant_id=consultant.id,
        start=slot.start,
        end=slot.end,
        summary=f"Technical consultation: {lead.account_name}",
        description=f"salesloop run {state.run_id}; lead {lead.lead_id}; approved by {decision.rep_id}",
        attendees=[consultant.email, lead.email],
    )
    booked_now = services.calendar.book(consultant, booking)  # SlotTaken if another event holds the time now
    failpoint("apply:after_booking")
    refs.append(SourceRef(kind="tool", id="calendar", field=consultant.calendar_file, version=booking.uid,
                          note="booked" if booked_now else "already booked"))
    return result.model_copy(update={"booking_uid": booking.uid, "booked_now": booked_now, "booked_slot": slot, "clause_ids": clause_ids}), refs


def _chosen_slot(state: RunState) -> Slot:
    index, slots = state.decision.slot_index, state.plan.slots
    # Orchestrator.decide refuses these before resuming; a resume that bypassed it must not book some other slot.
    if index is None or index >= len(slots):
        raise InvalidDecision(f"run {state.run_id}: the decision names slot {index}, but the plan proposes slots 0 to "
                               f"{len(slots) - 1}; decide again with one of them")
    return slots[index]


def _send_back(state: RunState, services: Services, timer: StepTimer, holder: BusyEvent) -> dict:
    """Nothing booked, sent or stored: the decision is recorded as a conflict, and the rep decides again on new slots."""
    decision, consultant = state.decision, state.plan.consultant.consultant
    conflict = SlotConflict(rep_id=decision.rep_id, decision=decision.decision, slot_index=decision.slot_index,
                            slot=state.plan.slots[decision.slot_index], consultant_id=consultant.id, taken_by=holder,
                            detected_at=services.clock())
    conflicts = [*state.conflicts, conflict]
    # Keyed by the conflict's number: a retried step logs it once. Ids and times only, as everywhere in the audit log.
    services.audit.append(f"{state.run_id}:slot_taken:{len(conflicts)}", "booking", state.run_id, {
        "rep_id": decision.rep_id, "decision": decision.decision, "slot_index": decision.slot_index,
        "consultant_id": consultant.id, "slot_start": conflict.slot.start.isoformat(), "slot_end": conflict.slot.end.isoformat(),
        "taken_by_uid": holder.uid, "outcome": "sent back to the rep",
    }, at=conflict.detected_at)
    refs = [SourceRef(kind="human", id=decision.rep_id, field=decision.decision, note=f"chose slot {decision.slot_index}"),
            SourceRef(kind="tool", id="calendar", field=consultant.calendar_file, version=holder.uid,
                      note=f"slot taken by {holder.uid} ({holder.start.isoformat()}–{holder.end.isoformat()})")]
    summary = f"{decision.decision} not applied: {conflict.describe()}; back to the rep with new slots"
    return {"decision": None, "conflicts": conflicts, "trace": [timer.finish(refs, summary)]}


def write_back(state: RunState, services: Services, result: ApplyResult) -> list[WrittenRecord]:
    """The decision's outcome on the CRM timeline; each write finds the one an earlier try made (its external id)."""
    lead, decision = state.lead, state.decision
    contact, deal = lead.contact_id or lead.lead_id, lead.deal_id
    final = decision.final_text or state.draft.text
    footer = f"\n\n-- approved by {decision.rep_id} ({decision.decision}); salesloop run {state.run_id}; logged, not sent"
    activities = [Activity(kind="email_draft", external_id=f"{state.run_id}:email", subject=f"Proposal for {lead.account_name}"[:255],
                           body=final + footer, at=decision.decided_at, contact_id=contact, deal_id=deal)]
    if result.booked_slot is not None:
        consultant = state.plan.consultant.consultant
        activities.append(Activity(kind="meeting", external_id=f"{state.run_id}:meeting",
                                   subject=f"Technical consultation: {lead.account_name}"[:255],
                                   body=f"With {consultant.name} ({consultant.email}); calendar UID {result.booking_uid}",
                                   at=result.booked_slot.start, end=result.booked_slot.end, contact_id=contact, deal_id=deal))
    if state.plan.clauses:
        lines = [f"{c.clause.id} v{c.clause.version}: {c.clause.title} (rule {c.rule_id})" for c in state.plan.clauses]
        activities.append(Activity(kind="note", external_id=f"{state.run_id}:clauses", subject=f"Contract clauses for {lead.account_name}"[:255],
                                   body="Proposed contract clauses:\n" + "\n".join(lines), at=decision.decided_at,
                                   contact_id=contact, deal_id=deal))
    written = []
    for activity in activities:
        written.append(services.connector.write(activity))
        failpoint(f"apply:after_crm_{activity.kind}")
    stage_move = services.settings.crm.deal_update_on_adopt
    if stage_move and deal:  # setting a field to a value is idempotent: a retried apply just sets it again
        written.append(services.connector.update_deal(deal, stage_move, f"{state.run_id}:deal"))
    return written


def feedback_record(state: RunState, services: Services) -> FeedbackRecord:
    draft, decision = state.draft, state.decision
    final = None if decision.decision == "reject" else (decision.final_text or draft.text)
    sources = [ref for step in state.trace for ref in step.inputs]
    return FeedbackRecord(
        id=f"{state.run_id}:decision",
        run_id=state.run_id,
        event_id=state.event.id,
        lead_id=state.lead.lead_id,
        rep_id=decision.rep_id,
        decision=decision.decision,
        reason=decision.reason,
        messages=draft.messages,
        draft=draft.text,
        final_text=final,
        model_id=draft.model_id,
        model_version=draft.model_version,
        adapter_id=draft.adapter_id,
        adapter_sha256=draft.adapter_sha256,
        prompt_name=draft.prompt_name,
        prompt_sha256=draft.prompt_sha256,
        sources=list(dict.fromkeys(sources)),
        decided_at=decision.decided_at,
        recorded_at=services.clock(),
    )


def _audit_decision(state: RunState, services: Services, record: FeedbackRecord) -> None:
    """Who decided what, as ids and hashes: the texts themselves stay in the feedback store, where erasure can reach them."""
    services.audit.append(f"{state.run_id}:decision", "decision", state.run_id, {
        "rep_id": record.rep_id, "decision": record.decision, "feedback_id": record.id,
        "draft_sha256": sha256_text(record.draft), "final_text_sha256": sha256_text(record.final_text) if record.final_text else None,
        "model_id": record.model_id, "adapter_id": record.adapter_id, "prompt_sha256": record.prompt_sha256,
    }, at=state.decision.decided_at)


def _summary(state: RunState, result: ApplyResult) -> str:
    if state.decision.decision == "reject":
        return f"rejected: {state.decision.reason}; nothing sent, booked or written to the CRM"
    booked = "no slot to book" if result.booking_uid is None else f"{'booked' if result.booked_now else 'already booked'} {result.booked_slot.start.isoformat()}"
    crm = "; CRM " + ", ".join(f"{w.kind} {w.crm_id}" for w in result.crm_writes) if result.crm_writes else ""
    return f"{state.decision.decision}: {booked}; clauses {', '.join(result.clause_ids) or 'none'}{crm}"
