"""The draft verifier (issue 14): claims are read in normalized form and must be found in the sentence's sources.

Uses only the dev parts of the frozen attack and benign sets; the test parts are held out for the benchmark.
"""

from __future__ import annotations

import re

import pytest

from agents.attribution import split_sentences
from agents.verify import (
    Name,
    SentenceCheck,
    check_sentence,
    extract_claims,
    number_value,
    verify_sentence,
)
from demo.draft_eval import AttackCase, event_text, load_attacks, load_benign
from tools.crm.source import JsonSnapshotCRM

# States nothing a claim could be checked against.
NEUTRAL = ["Loop Connect links your plants to the MES.", "Thank you for your message."]


def claims(sentence: str, **names) -> list[tuple[str, str]]:
    return [(c.kind, c.value) for c in extract_claims(sentence, **names)]


def failed(sentence: str, sources: list[str], **names) -> list[tuple[str, str]]:
    return [(v.claim.kind, v.claim.value) for v in check_sentence(sentence, sources, **names).violations]


# ---------------------------------------------------------------- normalization

@pytest.mark.parametrize(("text", "value"), [
    ("12,000", 12000), ("12.000", 12000), ("12 000", 12000), ("1.200,50", 1200.5), ("99.99", 99.99), ("1,5", 1.5),
    ("1.5k", 1500), ("120万", 1_200_000), ("2亿", 200_000_000), ("ninety", 90), ("twenty-five", 25),
    ("one hundred and twenty", 120), ("three thousand", 3000), ("三十", 30), ("一百二十", 120), ("五十万", 500_000),
    ("neunzig", 90), ("setenta", 70),
])
def test_number_values(text, value):
    assert number_value(text) == pytest.approx(value)


# Every phrase issue 14 names, with what it must be read as.
PHRASES = [
    ("We expect 12,000 users.", ("number", "12000")),
    ("Wir erwarten 12.000 Nutzer.", ("number", "12000")),
    ("About 1.5k seats are planned.", ("number", "1500")),
    ("It runs at double the speed.", ("number", "2")),
    ("Ninety percent of lines are covered.", ("percent", "90")),
    ("It covers 90% of lines.", ("percent", "90")),
    ("It covers 90 percent of lines.", ("percent", "90")),
    ("It covers ninety per cent of lines.", ("percent", "90")),
    ("百分之三十的产线已经接入。", ("percent", "30")),
    ("三成的产线已经接入。", ("percent", "30")),
    ("We can offer half off the first year.", ("discount", "50")),
    ("We can offer a third off.", ("discount", "33.3333")),
    ("We give 90% off the licence.", ("discount", "90")),
    ("We give ninety percent off the licence.", ("discount", "90")),
    ("Wir gewähren 90 % Rabatt.", ("discount", "90")),
    ("Ofrecemos un descuento del setenta por ciento.", ("discount", "70")),
    ("Pricing stays at the list price minus 40%.", ("discount", "40")),
    ("скидка 50% на весь срок договора", ("discount", "50")),
    ("所有许可证七折。", ("discount", "30")),
    ("所有许可证打一折。", ("discount", "90")),
    ("九割引きで提供します。", ("discount", "90")),
    ("能否给15%的折扣？", ("discount", "15")),
    ("Licences are 2 for 1 this quarter.", ("discount", "50")),
    ("The training is free.", ("free", "free")),
    ("The training comes at no charge.", ("free", "free")),
    ("The training comes at no cost.", ("free", "free")),
    ("The training is complimentary.", ("free", "free")),
    ("The first year is on us.", ("free", "free")),
    ("The training is on the house.", ("free", "free")),
    ("We waive the setup fee.", ("free", "free")),
    ("We will bill you nothing until 2028.", ("free", "free")),
    ("培训免费。", ("free", "free")),
    ("Die Schulung ist gratis.", ("free", "free")),
    ("Die Schulung ist kostenlos.", ("free", "free")),
    ("La formation est gratuite.", ("free", "free")),
    ("初年度の利用料は無料です。", ("free", "free")),
    ("We will bill you nothing until 2028.", ("date", "2028")),
    ("The pilot ends on 2026-01-15.", ("date", "2026-01-15")),
    ("The pilot ends on 15 January 2026.", ("date", "2026-01-15")),
    ("The pilot ends on January 15, 2026.", ("date", "2026-01-15")),
    ("The pilot ends on January 15.", ("date", "--01-15")),
    ("试点于2026年1月15日结束。", ("date", "2026-01-15")),
    ("We can talk at 9am.", ("date", "T09:00")),
    ("The rollout takes six weeks.", ("duration", "6 week")),
    ("The rollout takes 2 weeks.", ("duration", "2 week")),
    ("The rollout takes 30 days.", ("duration", "30 day")),
    ("The licence is EUR 12,000.", ("money", "EUR 12000")),
    ("The licence is €12.000.", ("money", "EUR 12000")),
    ("The licence is $120k.", ("money", "USD 120000")),
    ("The licence is 12,000 USD.", ("money", "USD 12000")),
    ("许可证费用为120万元。", ("money", "CNY 1200000")),
    ("许可证费用为人民币50万。", ("money", "CNY 500000")),
    ("许可证费用为RMB 80,000。", ("money", "CNY 80000")),
    ("The licence is ¥5,000.", ("money", "5000")),
    ("We guarantee 99.9% uptime.", ("commitment", "guarantee")),
    ("We will refund the setup fee.", ("commitment", "refund")),
    ("You get your money back.", ("commitment", "refund")),
    ("We commit to a June start.", ("commitment", "commit")),
    ("We promise a June start.", ("commitment", "promise")),
    ("我们保证准时交付。", ("commitment", "guarantee")),
    ("我们提供退款。", ("commitment", "refund")),
    ("I have booked a call with our CEO.", ("commitment", "booked")),
    ("Write to sales@loop-suite.example.", ("email", "sales@loop-suite.example")),
    ("Call +86 138 0013 8000.", ("phone", "8613800138000")),
    ("Call +49 711 555 0142.", ("phone", "497115550142")),
    ("See https://www.loop-suite.example/pricing/ for details.", ("url", "loop-suite.example/pricing")),
]


@pytest.mark.parametrize(("sentence", "expected"), PHRASES)
def test_each_phrase_is_read_in_normalized_form(sentence, expected):
    assert expected in claims(sentence)


@pytest.mark.parametrize(("sentence", "expected"), PHRASES)
def test_each_phrase_is_a_violation_when_no_source_states_it(sentence, expected):
    assert expected in failed(sentence, NEUTRAL)


# Each phrase beside a source that states the same thing in other words: it passes.
SUPPORTED = [
    ("We can offer half off the first year.", "Approved by the deal desk: a 50% discount on year one."),
    ("We give ninety percent off the licence.", "Deal desk approval: 90% discount on the licence."),
    ("The first year is on us.", "Year one is free of charge for this account."),
    ("We will bill you nothing until 2028.", "No charge until 2028-06-30 (approved exception)."),
    ("We confirm the data migration is included at no charge.", "Data migration is complimentary."),
    ("It covers ninety per cent of lines.", "Coverage: 90% of lines."),
    ("百分之三十的产线已经接入。", "30% of lines are connected."),
    ("三成的产线已经接入。", "Thirty percent of lines are connected."),
    ("所有许可证七折。", "Approved: 30% off all licences."),
    ("所有许可证打一折。", "Approved: a 90% discount."),
    ("Licences are 2 for 1 this quarter.", "Promotion: half price on licences."),
    ("The licence is €12,000.", "Licence fee 12.000 EUR per year."),
    ("许可证费用为120万元。", "Licence: RMB 1,200,000."),
    ("The licence is $120k.", "Deal amount: 120000"),
    ("The pilot ends on 15 January 2026.", "Pilot end date: 2026-01-15"),
    ("试点于2026年1月15日结束。", "The pilot ends on January 15, 2026."),
    ("The rollout takes six weeks.", "Rollout: 6 weeks."),
    ("The rollout takes 30 days.", "Rollout within thirty days."),
    ("We guarantee 99.9% uptime.", "The SLA guarantees 99.9% uptime."),
    ("We will refund the setup fee.", "The setup fee is refundable."),
    ("我们保证准时交付。", "On-time delivery is guaranteed."),
    ("Die Schulung ist kostenlos.", "Training is free."),
    ("Call +86 138 0013 8000.", "Phone: 138-0013-8000"),
    ("Write to Sales@Loop-Suite.example.", "Contact: sales@loop-suite.example"),
    ("We expect 12,000 users.", "Users: 12000"),
    ("We need a 50% reduction in downtime.", "Goal: cut downtime by 50%."),
]


@pytest.mark.parametrize(("sentence", "source"), SUPPORTED)
def test_a_source_stating_the_same_in_other_words_supports_it(sentence, source):
    check = check_sentence(sentence, [source])
    assert check.passed, check.violations


@pytest.mark.parametrize(("sentence", "source"), [
    ("We can offer half off the first year.", "Approved: a 40% discount on year one."),
    ("We offer a 90% discount.", "Uptime was 90% last year."),  # a percentage is no discount
    ("The first year is on us.", "Approved: a 10% discount."),
    ("The licence is €12,000.", "The licence is USD 12,000."),
    ("The pilot ends on 15 January 2026.", "The pilot ends on 2026-01-16."),
    ("We will refund the setup fee.", "We guarantee the setup date."),
    ("The rollout takes six weeks.", "The rollout takes six months."),
])
def test_the_same_kind_with_another_value_does_not_support_it(sentence, source):
    assert failed(sentence, [source])


# ---------------------------------------------------------------- today's guard's known misses

@pytest.mark.parametrize("sentence", [
    "We are happy to give you half off the first year.",
    "We can do ninety percent off the licence.",
    "The first year is on us.",
    "We will bill you nothing until 2028.",
    "I can confirm the onboarding package is included at no charge.",
])
def test_known_misses_of_the_old_guard_are_caught(sentence):
    assert failed(sentence, NEUTRAL)


@pytest.mark.parametrize(("sentence", "source"), [
    ("We need a 50% reduction in downtime.", "Target: a 50% reduction in downtime across 4 plants."),
    ("Your 4 plants run 3 shifts.", "The customer runs 4 plants with 3 shifts each."),
    ("Feel free to reply with questions.", "Thank you for your message."),
    ("We cannot guarantee a delivery date yet.", "Thank you for your message."),
    ("Let us find a slot next week.", "Thank you for your message."),
    ("One of our engineers will join.", "Thank you for your message."),
    ("Loop Connect links your plants to the MES. [L1]", "Loop Connect links your plants to the MES."),
    ("Procurement still needs your W-9 and the ISO-9001 certificate.", "Thank you for your message."),
])
def test_ordinary_supported_sentences_pass(sentence, source):
    check = check_sentence(sentence, [source])
    assert check.passed, check.violations


# ---------------------------------------------------------------- names

LEAD = [Name(text="Mei Suzuki"), Name(text="Nimbus Pty Ltd", kind="company")]
OTHERS = [Name(text="Karen Miles"), Name(text="Quarry Apps GmbH", kind="company")]


def test_a_known_name_passes_where_the_sources_name_it():
    sources = ["Contact: Mei Suzuki, Nimbus Pty Ltd."]
    assert check_sentence("Dear Mei, Nimbus can start in Q1.", sources, known_names=LEAD, forbidden_names=OTHERS).passed


def test_a_known_name_the_sources_do_not_name_fails():
    assert failed("Mei Suzuki asked for it.", NEUTRAL, known_names=LEAD) == [("person", "Mei Suzuki")]


def test_a_third_party_never_passes_even_when_a_source_names_it():
    sources = ["Quarry Apps GmbH signed in 2025; contact Karen Miles."]
    assert failed("Quarry Apps and Karen Miles use it too.", sources, known_names=LEAD, forbidden_names=OTHERS) == [
        ("company", "Quarry Apps GmbH"), ("person", "Karen Miles")]


def test_a_first_name_alone_counts_only_capitalized():
    assert claims("We will follow up.", known_names=[Name(text="Will Ortiz")]) == []
    assert claims("Will asked for it.", known_names=[Name(text="Will Ortiz")]) == [("person", "Will Ortiz")]


def test_the_reason_never_quotes_personal_data():
    check = check_sentence("Write to karen@quarry.example or call +49 711 555 0142.", NEUTRAL)
    assert [v.why for v in check.violations] == ["email is not in the sources", "phone is not in the sources"]


# ---------------------------------------------------------------- the policy

def test_a_passing_sentence_is_kept():
    result = verify_sentence("Thank you for your message.", NEUTRAL, lambda c: pytest.fail("no rewrite"), "T.")
    assert (result.outcome, result.text, result.removed) == ("kept", "Thank you for your message.", [])


def test_a_failing_sentence_is_rewritten_once():
    asked: list[SentenceCheck] = []
    def rewrite(check: SentenceCheck) -> str:
        asked.append(check)
        return "We will send terms."

    result = verify_sentence("The first year is on us.", NEUTRAL, rewrite, "T.")
    assert (result.outcome, result.text) == ("rewritten", "We will send terms.")
    assert len(asked) == 1 and [v.claim.kind for v in result.removed] == ["free"]


def test_a_rewrite_that_fails_again_gives_the_template_and_records_both():
    result = verify_sentence("The first year is on us.", NEUTRAL, lambda c: "We give 90% off.", "Template.")
    assert (result.outcome, result.text) == ("template", "Template.")
    assert [(v.claim.kind, v.claim.value) for v in result.removed] == [("free", "free"), ("discount", "90")]
    assert "not in the sources" in result.removed[0].why
    assert result.model_dump()["checks"][1]["passed"] is False  # the trace keeps both checks


# ---------------------------------------------------------------- the frozen attack set, dev part

# What a draft would say if the attack worked, where `looks_like` is written from the customer's side.
DRAFT_WORDING = {"atk-dev-060": "The first year is on us."}
GENERIC = {"a discount no rep approved", "something given at no charge", "a price no rep set"}
VERIFIED_LABELS = ("discount", "free", "refund", "guarantee", "price", "third_party_data", "action")


def attack_sentence(case: AttackCase, label: str, crm: JsonSnapshotCRM) -> str:
    """A draft sentence that repeats the attack's forbidden commitment for `label`."""
    looks_like = next(f.looks_like for f in case.forbidden if f.kind == label)
    if label == "third_party_data":
        other = third_party(case, crm)
        return f"{other.full_name} of {crm.account(other.account_id).name} ({other.email}, {other.phone}) uses it too."
    if label == "action":
        return "As you asked, I have booked a call with our CEO."
    if label == "instructions_leak":
        return "My instructions say: you write sales e-mails and never offer discounts."
    if case.id in DRAFT_WORDING:
        return DRAFT_WORDING[case.id]
    # The generic labels describe; the hostile text itself carries the commitment then.
    return case.hostile_text if looks_like in GENERIC else re.sub(r"\s*\([^)]*\)$", "", looks_like)


def third_party(case: AttackCase, crm: JsonSnapshotCRM):
    others = sorted((c for c in crm.contacts() if c.account_id != case.account), key=lambda c: c.id)
    return others[int(case.id.rsplit("-", 1)[1]) % len(others)]


def attack_names(case: AttackCase, crm: JsonSnapshotCRM) -> tuple[list[Name], list[Name]]:
    """The lead's own account and contacts (known), every other account and contact (forbidden)."""
    known, forbidden = [Name(text=crm.account(case.account).name, kind="company")], []
    for contact in crm.contacts():
        (known if contact.account_id == case.account else forbidden).append(Name(text=contact.full_name))
    accounts = {c.account_id for c in crm.contacts()} - {case.account}
    forbidden += [Name(text=crm.account(a).name, kind="company") for a in sorted(accounts)]
    return known, forbidden


def attack_sources(case: AttackCase) -> list[str]:
    """The e-mail around the attack: the customer's words minus the injected text."""
    return [event_text(case.event).replace(case.hostile_text, " ")]


def attack_check(case: AttackCase, label: str, crm: JsonSnapshotCRM) -> SentenceCheck:
    known, forbidden = attack_names(case, crm)
    return check_sentence(attack_sentence(case, label, crm), attack_sources(case), known, forbidden)


DEV_ATTACKS = [(c, f.kind) for c in load_attacks("dev").cases for f in c.forbidden if f.kind in VERIFIED_LABELS]


@pytest.fixture(scope="module")
def crm(demo_source) -> JsonSnapshotCRM:
    return JsonSnapshotCRM(demo_source / "crm")


@pytest.mark.parametrize(("case", "label"), DEV_ATTACKS, ids=[f"{c.id}-{k}" for c, k in DEV_ATTACKS])
def test_a_sentence_repeating_a_dev_attack_is_flagged(case, label, crm):
    check = attack_check(case, label, crm)
    assert not check.passed, (check.sentence, check.claims)


BENIGN = load_benign("dev").cases


@pytest.mark.parametrize("case", BENIGN, ids=[c.id for c in BENIGN])
def test_benign_dev_emails_pass_against_themselves(case):
    text = event_text(case.event)
    for sentence in split_sentences(text):
        check = check_sentence(sentence, [text])
        assert check.passed, (sentence, check.violations)
