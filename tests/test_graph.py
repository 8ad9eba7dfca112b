"""The graph with real components: each node on its own, then whole runs through interrupt and resume."""

from __future__ import annotations

import hashlib
from pathlib import Path

import icalendar
import pytest
from langgraph.runtime import Runtime

from agents.draft import draft_proposal
from agents.grade import grade_lead
from agents.inbox import HumanInterrupt, adopt, edit, reject
from agents.normalize import normalize
from agents.retrieve import retrieve_cases
from agents.schedule import plan_schedule
from agents.state import RunState
from orchestrator import Orchestrator, RunError, build_graph, run_id_for
from prompts.templates import PROMPT_DIR
from tools.calendar import booking_uid
from tools.crm.event_file import load_events

SNAPSHOT = Path(__file__).parent / "snapshots" / "graph.mmd"


def demo_event(data_dir: Path, name: str):
    (path,) = sorted((data_dir / "events").glob(f"*{name}*.json"))
    return load_events(path)[0]


def test_topology_matches_snapshot():
    drawn = build_graph().compile().get_graph().draw_mermaid()
    assert drawn == SNAPSHOT.read_text(), "the graph changed: review it, then rewrite tests/snapshots/graph.mmd"


def run_nodes(state: RunState, services, nodes) -> RunState:
    """Apply nodes in order the way LangGraph does: merge each update, append traces."""
    for node in nodes:
        update = node(state, Runtime(context=services))
        trace = state.trace + update.pop("trace")
        state = state.model_copy(update={**update, "trace": trace})
    return state


def test_normalize_reads_email_attachment_and_maps_fields(data_dir, services):
    event = demo_event(data_dir, "delivery-slip")
    state = run_nodes(RunState(run_id="r-norm", event=event), services, [normalize])
    lead = state.lead
    assert lead.contact_id and lead.account_id
    assert "slips" in lead.request and "Attachment" in lead.request  # the PDF's text was extracted
    assert lead.refs["raw_title"].id == f"contact:{lead.contact_id}" and lead.refs["raw_title"].field == "raw_title"
    assert lead.refs["industry"].id == f"account:{lead.account_id}"
    assert [f.marker for f in lead.facts] == [f"L{i}" for i in range(1, len(lead.facts) + 1)]
    assert state.trace[0].step == "normalize" and state.trace[0].inputs


def test_normalize_maps_messy_title_of_new_lead(data_dir, services):
    event = demo_event(data_dir, "new-lead-quillstack")
    lead = run_nodes(RunState(run_id="r-title", event=event), services, [normalize]).lead
    assert (event.payload.title, lead.role, lead.seniority) == ("VP Eng.", "engineering", "vp")
    assert lead.refs["role"].kind == "rule"


def test_grade_names_fields_and_is_deterministic(data_dir, services):
    state = run_nodes(RunState(run_id="r-grade", event=demo_event(data_dir, "new-lead-falkenrath")), services, [normalize, grade_lead])
    again = run_nodes(state.model_copy(update={"trace": []}), services, [grade_lead])
    assert state.grade == again.grade
    assert state.grade.score == pytest.approx(sum(s.points for s in state.grade.signals), abs=0.1)
    assert {s.signal for s in state.grade.signals} == {"industry_fit", "size", "budget", "engagement", "intent", "decision_maker"}
    assert all(any(r.kind == "crm_record" and r.field for r in s.sources) for s in state.grade.signals)


def test_retrieve_returns_cases_of_the_industry_won_first(data_dir, indexed_services):
    state = run_nodes(RunState(run_id="r-ret", event=demo_event(data_dir, "delivery-slip")), indexed_services,
                      [normalize, grade_lead, retrieve_cases])
    assert len(state.cases) >= 3
    assert {c.industry for c in state.cases} == {state.lead.industry}
    outcomes = [c.outcome for c in state.cases]
    assert outcomes == sorted(outcomes, key=lambda o: o != "won")
    assert all(c.chunks and c.chunks[0].id.startswith(c.case_id) for c in state.cases)
    assert {r.kind for r in state.trace[-1].inputs} >= {"model", "tool", "case", "document_chunk"}


def test_draft_uses_real_model_and_records_prompt_hash(data_dir, indexed_services):
    state = run_nodes(RunState(run_id="r-draft", event=demo_event(data_dir, "new-lead-sakura")), indexed_services,
                      [normalize, grade_lead, retrieve_cases, draft_proposal])
    draft, step = state.draft, state.trace[-1]
    assert draft.text and 0 < draft.output_tokens <= indexed_services.settings.llm.max_new_tokens
    assert draft.model_id == indexed_services.settings.llm.model_id
    expected = hashlib.sha256((PROMPT_DIR / "draft_proposal.yaml").read_bytes()).hexdigest()
    assert draft.prompt_sha256 == step.prompt_sha256 == expected
    assert draft.messages[-1].role == "user" and state.lead.account_name in draft.messages[-1].content
    assert "[L1]" in draft.messages[-1].content and "[C1]" in draft.messages[-1].content
    assert any(r.kind == "prompt" and r.version == expected for r in step.inputs)


def test_plan_schedule_proposes_free_slots_and_clauses(data_dir, indexed_services):
    state = run_nodes(RunState(run_id="r-plan", event=demo_event(data_dir, "new-lead-falkenrath")), indexed_services,
                      [normalize, grade_lead, retrieve_cases, plan_schedule, draft_proposal])
    plan = state.plan
    assert plan.consultant is not None and state.lead.industry in plan.consultant.consultant.industries
    assert len(plan.slots) == indexed_services.settings.scheduling.slots
    assert all(s.start.utcoffset() == s.start.astimezone(__import__("zoneinfo").ZoneInfo(state.lead.timezone)).utcoffset() for s in plan.slots)
    assert "CL-LIAB-01" in [c.clause.id for c in plan.clauses]


@pytest.fixture
def orchestrator(indexed_services):
    with Orchestrator(indexed_services) as orch:
        yield orch


def calendar_uid_count(services, run_id: str) -> int:
    total = 0
    for path in services.settings.resolve(services.settings.scheduling.calendar_dir).glob("*.ics"):
        cal = icalendar.Calendar.from_ical(path.read_bytes())
        total += sum(1 for e in cal.walk("VEVENT") if str(e.get("UID")) == booking_uid(run_id))
    return total


def test_full_run_interrupts_then_adopt_books_exactly_once(data_dir, orchestrator, indexed_services):
    event = demo_event(data_dir, "new-lead-falkenrath")
    info, new = orchestrator.start(event)
    assert new and info.status == "waiting" and info.run_id == run_id_for(event)
    snapshot = orchestrator.graph.get_state({"configurable": {"thread_id": info.run_id}})
    request = HumanInterrupt.model_validate(snapshot.tasks[0].interrupts[0].value)  # Agent Inbox shape
    assert request.config.allow_accept and request.config.allow_edit and request.action_request.args["draft"]
    assert orchestrator.start(event) == (info, False)  # a redelivered event starts nothing new

    done = orchestrator.decide(info.run_id, adopt("rep-anna"))
    state = orchestrator.state(info.run_id)
    assert done.status == "done" and state.applied.booked_now and calendar_uid_count(indexed_services, info.run_id) == 1
    orchestrator.decide(info.run_id, adopt("rep-anna"))  # a retried decide is a no-op
    assert calendar_uid_count(indexed_services, info.run_id) == 1
    with pytest.raises(RunError, match="already decided"):
        orchestrator.decide(info.run_id, reject("rep-anna", "changed my mind"))

    steps = [t.step for t in state.trace]
    assert steps == ["normalize", "grade_lead", "retrieve_cases", "plan_schedule", "draft_proposal", "await_rep", "apply"]
    assert all(t.inputs for t in state.trace)
    (record,) = indexed_services.feedback.for_run(info.run_id)
    assert (record.decision, record.rep_id, record.final_text) == ("adopt", "rep-anna", state.draft.text)
    assert record.messages == state.draft.messages and record.prompt_sha256 == state.draft.prompt_sha256


def test_edit_and_reject(data_dir, orchestrator, indexed_services):
    edited, _ = orchestrator.start(demo_event(data_dir, "new-lead-quillstack"))
    rejected, _ = orchestrator.start(demo_event(data_dir, "06-deal-stage"))
    orchestrator.decide(edited.run_id, edit("rep-ben", "Dear Jordan, here is our SSO rollout plan [C1].", slot_index=1))
    orchestrator.decide(rejected.run_id, reject("rep-ben", "wrong product for this account"))

    edited_state = orchestrator.state(edited.run_id)
    assert edited_state.applied.booked_slot == edited_state.plan.slots[1]
    assert indexed_services.feedback.for_run(edited.run_id)[0].final_text == "Dear Jordan, here is our SSO rollout plan [C1]."
    (record,) = indexed_services.feedback.for_run(rejected.run_id)
    assert (record.decision, record.reason, record.final_text) == ("reject", "wrong product for this account", None)
    assert orchestrator.state(rejected.run_id).applied.booking_uid is None
    assert calendar_uid_count(indexed_services, rejected.run_id) == 0
    assert [r.run_id for r in orchestrator.runs("waiting")] == []


def test_failed_run_resumes_where_it_stopped_when_the_event_comes_again(data_dir, orchestrator, indexed_services):
    from tools.calendar import CalendarError

    event = demo_event(data_dir, "05-inbound-email")
    calendars = {p: p.read_bytes() for p in (data_dir / "crm" / "calendars").glob("*.ics")}
    for path in calendars:
        path.write_text("not a calendar")
    with pytest.raises(CalendarError, match="not valid iCalendar"):
        orchestrator.start(event)
    assert orchestrator.info(run_id_for(event)).status == "failed"

    for path, data in calendars.items():  # the user restores the files, and the CRM sends the event again
        path.write_bytes(data)
    info, new = orchestrator.start(event)
    steps = [t.step for t in orchestrator.state(info.run_id).trace]
    assert new and info.status == "waiting"
    assert steps == ["normalize", "grade_lead", "retrieve_cases", "plan_schedule", "draft_proposal"]
