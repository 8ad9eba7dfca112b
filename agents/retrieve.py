"""Node 3: find past cases like this lead in the vector store, won cases first."""

from __future__ import annotations

from langgraph.runtime import Runtime

from agents.services import Services
from agents.state import CaseHit, LeadProfile, RunState
from agents.tracing import StepTimer
from provenance import SourceRef
from tools.cases import similar_cases


def lead_query(lead: LeadProfile) -> str:
    """The text we embed for a lead: who they are and what they asked for."""
    return f"{lead.industry.replace('_', ' ')} company, {lead.employees} employees, {lead.role} contact. {lead.request}"


def retrieve_cases(state: RunState, runtime: Runtime[Services]) -> dict:
    timer = StepTimer("retrieve_cases", state.run_id)
    services = runtime.context
    store_settings = services.settings.vector_store
    where = f"{store_settings.backend} at {store_settings.url or services.settings.resolve(store_settings.path)}"
    try:
        found = similar_cases(lead_query(state.lead), state.lead.industry, store_settings.top_k, services.embedder, services.vectors)
    except Exception as exc:  # noqa: BLE001 - the draft can go ahead without past cases; the rep is told why there are none
        reason = f"similar cases unavailable ({type(exc).__name__}: {str(exc)[:200]}); drafting without them"
        inputs = [SourceRef(kind="tool", id="vector_store", field=store_settings.collection, note=f"{where}: failed"),
                  state.lead.refs["industry"]]
        return {"cases": [], "trace": [timer.finish(inputs, "no similar cases: retrieval failed", status="error", fallback=True, notes=[reason])]}
    hits = [CaseHit(marker=f"C{i}", **f.model_dump(exclude={"content_sha"})) for i, f in enumerate(found, 1)]
    inputs = [
        SourceRef(kind="model", id=services.embedder.model_id, note="embedded the lead profile"),
        SourceRef(kind="tool", id="vector_store", field=store_settings.collection, note=f"{where}; filter industry={state.lead.industry}, won first"),
        state.lead.refs["industry"],
        *(SourceRef(kind="case", id=f.case_id, version=f.content_sha, note=f"{f.outcome}, score {f.score:.3f}") for f in found),
        *(SourceRef(kind="document_chunk", id=c.id, field=c.kind, note=f"of case {f.case_id}") for f in found for c in f.chunks),
    ]
    summary = f"{len(hits)} similar cases: " + ", ".join(f"{h.case_id} ({h.outcome}, {h.score:.2f})" for h in hits)
    return {"cases": hits, "trace": [timer.finish(inputs, summary)]}
