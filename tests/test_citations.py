"""Markers the model wrote are checked against the ones it was given; unknown ones are removed and reported."""

from __future__ import annotations

import re

import pytest

from agents.citations import validate_markers
from provenance import SourceRef

KNOWN = {
    "L1": [SourceRef(kind="crm_record", id="lead:lead-0001", field="company")],
    "L2": [SourceRef(kind="crm_record", id="lead:lead-0001", field="budget_usd")],
    "C1": [SourceRef(kind="case", id="deal-0007"), SourceRef(kind="document_chunk", id="deal-0007-c1")],
}


def _tidy(text: str) -> None:
    assert "  " not in text, f"double space in {text!r}"
    assert not re.search(r"\s[.,;:!?)]", text), f"space before punctuation in {text!r}"
    assert text == text.strip()


def test_known_markers_are_kept():
    text, citations, removed = validate_markers("Acme runs three plants [L1]. A similar rollout won [C1].", KNOWN)
    assert text == "Acme runs three plants [L1]. A similar rollout won [C1]."
    assert [c.marker for c in citations] == ["L1", "C1"]
    assert citations[1].sources == KNOWN["C1"]
    assert removed == []


def test_unknown_markers_are_removed_and_reported():
    text, citations, removed = validate_markers("Acme has budget [L9]. They want a pilot [X3] soon.", KNOWN)
    assert text == "Acme has budget. They want a pilot soon."
    assert citations == []
    assert removed == ["L9", "X3"]
    _tidy(text)


def test_mixed_bracket_keeps_only_known():
    text, citations, removed = validate_markers("Budget is set [L2, C7]. Past win [C9; C1].", KNOWN)
    assert text == "Budget is set [L2]. Past win [C1]."
    assert [c.marker for c in citations] == ["L2", "C1"]
    assert removed == ["C7", "C9"]


def test_bracket_of_only_unknown_markers_disappears():
    text, _, removed = validate_markers("First [L7, C8] , then [L1].", KNOWN)
    assert text == "First, then [L1]."
    assert removed == ["L7", "C8"]
    _tidy(text)


def test_markers_are_case_insensitive_and_counted_once():
    text, citations, removed = validate_markers("One [l1]. Two [L1]. Three [L1, l2].", KNOWN)
    assert text == "One [L1]. Two [L1]. Three [L1, L2]."
    assert [c.marker for c in citations] == ["L1", "L2"]
    assert removed == []


def test_removed_markers_reported_once_in_order():
    _, _, removed = validate_markers("[C5] a [L9]. b [C5]. c [L9, C5].", KNOWN)
    assert removed == ["C5", "L9"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Can we meet [L8]?", "Can we meet?"),
        ("Great news [X1]!", "Great news!"),
        ("(see the case [C4]) and more", "(see the case) and more"),
        ("[Z1] Leading marker.", "Leading marker."),
        ("Trailing marker [Z1]", "Trailing marker"),
        ("Two [Z1] [Z2] gone.", "Two gone."),
        ("Colon [Z1]: next", "Colon: next"),
    ],
)
def test_no_stray_spaces_after_removal(raw, expected):
    text, _, _ = validate_markers(raw, KNOWN)
    assert text == expected
    _tidy(text)


def test_square_brackets_that_are_not_markers_stay():
    text, citations, removed = validate_markers("Array [1, 2] and [note] stay [L1].", KNOWN)
    assert text == "Array [1, 2] and [note] stay [L1]."
    assert [c.marker for c in citations] == ["L1"]
    assert removed == []


def test_line_breaks_are_kept():
    text, _, _ = validate_markers("First line [L1].\nSecond line [X2].", KNOWN)
    assert text == "First line [L1].\nSecond line."


def test_no_trailing_space_before_a_line_break():
    text, _, _ = validate_markers("First line [X1]\nSecond line [L1]", KNOWN)
    assert text == "First line\nSecond line [L1]"
