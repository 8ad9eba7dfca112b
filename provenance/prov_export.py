"""One run as a W3C PROV document: steps are activities, SourceRefs entities, the model, rep and salesloop agents.

Serialize with the library: `run_document(...).serialize(format="json")` (PROV-JSON), "provn", "xml" or "rdf".
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING

from prov.constants import PROV, PROV_LABEL, PROV_TYPE
from prov.identifier import Namespace, QualifiedName
from prov.model import ProvDocument

from provenance.records import SourceRef, StepTrace

if TYPE_CHECKING:  # provenance sits below agents and the orchestrator: it reads their records, never imports them
    from agents.state import RunState
    from orchestrator import RunInfo

SL = Namespace("sl", "https://salesloop.dev/ns#")
# One namespace per SourceRef kind, so an id from the CRM and one from the case index never collide.
KIND_NS = {
    kind: Namespace(prefix, f"https://salesloop.dev/{prefix}/")
    for kind, prefix in [("crm_record", "crm"), ("document_chunk", "chunk"), ("case", "case"), ("prompt", "prompt"),
                         ("model", "model"), ("rule", "rule"), ("tool", "tool"), ("human", "human"),
                         ("feedback", "feedback")]
}
SALESLOOP = SL["salesloop"]


def qname_local(text: str) -> str:
    """An XML NCName, so every PROV serialization (PROV-N, PROV-XML) can write it; the original id stays in prov:label."""
    local = re.sub(r"[^A-Za-z0-9_.-]", "_", text)
    return local if re.match(r"[A-Za-z_]", local) else "_" + local


def source_id(ref: SourceRef) -> QualifiedName:
    local = ref.id if ref.field is None else f"{ref.id}.{ref.field}"
    return KIND_NS[ref.kind][qname_local(local)]


def step_id(run_id: str, step: str, occurrence: int = 1) -> QualifiedName:
    """A run sent back to its rep (its slot was taken) plans, waits and applies again: later runs of a step get .2, .3…"""
    return SL[qname_local(f"{run_id}.{step}" if occurrence == 1 else f"{run_id}.{step}.{occurrence}")]


def run_document(info: RunInfo, state: RunState, trained_adapters: list[str]) -> ProvDocument:
    doc = ProvDocument()
    doc.add_namespace(SL)
    for namespace in KIND_NS.values():
        doc.add_namespace(namespace)
    doc.agent(SALESLOOP, {PROV_TYPE: PROV["SoftwareAgent"], PROV_LABEL: "salesloop"})
    run = _run(doc, info)
    seen: Counter[str] = Counter()
    for trace in state.trace:
        seen[trace.step] += 1
        _step(doc, trace, run, seen[trace.step])
    if state.draft is not None:
        _draft(doc, state)
    if state.decision is not None:
        _decision(doc, state, trained_adapters)
    # Steps share sources (the same CRM field, case or rule); unification merges each repeated entity into one.
    return doc.unified()


def _run(doc: ProvDocument, info: RunInfo) -> QualifiedName:
    """The whole run; a run still going or waiting for its rep has no end time yet."""
    ended = None if info.status in ("running", "waiting") else info.updated_at
    attributes = {PROV_TYPE: SL["Run"], PROV_LABEL: info.run_id, SL["status"]: info.status, SL["event_id"]: info.event_id,
                  SL["event_type"]: info.event_type}
    if info.error:
        attributes[SL["error"]] = info.error
    activity = doc.activity(SL[qname_local(info.run_id)], info.created_at, ended, attributes)
    doc.wasAssociatedWith(activity, SALESLOOP)
    return activity.identifier


def _source(doc: ProvDocument, ref: SourceRef) -> QualifiedName:
    attributes = {PROV_TYPE: SL[ref.kind], PROV_LABEL: ref.label()}
    if ref.version:
        attributes[SL["sha256" if ref.kind == "prompt" else "version"]] = ref.version
    if ref.note:
        attributes[SL["note"]] = ref.note
    return doc.entity(source_id(ref), attributes).identifier


def _rep(doc: ProvDocument, rep_id: str) -> QualifiedName:
    return doc.agent(KIND_NS["human"][qname_local(rep_id)], {PROV_TYPE: PROV["Person"], PROV_LABEL: rep_id}).identifier


def _step(doc: ProvDocument, trace: StepTrace, run: QualifiedName, occurrence: int) -> None:
    attributes = {PROV_TYPE: SL["Step"], PROV_LABEL: trace.step, SL["run"]: run, SL["status"]: trace.status,
                  SL["fallback"]: trace.fallback}
    activity = doc.activity(step_id(trace.run_id, trace.step, occurrence), trace.started_at, trace.ended_at, attributes)
    doc.wasAssociatedWith(activity, SALESLOOP)
    for ref in trace.inputs:
        # A person is not data the step read but who acted in it.
        if ref.kind == "human":
            doc.wasAssociatedWith(activity, _rep(doc, ref.id))
        else:
            doc.used(activity, _source(doc, ref))


def _draft(doc: ProvDocument, state: RunState) -> None:
    draft = state.draft
    (trace,) = [t for t in state.trace if t.step == "draft_proposal"]
    activity = step_id(state.run_id, trace.step)
    prompt = _source(doc, next(r for r in trace.inputs if r.kind == "prompt"))
    _model(doc, state, activity, prompt)
    attributes = {PROV_TYPE: SL["Draft"], PROV["value"]: draft.text, SL["output_tokens"]: draft.output_tokens}
    if draft.supported_share is not None:
        attributes[SL["supported_share"]] = draft.supported_share
    entity = doc.entity(draft_id(state.run_id), attributes)
    doc.wasGeneratedBy(entity, activity, trace.ended_at)
    doc.wasDerivedFrom(entity, prompt, activity)
    for source in dict.fromkeys(_source(doc, ref) for sentence in draft.sentences for ref in sentence.sources):
        doc.wasDerivedFrom(entity, source, activity)
    # The rep's past finals the model was shown as examples shaped the whole draft, not one sentence.
    for ref in (r for r in trace.inputs if r.kind == "feedback"):
        doc.wasDerivedFrom(entity, _source(doc, ref), activity)


def _model(doc: ProvDocument, state: RunState, activity: QualifiedName, prompt: QualifiedName) -> None:
    """The model acted in the draft step, following the prompt as its plan, with the adapter it served (if any)."""
    draft = state.draft
    model = doc.agent(KIND_NS["model"][qname_local(draft.model_id)],
                      {PROV_TYPE: PROV["SoftwareAgent"], PROV_LABEL: draft.model_id, SL["version"]: draft.model_version})
    adapter = {} if draft.adapter_id is None else {SL["adapter"]: _source(doc, adapter_ref(draft.adapter_id, draft.adapter_sha256))}
    doc.wasAssociatedWith(activity, model, prompt, other_attributes=adapter)


def adapter_ref(version: str, sha256: str | None = None) -> SourceRef:
    """The same id the draft step gives an adapter, so a served adapter and a trained one are one entity."""
    return SourceRef(kind="model", id=f"adapter:{version}", version=sha256)


def draft_id(run_id: str) -> QualifiedName:
    return SL[qname_local(f"{run_id}.draft")]


def _decision(doc: ProvDocument, state: RunState, trained_adapters: list[str]) -> None:
    decision = state.decision
    activity = doc.activity(step_id(state.run_id, "rep_decision"), decision.decided_at, decision.decided_at,
                            {PROV_TYPE: SL["RepDecision"], PROV_LABEL: decision.decision})
    doc.wasAssociatedWith(activity, _rep(doc, decision.rep_id))
    draft = draft_id(state.run_id)
    doc.used(activity, draft)
    # The id the feedback store gives the record, so a training set's record ids lead back here.
    attributes = {PROV_TYPE: SL["Feedback"], SL["decision"]: decision.decision}
    if decision.reason:
        attributes[SL["reason"]] = decision.reason
    feedback = doc.entity(SL[qname_local(f"{state.run_id}:decision")], attributes)
    doc.wasGeneratedBy(feedback, activity, decision.decided_at)
    doc.wasDerivedFrom(feedback, draft, activity)
    if decision.decision != "reject":
        final = doc.entity(SL[qname_local(f"{state.run_id}.final_text")],
                           {PROV_TYPE: SL["ApprovedText"], PROV["value"]: decision.final_text or state.draft.text})
        doc.wasGeneratedBy(final, activity, decision.decided_at)
        # An edit is a revision of the draft; an adoption approves it as written.
        (doc.revision if decision.decision == "edit" else doc.wasDerivedFrom)(final, draft, activity)
    for version in trained_adapters:
        doc.wasDerivedFrom(_source(doc, adapter_ref(version)), feedback)
