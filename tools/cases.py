"""Past deals as searchable cases: index them into the vector store, find the ones like a lead."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from provenance import sha256_text
from tools.crm.records import Deal, DocumentChunk
from tools.crm.source import CRMSource
from tools.embedder import Embedder
from tools.vector_store import StoredPoint, VectorStore

FILTER_FIELDS = ["industry", "outcome"]


class FoundCase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    case_id: str
    account_id: str
    industry: str
    outcome: str
    score: float
    summary: str
    chunks: list[DocumentChunk]
    content_sha: str


def case_text(deal: Deal) -> str:
    """What we embed for a case: its summary and documents, so any of them can make it similar."""
    return " ".join([deal.case_summary or "", *(c.text for c in deal.chunks)])


def index_cases(crm: CRMSource, embedder: Embedder, store: VectorStore) -> int:
    """Embed and store the past deals that are new or changed; returns how many were written."""
    store.ensure_collection(embedder.dim, FILTER_FIELDS)
    deals = crm.past_deals()
    shas = {d.id: sha256_text(d.model_dump_json()) for d in deals}
    stored = store.payload_of(list(shas), "content_sha")
    todo = [d for d in deals if stored.get(d.id) != shas[d.id]]
    for start in range(0, len(todo), 64):
        batch = todo[start : start + 64]
        vectors = embedder.embed([case_text(d) for d in batch])
        points = [StoredPoint(key=d.id, vector=v, payload=_payload(d, crm.account(d.account_id).industry, shas[d.id])) for d, v in zip(batch, vectors)]
        store.upsert(points)
    return len(todo)


def _payload(deal: Deal, industry: str, content_sha: str) -> dict:
    return {
        "case_id": deal.id,
        "account_id": deal.account_id,
        "industry": industry,
        "outcome": deal.outcome,
        "summary": deal.case_summary,
        "chunks": [c.model_dump() for c in deal.chunks],
        "content_sha": content_sha,
    }


def similar_cases(query: str, industry: str, k: int, embedder: Embedder, store: VectorStore) -> list[FoundCase]:
    """Top-k cases of the lead's industry, won cases first, then lost ones to fill up."""
    vector = embedder.embed([query])[0]
    won = store.search(vector, k, {"industry": industry, "outcome": "won"})
    lost = store.search(vector, k - len(won), {"industry": industry, "outcome": "lost"}) if len(won) < k else []
    return [FoundCase(score=h.score, **{f: h.payload[f] for f in FoundCase.model_fields if f != "score"}) for h in won + lost]
