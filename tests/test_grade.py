"""Lead grading: a deterministic 0-100 score from weighted signals, each traced to the CRM field it read."""

from __future__ import annotations

from pathlib import Path

import pytest
from langgraph.runtime import Runtime

from agents.grade import grade_lead, score_lead
from agents.normalize import normalize
from agents.state import LeadProfile, RunState
from configs.settings import GradingSettings
from tools.crm.event_file import load_events

EVENT_FILES = [
    "01-new-lead-falkenrath.json",
    "02-new-lead-quillstack.json",
    "03-new-lead-sakura.json",
    "04-inbound-email-delivery-slip.json",
    "05-inbound-email-security-review.json",
    "06-deal-stage-change-to-proposal.json",
]


def _normalized(services, data_dir: Path, name: str) -> RunState:
    event = load_events(data_dir / "events" / name)[0]
    state = RunState(run_id=f"run-{event.id}", event=event)
    return state.model_copy(update=normalize(state, Runtime(context=services)))


@pytest.fixture
def leads(services, data_dir) -> dict[str, LeadProfile]:
    return {name: _normalized(services, data_dir, name).lead for name in EVENT_FILES}


@pytest.fixture
def falkenrath(leads) -> LeadProfile:
    return leads["01-new-lead-falkenrath.json"]


@pytest.fixture
def rules(settings) -> GradingSettings:
    return settings.grading


def _expected_letter(score: float, rules: GradingSettings) -> str:
    t = rules.grade_thresholds
    return "A" if score >= t["A"] else "B" if score >= t["B"] else "C" if score >= t["C"] else "D"


def test_score_is_sum_of_points_and_letter_follows_thresholds(leads, rules):
    grades = set()
    for name, lead in leads.items():
        grade = score_lead(lead, rules)
        assert sorted(s.signal for s in grade.signals) == sorted(rules.weights), name
        assert grade.score == pytest.approx(sum(s.points for s in grade.signals), abs=0.05), name
        assert 0 <= grade.score <= 100, name
        for s in grade.signals:
            assert s.weight == rules.weights[s.signal]
            assert 0 <= s.fraction <= 1
            assert s.points == pytest.approx(s.fraction * s.weight, abs=0.01)
        assert grade.grade == _expected_letter(grade.score, rules), name
        grades.add(grade.grade)
    assert len(grades) >= 2, f"the demo events should not all get the same grade: {grades}"


def test_every_signal_names_a_crm_field(leads, rules):
    for name, lead in leads.items():
        for signal in score_lead(lead, rules).signals:
            crm = [r for r in signal.sources if r.kind == "crm_record" and r.field]
            assert crm, f"{name}: signal {signal.signal} has no crm_record source with a field: {signal.sources}"
            assert all(r.id for r in crm)


def test_grading_is_deterministic(falkenrath, rules):
    assert score_lead(falkenrath, rules) == score_lead(falkenrath, rules)


def test_all_signals_maxed_scores_100(falkenrath, rules):
    lead = falkenrath.model_copy(
        update={
            "industry": "manufacturing",
            "employees": 10_000,
            "budget_usd": rules.budget_full_at_usd * 3,
            "engagement": {"inbound_email": 10},
            "request": " ".join(rules.intent_keywords),
            "decision_maker": True,
        }
    )
    grade = score_lead(lead, rules)
    assert grade.score == 100
    assert grade.grade == "A"
    assert all(s.fraction == 1 for s in grade.signals)


def test_nothing_scores_low_and_grade_d(falkenrath, rules):
    lead = falkenrath.model_copy(
        update={"industry": "education", "employees": 1, "budget_usd": None, "engagement": {}, "request": "", "decision_maker": False}
    )
    grade = score_lead(lead, rules)
    by_signal = {s.signal: s for s in grade.signals}
    assert by_signal["budget"].points == 0 and by_signal["budget"].reason == "no budget stated"
    assert by_signal["engagement"].points == 0 and by_signal["intent"].points == 0
    assert by_signal["decision_maker"].points == 0
    assert grade.grade == "D"


def test_decision_maker_scores_more_than_intern(services, data_dir, rules):
    from agents.titles import normalize_title

    lead = _normalized(services, data_dir, "01-new-lead-falkenrath.json").lead
    boss = normalize_title("Director of Operations", services.settings.titles)
    intern = normalize_title("Operations Intern", services.settings.titles)
    assert boss.decision_maker and not intern.decision_maker
    as_boss = lead.model_copy(update={"raw_title": "Director of Operations", "role": boss.role, "seniority": boss.seniority, "decision_maker": True})
    as_intern = lead.model_copy(update={"raw_title": "Operations Intern", "role": intern.role, "seniority": intern.seniority, "decision_maker": False})
    boss_score, intern_score = score_lead(as_boss, rules).score, score_lead(as_intern, rules).score
    assert boss_score > intern_score
    assert boss_score - intern_score == pytest.approx(rules.weights["decision_maker"])


def test_more_budget_never_lowers_the_score(falkenrath, rules):
    budgets = [None, 0, 1, 10_000, 50_000, 120_000, rules.budget_full_at_usd, rules.budget_full_at_usd + 1, 10_000_000]
    scores = [score_lead(falkenrath.model_copy(update={"budget_usd": b}), rules).score for b in budgets]
    assert scores == sorted(scores), list(zip(budgets, scores))
    assert scores[-1] > scores[0]


def test_bigger_company_and_more_engagement_never_lower_the_score(falkenrath, rules):
    sizes = [1, 50, 100, 499, 500, 2000, 50_000]
    scores = [score_lead(falkenrath.model_copy(update={"employees": n}), rules).score for n in sizes]
    assert scores == sorted(scores)
    visits = [0, 1, 5, 20, 100]
    scores = [score_lead(falkenrath.model_copy(update={"engagement": {"web_visit": v}}), rules).score for v in visits]
    assert scores == sorted(scores)


def test_intent_keywords_found_are_listed_in_reason(falkenrath, rules):
    lead = falkenrath.model_copy(update={"request": "Please send PRICING and a quote; the rollout timeline is tight. Also: weather?"})
    intent = next(s for s in score_lead(lead, rules).signals if s.signal == "intent")
    for word in ("pricing", "quote", "rollout", "timeline"):
        assert word in intent.reason
    assert "weather" not in intent.reason
    assert intent.fraction == 1  # 4 found, full at 3
    none = next(s for s in score_lead(lead.model_copy(update={"request": "hello there"}), rules).signals if s.signal == "intent")
    assert none.points == 0 and none.reason == "no intent words"


def test_demo_lead_intent_reason(falkenrath, rules):
    # The Falkenrath form asks for a demo and pricing.
    intent = next(s for s in score_lead(falkenrath, rules).signals if s.signal == "intent")
    assert "demo" in intent.reason and "pricing" in intent.reason
    assert intent.sources[0].field == "message"


def test_grade_letter_thresholds_are_inclusive(falkenrath, rules):
    score = score_lead(falkenrath, rules).score
    at = rules.model_copy(update={"grade_thresholds": {"A": score, "B": score - 1, "C": score - 2}})
    above = rules.model_copy(update={"grade_thresholds": {"A": score + 0.1, "B": score, "C": 0}})
    below = rules.model_copy(update={"grade_thresholds": {"A": 100, "B": 99.9, "C": score + 0.1}})
    assert score_lead(falkenrath, at).grade == "A"
    assert score_lead(falkenrath, above).grade == "B"
    assert score_lead(falkenrath, below).grade == "D"


def test_grade_node_traces_rule_and_sources(services, data_dir):
    state = _normalized(services, data_dir, "03-new-lead-sakura.json")
    update = grade_lead(state, Runtime(context=services))
    grade, (trace,) = update["grade"], update["trace"]
    assert trace.step == "grade_lead"
    assert trace.inputs[0].kind == "rule" and trace.inputs[0].id == "grading"
    assert {r.field for r in trace.inputs if r.kind == "crm_record"} >= {"industry", "employees", "budget_usd", "message"}
    assert f"grade {grade.grade}" in trace.output_summary
