"""Every vector store backend against the same behaviour, with real MiniLM embeddings: Qdrant local mode, Qdrant by URL
(against the stand-in server), and qdrant_edge. Then the retrieval node on the demo CRM with qdrant and qdrant_edge,
and an erasure that must leave no old payload bytes in the edge shard's files."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from langgraph.runtime import Runtime

from agents.normalize import normalize
from agents.retrieve import retrieve_cases
from agents.services import Services
from agents.state import RunState
from configs import load_settings
from configs.loader import DEFAULT_CONFIG
from configs.settings import VectorStoreSettings
from orchestrator import Orchestrator
from provenance.erasure import erase_contact, identifiers
from tests.conftest import FIXED_NOW, write_config
from tools.cases import case_text, index_cases
from tools.crm.event_file import load_events
from tools.embedder import Embedder, load_embedder
from tools.testing_qdrant import FakeQdrantServer
from tools.vector_store import HNSW_EF_CONSTRUCT, HNSW_M, StoredPoint, VectorStore, VectorStoreError, open_vector_store

# key -> (industry, outcome, text): past cases as a CRM would describe them.
CASES = {
    "man-won-gearbox": ("manufacturing", "won", "Predictive maintenance on CNC gearbox lines; unplanned downtime fell by a third."),
    "man-won-oee": ("manufacturing", "won", "OEE dashboards across four packaging plants with downtime root-cause tagging."),
    "man-won-mes": ("manufacturing", "won", "Connected the shop floor to Siemens Opcenter MES so scrap data stopped being re-keyed."),
    "man-lost-price": ("manufacturing", "lost", "Lost on price: a rival's vibration monitoring for gearboxes was 20% cheaper."),
    "saas-won-sso": ("saas", "won", "Single sign-on with Okta and SCIM provisioning for 4,000 employees."),
    "saas-lost-soc2": ("saas", "lost", "Lost because our SOC 2 Type II report was not ready before their procurement deadline."),
    "edu-won-retention": ("education", "won", "Retention forecasting warned student advisors about disengaged first-year students."),
    "edu-lost-privacy": ("education", "lost", "Lost because student records had to stay inside the country."),
    "med-won-part11": ("medical_devices", "won", "FDA 21 CFR Part 11 validated electronic batch records for a surgical device line."),
    "med-lost-delay": ("medical_devices", "lost", "Lost when our rollout slipped past their notified-body audit."),
}
FIELDS = ["industry", "outcome"]
GEARBOX_QUERY = "predictive maintenance for the gearboxes in our factory"


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return load_embedder(load_settings(DEFAULT_CONFIG, env={}).embedder)


@pytest.fixture(scope="module")
def points(embedder) -> list[StoredPoint]:
    vectors = embedder.embed([text for _, _, text in CASES.values()])
    return [StoredPoint(key=key, vector=vector, payload={"industry": industry, "outcome": outcome, "text": text})
            for (key, (industry, outcome, text)), vector in zip(CASES.items(), vectors)]


def exact_top(points: list[StoredPoint], query: list[float], limit: int, match: dict[str, str]) -> list[tuple[str, float]]:
    """The true answer: cosine (dot product of unit vectors) over the points that satisfy every match item."""
    kept = [p for p in points if all(p.payload.get(k) == v for k, v in match.items())]
    scores = [float(np.dot(p.vector, query)) for p in kept]
    return sorted(zip((p.key for p in kept), scores), key=lambda pair: -pair[1])[:limit]


# ---------------------------------------------------------------- one behaviour, every backend
# A new backend is one more entry: name -> its settings for a test directory (whose name is unique) and the server.
BACKENDS: dict[str, Callable[[Path, str], VectorStoreSettings]] = {
    "qdrant-local": lambda directory, _: VectorStoreSettings(path=directory / "qdrant"),
    "qdrant-url": lambda directory, url: VectorStoreSettings(url=url, collection=directory.name),
    "qdrant_edge": lambda directory, _: VectorStoreSettings(backend="qdrant_edge", path=directory / "edge"),
}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeQdrantServer]:
    """One stand-in server for the module: qdrant-client checks the server's version in a thread of its own, which
    must not find a server that a short test has already stopped."""
    with FakeQdrantServer() as running:
        yield running


@pytest.fixture(
    params=[
        pytest.param(name, marks=[pytest.mark.native("qdrant_edge")] if name == "qdrant_edge" else [])
        for name in sorted(BACKENDS)
    ]
)
def open_store(request, tmp_path, server) -> Iterator[Callable[[], VectorStore]]:
    """Opens the backend on this test's directory (or collection); every store it opened is closed afterwards."""
    opened: list[VectorStore] = []
    settings = BACKENDS[request.param](tmp_path, server.url)

    def open_() -> VectorStore:
        opened.append(open_vector_store(settings, tmp_path))
        return opened[-1]

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store, points, embedder) -> VectorStore:
    store = open_store()
    store.ensure_collection(embedder.dim, FIELDS)
    store.upsert(points)
    return store


def test_empty_store_and_ensure_is_idempotent(open_store, embedder):
    store = open_store()
    assert store.count() == 0
    store.ensure_collection(embedder.dim, FIELDS)
    store.ensure_collection(embedder.dim, FIELDS)
    store.upsert([])
    assert store.count() == 0


def test_refuses_vectors_of_another_dimension(store, embedder):
    with pytest.raises(VectorStoreError, match=f"{embedder.dim}-dim vectors but the embedder makes {embedder.dim + 1}"):
        store.ensure_collection(embedder.dim + 1, FIELDS)


def test_upsert_count_and_payload_of(store, points):
    assert store.count() == len(CASES)
    assert store.payload_of(["saas-won-sso", "edu-lost-privacy", "never-stored"], "outcome") == {"saas-won-sso": "won", "edu-lost-privacy": "lost"}
    assert store.payload_of(["saas-won-sso"], "no_such_field") == {"saas-won-sso": None}
    # Upserting a key again replaces its point, never adds one.
    store.upsert([points[0].model_copy(update={"payload": {**points[0].payload, "outcome": "lost"}})])
    assert store.count() == len(CASES)
    assert store.payload_of([points[0].key], "outcome") == {points[0].key: "lost"}


@pytest.mark.parametrize("match", [{"industry": "manufacturing", "outcome": "won"}, {"industry": "manufacturing"},
                                   {"outcome": "lost"}, {}])
def test_filtered_search_is_the_exact_cosine_top_k(store, points, embedder, match):
    query = embedder.embed([GEARBOX_QUERY])[0]
    hits = store.search(query, 3, match)
    expected = exact_top(points, query, 3, match)
    assert [h.key for h in hits] == [key for key, _ in expected]
    assert [h.score for h in hits] == pytest.approx([score for _, score in expected], abs=1e-4)
    for hit in hits:
        assert all(hit.payload[k] == v for k, v in match.items()) and hit.payload["key"] == hit.key
        assert hit.payload["text"] == CASES[hit.key][2]


def test_search_finds_by_meaning_and_respects_the_filter(store, embedder):
    query = embedder.embed([GEARBOX_QUERY])[0]
    assert store.search(query, 1, {"industry": "manufacturing", "outcome": "won"})[0].key == "man-won-gearbox"
    assert store.search(query, 1, {"industry": "manufacturing", "outcome": "lost"})[0].key == "man-lost-price"
    assert [h.payload["industry"] for h in store.search(query, 10, {"industry": "saas"})] == ["saas", "saas"]
    assert store.search(query, 5, {"industry": "retail"}) == []


def test_compact_and_reopen_keep_every_point(open_store, store, points, embedder):
    store.upsert([points[0].model_copy(update={"payload": {**points[0].payload, "text": "[erased]"}})])
    store.compact()
    assert store.count() == len(CASES)
    assert store.payload_of([points[0].key], "text") == {points[0].key: "[erased]"}
    query = embedder.embed([CASES["edu-won-retention"][2]])[0]
    store.close()  # embedded backends lock their directory
    reopened = open_store()
    assert reopened.count() == len(CASES)
    reopened.ensure_collection(embedder.dim, FIELDS)  # an existing collection is kept as it is
    assert reopened.count() == len(CASES)
    (hit,) = reopened.search(query, 1, {"industry": "education"})
    assert hit.key == "edu-won-retention" and hit.score == pytest.approx(1.0, abs=1e-4)


def test_search_before_indexing_says_to_index(open_store, embedder):
    with pytest.raises(VectorStoreError, match="salesloop index"):
        open_store().search(embedder.embed(["anything"])[0], 3, {})


def test_qdrant_by_url_creates_hnsw_and_keyword_indexes_on_the_server(tmp_path, server, points, embedder):
    store = open_vector_store(VectorStoreSettings(url=server.url, collection="cases", hnsw_ef=96), tmp_path)
    store.ensure_collection(embedder.dim, FIELDS)
    store.upsert(points)
    store.search(points[0].vector, 3, {"industry": "saas"})
    store.close()
    assert server.created["cases"]["hnsw_config"] == {"m": HNSW_M, "ef_construct": HNSW_EF_CONSTRUCT}
    assert server.created["cases"]["vectors"] == {"size": embedder.dim, "distance": "Cosine"}
    assert server.indexed["cases"] == [{"field_name": field, "field_schema": "keyword"} for field in FIELDS]
    assert server.queried["cases"][0]["params"]["hnsw_ef"] == 96


@pytest.mark.native("qdrant_edge")
def test_qdrant_edge_is_for_one_process_and_never_by_url(tmp_path, embedder):
    settings = VectorStoreSettings(backend="qdrant_edge", path=tmp_path / "edge")
    first = open_vector_store(settings, tmp_path)
    first.ensure_collection(embedder.dim, FIELDS)
    with pytest.raises(VectorStoreError, match="open in another process"):
        open_vector_store(settings, tmp_path)
    first.close()
    with pytest.raises(ValueError, match="remove vector_store.url"):
        VectorStoreSettings(backend="qdrant_edge", url="http://qdrant:6333")


# ---------------------------------------------------------------- the demo CRM through the retrieval node


class MemoEmbedder:
    """The real embedder, each text embedded once: the demo's 150 cases are indexed into several stores."""

    def __init__(self, inner: Embedder):
        self.inner, self.model_id, self.dim = inner, inner.model_id, inner.dim
        self._seen: dict[str, list[float]] = {}

    def embed(self, texts: list[str]) -> list[list[float]]:
        missing = [t for t in dict.fromkeys(texts) if t not in self._seen]
        self._seen.update(zip(missing, self.inner.embed(missing)))
        return [self._seen[t] for t in texts]


@pytest.fixture(scope="module")
def memo(embedder) -> MemoEmbedder:
    return MemoEmbedder(embedder)


def services_with(root: Path, data_dir: Path, backend: str) -> Services:
    """Services over the demo data dir with `backend` in a directory of its own, so several sit side by side."""
    # Retrieval and erasure never load the LLM, so the model directory is not needed here.
    settings = load_settings(write_config(root / f"config-{backend}.yaml", data_dir, root / "no-llm-needed"), env={})
    store = VectorStoreSettings(backend=backend, path=Path(backend))
    return Services(settings.model_copy(update={"vector_store": store}), clock=lambda: FIXED_NOW)


@pytest.fixture(scope="module")
def demo_indexes(tmp_path_factory, demo_source, memo) -> Iterator[dict[str, Services]]:
    root = tmp_path_factory.mktemp("demo-indexes")
    shutil.copytree(demo_source, root / "data")
    indexed = {backend: services_with(root, root / "data", backend) for backend in ("qdrant", "qdrant_edge")}
    for services in indexed.values():
        assert index_cases(services.crm, memo, services.vectors) == 150
    yield indexed
    for services in indexed.values():
        services.close()


@pytest.mark.native("qdrant_edge")
def test_retrieval_node_finds_the_same_cases_with_qdrant_and_qdrant_edge(demo_indexes, demo_source):
    found = {}
    for backend, services in demo_indexes.items():
        for path in sorted((demo_source / "events").glob("*.json")):
            event = load_events(path)[0]
            state = RunState(run_id=f"r-{event.id}", event=event)
            state = state.model_copy(update=normalize(state, Runtime(context=services)))
            cases = retrieve_cases(state, Runtime(context=services))["cases"]
            found[backend, path.name] = [(c.case_id, c.outcome, round(c.score, 4)) for c in cases]
    events = sorted({name for _, name in found})
    assert len(events) >= 6
    for name in events:
        assert len(found["qdrant", name]) == demo_indexes["qdrant"].settings.vector_store.top_k, name
        assert found["qdrant_edge", name] == found["qdrant", name], name


# ---------------------------------------------------------------- erasure in the edge shard


@pytest.mark.native("qdrant_edge")
def test_erasure_leaves_no_old_payload_bytes_in_the_edge_shard(tmp_path, data_dir, memo):
    with services_with(tmp_path, data_dir, "qdrant_edge") as services, Orchestrator(services) as orch:
        index_cases(services.crm, memo, services.vectors)
        deal = next(d for d in services.crm.past_deals() if services.crm.contact(d.contact_id).full_name in case_text(d))
        values = identifiers(services.crm.contact(deal.contact_id))
        shard = data_dir / "qdrant_edge"
        assert files_holding(shard, values), "the shard holds the contact's name before the erasure"
        report = erase_contact(services, orch, deal.contact_id, FIXED_NOW)
        assert deal.id in report.deals_redacted and report.leftovers == []
        assert files_holding(shard, values) == []
        assert services.vectors.count() == 150
        assert "[erased]" in " ".join(c["text"] for c in services.vectors.payload_of([deal.id], "chunks")[deal.id])


def files_holding(root: Path, values: list[str]) -> list[str]:
    """Files under `root` whose raw bytes contain any of `values` (UTF-8): what a forensic look at the disk finds."""
    wanted = [v.encode() for v in values]
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and any(w in p.read_bytes() for w in wanted))
