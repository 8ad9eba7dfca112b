"""The content planner on the dev split of the frozen draft-evaluation set (bench/eval/drafts/dev.yaml).

Run states are built as the graph builds them, without drafting: normalize and grade, then, where the route goes
on, retrieve similar cases and plan the schedule. The held-out test split is not read here.
"""

from __future__ import annotations

import re
import shutil
import string
from datetime import date, datetime, timezone

import pytest
import yaml
from langgraph.runtime import Runtime

from agents.content_plan import PLAN_CONFIG, ContentPlan, PlanItem, find_dates, load_plan_config, plan_content
from agents.grade import grade_lead
from agents.normalize import normalize
from agents.retrieve import retrieve_cases
from agents.schedule import plan_schedule
from agents.services import Services
from agents.state import RunState
from configs import load_settings
from configs.loader import ConfigError
from demo.draft_eval import DraftCase, load_drafts, runnable_event
from provenance import SourceRef
from tests.conftest import FIXED_NOW, write_config
from tools.cases import index_cases
from tools.crm.records import CRMChangePayload, CRMEvent

# Share of dev events the planner must get right; the figures reached when this was written are in the report
# printed by test_dev_figures (36/36 topics, 36/36 plans holding every must-address point).
MIN_TOPIC_ACCURACY = 0.9
MIN_FULL_COVERAGE = 0.9


@pytest.fixture(scope="module")
def services(tmp_path_factory, demo_source):
    data = tmp_path_factory.mktemp("plan") / "data"
    shutil.copytree(demo_source, data)
    # No model directory: nothing here drafts, and Services loads the LLM only when a draft asks for it.
    config = write_config(data.parent / "config.yaml", data, data.parent / "no-model")
    services = Services(load_settings(config, env={}), clock=lambda: FIXED_NOW)
    index_cases(services.crm, services.embedder, services.vectors)
    yield services
    services.vectors.close()


def run_state(case_id: str, event: CRMEvent, services: Services) -> RunState:
    """The state the graph reaches before drafting: a record-only route stops after grading, as in orchestrator."""
    state = RunState(run_id=case_id, event=event, route=services.triggers.route_for(event))
    for node in (normalize, grade_lead, retrieve_cases, plan_schedule):
        if node is retrieve_cases and state.route.records_only(state.grade.grade):
            break
        update = node(state, Runtime(context=services))
        state = state.model_copy(update={**update, "trace": state.trace + update.pop("trace")})
    return state


@pytest.fixture(scope="module")
def dev(services) -> list[tuple[DraftCase, RunState, ContentPlan]]:
    config = load_plan_config()
    out = []
    for case in load_drafts("dev").cases:
        state = run_state(case.id, runnable_event(case.event, services.crm), services)
        out.append((case, state, plan_content(state, config)))
    return out


def plan_text(plan: ContentPlan) -> str:
    return " ".join(text for item in plan.items for text in [*item.facts, item.template]).lower()


def missing_points(case: DraftCase, plan: ContentPlan) -> list[str]:
    text = plan_text(plan)
    return [p.what for p in case.expect.must_address if not any(term.lower() in text for term in p.any_of)]


def test_dev_figures(dev):
    """Topic accuracy and the share of plans holding every must-address point (e.g. a delay's new date)."""
    right = [case.id for case, _, plan in dev if plan.topic == case.expect.topic]
    covered = [case.id for case, _, plan in dev if not missing_points(case, plan)]
    wrong = {case.id: (case.expect.topic, plan.topic) for case, _, plan in dev if case.id not in right}
    gaps = {case.id: missing_points(case, plan) for case, _, plan in dev if case.id not in covered}
    print(f"\ndev: topic accuracy {len(right)}/{len(dev)}, every must-address point planned {len(covered)}/{len(dev)}")
    assert len(right) / len(dev) >= MIN_TOPIC_ACCURACY, f"wrong topics (expected, planned): {wrong}"
    assert len(covered) / len(dev) >= MIN_FULL_COVERAGE, f"points missing from the plans: {gaps}"
    assert all(plan.known == case.expect.known_topic for case, _, plan in dev if case.id in right)


def test_delay_plan_carries_the_new_date_first(dev):
    case, _, plan = next(d for d in dev if d[0].id == "dq-dev-01")
    change = plan.items[0]
    assert (plan.topic, change.kind, change.facts[0]) == ("delivery_delay", "change", "15 March 2027")
    assert change.template == "We have noted the new date, 15 March 2027."
    assert change.sources[0].id.startswith("email:") and change.sources[0].field == "subject,body,attachments"


def test_known_plan_has_cases_slot_and_clauses_with_their_sources(dev):
    _, state, plan = next(d for d in dev if d[0].id == "dq-dev-08")
    kinds = [item.kind for item in plan.items]
    assert kinds[0] == "request" and "next_step" in kinds and "clause" in kinds
    assert 1 <= kinds.count("case_fact") <= 3
    for item in (i for i in plan.items if i.kind == "case_fact"):
        assert item.sources[0].kind == "case" and item.sources[0].id in {c.case_id for c in state.cases}
    step = next(i for i in plan.items if i.kind == "next_step")
    assert step.facts == [state.plan.consultant.consultant.name, state.plan.slots[0].label()]
    clause = next(i for i in plan.items if i.kind == "clause")
    assert clause.facts == list(dict.fromkeys(c.clause.title for c in state.plan.clauses))


def test_unknown_topic_plans_nothing_but_saying_so(dev):
    for case, state, plan in dev:
        if case.expect.topic != "unknown":
            continue
        assert not plan.known and [i.kind for i in plan.items] == ["unknown"], case.id
        assert plan.notes and "no plan" in plan.notes[0]
        assert plan.items[0].template.startswith(f"Thank you for your message, {state.lead.contact_name};")


def test_unknown_event_type_says_so(dev, services):
    _, state, _ = next(d for d in dev if d[0].id == "dq-dev-35")
    raw = CRMEvent(id="evt-plan-raw", type="crm_change", occurred_at=datetime(2027, 1, 5, tzinfo=timezone.utc),
                   source="test", payload=CRMChangePayload(system="hubspot", change="deal.propertyChange",
                                                           object_type="deal", record_id="d-1"))
    plan = plan_content(state.model_copy(update={"event": raw}))
    assert (plan.topic, plan.known, [i.kind for i in plan.items]) == ("unknown", False, ["unknown"])
    assert "crm_change" in plan.notes[0]


# --- grounding: a template holds its item's facts and the config's wording, nothing else ----------------------


def source_texts(state: RunState, ref: SourceRef) -> list[str]:
    """The text a SourceRef points at in the run's state."""
    lead = state.lead
    texts = [str(getattr(lead, name)) for name, r in lead.refs.items() if r == ref]
    cases = {c.case_id: c for c in state.cases}
    chunks = {ch.id: ch for c in state.cases for ch in c.chunks}
    if ref.kind == "case" and ref.id in cases:
        texts += [cases[ref.id].summary, *(ch.text for ch in cases[ref.id].chunks)]
    if ref.kind == "document_chunk" and ref.id in chunks:
        texts.append(chunks[ref.id].text)
    if ref.note and (ref.kind == "tool" or ref.id.startswith("clause_rule:")):  # they carry the value they read
        texts.append(ref.note)
    return texts


def config_words() -> set[str]:
    raw = yaml.safe_load(PLAN_CONFIG.read_text(encoding="utf-8"))
    templates = [raw["templates"].values(), (raw["new_lead"][k]["template"] for k in ("need", "cold")),
                 (s["template"] for s in raw["stages"].values()),
                 (t[k] for t in raw["email_topics"] for k in ("template", "date_template") if t.get(k))]
    words = set()
    for group in templates:
        for template in group:
            literal = "".join(text for text, *_ in string.Formatter().parse(template))
            words |= set(re.findall(r"[^\W\d_]+", literal.lower()))
    return words


def test_every_fact_is_quoted_from_its_sources_and_templates_hold_nothing_else(dev):
    vocabulary = config_words()
    checked = 0
    for case, state, plan in dev:
        for item in plan.items:
            texts = [t for ref in item.sources for t in source_texts(state, ref)]
            for fact in item.facts:
                assert any(fact in t for t in texts), f"{case.id} {item.kind}: {fact!r} is in none of its sources"
            rest = item.template
            for fact in sorted(item.facts, key=len, reverse=True):
                rest = rest.replace(fact, " ")
            extra = set(re.findall(r"[^\W\d_]+", rest.lower())) - vocabulary
            added = extra or rest
            assert not extra and not re.search(r"\d", rest), f"{case.id} {item.kind}: {item.template!r} adds {added}"
            checked += 1
    assert checked > 100


def test_an_item_whose_template_states_an_unsourced_number_is_refused():
    ref = SourceRef(kind="crm_record", id="email:x", field="body")
    with pytest.raises(ValueError, match="states a number"):
        PlanItem(kind="request", facts=["pricing for our sites"], sources=[ref], template="You asked about 3 sites.",
                 instruction="")


# --- config and dates -----------------------------------------------------------------------------------------


def test_config_unknown_key_and_bad_template_are_errors_that_name_them(tmp_path):
    raw = yaml.safe_load(PLAN_CONFIG.read_text(encoding="utf-8"))
    raw["email_topics"][0]["colour"] = "red"
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match="colour"):
        load_plan_config(path)
    raw = yaml.safe_load(PLAN_CONFIG.read_text(encoding="utf-8"))
    raw["templates"]["case_fact"] = "In a similar case {customer} saw: {quote}"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match="customer"):
        load_plan_config(path)


@pytest.mark.parametrize("text, found", [
    ("from 1 February to 15 March 2027", [("1 February", date(2027, 2, 1)), ("15 March 2027", date(2027, 3, 15))]),
    ("Revised go-live: 2027-03-15", [("2027-03-15", date(2027, 3, 15))]),
    ("de 8 de fevereiro para 22 de março de 2027", [("8 de fevereiro", date(2027, 2, 8)),
                                                    ("22 de março de 2027", date(2027, 3, 22))]),
    ("4月1日の新年度までに", [("4月1日", date(2027, 4, 1))]),
    ("verschoben auf den 15. März 2027", [("15. März 2027", date(2027, 3, 15))]),
    ("перенос на 15 марта 2027", [("15 марта 2027", date(2027, 3, 15))]),
    ("now March 15, 2027", [("March 15, 2027", date(2027, 3, 15))]),
    ("before Q3 in Mar 2027", []),
])
def test_find_dates(text, found):
    assert [(d.text, d.when) for d in find_dates(text, date(2027, 1, 4))] == found
