"""Node 5: the local model writes a proposal summary from numbered facts and cases, citing them."""

from __future__ import annotations

import re

from langgraph.runtime import Runtime

from agents.attribution import attribute_sentences, marker_sources
from agents.citations import validate_markers
from agents.consent import usable_facts
from agents.content_plan import plan_content
from agents.fallback import fallback_draft, unusable_reason
from agents.injection import allowed_for, describe, guard_draft, lead_texts, quote_as_data
from agents.memory import with_rep_examples
from agents.services import Services
from agents.state import ProposalDraft, RunState
from agents.tracing import StepTimer
from agents.verify import screen_input
from agents.write import PROMPT as WRITE_PROMPT
from agents.write import generator, write_plan
from prompts import load_prompt
from provenance import SourceRef
from provenance.masking import Masker, known_values
from serving.llm import Generation

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
    lead = state.lead
    # Only what the consent policy lets a proposal email use reaches the prompt.
    facts, consent_refs, notes = usable_facts(services, PURPOSE, lead)
    # What a customer or CRM user typed may carry instructions: flag it for the rep and quote it as data.
    signals = screen_input(lead_texts(lead))
    if signals:
        notes.append(describe(signals))
    if services.settings.drafting.mode == "plan":
        return _draft_by_plan(state, services, timer, facts, consent_refs, notes, signals)
    shown = [f.model_copy(update={"value": quote_as_data(f.value)}) for f in facts]
    prompt = load_prompt(state.route.prompt)
    messages = prompt.render(facts=shown, cases=state.cases, company=quote_as_data(lead.account_name))
    # The rep's own approved texts for similar leads, as examples: off unless memory.enabled.
    messages, memory_refs = with_rep_examples(services, state, messages, notes)
    # Read per run: a newly promoted adapter (or an A/B candidate) serves from the next event on, without a restart.
    adapter = services.adapters.route(state.run_id)
    generation, raw, fallback = _ask_model(services, state, messages, prompt.max_sentences, adapter, notes)
    used = prompt
    if fallback:
        raw, used = fallback_draft(facts, state.cases, lead.account_name)
        notes.append(f"FALLBACK: template draft from {used.name} because {fallback}")
    # Guarded before citations and attribution, so both describe the text the rep gets.
    raw, guarded = guard_draft(raw, allowed_for(lead, facts, state.cases, services.crm, state.event))
    notes += guarded
    text, citations, removed = validate_markers(raw, marker_sources(facts, state.cases))
    if removed:
        notes.append(f"removed unknown citation markers: {', '.join(removed)}")
    sentences, supported_share = _attribute(text, facts, state, services, notes)
    draft = ProposalDraft(
        text=text, citations=citations, sentences=sentences, supported_share=supported_share, removed_markers=removed,
        messages=messages, prompt_name=used.name, prompt_sha256=used.sha256, fallback_reason=fallback,
        injection=signals, guard_notes=guarded,
        **_model_fields(services, None if fallback else generation),
    )
    inputs = [prompt.source_ref(), *([used.source_ref()] if fallback else []), *_model_refs(services, generation, fallback), *consent_refs,
              *(f.source for f in facts), *(SourceRef(kind="case", id=c.case_id) for c in state.cases), *memory_refs]
    trace = timer.finish(inputs, _summary(draft, generation), model_id=generation.model_id if generation else None, adapter_id=draft.adapter_id,
                         prompt_name=used.name, prompt_sha256=used.sha256, notes=notes, fallback=fallback is not None)
    return {"draft": draft, "trace": [trace]}


def _draft_by_plan(state: RunState, services: Services, timer: StepTimer, facts: list, consent_refs: list[SourceRef],
                   notes: list[str], signals: list) -> dict:
    """Plan → write → verify: each sentence from one plan item, checked against that item's sources."""
    others = _other_customers(services, state)
    plan = plan_content(state, other_customers=others)
    notes.append(f"content plan: topic {plan.topic}{'' if plan.known else ' (not known to the planner)'}; "
                 f"{len(plan.items)} item(s): {', '.join(i.kind for i in plan.items)}" + "".join(f"; {n}" for n in plan.notes))
    adapter = services.adapters.route(state.run_id)
    settings = services.settings
    written = write_plan(plan, state.lead, lambda m, n, d: generator(services.llm, adapter)(m, n, d),
                         settings.drafting.item_max_new_tokens, settings.llm.deadline_s, others)
    notes += written.notes
    prompt = load_prompt(WRITE_PROMPT)
    share = sum(s.supported for s in written.sentences) / len(written.sentences) if written.sentences else None
    gens = written.generations
    messages = written.messages or prompt.render(contact=state.lead.contact_name, company=state.lead.account_name,
                                                 item=plan.items[0], avoid=[])
    draft = ProposalDraft(
        text=written.text, citations=[], sentences=written.sentences, supported_share=share, removed_markers=[],
        messages=messages, prompt_name=prompt.name, prompt_sha256=prompt.sha256, injection=signals,
        guard_notes=[n for n in written.notes if "verifier removed" in n], **_plan_model_fields(services, gens),
    )
    model_refs = _model_refs(services, gens[0], None) if gens else [SourceRef(kind="model", id=settings.llm.model_id,
                                                                                note="not used: every sentence is a template")]
    inputs = [prompt.source_ref(), *model_refs, *consent_refs, *(f.source for f in facts), *plan.sources()]
    summary = (f"plan/write/verify: {len(written.items)} item(s), "
               f"{sum(w.verified.outcome == 'kept' for w in written.items)} kept, "
               f"{sum(w.verified.outcome == 'rewritten' for w in written.items)} rewritten, "
               f"{sum(w.verified.outcome == 'template' for w in written.items)} template; "
               f"{sum(g.output_tokens for g in gens)} tokens in {sum(g.seconds for g in gens):.1f}s")
    trace = timer.finish(list(dict.fromkeys(inputs)), summary, model_id=gens[0].model_id if gens else None,
                         adapter_id=draft.adapter_id, prompt_name=prompt.name, prompt_sha256=prompt.sha256, notes=notes,
                         fallback=not gens)
    return {"draft": draft, "trace": [trace]}


def _other_customers(services: Services, state: RunState) -> list[str]:
    """Names a draft must never give away: the similar cases' customers (when the CRM still knows them)."""
    names = []
    for case in state.cases:
        if case.account_id is None:
            continue
        try:
            names.append(services.crm.account(case.account_id).name)
        except Exception:  # noqa: BLE001 - an erased or unknown account has no name to leak
            continue
    return [n for n in names if n != state.lead.account_name]


def _plan_model_fields(services: Services, gens: list[Generation]) -> dict:
    if not gens:
        return _model_fields(services, None)
    return {"model_id": gens[0].model_id, "model_version": services.llm.model_version, "adapter_id": gens[0].adapter_id,
            "adapter_sha256": gens[0].adapter_sha256, "input_tokens": sum(g.input_tokens for g in gens),
            "output_tokens": sum(g.output_tokens for g in gens), "stopped_by": "plan"}


def _ask_model(services: Services, state: RunState, messages: list, max_sentences: int | None, adapter,
               notes: list[str]) -> tuple[Generation | None, str, str | None]:
    """The model's text, or the reason it cannot be used: an error, the deadline, or nothing usable."""
    settings = services.settings.llm
    try:
        llm = services.llm  # loading is part of asking: a missing model file is a model failure too
        masker = _masker(services, state) if not llm.local and services.settings.masking.remote_llm else None
        sent = [m.model_copy(update={"content": masker.mask(m.content)}) for m in messages] if masker else messages
        generation = llm.generate(sent, settings.max_new_tokens, settings.deadline_s, adapter=adapter, max_sentences=max_sentences)
    except Exception as exc:  # noqa: BLE001 - whatever the backend raises, the rep still gets a draft to decide on
        return None, "", f"the model failed: {type(exc).__name__}: {str(exc)[:300]}"
    if masker:
        notes.append(f"personal data masked before the chat left the process: {len(masker.mapping.placeholders)} value(s)")
    if generation.stopped_by == "deadline":
        notes.append(f"generation stopped at the {settings.deadline_s:g}s deadline")
    text = masker.unmask(generation.text) if masker else generation.text
    text = text if generation.stopped_by in ("eos", "max_sentences") else whole_sentences(text)
    return generation, text, unusable_reason(text, generation.stopped_by, settings.deadline_s)


def _attribute(text: str, facts: list, state: RunState, services: Services, notes: list[str]) -> tuple[list, float | None]:
    """Sentence sources; without the embedder, markers still count and the rest is marked unsupported."""
    # Only the (consent-filtered) facts the model was shown can support a sentence.
    settings = services.settings.attribution
    try:
        return attribute_sentences(text, facts, state.cases, services.embedder, settings)
    except Exception as exc:  # noqa: BLE001 - attribution is evidence for the rep, not a reason to fail the run
        notes.append(f"attribution by similarity unavailable ({type(exc).__name__}: {str(exc)[:200]}); markers only")
        return attribute_sentences(text, facts, state.cases, None, settings)


def _model_fields(services: Services, generation: Generation | None) -> dict:
    if generation is None:
        return {"model_id": "template", "model_version": "template", "adapter_id": None, "adapter_sha256": None,
                "input_tokens": None, "output_tokens": 0, "stopped_by": "fallback"}
    return {"model_id": generation.model_id, "model_version": services.llm.model_version, "adapter_id": generation.adapter_id,
            "adapter_sha256": generation.adapter_sha256, "input_tokens": generation.input_tokens,
            "output_tokens": generation.output_tokens, "stopped_by": generation.stopped_by}


def _model_refs(services: Services, generation: Generation | None, fallback: str | None) -> list[SourceRef]:
    if generation is None:
        return [SourceRef(kind="model", id=services.settings.llm.model_id, note="asked, but it failed")]
    note = f"base model; {services.llm.weights}" + ("" if fallback is None else ": asked, but its text was not used")
    refs = [SourceRef(kind="model", id=generation.model_id, version=services.llm.model_version, note=note)]
    if generation.adapter_id is not None:
        refs.append(SourceRef(kind="model", id=f"adapter:{generation.adapter_id}", version=generation.adapter_sha256, note="LoRA adapter"))
    return refs


def _summary(draft: ProposalDraft, generation: Generation | None) -> str:
    share = "no sentences" if draft.supported_share is None else f"{draft.supported_share:.0%} of {len(draft.sentences)} sentences supported"
    written = "fallback template draft" if generation is None or draft.fallback_reason else (
        f"{generation.output_tokens} tokens in {generation.seconds:.1f}s ({generation.stopped_by})")
    return f"{written}; cites {', '.join(c.marker for c in draft.citations) or 'nothing'}; {share}"
