"""Trigger rules: validated at start-up, the first matching rule picks the route, and the fired rule is traced."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from agents.triggers import TriggerRules
from configs import ConfigError
from configs.loader import load_yaml_model
from orchestrator import Orchestrator
from tests.test_graph import demo_event
from tools.crm.records import CRMEvent

SHIPPED = Path(__file__).resolve().parent.parent / "configs" / "triggers.yaml"


@pytest.fixture(scope="module")
def rules() -> TriggerRules:
    return load_yaml_model(SHIPPED, TriggerRules)


@pytest.mark.parametrize(("event", "route", "rule"), [
    ("delivery-slip", "objection", "trigger:delay-with-document"),
    ("security-review", "proposal", "trigger:email"),
    ("06-deal-stage-change", "proposal", "trigger:stage-to-proposal"),
    ("new-lead-falkenrath", "proposal", "trigger:new-lead"),
])
def test_the_first_matching_rule_picks_the_route(rules, demo_source, event, route, rule):
    choice = rules.route_for(demo_event(demo_source, event))
    assert (choice.name, choice.rule.id) == (route, rule)
    assert choice.prompt == rules.routes[route].prompt and choice.rule.kind == "rule"


def test_a_delay_email_without_a_pdf_is_not_an_objection(rules, demo_source):
    event = demo_event(demo_source, "delivery-slip")
    bare = event.model_copy(update={"payload": event.payload.model_copy(update={"attachments": []})})
    assert rules.route_for(bare).name == "proposal"


def test_an_event_no_rule_matches_takes_the_default_route(demo_source):
    raw = yaml.safe_load(SHIPPED.read_text())
    raw["rules"] = [r for r in raw["rules"] if r["id"] != "new-lead"]
    choice = TriggerRules.model_validate(raw).route_for(demo_event(demo_source, "new-lead-falkenrath"))
    assert (choice.name, choice.rule.id, choice.prompt) == ("record_only", "trigger:default", None)


@pytest.mark.parametrize(("change", "message"), [
    (lambda raw: raw["rules"][0].update(route="escalate"), r"rule delay-with-document names route 'escalate'.*known: objection, proposal, record_only"),
    (lambda raw: raw["rules"][1].update(id="delay-with-document"), r"rule ids must be unique; repeated: delay-with-document"),
    (lambda raw: raw["rules"][0]["when"].update(to_stage=["won"]), r"rules\.0\.when\.to_stage\.0"),
    (lambda raw: raw["rules"][0]["when"].update(sender="ceo"), r"rules\.0\.when\.sender: unknown key"),
])
def test_bad_rules_are_refused_at_start_up_naming_the_key(tmp_path, change, message):
    raw = yaml.safe_load(SHIPPED.read_text())
    change(raw)
    path = tmp_path / "triggers.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=message):
        load_yaml_model(path, TriggerRules)


def test_a_route_naming_a_missing_prompt_fails_at_start_up(tmp_path, services):
    raw = yaml.safe_load(SHIPPED.read_text())
    raw["routes"]["objection"]["prompt"] = "objection_v2"
    path = tmp_path / "triggers.yaml"
    path.write_text(yaml.safe_dump(raw))
    services.settings = services.settings.model_copy(update={"triggers": path})
    with pytest.raises(Exception, match="no prompt named 'objection_v2'"):
        services.triggers


def test_the_objection_route_drafts_with_its_own_prompt_and_traces_the_rule(indexed_services, data_dir):
    with Orchestrator(indexed_services) as orch:
        info, _ = orch.start(demo_event(data_dir, "delivery-slip"))
        state = orch.state(info.run_id)
    assert info.status == "waiting" and state.route.name == "objection"
    assert state.draft.prompt_name == "objection_handling"
    normalize = state.trace[0]
    assert any(r.id == "trigger:delay-with-document" and r.field == "objection" for r in normalize.inputs)


def test_a_lead_graded_below_c_is_recorded_without_a_draft(indexed_services):
    event = CRMEvent.model_validate({
        "id": "evt-cold", "type": "new_lead", "occurred_at": datetime(2026, 11, 20, tzinfo=timezone.utc), "source": "web-form",
        "payload": {"lead_id": "lead-cold", "company": "Tiny Tutors", "industry": "education", "employees": 4, "region": "EMEA",
                    "country": "DE", "timezone": "Europe/Berlin", "contact_name": "Kim Doe", "email": "kim@tinytutors.example",
                    "title": "intern"},
    })
    with Orchestrator(indexed_services) as orch:
        info, _ = orch.start(event)
        state = orch.state(info.run_id)
        assert orch.pending_interrupt(info.run_id) is None
    assert state.grade.grade == "D" and info.status == "done"
    assert state.draft is None and [s.step for s in state.trace] == ["normalize", "grade_lead"]
    assert state.trace[-1].notes == ["recorded only: route proposal, grade D is below C"]
    assert state.route.rule.id == "trigger:new-lead"
