"""`salesloop serve | tokens | queue`: the HTTP service, its API tokens, and the durable event queue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from cli.render import plain

from agents.services import Services
from configs import load_settings

tokens_app = typer.Typer(no_args_is_help=True, help="API tokens for reps, managers, auditors and admins.")
queue_app = typer.Typer(no_args_is_help=True, help="The durable queue of CRM events: list, dead letters, replay.")
console = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="settings YAML")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for machines")]


def serve(
    host: Annotated[Optional[str], typer.Option(help="bind address (default: service.host)")] = None,
    port: Annotated[Optional[int], typer.Option(help="port (default: service.port)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Run the service: CRM webhooks, approvals API, the reps' web inbox at /inbox, /metrics, OpenAPI at /docs."""
    import uvicorn

    from service.app import create_app

    settings = load_settings(config)
    services = Services(settings)
    services.triggers  # rules, prompts and the consent policy are checked before the first request
    services.consent
    app = create_app(services)
    err.print(f"salesloop serving on http://{host or settings.service.host}:{port or settings.service.port} "
              f"(inbox at /inbox, API docs at /docs)")
    uvicorn.run(app, host=host or settings.service.host, port=port or settings.service.port, log_level="warning")


@tokens_app.command("add")
def tokens_add(
    name: Annotated[str, typer.Argument(help="who holds the token")],
    role: Annotated[str, typer.Option(help="rep | manager | auditor | admin")],
    rep_id: Annotated[Optional[str], typer.Option(help="role rep: the CRM owner id this rep decides for")] = None,
    team: Annotated[Optional[str], typer.Option(help="role manager: comma-separated rep ids (default: all)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Create a token; it is printed once, only its hash is stored."""
    from service.auth import TokenStore

    settings = load_settings(config)
    if role not in ("rep", "manager", "auditor", "admin"):
        raise typer.BadParameter(f"--role must be rep, manager, auditor or admin, not {role!r}")
    store = TokenStore(settings.resolve(settings.service.tokens_file))
    typer.echo(store.add(name, role, rep_id, [t for t in (team or "").split(",") if t]))


@queue_app.command("list")
def queue_list(status: Annotated[Optional[str], typer.Option(help="queued | processing | done | dead")] = None,
               config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Queued events with their attempts and last error; `--status dead` is the dead-letter table."""
    queue = _queue(config)
    items = queue.list(status)
    if as_json:
        typer.echo(json.dumps({"counts": queue.counts(), "items": [i.model_dump(mode="json") for i in items]}, indent=2))
        return
    table = Table(title=f"Event queue: {queue.counts()}")
    for column in ("id", "source", "event", "status", "attempts", "run", "error"):
        table.add_column(column)
    for i in items:
        table.add_row(*plain(i.id, i.source, i.external_id, i.status, i.attempts, i.run_id or "", (i.last_error or "")[:80]))
    console.print(table)


@queue_app.command("replay")
def queue_replay(item_id: int, config: ConfigOpt = None) -> None:
    """Put a dead-lettered event back in the queue; a running service picks it up."""
    services = Services(load_settings(config))
    item = _queue(config).replay(item_id, services.clock())
    err.print(f"event {item.external_id} from {item.source} is queued again")


def _queue(config: Path | None):
    from service.queue import EventQueue

    return EventQueue.from_settings(load_settings(config))
