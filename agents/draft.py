"""Node 4: the local model writes a proposal summary from numbered facts and cases, citing them."""

from __future__ import annotations

import re

from langgraph.runtime import Runtime

from agents.attribution import attribute_sentences, marker_sources
from agents.citations import validate_markers
from agents.consent import usable_facts
from agents.services import Services
from agents.state import ProposalDraft, RunState
from agents.tracing import StepTimer
from prompts import load_prompt
from provenance import SourceRef
from provenance.masking import Masker, known_values

PURPOSE = "proposal_email"


def whole_sentences(text: str) -> str:
    """Drop the sentence a token budget or deadline cut off; keep everything if no sentence ended."""
    ends = [m.end() for m in re.finditer(r"[.!?](?:\s*\[[^\]]*\])*(?=\s|$)", text)]
    return text[: ends[-1]].strip() if ends else text.strip()


def _masker(services: Services, state: RunState) -> Masker:
    """A masker for this lead; its mapping stays in the local vault so the draft (and a later audit) can be restored."""
    lead = state.lead
    masker = Masker(known_values([lead], services.settings.masking.fields))
    # Mask once up front so the mapping is complete before it is stored and anything is sent.
    for fact in lead.facts:
        masker.mask(fact.value)
    masker.mask(lead.request)
    services.masks.put(state.run_id, lead.contact_id or lead.lead_id, masker.mapping)
    return masker


def draft_proposal(state: RunState, runtime: Runtime[Services]) -> dict:
    timer = StepTimer("draft_proposal", state.run_id)
    services = runtime.context
    llm_settings = services.settings.llm
    lead = state.lead
    # Only what the consent policy lets a proposal email use reaches the prompt.
    facts, consent_refs, notes = usable_facts(services, PURPOSE, lead)
    request = lead.request[:600] if any(f.field == "request" for f in facts) else ""
    prompt = load_prompt(state.route.prompt)
    messages = prompt.render(facts=facts, cases=state.cases, request=request, company=lead.account_name)
    # Read per run: a newly promoted adapter (or an A/B candidate) serves from the next event on, without a restart.
    adapter = services.adapters.route(state.run_id)
    masker = _masker(services, state) if not services.llm.local and services.settings.masking.remote_llm else None
    sent = [m.model_copy(update={"content": masker.mask(m.content)}) for m in messages] if masker else messages
    generation = services.llm.generate(sent, llm_settings.max_new_tokens, llm_settings.deadline_s, adapter=adapter)
    known = marker_sources(facts, state.cases)
    text = masker.unmask(generation.text) if masker else generation.text
    raw = text if generation.stopped_by == "eos" else whole_sentences(text)
    if masker:
        notes.append(f"personal data masked before the chat left the process: {len(masker.mapping.placeholders)} value(s)")
    text, citations, removed = validate_markers(raw, known)
    # Only the (consent-filtered) facts the model was shown can support a sentence.
    sentences, supported_share = attribute_sentences(text, facts, state.cases, services.embedder, services.settings.attribution)
    model_refs = [SourceRef(kind="model", id=generation.model_id, version=services.llm.model_version, note="base model")]
    if adapter is not None:
        model_refs.append(SourceRef(kind="model", id=f"adapter:{generation.adapter_id}", version=generation.adapter_sha256, note="LoRA adapter"))
    draft = ProposalDraft(
        text=text,
        citations=citations,
        sentences=sentences,
        supported_share=supported_share,
        removed_markers=removed,
        messages=messages,
        prompt_name=prompt.name,
        prompt_sha256=prompt.sha256,
        model_id=generation.model_id,
        model_version=services.llm.model_version,
        adapter_id=generation.adapter_id,
        adapter_sha256=generation.adapter_sha256,
        input_tokens=generation.input_tokens,
        output_tokens=generation.output_tokens,
        stopped_by=generation.stopped_by,
    )
    if removed:
        notes.append(f"removed unknown citation markers: {', '.join(removed)}")
    if generation.stopped_by == "deadline":
        notes.append(f"generation stopped at the {llm_settings.deadline_s:g}s deadline")
    inputs = [prompt.source_ref(), *model_refs, *consent_refs, *(f.source for f in facts), *(SourceRef(kind="case", id=c.case_id) for c in state.cases)]
    share = "no sentences" if supported_share is None else f"{supported_share:.0%} of {len(sentences)} sentences supported"
    summary = (f"{generation.output_tokens} tokens in {generation.seconds:.1f}s ({generation.stopped_by}); "
               f"cites {', '.join(c.marker for c in citations) or 'nothing'}; {share}")
    trace = timer.finish(inputs, summary, model_id=generation.model_id, adapter_id=generation.adapter_id,
                         prompt_name=prompt.name, prompt_sha256=prompt.sha256, notes=notes)
    return {"draft": draft, "trace": [trace]}
