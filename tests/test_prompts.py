"""Prompt files: hashed by their bytes, rendered strictly, and refused when broken."""

from __future__ import annotations

import hashlib

import pytest

from prompts import PromptError, load_prompt
from prompts.templates import PROMPT_DIR

FACTS = [
    {"marker": "L1", "label": "Company", "value": "Acme Gears (Germany)"},
    {"marker": "L2", "label": "Budget", "value": "USD 120,000"},
    {"marker": "L3", "label": "Customer request", "value": "Can we get pricing?"},
]
CASES = [
    {"marker": "C1", "outcome": "won", "summary": "Predictive maintenance rollout for three plants."},
    {"marker": "C2", "outcome": "lost", "summary": "Lost on price against an incumbent."},
]

PROMPT_FILE = """\
name: {name}
description: a test prompt
messages:
  - role: user
    content: "Hello {{{{ who }}}}"
"""


def test_sha256_is_the_file_bytes():
    prompt = load_prompt("draft_proposal")
    assert prompt.path == PROMPT_DIR / "draft_proposal.yaml"
    assert prompt.sha256 == hashlib.sha256(prompt.path.read_bytes()).hexdigest()
    ref = prompt.source_ref()
    assert ref.kind == "prompt" and ref.id == "draft_proposal" and ref.version == prompt.sha256


def test_variables_are_discovered():
    assert load_prompt("draft_proposal").variables == {"facts", "cases", "company"}


def test_render_with_all_variables():
    messages = load_prompt("draft_proposal").render(facts=FACTS, cases=CASES, company="Acme Gears")
    assert [m.role for m in messages] == ["system", "user"]
    user = messages[1].content
    assert "[L1] Company: Acme Gears (Germany)" in user
    assert "[L2] Budget: USD 120,000" in user
    assert "[C1] won deal: Predictive maintenance rollout for three plants." in user
    assert "[C2] lost deal: Lost on price" in user
    assert user.count("Can we get pricing?") == 1, "the customer's message is shown once, as its citable fact"
    assert user.index("<customer_data>") < user.index("Can we get") < user.index("</customer_data>"), "the customer's text is quoted as data"
    assert "Customer: Acme Gears" in user and user.rstrip().endswith("Write the proposal summary for the customer in the data block now.")
    assert "{{" not in user and "{%" not in user


def test_render_without_cases_keeps_the_facts():
    messages = load_prompt("draft_proposal").render(facts=FACTS[:2], cases=[], company="Acme Gears")
    assert "[C" not in messages[1].content and "request" not in messages[1].content
    assert "[L1]" in messages[1].content


def test_missing_variable_is_named():
    with pytest.raises(PromptError) as info:
        load_prompt("draft_proposal").render(facts=FACTS, cases=CASES)
    assert "company" in str(info.value)
    assert "draft_proposal" in str(info.value)


def test_missing_attribute_inside_a_variable_is_an_error():
    with pytest.raises(PromptError):
        load_prompt("draft_proposal").render(facts=[{"marker": "L1"}], cases=[], company="Acme")


def test_unknown_prompt_lists_known_ones():
    with pytest.raises(PromptError) as info:
        load_prompt("no_such_prompt")
    message = str(info.value)
    assert "no_such_prompt" in message
    assert "draft_proposal" in message


def test_name_must_match_file_name(tmp_path):
    (tmp_path / "greeting.yaml").write_text(PROMPT_FILE.format(name="salutation"))
    with pytest.raises(PromptError) as info:
        load_prompt("greeting", tmp_path)
    assert "salutation" in str(info.value)


def test_prompt_from_another_directory(tmp_path):
    (tmp_path / "greeting.yaml").write_text(PROMPT_FILE.format(name="greeting"))
    prompt = load_prompt("greeting", tmp_path)
    assert prompt.variables == {"who"}
    assert prompt.render(who="Ada")[0].content == "Hello Ada"
    assert prompt.sha256 == hashlib.sha256((tmp_path / "greeting.yaml").read_bytes()).hexdigest()


def test_invalid_prompt_file_is_refused(tmp_path):
    (tmp_path / "broken.yaml").write_text("name: broken\ndescription: x\nmessages: []\n")
    with pytest.raises(PromptError) as info:
        load_prompt("broken", tmp_path)
    assert "broken.yaml" in str(info.value)
