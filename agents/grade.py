"""Node 2: score the lead 0–100 from weighted signals; every contribution names the CRM field it read."""

from __future__ import annotations

import re

from langgraph.runtime import Runtime

from agents.services import Services
from agents.state import LeadGrade, LeadProfile, RunState, SignalScore
from agents.tracing import StepTimer
from configs.settings import GradingSettings
from provenance import SourceRef


def grade_lead(state: RunState, runtime: Runtime[Services]) -> dict:
    timer = StepTimer("grade_lead", state.run_id)
    rules = runtime.context.settings.grading
    grade = score_lead(state.lead, rules)
    rule_ref = SourceRef(kind="rule", id="grading", note=f"weights {rules.weights}")
    inputs = [rule_ref] + [ref for s in grade.signals for ref in s.sources]
    reasons = ", ".join(f"{s.signal} {s.points:.0f}/{s.weight:.0f}" for s in grade.signals)
    route = state.route
    notes = [f"recorded only: route {route.name}" + (f", grade {grade.grade} is below {route.record_below_grade}" if route.prompt else "")
             ] if route.records_only(grade.grade) else []
    trace = timer.finish([*inputs, route.rule], f"score {grade.score:.0f} → grade {grade.grade} ({reasons})", notes=notes)
    return {"grade": grade, "trace": [trace]}


def score_lead(lead: LeadProfile, rules: GradingSettings) -> LeadGrade:
    """Deterministic: the same profile and rules always give the same score."""
    signals = [_weigh(name, *read(lead, rules), rules) for name, read in _SIGNALS.items()]
    score = round(sum(s.points for s in signals), 1)
    return LeadGrade(score=score, grade=_letter(score, rules), signals=signals)


def _letter(score: float, rules: GradingSettings) -> str:
    for letter in ("A", "B", "C"):
        if score >= rules.grade_thresholds[letter]:
            return letter
    return "D"


def _weigh(name: str, fraction: float, reason: str, sources: list[SourceRef], rules: GradingSettings) -> SignalScore:
    fraction = max(0.0, min(1.0, fraction))
    weight = rules.weights[name]
    return SignalScore(signal=name, weight=weight, fraction=fraction, points=round(fraction * weight, 2), reason=reason, sources=sources)


# Each reader returns (fraction of the signal's weight earned, reason, sources read).
Reading = tuple[float, str, list[SourceRef]]


def _industry_fit(lead: LeadProfile, rules: GradingSettings) -> Reading:
    fit = rules.industry_fit.get(lead.industry, 0.0)
    return fit, f"industry {lead.industry} fits {fit:.0%}", [lead.refs["industry"]]


def _size(lead: LeadProfile, rules: GradingSettings) -> Reading:
    band = max((b for b in rules.size_bands if lead.employees >= b.min_employees), key=lambda b: b.min_employees, default=None)
    fraction = band.points if band else 0.0
    return fraction, f"{lead.employees} employees", [lead.refs["employees"]]


def _budget(lead: LeadProfile, rules: GradingSettings) -> Reading:
    ref = lead.refs.get("budget_usd", lead.refs["account_name"])
    if not lead.budget_usd:
        return 0.0, "no budget stated", [ref]
    return lead.budget_usd / rules.budget_full_at_usd, f"budget USD {lead.budget_usd:,}", [ref]


def _engagement(lead: LeadProfile, rules: GradingSettings) -> Reading:
    points = sum(rules.engagement_points.get(kind, 0) * count for kind, count in lead.engagement.items())
    detail = ", ".join(f"{count} {kind}" for kind, count in lead.engagement.items() if count) or "no activity"
    return points / rules.engagement_full_at, detail, [lead.refs["engagement"]]


def _intent(lead: LeadProfile, rules: GradingSettings) -> Reading:
    words = set(re.findall(r"[a-z]+", lead.request.lower()))
    found = sorted(k for k in rules.intent_keywords if k.lower() in words)
    reason = f"intent words: {', '.join(found)}" if found else "no intent words"
    return len(found) / rules.intent_full_at, reason, [lead.refs.get("request", lead.refs["email"])]


def _decision_maker(lead: LeadProfile, rules: GradingSettings) -> Reading:
    reason = f"{lead.raw_title!r} → {lead.role}/{lead.seniority}"
    return 1.0 if lead.decision_maker else 0.0, reason, [lead.refs["raw_title"], lead.refs["role"]]


_SIGNALS = {
    "industry_fit": _industry_fit,
    "size": _size,
    "budget": _budget,
    "engagement": _engagement,
    "intent": _intent,
    "decision_maker": _decision_maker,
}
