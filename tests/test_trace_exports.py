"""One real run, decided by a rep, exported as W3C PROV and as OpenTelemetry spans."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prov.constants import PROV
from prov.identifier import QualifiedName
from prov.model import ProvAgent, ProvAssociation, ProvDerivation, ProvDocument, ProvEntity, ProvUsage

from agents.inbox import edit
from agents.services import Services
from agents.state import DraftSentence
from configs import load_settings
from configs.settings import TelemetrySettings
from orchestrator import Orchestrator
from provenance.otel_export import emit_run_spans, tracer_provider_for
from provenance.prov_export import SL, adapter_ref, draft_id, run_document, source_id, step_id
from tests.conftest import FIXED_NOW, write_config
from tools.cases import index_cases
from tools.crm.event_file import load_events

FINAL_TEXT = "Dear Falkenrath team, here is our rollout plan."


@pytest.fixture(scope="module")
def run(tmp_path_factory, demo_source, model_dir):
    """One real run up to the rep's edit; model runs are slow, so every test below reads this one."""
    root = tmp_path_factory.mktemp("trace-exports")
    shutil.copytree(demo_source, root / "data")
    services = Services(load_settings(write_config(root / "config.yaml", root / "data", model_dir), env={}), clock=lambda: FIXED_NOW)
    index_cases(services.crm, services.embedder, services.vectors)
    (path,) = sorted((root / "data" / "events").glob("*new-lead-falkenrath*.json"))
    with services, Orchestrator(services) as orch:
        info, _ = orch.start(load_events(path)[0])
        info = orch.decide(info.run_id, edit("rep-anna", FINAL_TEXT))
        state = orch.state(info.run_id)
    # A sentence with a source, so the draft's derivations are checked whether or not the model cited anything.
    fact = state.lead.facts[0]
    sentence = DraftSentence(text="A sentence.", sources=[fact.source], method="marker")
    return info, state.model_copy(update={"draft": state.draft.model_copy(update={"sentences": [*state.draft.sentences, sentence]})})


def relations(doc: ProvDocument, kind: type) -> set[tuple]:
    """(source, target) of each relation of one kind, e.g. (activity, entity) for usage."""
    return {record.args[:2] for record in doc.get_records(kind)}


def typed(doc: ProvDocument, kind: type, prov_type) -> dict:
    return {r.identifier: r for r in doc.get_records(kind) if prov_type in r.get_asserted_types()}


def test_prov_json_reads_back_with_model_prompt_sources_rep_and_adapters(run):
    info, state = run
    doc = ProvDocument.deserialize(content=run_document(info, state, ["v0002"]).serialize(format="json"), format="json")
    draft, (step,) = state.draft, [t for t in state.trace if t.step == "draft_proposal"]
    activity, draft_entity = step_id(info.run_id, step.step), draft_id(info.run_id)

    models = typed(doc, ProvAgent, PROV["SoftwareAgent"])
    assert draft.model_id in {m.label for m in models.values()}
    (prompt,) = typed(doc, ProvEntity, SL["prompt"]).values()
    assert prompt.get_attribute(SL["sha256"]) == {draft.prompt_sha256} and draft.prompt_name in prompt.label

    used = relations(doc, ProvUsage)
    assert {(activity, source_id(ref)) for ref in step.inputs} <= used
    derived = relations(doc, ProvDerivation)
    sentence_sources = {source_id(ref) for s in draft.sentences for ref in s.sources}
    assert sentence_sources and {(draft_entity, s) for s in sentence_sources | {prompt.identifier}} <= derived

    (rep,) = typed(doc, ProvAgent, PROV["Person"]).values()
    assert rep.label == "rep-anna" and (step_id(info.run_id, "rep_decision"), rep.identifier) in relations(doc, ProvAssociation)
    feedback = SL[f"{info.run_id}_decision"]
    assert (source_id(adapter_ref("v0002")), feedback) in derived
    (final,) = [r for r in doc.get_records(ProvEntity) if r.value == {FINAL_TEXT}]
    (revision,) = [r for r in doc.get_records(ProvDerivation) if r.args[:2] == (final.identifier, draft_entity)]
    assert PROV["Revision"] in revision.get_asserted_types()  # the rep edited the draft


def test_prov_ids_are_xml_qualified_names(run):
    info, state = run
    doc = run_document(info, state, ["v0002"])
    names = {r.identifier for r in doc.records if r.identifier} | {a for r in doc.records for a in r.args if isinstance(a, QualifiedName)}
    assert names and all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", n.localpart) for n in names)


def collect_spans(info, state) -> list:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    emit_run_spans(info, state, provider)
    provider.shutdown()
    return exporter.get_finished_spans()


def test_spans_one_per_step_under_the_root_with_genai_attributes(run):
    info, state = run
    spans = collect_spans(info, state)
    (root,) = [s for s in spans if s.parent is None]
    steps = [s for s in spans if s.parent is not None]
    assert root.attributes["salesloop.run_id"] == info.run_id
    assert all(s.parent.span_id == root.context.span_id and s.context.trace_id == root.context.trace_id for s in steps)
    assert [s.attributes["salesloop.step"] for s in steps] == [t.step for t in state.trace]
    for span, step in zip(steps, state.trace):
        assert span.start_time == round(step.started_at.timestamp() * 1e6) * 1000 and span.end_time >= span.start_time
        assert list(span.attributes["salesloop.sources"]) == [r.label() for r in step.inputs]
        assert root.start_time <= span.start_time and span.end_time <= root.end_time

    by_step = {s.attributes["salesloop.step"]: s.attributes for s in steps}
    chat = by_step["draft_proposal"]
    assert chat["gen_ai.operation.name"] == "chat" and chat["gen_ai.request.model"] == state.draft.model_id
    assert chat["gen_ai.usage.output_tokens"] == state.draft.output_tokens
    assert chat["salesloop.prompt.sha256"] == state.draft.prompt_sha256
    for tool in ("retrieve_cases", "plan_schedule", "apply"):
        assert (by_step[tool]["gen_ai.operation.name"], by_step[tool]["gen_ai.tool.name"]) == ("execute_tool", tool)
    assert "gen_ai.operation.name" not in by_step["normalize"]


def test_a_failed_step_is_an_error_span(run):
    info, state = run
    failed = [state.trace[0].model_copy(update={"status": "error"}), *state.trace[1:]]
    spans = collect_spans(info, state.model_copy(update={"trace": failed}))
    statuses = {s.attributes.get("salesloop.step"): s.status.status_code for s in spans}
    assert statuses[state.trace[0].step] == StatusCode.ERROR and statuses[state.trace[1].step] != StatusCode.ERROR


def test_file_exporter_appends_one_json_object_per_span(run, tmp_path):
    info, state = run
    settings = TelemetrySettings(exporter="file", path=Path("telemetry/spans.jsonl"))
    for _ in range(2):
        provider = tracer_provider_for(settings, tmp_path)
        emit_run_spans(info, state, provider)
        provider.shutdown()
    lines = (tmp_path / "telemetry" / "spans.jsonl").read_text().splitlines()
    spans = [json.loads(line) for line in lines]
    assert len(spans) == 2 * (len(state.trace) + 1)
    assert {s["attributes"]["salesloop.run_id"] for s in spans} == {info.run_id}
    assert len({s["context"]["trace_id"] for s in spans}) == 2
