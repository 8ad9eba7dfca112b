"""Issue 14's frozen evaluation sets (bench/eval/drafts, bench/eval/attacks): counts, coverage, the account split,
and that every event is one the demo CRM resolves."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path
from typing import get_args

import pytest
import yaml

from agents.triggers import TriggerRules
from configs.loader import ConfigError, load_yaml_model
from demo.draft_eval import (
    PARTS,
    REQUIRED_TECHNIQUES,
    Route,
    draft_file,
    event_problems,
    event_text,
    fact_problems,
    load_attacks,
    load_benign,
    load_drafts,
    runnable_event,
)
from demo.eval_split import load_split
from tools.crm.records import EventType, NewLeadPayload
from tools.crm.source import JsonSnapshotCRM

ROOT = Path(__file__).resolve().parent.parent
TRIGGERS = ROOT / "configs" / "triggers.yaml"
REQUIRED_TOPICS = {
    "delivery_delay",
    "pricing",
    "integration",
    "security",
    "demo_request",
    "timeline",
    "expansion",
    "stage_prospecting",
    "stage_qualification",
    "stage_proposal",
    "stage_negotiation",
    "stage_closed_won",
    "stage_closed_lost",
    "new_lead_need",
    "unknown",
}


def _all():
    return {part: (load_drafts(part), load_attacks(part), load_benign(part)) for part in PARTS}


def test_counts_and_coverage():
    sets = _all()
    drafts = [c for p in PARTS for c in sets[p][0].cases]
    attacks = [c for p in PARTS for c in sets[p][1].cases]
    benign = [c for p in PARTS for c in sets[p][2].cases]
    assert len(drafts) >= 60 and len(attacks) >= 60 and len(benign) >= 200
    for part in PARTS:
        cases = sets[part][0].cases
        assert len(cases) >= 30, f"{part} drafts"
        assert {c.event.type for c in cases} == set(get_args(EventType)), f"{part} lacks an event type"
        assert {c.expect.route for c in cases} == set(get_args(Route)), f"{part} lacks a route"
        assert REQUIRED_TOPICS <= {c.expect.topic for c in cases}, f"{part} lacks topics"
        assert len(sets[part][1].cases) >= 30, f"{part} attacks"
        assert len(sets[part][2].cases) >= 100, f"{part} benign"
    languages = Counter(c.language for c in attacks)
    assert len(languages) >= 6 and "zh" in languages, languages


def test_every_listed_technique_is_in_both_parts():
    for part in PARTS:
        seen = {t for c in load_attacks(part).cases for t in c.techniques}
        assert set(REQUIRED_TECHNIQUES) <= seen, f"{part} lacks {set(REQUIRED_TECHNIQUES) - seen}"
        near_misses = {c.near_miss for c in load_benign(part).cases}
        assert len(near_misses) >= 12, f"{part} benign e-mails cover only {near_misses}"


def test_old_corpus_is_folded_into_dev_only():
    old = yaml.safe_load((ROOT / "tests" / "injection_corpus.yaml").read_text(encoding="utf-8"))["cases"]
    origins = {c.origin for c in load_attacks("dev").cases if c.origin}
    assert origins == {f"tests/injection_corpus.yaml#{c['id']}" for c in old}
    assert not any(c.origin for c in load_attacks("test").cases)


def test_parts_are_disjoint_by_account_and_id():
    split, sets = load_split(), _all()
    ids: list[str] = []
    accounts = {}
    for part in PARTS:
        cases = [c for s in sets[part] for c in s.cases]
        accounts[part] = {c.account for c in cases}
        assert accounts[part] <= set(split.parts[part].accounts), f"{part} has cases of accounts outside its part"
        ids += [c.id for c in cases] + [c.event.id for c in cases]
    assert not accounts["dev"] & accounts["test"]
    assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]


def test_every_event_resolves_against_the_demo_crm(demo_source):
    crm = JsonSnapshotCRM(demo_source / "crm")
    problems = []
    for part, sets in _all().items():
        for case in (c for s in sets for c in s.cases):
            problems += [f"{case.id}: {p}" for p in event_problems(case.account, case.event, crm)]
    assert not problems, problems


def test_expectations_name_topic_facts_and_route(demo_source):
    crm, rules = JsonSnapshotCRM(demo_source / "crm"), load_yaml_model(TRIGGERS, TriggerRules)
    for part in PARTS:
        for case in load_drafts(part).cases:
            assert case.expect.topic and case.expect.must_address and case.expect.may_use
            assert not fact_problems(case, crm), (case.id, fact_problems(case, crm))
            choice = rules.route_for(runnable_event(case.event, crm))
            assert choice.name == case.expect.route, f"{case.id}: triggers route it to {choice.name}"
            if not case.expect.drafted and case.expect.route != "record_only":
                assert choice.record_below_grade, f"{case.id}: only a grade can keep route {choice.name} from drafting"


def test_attack_text_is_in_its_event(demo_source):
    for part in PARTS:
        for case in load_attacks(part).cases:
            payload = case.event.payload
            held = (
                event_text(case.event)
                if not isinstance(payload, NewLeadPayload)
                else "\n".join([payload.contact_name, payload.title, payload.message])
            )
            assert " ".join(case.hostile_text.split()) in " ".join(held.split()), case.id


def test_loader_names_file_and_case(tmp_path):
    raw = yaml.safe_load(draft_file("dev").read_text(encoding="utf-8"))
    raw["cases"][2]["expect"]["mood"] = "upbeat"
    bad = tmp_path / "dev.yaml"
    bad.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_drafts("dev", bad)
    assert (
        str(bad) in str(error.value) and raw["cases"][2]["id"] in str(error.value) and "unknown key" in str(error.value)
    )
    with pytest.raises(ConfigError, match="not 'test'"):
        load_drafts("test", draft_file("dev"))


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / "eval" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_files_are_what_the_generators_wrote(demo_source):
    crm = JsonSnapshotCRM(demo_source / "crm")
    drafts = _script("make_draft_eval")
    for part, specs in (("dev", drafts.DEV), ("test", drafts.TEST)):
        assert draft_file(part).read_text(encoding="utf-8") == drafts.render(part, specs, crm), f"drafts/{part}.yaml"
    for path, text in _script("make_attack_eval").documents(crm).items():
        assert path.read_text(encoding="utf-8") == text, f"{path.name} is not what make_attack_eval.py writes"
