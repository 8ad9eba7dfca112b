"""Messy CRM titles map to a canonical role and seniority through the configured synonym table."""

from __future__ import annotations

import pytest

from agents.titles import canonical_words, normalize_title
from configs import load_settings
from configs.loader import DEFAULT_CONFIG
from configs.settings import TitleRule


@pytest.fixture(scope="module")
def rules() -> list[TitleRule]:
    return load_settings(DEFAULT_CONFIG, env={}).titles


@pytest.mark.parametrize(
    ("raw", "role", "seniority", "decision_maker"),
    [
        ("Dir. of Ops", "operations", "director", True),
        ("VP Eng.", "engineering", "vp", True),
        ("head of procurement", "procurement", "head", True),
        ("VP, Engineering", "engineering", "vp", True),
        ("Sr. Software Eng", "engineering", "individual", False),
        ("Founder & CEO", "ceo", "c_level", True),
        ("intern", "intern", "intern", False),
        ("  PLANT   MANAGER ", "plant", "manager", False),
    ],
)
def test_default_table(rules, raw, role, seniority, decision_maker):
    match = normalize_title(raw, rules)
    assert (match.role, match.seniority, match.decision_maker) == (role, seniority, decision_maker)
    assert match.synonym is not None


@pytest.mark.parametrize("raw", ["Chief Vibes Wizard", "", "!!!", "xq zz 42"])
def test_gibberish_is_unknown(rules, raw):
    match = normalize_title(raw, rules)
    assert match.role == "unknown"
    assert match.decision_maker is False
    assert match.synonym is None


def test_synonyms_match_whole_words_only(rules):
    # "intern" must not fire inside "international", nor "cto" inside "director".
    assert normalize_title("International Sales", rules).role == "unknown"
    assert normalize_title("Director", rules).role == "unknown"


def test_longest_synonym_wins_in_the_default_table(rules):
    # Both "head of it" and "procurement lead" occur; the longer one decides.
    match = normalize_title("Head of IT / Procurement Lead", rules)
    assert (match.role, match.seniority, match.synonym) == ("procurement", "head", "procurement lead")
    # "software engineer" and "engineer" are both there; the longer synonym is reported.
    assert normalize_title("Software Engineer", rules).synonym == "software engineer"


@pytest.mark.parametrize("reverse", [False, True])
def test_longest_synonym_wins_regardless_of_table_order(reverse):
    table = [
        TitleRule(role="generic", seniority="manager", synonyms=["manager"]),
        TitleRule(role="plant", seniority="director", decision_maker=True, synonyms=["plant manager"]),
    ]
    if reverse:
        table.reverse()
    match = normalize_title("Senior Plant Manager", table)
    assert (match.role, match.seniority, match.decision_maker) == ("plant", "director", True)
    assert normalize_title("Office Manager", table).role == "generic"


def test_canonical_words():
    assert canonical_words("Dir. of Ops") == "dir of ops"
    assert canonical_words("VP,  Engineering!") == "vp engineering"
