"""`salesloop`: run CRM events through the graph, review drafts, decide, trace."""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from rich.console import Console

from agents.inbox import HumanResponse, InvalidDecision, adopt, edit, reject
from agents.schedule import slot_status
from agents.services import Services
from cli.errors import USER_ERRORS
from cli.governance import audit_app, erase
from cli.learn import adapters_app, feedback_app, finetune_app
from cli.serve import queue_app, serve, tokens_app
from cli.render import inbox_table, lineage_table, run_view, trace_tree
from configs import load_settings
from configs.settings import Settings
from orchestrator import Orchestrator, RunInfo
from provenance.lineage import adapter_lineage, adapters_trained_on
from provenance.otel_export import emit_run_spans, tracer_provider_for
from provenance.prov_export import run_document
from tools.cases import index_cases
from tools.crm.event_file import load_events
from tools.data_dir import ensure_current

app = typer.Typer(no_args_is_help=True, add_completion=False, help="LLM sales agents that learn from the reps who use them.")
app.add_typer(feedback_app, name="feedback")
app.add_typer(finetune_app, name="finetune")
app.add_typer(adapters_app, name="adapters")
app.add_typer(audit_app, name="audit")
app.add_typer(tokens_app, name="tokens")
app.add_typer(queue_app, name="queue")
app.command()(erase)
app.command()(serve)
console = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="settings YAML (default: configs/default.yaml or $SALESLOOP_CONFIG)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for machines")]


def _settings(config: Path | None) -> Settings:
    return load_settings(config)


def _emit_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@app.command()
def demo(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Create the demo CRM if absent, index its cases, and run the sample events up to the rep's decision."""
    from demo.generate import generate_demo

    settings = _settings(config)
    crm_dir = settings.resolve(settings.crm.path)
    events_dir = settings.data_dir / "events"
    if not (crm_dir / "accounts.json").exists():
        ensure_current(settings.data_dir, crm_dir)  # stamp the new dir with today's schema before writing into it
        summary = generate_demo(crm_dir, events_dir)
        err.print(f"demo CRM written to {crm_dir}: {summary.model_dump()}")
    events = [e for path in sorted(events_dir.glob("*.json")) for e in load_events(path)]
    with Services(settings) as services, Orchestrator(services) as orch:
        _prepare(services)
        with err.status("loading the local model (materialized from the GGUF on first use)…"):
            services.llm
        infos = _run_events(orch, events, quiet=as_json)
        if not as_json:
            for info in infos:
                console.rule(info.run_id)
                console.print(run_view(orch.info(info.run_id), orch.state(info.run_id)))
        _show_inbox(orch, as_json)
    if not as_json:
        err.print(f"{sum(i.status == 'waiting' for i in infos)} of {len(infos)} demo runs wait for a rep. "
                  "Next: `salesloop show RUN`, `salesloop decide RUN --adopt`, `salesloop trace RUN`.")


@app.command()
def event(file: Annotated[Path, typer.Argument(help="JSON file with one event or a list of events")], config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Run CRM events through the graph; each stops at the rep's decision."""
    events = load_events(file)  # all validated before any runs: a bad file starts nothing
    with Services(_settings(config)) as services, Orchestrator(services) as orch:
        _prepare(services)
        infos = _run_events(orch, events, quiet=as_json)
    if as_json:
        _emit_json([i.model_dump(mode="json") for i in infos])


def _prepare(services: Services) -> int:
    """Load the embedder and bring the case index up to date once, before any event: never per event."""
    with err.status("indexing past cases…"):
        written = index_cases(services.crm, services.embedder, services.vectors)
    if written:
        err.print(f"{written} past cases (re)indexed into {services.settings.vector_store.collection}")
    return written


def _run_events(orch: Orchestrator, events: list, quiet: bool = False) -> list[RunInfo]:
    infos = []
    for e in events:
        with err.status(f"event {e.id} ({e.type})…"):
            info, new = orch.start(e)
        infos.append(info)
        if not quiet:
            err.print(f"{e.id} → {info.run_id}: {info.status}" + ("" if new else " (already processed)"))
    return infos


@app.command()
def inbox(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """List the runs waiting for a rep's decision."""
    with Services(_settings(config)) as services, Orchestrator(services) as orch:
        _show_inbox(orch, as_json)


def _show_inbox(orch: Orchestrator, as_json: bool) -> None:
    rows = [(info, orch.state(info.run_id)) for info in orch.runs("waiting")]
    if as_json:
        _emit_json([{"run": i.model_dump(mode="json"), "state": s.model_dump(mode="json", exclude={"trace"})} for i, s in rows])
    else:
        console.print(inbox_table(rows))


@app.command()
def show(run: str, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Show one run: grade with reasons, similar cases, the draft with its sources, slots and clauses."""
    with Services(_settings(config)) as services, Orchestrator(services) as orch:
        info, state = orch.info(run), orch.state(run)
        # The calendar now, not as it was at planning time: a slot booked since then is marked taken.
        slots = slot_status(services.calendar, state)
    if as_json:
        _emit_json({"run": info.model_dump(mode="json"), "state": state.model_dump(mode="json"),
                    "slot_status": [s.model_dump(mode="json") for s in slots]})
    else:
        console.print(run_view(info, state, slots))


@app.command()
def decide(
    run: str,
    adopt_: Annotated[bool, typer.Option("--adopt", help="approve the draft as written")] = False,
    edit_file: Annotated[Optional[Path], typer.Option("--edit", help="file with the edited draft to approve")] = None,
    reject_reason: Annotated[Optional[str], typer.Option("--reject", help="reject, with the reason")] = None,
    rep: Annotated[Optional[str], typer.Option(help="deciding rep's id (default: rep_id in the config)")] = None,
    slot: Annotated[Optional[int], typer.Option(min=0, help="which proposed slot to book (default: the first, 0)")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Adopt, edit or reject a waiting draft; the run then books (or not) and the decision is stored."""
    settings = _settings(config)
    response = _response(adopt_, edit_file, reject_reason, rep or settings.rep_id, slot)
    with Services(settings) as services, Orchestrator(services) as orch:
        info = orch.decide(run, response)
        state = orch.state(run)
    if as_json:
        _emit_json({"run": info.model_dump(mode="json"), "decision": state.decision.model_dump(mode="json"),
                    "applied": state.applied.model_dump(mode="json") if state.applied else None})
    else:
        console.print(run_view(info, state))


def _response(adopt_: bool, edit_file: Path | None, reason: str | None, rep_id: str, slot: int | None) -> HumanResponse:
    chosen = [name for name, on in (("--adopt", adopt_), ("--edit", edit_file is not None), ("--reject", reason is not None)) if on]
    if len(chosen) != 1:
        raise typer.BadParameter(f"give exactly one of --adopt, --edit FILE, --reject REASON (got {', '.join(chosen) or 'none'})")
    if adopt_:
        return adopt(rep_id, slot)
    if edit_file is not None:
        try:
            text = edit_file.read_text(encoding="utf-8").strip()
        except (FileNotFoundError, UnicodeDecodeError) as exc:
            raise InvalidDecision(f"cannot read the edited draft {edit_file}: {exc}") from None
        if not text:
            raise InvalidDecision(f"the edited draft {edit_file} is empty; use --reject to turn the draft down")
        return edit(rep_id, text, slot)
    if not reason.strip():
        raise InvalidDecision("--reject needs a reason the model can learn from")
    if slot is not None:
        raise InvalidDecision(f"--reject books nothing, so it takes no --slot (got {slot}); leave --slot out")
    return reject(rep_id, reason)


class TraceFormat(str, Enum):
    text = "text"
    json = "json"
    prov_json = "prov-json"
    otel = "otel"


@app.command()
def trace(
    run: Annotated[Optional[str], typer.Argument(help="run id")] = None,
    adapter: Annotated[Optional[str], typer.Option("--adapter", help="instead of a run: the decisions and runs this adapter version learned from")] = None,
    fmt: Annotated[TraceFormat, typer.Option("--format", help="text; json; prov-json (W3C PROV); otel (spans to the configured exporter)")] = TraceFormat.text,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Why a run's draft said what it said: event, steps, sources, prompt and model, rep's decision, adapters trained on it."""
    if (run is None) == (adapter is None):
        raise typer.BadParameter("give a RUN id or --adapter VERSION (one of them)")
    fmt = TraceFormat.json if as_json else fmt
    settings = _settings(config)
    if adapter is not None:
        return _trace_adapter(settings, adapter, fmt)
    with Services(settings) as services, Orchestrator(services) as orch:
        info, state = orch.info(run), orch.state(run)
        trained = adapters_trained_on(services.adapters, {r.id for r in services.feedback.for_run(run)})
    if fmt is TraceFormat.json:
        _emit_json({"run": info.model_dump(mode="json"), "event": state.event.model_dump(mode="json"),
                    "steps": [s.model_dump(mode="json") for s in state.trace],
                    "draft": state.draft.model_dump(mode="json", exclude={"messages"}) if state.draft else None,
                    "decision": state.decision.model_dump(mode="json") if state.decision else None, "trained_adapters": trained})
    elif fmt is TraceFormat.prov_json:
        typer.echo(run_document(info, state, trained).serialize(format="json", indent=2))
    elif fmt is TraceFormat.otel:
        provider = tracer_provider_for(settings.telemetry, settings.data_dir)
        emit_run_spans(info, state, provider)
        provider.shutdown()
        err.print(f"{len(state.trace) + 1} spans sent to the {settings.telemetry.exporter} exporter")
    else:
        console.print(trace_tree(info, state, trained))


def _trace_adapter(settings: Settings, version: str, fmt: TraceFormat) -> None:
    services = Services(settings)
    rows = adapter_lineage(services.adapters, services.feedback, version)
    if fmt is TraceFormat.json:
        _emit_json({"adapter": version, "records": [r.model_dump(mode="json") for r in rows]})
    elif fmt is TraceFormat.text:
        console.print(lineage_table(version, rows))
    else:
        raise typer.BadParameter(f"--adapter supports --format text or json, not {fmt.value}")


@app.command()
def index(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Embed new or changed past deals into the vector store."""
    with Services(_settings(config)) as services:
        written = _prepare(services)
        total = services.vectors.count()
    if as_json:
        _emit_json({"written": written, "total": total})
    else:
        err.print(f"{total} cases in the collection")


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2 (SALESLOOP_DEBUG=1 re-raises)."""
    # Nothing is downloaded at run time, and library progress bars would drown our own output.
    for var, value in (("HF_HUB_OFFLINE", "1"), ("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("TRANSFORMERS_VERBOSITY", "error"),
                       ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1"), ("TOKENIZERS_PARALLELISM", "false"), ("TQDM_DISABLE", "1")):
        os.environ.setdefault(var, value)
    try:
        app(standalone_mode=False)
    # Usage errors: the parser's own message. Typer raises its vendored click's classes, which are not click's.
    except (click.ClickException, typer.TyperException) as exc:
        if hasattr(exc, "show"):
            exc.show()
        else:
            err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, typer.Abort):
        sys.exit(130)
    except USER_ERRORS as exc:
        if os.environ.get("SALESLOOP_DEBUG"):
            raise
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
