"""One run as OpenTelemetry spans: a root span for the run, one child per step, GenAI semantic-convention attributes.

The spans are emitted after the fact from the stored StepTraces (with their real start and end times), so a run
that waited days for its rep is still one trace, and runs recorded before telemetry was switched on can be exported.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Status, StatusCode

from provenance.records import StepTrace

if TYPE_CHECKING:  # provenance sits below agents, configs and the orchestrator: it reads their records, never imports them
    from agents.state import RunState
    from configs.settings import TelemetrySettings
    from orchestrator import RunInfo

# The model runs in-process, so there is no remote provider to name.
PROVIDER = "salesloop.local"
WORKFLOW = "salesloop"
# Steps that call a tool (vector store, calendar, clause rules, feedback store) rather than a model.
TOOL_STEPS = {"retrieve_cases", "plan_schedule", "apply"}


def emit_run_spans(info: RunInfo, state: RunState, tracer_provider: TracerProvider) -> None:
    tracer = tracer_provider.get_tracer("salesloop.provenance")
    starts = [t.started_at for t in state.trace]
    ends = [t.ended_at for t in state.trace]
    # The whole graph is the GenAI conventions' workflow; the run id is an attribute, not part of the span name.
    root = tracer.start_span(f"invoke_workflow {WORKFLOW}", start_time=_ns(min([info.created_at, *starts])),
                             attributes={"gen_ai.operation.name": "invoke_workflow", "gen_ai.agent.name": WORKFLOW,
                                         "salesloop.run_id": info.run_id, "salesloop.event.id": info.event_id,
                                         "salesloop.event.type": info.event_type, "salesloop.status": info.status})
    if info.status == "failed":
        root.set_status(Status(StatusCode.ERROR, info.error))
    context = trace.set_span_in_context(root)
    for step in state.trace:
        name, attributes = _step_attributes(step, state)
        span = tracer.start_span(name, context=context, start_time=_ns(step.started_at), attributes=attributes)
        if step.status == "error":
            span.set_status(Status(StatusCode.ERROR, step.output_summary))
        span.end(end_time=_ns(step.ended_at))
    root.end(end_time=_ns(max([info.updated_at, *ends])))


def _step_attributes(step: StepTrace, state: RunState) -> tuple[str, dict]:
    """The span name and attributes of one step; names follow the GenAI conventions' "{operation} {target}"."""
    attributes = {
        "salesloop.run_id": step.run_id,
        "salesloop.step": step.step,
        "salesloop.status": step.status,
        "salesloop.fallback": step.fallback,
        "salesloop.sources": [ref.label() for ref in step.inputs],
        "salesloop.prompt.name": step.prompt_name,
        "salesloop.prompt.sha256": step.prompt_sha256,
        "salesloop.adapter.id": step.adapter_id,
        "salesloop.notes": step.notes,
    }
    if step.step == "draft_proposal" and state.draft is not None:
        attributes |= _chat_attributes(state)
        name = f"chat {state.draft.model_id}"
    elif step.step in TOOL_STEPS:
        attributes |= {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": step.step}
        name = f"execute_tool {step.step}"
    else:
        name = step.step
    # OpenTelemetry rejects None and empty lists say nothing: leave such attributes out.
    return name, {key: value for key, value in attributes.items() if value not in (None, [])}


def _chat_attributes(state: RunState) -> dict:
    draft = state.draft
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": PROVIDER,
        "gen_ai.system": PROVIDER,  # the name collectors on GenAI conventions up to v1.36 read
        "gen_ai.request.model": draft.model_id,
        "gen_ai.response.model": draft.model_id,
        "gen_ai.usage.input_tokens": getattr(draft, "input_tokens", None),  # stored only by newer drafts
        "gen_ai.usage.output_tokens": draft.output_tokens,
        "salesloop.model.version": draft.model_version,
        "salesloop.adapter.sha256": draft.adapter_sha256,
        "salesloop.supported_share": draft.supported_share,
    }


def _ns(moment: datetime) -> int:
    """Nanoseconds since the epoch, as OpenTelemetry wants them; microseconds are all a datetime holds."""
    return round(moment.timestamp() * 1_000_000) * 1000


class JsonLinesSpanExporter(ConsoleSpanExporter):
    """Appends one JSON object per span to a file, and closes it when the provider shuts down."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(out=path.open("a", encoding="utf-8"), formatter=_json_line)

    def shutdown(self) -> None:
        self.out.close()


def _json_line(span: ReadableSpan) -> str:
    return span.to_json(indent=None) + "\n"


def tracer_provider_for(settings: TelemetrySettings, data_dir: Path) -> TracerProvider:
    """A provider exporting each span as it ends; the caller shuts it down. Not installed globally."""
    exporter: SpanExporter
    if settings.exporter == "console":
        exporter = ConsoleSpanExporter()
    elif settings.exporter == "file":
        exporter = JsonLinesSpanExporter(data_dir / settings.path)
    else:
        exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint)
    provider = TracerProvider(resource=Resource.create({"service.name": "salesloop"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider
