"""Clause library loading and rule-based clause selection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tools.clauses import ClauseLibraryError, check_rules, load_clause_library, select_clauses
from tools.scheduling_records import Clause, ClauseRule


def clause(id: str) -> dict[str, str]:
    return {"id": id, "version": "2025-01", "title": id.replace("-", " ").title(), "text": f"Text of {id}."}


LIBRARY = {c["id"]: Clause(**c) for c in map(clause, ["liability-cap", "gdpr-dpa", "fda-qsr", "sla-gold", "net-60"])}

RULES = [
    ClauseRule(id="everyone", clauses=["liability-cap"]),
    ClauseRule(id="emea-privacy", regions=["EMEA"], clauses=["gdpr-dpa"]),
    ClauseRule(id="medical", industries=["medical_devices"], clauses=["fda-qsr", "liability-cap"]),
    ClauseRule(id="enterprise", min_employees=1000, clauses=["sla-gold", "gdpr-dpa"]),
    ClauseRule(id="small-emea-saas", industries=["saas"], regions=["EMEA"], max_employees=200, clauses=["net-60"]),
]


def write_library(tmp_path: Path, records: Any) -> Path:
    path = tmp_path / "clauses.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def picked(industry: str, region: str, employees: int) -> list[tuple[str, str]]:
    return [(c.clause.id, c.rule_id) for c in select_clauses(RULES, LIBRARY, industry, region, employees)]


def test_load_clause_library_keys_clauses_by_id(tmp_path: Path) -> None:
    path = write_library(tmp_path, [clause("liability-cap"), clause("gdpr-dpa")])

    library = load_clause_library(path)

    assert list(library) == ["liability-cap", "gdpr-dpa"]
    assert library["gdpr-dpa"] == Clause(**clause("gdpr-dpa"))


def test_duplicate_clause_id_names_file_id_and_index(tmp_path: Path) -> None:
    path = write_library(tmp_path, [clause("gdpr-dpa"), clause("net-60"), clause("gdpr-dpa")])

    with pytest.raises(ClauseLibraryError) as error:
        load_clause_library(path)

    message = str(error.value)
    assert str(path) in message and "'gdpr-dpa'" in message and "index 2" in message and "duplicates" in message


def test_invalid_clause_names_file_id_index_and_problem(tmp_path: Path) -> None:
    broken = {k: v for k, v in clause("sla-gold").items() if k != "text"} | {"owner": "legal"}
    path = write_library(tmp_path, [clause("net-60"), broken])

    with pytest.raises(ClauseLibraryError) as error:
        load_clause_library(path)

    message = str(error.value)
    assert str(path) in message and "'sla-gold'" in message and "index 1" in message
    assert "text: Field required" in message and "owner: Extra inputs are not permitted" in message


@pytest.mark.parametrize(
    ("content", "problem"),
    [("{not json", "not valid JSON"), ('{"id": "x"}', "must be a list")],
    ids=["bad-json", "not-a-list"],
)
def test_unreadable_library_names_the_file(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "clauses.json"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(ClauseLibraryError, match=problem) as error:
        load_clause_library(path)
    assert str(path) in str(error.value)


def test_missing_library_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ClauseLibraryError, match="cannot read clause library .*nope.json"):
        load_clause_library(tmp_path / "nope.json")


def test_unconditional_rule_always_fires() -> None:
    assert picked("manufacturing", "NA", 50) == [("liability-cap", "everyone")]


def test_selection_by_region_and_size_keeps_rule_order_and_first_rule_wins() -> None:
    # gdpr-dpa is named by both emea-privacy and enterprise: it appears once, credited to the earlier rule.
    assert picked("manufacturing", "EMEA", 5000) == [
        ("liability-cap", "everyone"),
        ("gdpr-dpa", "emea-privacy"),
        ("sla-gold", "enterprise"),
    ]


def test_selection_by_industry_dedups_a_clause_already_picked() -> None:
    assert picked("medical_devices", "APAC", 10) == [("liability-cap", "everyone"), ("fda-qsr", "medical")]


@pytest.mark.parametrize(
    ("industry", "region", "employees", "fires"),
    [
        ("saas", "EMEA", 200, True),  # max_employees is inclusive
        ("saas", "EMEA", 201, False),
        ("saas", "NA", 50, False),
        ("education", "EMEA", 50, False),
    ],
)
def test_every_condition_of_a_rule_must_hold(industry: str, region: str, employees: int, fires: bool) -> None:
    assert (("net-60", "small-emea-saas") in picked(industry, region, employees)) is fires


def test_min_employees_is_inclusive() -> None:
    assert ("sla-gold", "enterprise") in picked("saas", "NA", 1000)
    assert ("sla-gold", "enterprise") not in picked("saas", "NA", 999)


def test_rule_naming_unknown_clauses_lists_missing_and_known_ids() -> None:
    rules = [*RULES, ClauseRule(id="apac-export", regions=["APAC"], clauses=["export-control", "net-60", "itar"])]

    with pytest.raises(ClauseLibraryError) as error:
        check_rules(rules, LIBRARY)

    message = str(error.value)
    assert "rule 'apac-export' -> 'export-control'" in message and "rule 'apac-export' -> 'itar'" in message
    assert "known clause ids: fda-qsr, gdpr-dpa, liability-cap, net-60, sla-gold" in message
    assert "'net-60'" not in message.split("known clause ids")[0]


def test_select_clauses_rejects_rules_with_unknown_clauses_even_when_they_do_not_fire() -> None:
    rules = [ClauseRule(id="apac-export", regions=["APAC"], clauses=["export-control"])]

    with pytest.raises(ClauseLibraryError, match="export-control"):
        select_clauses(rules, LIBRARY, "saas", "NA", 10)


def test_check_rules_accepts_a_consistent_configuration() -> None:
    check_rules(RULES, LIBRARY)
