"""Node 4: the local model writes a proposal summary from numbered facts and cases, citing them."""

from __future__ import annotations

import re

from langgraph.runtime import Runtime

from agents.citations import validate_markers
from agents.services import Services
from agents.state import CaseHit, ProposalDraft, RunState
from agents.tracing import StepTimer
from prompts import load_prompt
from provenance import SourceRef

PROMPT = "draft_proposal"


def case_sources(case: CaseHit) -> list[SourceRef]:
    return [SourceRef(kind="case", id=case.case_id, note=case.outcome), *(SourceRef(kind="document_chunk", id=c.id, field=c.kind) for c in case.chunks)]


def whole_sentences(text: str) -> str:
    """Drop the sentence a token budget or deadline cut off; keep everything if no sentence ended."""
    ends = [m.end() for m in re.finditer(r"[.!?](?:\s*\[[^\]]*\])*(?=\s|$)", text)]
    return text[: ends[-1]].strip() if ends else text.strip()


def draft_proposal(state: RunState, runtime: Runtime[Services]) -> dict:
    timer = StepTimer("draft_proposal", state.run_id)
    services = runtime.context
    llm_settings = services.settings.llm
    lead = state.lead
    prompt = load_prompt(PROMPT)
    messages = prompt.render(facts=lead.facts, cases=state.cases, request=lead.request[:600], company=lead.account_name)
    # Read per run: a newly promoted adapter (or an A/B candidate) serves from the next event on, without a restart.
    adapter = services.adapters.route(state.run_id)
    generation = services.llm.generate(messages, llm_settings.max_new_tokens, llm_settings.deadline_s, adapter=adapter)
    known = {f.marker: [f.source] for f in lead.facts} | {c.marker: case_sources(c) for c in state.cases}
    raw = generation.text if generation.stopped_by == "eos" else whole_sentences(generation.text)
    text, citations, removed = validate_markers(raw, known)
    model_refs = [SourceRef(kind="model", id=generation.model_id, version=services.llm.model_version, note="base model")]
    if adapter is not None:
        model_refs.append(SourceRef(kind="model", id=f"adapter:{generation.adapter_id}", version=generation.adapter_sha256, note="LoRA adapter"))
    draft = ProposalDraft(
        text=text,
        citations=citations,
        removed_markers=removed,
        messages=messages,
        prompt_name=prompt.name,
        prompt_sha256=prompt.sha256,
        model_id=generation.model_id,
        model_version=services.llm.model_version,
        adapter_id=generation.adapter_id,
        adapter_sha256=generation.adapter_sha256,
        output_tokens=generation.output_tokens,
        stopped_by=generation.stopped_by,
    )
    notes = [f"removed unknown citation markers: {', '.join(removed)}"] if removed else []
    if generation.stopped_by == "deadline":
        notes.append(f"generation stopped at the {llm_settings.deadline_s:g}s deadline")
    inputs = [prompt.source_ref(), *model_refs, *(f.source for f in lead.facts), *(SourceRef(kind="case", id=c.case_id) for c in state.cases)]
    summary = f"{generation.output_tokens} tokens in {generation.seconds:.1f}s ({generation.stopped_by}); cites {', '.join(c.marker for c in citations) or 'nothing'}"
    trace = timer.finish(inputs, summary, model_id=generation.model_id, adapter_id=generation.adapter_id,
                         prompt_name=prompt.name, prompt_sha256=prompt.sha256, notes=notes)
    return {"draft": draft, "trace": [trace]}
