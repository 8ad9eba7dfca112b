"""Retrieval: embedder and vector-store conformance (every backend passes the same tests), and the case index."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agents.services import Services
from configs import load_settings
from configs.loader import DEFAULT_CONFIG
from configs.settings import VectorStoreSettings
from tests.conftest import FIXED_NOW, write_config
from tools.cases import case_text, index_cases, similar_cases
from tools.crm.source import JsonSnapshotCRM
from tools.embedder import Embedder, EmbedderError, SentenceTransformerEmbedder, load_embedder
from tools.vector_store import PointHit, QdrantStore, StoredPoint, VectorStore, VectorStoreError

# ---------------------------------------------------------------- embedder conformance
# A new backend is one more line here: name -> factory returning a loaded Embedder.
EMBEDDER_FACTORIES: dict[str, Callable[[], Embedder]] = {
    "sentence-transformers": lambda: load_embedder(load_settings(DEFAULT_CONFIG, env={}).embedder),
}


@pytest.fixture(scope="module", params=sorted(EMBEDDER_FACTORIES))
def embedder(request) -> Embedder:
    return EMBEDDER_FACTORIES[request.param]()


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def test_embedder_unit_vectors_of_dim(embedder):
    texts = ["Predictive maintenance for gearbox lines", "SSO with Okta", "a", "Ünïcödé — 日本語のテキスト"]
    vectors = embedder.embed(texts)
    assert isinstance(embedder.dim, int) and embedder.dim > 0
    assert embedder.model_id
    assert len(vectors) == len(texts)
    for v in vectors:
        assert len(v) == embedder.dim
        assert all(isinstance(x, float) for x in v)
        assert math.sqrt(sum(x * x for x in v)) == pytest.approx(1.0, abs=1e-4)


def test_embedder_is_deterministic_and_batch_independent(embedder):
    texts = ["FDA 21 CFR Part 11 validation", "Rollout date slips by six weeks", "SOC 2 Type II report"]
    once, twice = embedder.embed(texts), embedder.embed(texts)
    assert once == twice
    alone = embedder.embed([texts[1]])[0]
    assert _cos(alone, once[1]) == pytest.approx(1.0, abs=1e-5)


def test_embedder_similar_texts_are_closer(embedder):
    a, b, c = embedder.embed([
        "predictive maintenance for the gearbox production line",
        "maintenance prediction for factory gearboxes",
        "our students need single sign-on for the campus portal",
    ])
    assert _cos(a, b) > _cos(a, c) + 0.1
    assert _cos(a, b) > _cos(b, c) + 0.1


def test_embedder_empty_batch(embedder):
    assert embedder.embed([]) == []


def test_embedder_remembers_texts_it_embedded_within_a_bound(monkeypatch):
    """Attribution re-embeds the sentences of cases that come back event after event: only new texts reach the model."""
    import tools.embedder as embedder_module

    embedder = SentenceTransformerEmbedder(embedder_module._model_dir(load_settings(DEFAULT_CONFIG, env={}).embedder), "minilm")
    encoded: list[list[str]] = []
    encode = embedder._model.encode
    monkeypatch.setattr(embedder._model, "encode", lambda texts, **kw: encoded.append(list(texts)) or encode(texts, **kw))
    monkeypatch.setattr(embedder_module, "CACHED_TEXTS", 3)
    first = embedder.embed(["SOC 2 report", "gearbox pilot", "SOC 2 report"])
    again = embedder.embed(["gearbox pilot", "SOC 2 report", "SSO with Okta"])
    assert encoded == [["SOC 2 report", "gearbox pilot"], ["SSO with Okta"]], "repeats are embedded once"
    assert again[:2] == [first[1], first[0]] and first[0] == first[2]
    embedder.embed(["campus portal"])  # a fourth text: the least recently used one goes
    assert list(embedder._cache) == ["SOC 2 report", "SSO with Okta", "campus portal"]


def test_embedder_bad_path_is_a_clear_error(tmp_path):
    with pytest.raises(EmbedderError, match=str(tmp_path)):
        SentenceTransformerEmbedder(tmp_path / "no-model", "x")


@pytest.mark.parametrize("package", ["no_such_embedder_pkg", "no_such_embedder_pkg.model"])
def test_embedder_missing_package_says_how_to_install(package):
    settings = load_settings(DEFAULT_CONFIG, env={}).embedder.model_copy(update={"package": package})
    with pytest.raises(EmbedderError, match="pip install no-such-embedder-pkg"):
        load_embedder(settings)


def test_load_embedder_once_per_process():
    settings = load_settings(DEFAULT_CONFIG, env={}).embedder
    assert load_embedder(settings) is load_embedder(settings)


# ---------------------------------------------------------------- vector store conformance
# A new backend is one more line here: name -> factory opening a store persisted under a directory.
STORE_FACTORIES: dict[str, Callable[[Path], VectorStore]] = {
    "qdrant-local": lambda directory: QdrantStore.from_settings(VectorStoreSettings(path=Path("qdrant"), collection="conformance"), directory),
}

DIM = 4
POINTS = [
    StoredPoint(key="p-man-won-1", vector=[1.0, 0.0, 0.0, 0.0], payload={"industry": "manufacturing", "outcome": "won", "n": 1}),
    StoredPoint(key="p-man-won-2", vector=[0.8, 0.6, 0.0, 0.0], payload={"industry": "manufacturing", "outcome": "won", "n": 2}),
    StoredPoint(key="p-man-won-3", vector=[0.0, 1.0, 0.0, 0.0], payload={"industry": "manufacturing", "outcome": "won", "n": 3}),
    StoredPoint(key="p-man-lost", vector=[1.0, 0.0, 0.0, 0.0], payload={"industry": "manufacturing", "outcome": "lost", "n": 4}),
    StoredPoint(key="p-saas-won", vector=[1.0, 0.0, 0.0, 0.0], payload={"industry": "saas", "outcome": "won", "n": 5}),
    StoredPoint(key="p-edu-lost", vector=[0.0, 0.0, 1.0, 0.0], payload={"industry": "education", "outcome": "lost", "n": 6}),
]


def _close(store: VectorStore) -> None:
    close = getattr(store, "close", None)
    if close:
        close()


@pytest.fixture(params=sorted(STORE_FACTORIES))
def open_store(request, tmp_path) -> Iterator[Callable[[], VectorStore]]:
    """Opens the backend on this test's directory; every store it opened is closed afterwards."""
    opened: list[VectorStore] = []

    def open_() -> VectorStore:
        store = STORE_FACTORIES[request.param](tmp_path)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        _close(store)


@pytest.fixture
def store(open_store) -> VectorStore:
    store = open_store()
    store.ensure_collection(DIM, ["industry", "outcome"])
    store.upsert(POINTS)
    return store


def test_store_empty_and_ensure_is_idempotent(open_store):
    store = open_store()
    assert store.count() == 0
    store.ensure_collection(DIM, ["industry", "outcome"])
    store.ensure_collection(DIM, ["industry", "outcome"])
    assert store.count() == 0
    store.upsert([])
    assert store.count() == 0


def test_store_refuses_other_dimension(store):
    with pytest.raises(VectorStoreError, match="4-dim"):
        store.ensure_collection(DIM + 1, [])


def test_store_upsert_count_and_payload_of(store):
    assert store.count() == len(POINTS)
    got = store.payload_of(["p-man-won-2", "p-edu-lost", "never-stored"], "outcome")
    assert got == {"p-man-won-2": "won", "p-edu-lost": "lost"}
    assert store.payload_of(["p-man-won-1"], "no_such_field") == {"p-man-won-1": None}
    # Upserting the same key replaces, never duplicates.
    store.upsert([POINTS[0].model_copy(update={"payload": {**POINTS[0].payload, "outcome": "lost"}})])
    assert store.count() == len(POINTS)
    assert store.payload_of(["p-man-won-1"], "outcome") == {"p-man-won-1": "lost"}


def test_store_filtered_search_obeys_every_match_item(store):
    hits = store.search([1.0, 0.0, 0.0, 0.0], 10, {"industry": "manufacturing", "outcome": "won"})
    assert all(isinstance(h, PointHit) for h in hits)
    assert [h.key for h in hits] == ["p-man-won-1", "p-man-won-2", "p-man-won-3"]
    for h in hits:
        assert h.payload["industry"] == "manufacturing" and h.payload["outcome"] == "won"
        assert h.payload["key"] == h.key
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == pytest.approx(1.0, abs=1e-5)
    assert scores[1] == pytest.approx(0.8, abs=1e-5)  # cosine
    assert scores[2] == pytest.approx(0.0, abs=1e-5)


def test_store_search_limit_and_single_filter(store):
    hits = store.search([1.0, 0.0, 0.0, 0.0], 2, {"industry": "manufacturing"})
    assert len(hits) == 2
    assert {h.key for h in hits} <= {"p-man-won-1", "p-man-lost"}
    assert store.search([1.0, 0.0, 0.0, 0.0], 5, {"outcome": "lost"})[0].key == "p-man-lost"
    assert store.search([1.0, 0.0, 0.0, 0.0], 5, {"industry": "retail"}) == []
    assert len(store.search([1.0, 0.0, 0.0, 0.0], 10, {})) == len(POINTS)


def test_store_reopen_keeps_points(open_store, store):
    _close(store)  # local mode: one client per directory
    reopened = open_store()
    assert reopened.count() == len(POINTS)
    reopened.ensure_collection(DIM, ["industry", "outcome"])  # an existing collection is kept as is
    assert reopened.count() == len(POINTS)
    assert reopened.search([0.0, 0.0, 1.0, 0.0], 1, {"industry": "education"})[0].key == "p-edu-lost"


# ---------------------------------------------------------------- case index


@pytest.fixture(scope="module")
def case_index(tmp_path_factory, demo_source) -> Iterator[Services]:
    """`indexed_services` built once for this module: embedding the 150 demo cases is the slow part."""
    root = tmp_path_factory.mktemp("case-index")
    shutil.copytree(demo_source, root / "data")
    # Retrieval never loads the LLM (Services.llm is lazy), so the model directory is not needed here.
    settings = load_settings(write_config(root / "config.yaml", root / "data", root / "no-llm-needed"), env={})
    services = Services(settings, clock=lambda: FIXED_NOW)
    assert index_cases(services.crm, services.embedder, services.vectors) == 150
    yield services
    services.vectors.close()


def _demo_deals(services: Services) -> dict[str, dict]:
    path = services.settings.resolve(services.settings.crm.path) / "deals.json"
    return {d["id"]: d for d in json.loads(path.read_text())}


def test_index_cases_is_incremental(case_index):
    s = case_index
    assert len(s.crm.past_deals()) == 150
    assert s.vectors.count() == 150
    assert index_cases(s.crm, s.embedder, s.vectors) == 0
    assert s.vectors.count() == 150


def test_similar_cases_for_manufacturing(case_index):
    s = case_index
    deals = _demo_deals(s)
    industry = {d["id"]: s.crm.account(d["account_id"]).industry for d in deals.values()}
    man_won = sum(1 for d in s.crm.past_deals() if d.outcome == "won" and industry[d.id] == "manufacturing")
    k = man_won + 3  # enough to need lost cases too
    found = similar_cases("predictive maintenance for gearbox lines in our plants, pricing for a pilot", "manufacturing", k, s.embedder, s.vectors)
    assert len(found) == k
    assert [c.outcome for c in found] == ["won"] * man_won + ["lost"] * 3, "won cases first, then lost ones"
    for group in ("won", "lost"):
        scores = [c.score for c in found if c.outcome == group]
        assert scores == sorted(scores, reverse=True)
    assert len({c.case_id for c in found}) == k
    for case in found:
        assert case.case_id in deals, case.case_id
        deal = deals[case.case_id]
        assert case.industry == "manufacturing" and industry[case.case_id] == "manufacturing"
        assert case.account_id == deal["account_id"]
        assert case.outcome == deal["outcome"]
        assert case.summary == deal["case_summary"]
        assert case.chunks, case.case_id
        assert [c.id for c in case.chunks] == [c["id"] for c in deal["chunks"]]


def test_similar_cases_small_k_is_all_won(case_index):
    found = similar_cases("gearbox predictive maintenance", "manufacturing", 3, case_index.embedder, case_index.vectors)
    assert [c.outcome for c in found] == ["won"] * 3


def test_similar_cases_finds_the_case_itself(case_index):
    s = case_index
    target = next(d for d in s.crm.past_deals() if d.outcome == "won" and s.crm.account(d.account_id).industry == "saas")
    found = similar_cases(case_text(target), "saas", 3, s.embedder, s.vectors)
    assert found[0].case_id == target.id
    assert found[0].score == pytest.approx(1.0, abs=1e-3)
    assert all(c.industry == "saas" for c in found)


def test_changed_case_is_reindexed(case_index, tmp_path):
    s = case_index
    deals = json.loads((s.settings.resolve(s.settings.crm.path) / "deals.json").read_text())
    changed = next(d for d in deals if d["outcome"] in ("won", "lost") and d.get("case_summary"))
    original = changed["case_summary"]
    changed["case_summary"] = original + " Updated after the renewal."
    shutil.copytree(s.settings.resolve(s.settings.crm.path), tmp_path / "crm")
    (tmp_path / "crm" / "deals.json").write_text(json.dumps(deals))
    assert index_cases(JsonSnapshotCRM(tmp_path / "crm"), s.embedder, s.vectors) == 1
    assert s.vectors.count() == 150
    assert s.vectors.payload_of([changed["id"]], "summary") == {changed["id"]: changed["case_summary"]}
    # Indexing the original CRM again puts the original back (and leaves the shared index as it was).
    assert index_cases(s.crm, s.embedder, s.vectors) == 1
    assert s.vectors.payload_of([changed["id"]], "summary") == {changed["id"]: original}
