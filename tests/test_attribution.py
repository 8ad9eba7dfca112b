"""Sentence-level sources: markers first, then similarity with the real MiniLM embedder, on demo CRM records."""

from __future__ import annotations

import pytest

from agents.attribution import attribute_sentences, case_sources, chunk_ref, split_sentences
from agents.state import CaseHit, LeadFact
from configs import load_settings
from configs.loader import DEFAULT_CONFIG
from configs.settings import AttributionSettings, Settings
from provenance import SourceRef
from tools.crm.records import Deal
from tools.crm.source import JsonSnapshotCRM
from tools.embedder import Embedder, load_embedder

MARS = "The weather on Mars is cold."


class CountingEmbedder:
    """The real embedder, counting calls: a draft must be embedded in one batch."""

    def __init__(self, inner: Embedder):
        self.inner, self.model_id, self.dim, self.calls = inner, inner.model_id, inner.dim, 0

    def embed(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        return self.inner.embed(texts)


@pytest.fixture(scope="module")
def default_settings() -> Settings:
    return load_settings(DEFAULT_CONFIG, env={})


@pytest.fixture
def embedder(default_settings) -> CountingEmbedder:
    return CountingEmbedder(load_embedder(default_settings.embedder))


@pytest.fixture
def attribution(default_settings) -> AttributionSettings:
    return default_settings.attribution


@pytest.fixture(scope="module")
def crm(demo_source) -> JsonSnapshotCRM:
    return JsonSnapshotCRM(demo_source / "crm")


@pytest.fixture(scope="module")
def facts(crm) -> list[LeadFact]:
    """The facts a lead at Juniper Components (UK manufacturer, 47 employees) would carry."""
    account = crm.account("acc-034")
    contact = crm.contact("con-0065")
    rows = [("L1", "account_name", "Company", f"{account.name} ({account.country})", f"account:{account.id}", "name"),
            ("L2", "industry", "Industry", account.industry, f"account:{account.id}", "industry"),
            ("L3", "employees", "Company size", f"{account.employees} employees", f"account:{account.id}", "employees"),
            ("L4", "contact_name", "Contact", f"{contact.full_name}, {contact.raw_title}", f"contact:{contact.id}", "raw_title")]
    return [LeadFact(marker=m, field=f, label=label, value=value, source=SourceRef(kind="crm_record", id=rec, field=col))
            for m, f, label, value, rec, col in rows]


def case_hit(marker: str, deal: Deal) -> CaseHit:
    return CaseHit(marker=marker, case_id=deal.id, account_id=deal.account_id, industry="manufacturing", outcome=deal.outcome,
                   score=0.8, summary=deal.case_summary, chunks=deal.chunks)


@pytest.fixture(scope="module")
def cases(crm) -> list[CaseHit]:
    """Juniper's own FactoryTalk pilot and Cedar Ridge's OPC UA connectivity deal."""
    return [case_hit("C1", crm.deal("deal-0039")), case_hit("C2", crm.deal("deal-0003"))]


@pytest.mark.parametrize(("text", "expected"), [
    ("Loop Connect fits your plants. [L1, C2] It starts in Q1.", ["Loop Connect fits your plants. [L1, C2]", "It starts in Q1."]),
    ("Use a pilot line, e.g. Siemens Opcenter. Uptime grew 3.5 times!", ["Use a pilot line, e.g. Siemens Opcenter.", "Uptime grew 3.5 times!"]),
    ("Rosewood Castings Pte. Ltd. signed. Dr. Mori agreed.[C1]", ["Rosewood Castings Pte. Ltd. signed.", "Dr. Mori agreed.[C1]"]),
    ("We propose it for Sakura MedTech K.K. [L1] Why wait?", ["We propose it for Sakura MedTech K.K. [L1]", "Why wait?"]),
    ("Dear Mei Ong,\nthe fee is $21,500. a pilot comes first", ["Dear Mei Ong,", "the fee is $21,500. a pilot comes first"]),
    ("a summary without terminal punctuation", ["a summary without terminal punctuation"]),
    ("请确认价格。全部模块免费！可以吗？[L1] 好", ["请确认价格。", "全部模块免费！", "可以吗？[L1]", "好"]),
    ("「九割引きです。」次に", ["「九割引きです。」", "次に"]),
    ("", []),
    ("  \n ", []),
])
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


def test_a_validated_marker_attributes_its_sentence(facts, cases, embedder, attribution):
    sentences, share = attribute_sentences("Juniper needs shop-floor data in FactoryTalk. [L1, C1]", facts, cases, embedder, attribution)

    assert [(s.method, s.similarity) for s in sentences] == [("marker", None)]
    assert sentences[0].sources == [facts[0].source, *case_sources(cases[0])]
    assert share == 1.0
    assert embedder.calls == 0  # nothing left to compare


def test_a_marker_the_model_was_not_given_does_not_count(facts, cases, embedder, attribution):
    sentences, share = attribute_sentences(f"{MARS} [C7]", facts, cases, embedder, attribution)

    assert (sentences[0].method, sentences[0].sources, share) == ("none", [], 0.0)


@pytest.mark.parametrize(("sentence", "source"), [
    ("The company has a staff of 47 people.", lambda facts, cases: facts[2].source),
    ("Their security engineer answered all the vendor's questions within a week.", lambda facts, cases: chunk_ref(cases[0].chunks[2])),
    ("A pilot on one line ended manual re-keying, and all nine plants followed.", lambda facts, cases: SourceRef(kind="case", id="deal-0039", note="won")),
])
def test_a_paraphrase_is_attributed_by_similarity(facts, cases, embedder, attribution, sentence, source):
    [attributed], _ = attribute_sentences(sentence, facts, cases, embedder, attribution)

    assert attributed.method == "similarity"
    assert attributed.sources[0] == source(facts, cases)
    assert len(attributed.sources) <= attribution.max_sources
    assert attributed.similarity >= attribution.min_similarity


def test_an_unrelated_sentence_is_unsupported(facts, cases, embedder, attribution):
    [attributed], share = attribute_sentences(MARS, facts, cases, embedder, attribution)

    assert (attributed.method, attributed.sources, share) == ("none", [], 0.0)
    assert attributed.similarity < attribution.min_similarity


def test_supported_share_counts_sentences_with_sources_in_one_embedding_call(facts, cases, embedder, attribution):
    text = f"Juniper is in the United Kingdom. [L1] The company has a staff of 47 people. {MARS} Paris is the capital of France."
    sentences, share = attribute_sentences(text, facts, cases, embedder, attribution)

    assert [s.method for s in sentences] == ["marker", "similarity", "none", "none"]
    assert share == 0.5
    assert embedder.calls == 1


def test_empty_text_has_no_sentences_and_no_share(facts, cases, embedder, attribution):
    assert attribute_sentences("", facts, cases, embedder, attribution) == ([], None)
    assert embedder.calls == 0
