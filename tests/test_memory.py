"""In-context memory with real components: the feedback store on SQLite, the MiniLM embedder, the demo CRM, the consent
policy, the prompt files and, once, the real graph nodes and model."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from langgraph.runtime import Runtime
from prov.model import ProvDerivation

from agents.draft import draft_proposal
from agents.memory import fit_examples, render_examples
from agents.normalize import normalize
from agents.services import Services
from agents.state import LeadProfile, RunState
from configs import load_settings
from configs.settings import MemorySettings
from feedback.memory import lead_text, recall
from feedback.store import FeedbackRecord, FeedbackStore
from orchestrator import RunInfo
from prompts import load_prompt
from provenance import SourceRef, sha256_text
from provenance.prov_export import draft_id, run_document, source_id
from tests.conftest import FIXED_NOW, config_dict
from tests.postgres_server import database, postgres_server, postgres_url  # noqa: F401 - fixtures
from tools.crm.event_file import load_events

REP = "rep-memory"
MEMORY = MemorySettings(enabled=True)
WITHDRAWN = {"granted": False, "at": "2026-11-20T10:00:00Z", "source": "unsubscribe link"}


def event(data_dir: Path, name: str):
    (path,) = sorted((data_dir / "events").glob(f"*{name}*.json"))
    return load_events(path)[0]


def lead_of(services: Services, data_dir: Path, name: str) -> LeadProfile:
    return normalize(RunState(run_id=f"r-{name}", event=event(data_dir, name)), Runtime(context=services))["lead"]


def chat_for(lead: LeadProfile) -> list:
    return load_prompt("draft_proposal").render(facts=lead.facts, cases=[], company=lead.account_name)


def final_naming(lead: LeadProfile, email: str, phone: str | None, opening: str) -> str:
    """A rep's final that names its customer the way reps do: contact, company, e-mail, phone, and a marker."""
    first = lead.contact_name.split()[0]
    return (f"Dear {first}, {opening} for {lead.account_name} [L1]. {lead.contact_name} can reach me or write from "
            f"{email}{f' or call {phone}' if phone else ''}. Next steps: a kickoff call.")


def past(services: Services, lead: LeadProfile, n: int, final: str | None, rep: str = REP, decision: str = "edit",
         age: timedelta = timedelta(days=1), prompt: str = "draft_proposal") -> FeedbackRecord:
    record = FeedbackRecord(
        id=f"run-past-{n}:decision", run_id=f"run-past-{n}", event_id=f"evt-past-{n}", lead_id=lead.lead_id, rep_id=rep,
        decision=decision, reason="not for us" if decision == "reject" else None, messages=chat_for(lead),
        draft="A draft.", final_text=final, model_id="SmolLM2-135M-Instruct-Q4_1", model_version="a" * 64,
        adapter_id=None, prompt_name=prompt, prompt_sha256=load_prompt(prompt).sha256,
        sources=[SourceRef(kind="human", id=rep)], decided_at=FIXED_NOW - age, recorded_at=FIXED_NOW - age,
    )
    assert services.feedback.append(record)
    return record


def personal_data(contact, account_name: str) -> list[str]:
    """What must not reach an example: the contact's name, each part of it, e-mail, phone; and the company's name."""
    return [v for v in (contact.full_name, *contact.full_name.split(), contact.email, contact.phone, account_name) if v]


def set_consent(data_dir: Path, contact_id: str, name: str, flag: dict) -> None:
    path = data_dir / "crm" / "contacts.json"
    contacts = json.loads(path.read_text())
    for contact in contacts:
        if contact["id"] == contact_id:
            contact["consents"][name] = flag
    path.write_text(json.dumps(contacts, ensure_ascii=False))


def recalled(services: Services, query_lead: LeadProfile, settings: MemorySettings = MEMORY):
    return recall(services.feedback, services.embedder, services.crm, services.consent, settings, REP, "draft_proposal",
                  lead_text(chat_for(query_lead)), FIXED_NOW)


@pytest.fixture
def leads(services, data_dir) -> dict[str, LeadProfile]:
    names = ("delivery-slip", "security-review", "06-deal-stage-change")
    return {name: lead_of(services, data_dir, name) for name in names}


def test_only_the_reps_own_recent_finals_come_back_most_similar_first_and_redacted(services, leads):
    slip, security = leads["delivery-slip"], leads["security-review"]
    other = services.crm.contact(security.lead_id)
    same = past(services, slip, 1, final_naming(slip, slip.email, None, "we keep the price and move the delivery"))
    near = past(services, security, 2, final_naming(security, other.email, other.phone, "we send the SOC 2 report"))
    past(services, slip, 3, "Another rep's text.", rep="rep-someone-else")
    past(services, slip, 4, None, decision="reject")
    past(services, slip, 5, "Too old to recall.", age=timedelta(days=MEMORY.max_age_days + 1))
    past(services, slip, 6, "A reply to an objection.", prompt="objection_handling")

    found = recalled(services, slip)

    assert [e.record_id for e in found.examples] == [same.id, near.id], "the same lead's final is the most similar"
    assert found.considered == 3 and found.left_out == {"not a draft_proposal draft": 1}
    assert found.examples[0].similarity > found.examples[1].similarity
    for example, lead in ((found.examples[0], slip), (found.examples[1], security)):
        contact = services.crm.contact(lead.lead_id)
        for value in personal_data(contact, lead.account_name):
            assert value not in example.text, f"{value!r} of {lead.lead_id} reached an example"
        assert "[L1]" not in example.text and "Dear the contact," in example.text
    ref = found.examples[1].source_ref()
    assert (ref.kind, ref.id, ref.field, ref.version) == ("feedback", near.id, "edit", sha256_text(near.final_text))
    assert "run run-past-2" in ref.note and source_id(ref), "an auditor finds the decision, and PROV can name it"


def test_the_store_reads_a_reps_recent_adopts_and_edits_newest_first_on_both_databases(database, services, leads):
    slip = leads["delivery-slip"]
    store = services.feedback = FeedbackStore(database)
    rows = [(REP, "edit", 1), (REP, "adopt", 2), (REP, "reject", 1), ("rep-other", "edit", 1), (REP, "edit", 40),
            (REP, "adopt", 3)]
    for n, (rep, decision, days) in enumerate(rows, start=1):
        past(services, slip, n, None if decision == "reject" else f"Final {n}.", rep=rep, decision=decision,
             age=timedelta(days=days))
    found = store.recent_finals(REP, FIXED_NOW - timedelta(days=30), limit=2)
    assert [r.id for r in found] == ["run-past-1:decision", "run-past-2:decision"]
    assert len(store.recent_finals(REP, FIXED_NOW - timedelta(days=30), limit=10)) == 3


def test_withdrawn_training_consent_erasure_and_form_leads_keep_decisions_out(services, data_dir, leads):
    slip, security, stage = leads["delivery-slip"], leads["security-review"], leads["06-deal-stage-change"]
    past(services, slip, 1, "Kept: we move the delivery.")
    past(services, security, 2, "Withdrawn: we send the report.")
    erased = past(services, stage, 3, "Erased: the proposal follows.")
    form_lead = lead_of(services, data_dir, "01-new-lead")
    past(services, form_lead, 4, "A form lead: its contact data is not in the CRM.")
    set_consent(data_dir, security.lead_id, "model_training", WITHDRAWN)
    services.feedback.erase([erased.run_id], stage.lead_id)
    services.__dict__.pop("crm")  # the CRM mirror is read once per Services: read the withdrawn consent

    found = recalled(services, slip)

    assert [e.text for e in found.examples] == ["Kept: we move the delivery."]
    assert found.considered == 3 and found.left_out == {
        "no model_training consent": 1, "lead not in the CRM: its contact data cannot be redacted": 1}


def test_examples_are_trimmed_least_similar_first_and_the_prompt_is_never_cut(services, leads):
    slip = leads["delivery-slip"]
    for n, words in enumerate((30, 60, 90), start=1):
        past(services, slip, n, " ".join(["word"] * words) + ".", age=timedelta(hours=n))
    examples = recalled(services, slip).examples
    messages = chat_for(slip)
    words = lambda text: len(text.split())  # noqa: E731 - the openai backend's own estimate, a real token counter
    base = sum(words(m.content) for m in messages)

    kept, block = fit_examples(examples, messages, words, MEMORY)
    assert kept == examples and block == render_examples(examples)
    two = MEMORY.model_copy(update={"max_tokens": words(render_examples(examples[:2]))})
    kept, _ = fit_examples(examples, messages, words, two)
    assert kept == examples[:2], "over the examples' budget the least similar goes"
    tight = MEMORY.model_copy(update={"prompt_budget_tokens": base + words(render_examples(examples[:1]))})
    assert fit_examples(examples, messages, words, tight)[0] == examples[:1], "the whole prompt's budget holds too"
    full = MEMORY.model_copy(update={"prompt_budget_tokens": base})
    assert fit_examples(examples, messages, words, full) == ([], None), "no room: no examples, and the prompt is whole"


def test_a_draft_shows_the_reps_examples_traces_them_and_leaks_no_other_account(tmp_path, data_dir, model_dir, leads):
    slip, security = leads["delivery-slip"], leads["security-review"]
    raw = config_dict(data_dir, model_dir)
    raw["memory"] = {"enabled": True}
    (tmp_path / "memory.yaml").write_text(yaml.safe_dump(raw))
    with Services(load_settings(tmp_path / "memory.yaml", env={}), clock=lambda: FIXED_NOW) as services:
        rep = slip.owner_rep_id or services.settings.rep_id
        other = services.crm.contact(security.lead_id)
        final = final_naming(security, other.email, other.phone, "we answer the questionnaire")
        shown = past(services, security, 1, final, rep=rep)
        past(services, security, 2, "Someone else's style: never shown.", rep=f"{rep}-not")
        state = RunState(run_id="r-memory", event=event(data_dir, "delivery-slip"))
        for node in (normalize, draft_proposal):  # the draft needs the lead only: no cases, one model load
            update = node(state, Runtime(context=services))
            state = state.model_copy(update={**update, "trace": state.trace + update.pop("trace")})

    prompt = "\n".join(m.content for m in state.draft.messages)
    assert "<rep_examples>" in prompt and "we answer the questionnaire" in prompt
    assert "never shown" not in prompt
    for value in personal_data(other, security.account_name):
        assert value not in prompt, f"{value!r} of another account reached the prompt"
    (step,) = [s for s in state.trace if s.step == "draft_proposal"]
    (ref,) = [r for r in step.inputs if r.kind == "feedback"]
    assert (ref.id, ref.field, ref.version) == (shown.id, "edit", sha256_text(shown.final_text))
    assert load_prompt("rep_examples").source_ref() in step.inputs
    assert step.prompt_name == "draft_proposal", "the draft's own prompt stays the step's prompt"
    (note,) = [n for n in step.notes if n.startswith("rep memory:")]
    assert f"1 of {rep}'s past finals shown" in note and "retrieval" in note
    # The auditor's PROV document: the draft derives from the past final it was shown.
    info = RunInfo(run_id=state.run_id, event_id=state.event.id, event_type=state.event.type, status="waiting",
                   created_at=FIXED_NOW, updated_at=FIXED_NOW)
    derived = {r.args[:2] for r in run_document(info, state, []).get_records(ProvDerivation)}
    assert (draft_id(state.run_id), source_id(ref)) in derived
