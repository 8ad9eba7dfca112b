"""`salesloop audit | erase`: prove the record was not altered, and erase a customer everywhere their data went."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from cli.render import plain

from agents.services import Services
from configs import load_settings
from orchestrator import Orchestrator
from provenance.erasure import erase_contact

audit_app = typer.Typer(no_args_is_help=True, help="The hash-chained audit log: verify it, list its entries.")
console = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="settings YAML")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for machines")]


def _emit(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@audit_app.command("verify")
def audit_verify(
    expect_head: Annotated[Optional[str], typer.Option(help="head hash recorded earlier: also catches entries cut off the end")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the whole chain; names the first entry that was edited, deleted, inserted or moved. Exit 1 if any was."""
    report = Services(load_settings(config)).audit.verify(expect_head)
    if as_json:
        _emit(report.model_dump(mode="json"))
    elif report.ok:
        console.print(f"audit log intact: {report.entries} entries, head {report.head_sha256}")
    else:
        err.print(f"audit log BROKEN at entry {report.first_bad_seq}: {report.problem}", markup=False)
    if not report.ok:
        sys.exit(1)


@audit_app.command("log")
def audit_log(
    subject: Annotated[Optional[str], typer.Option(help="only entries about this run, adapter version or contact")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The entries, oldest first: ids and hashes of every step, decision, training run, promotion and erasure."""
    entries = Services(load_settings(config)).audit.entries(subject=subject)
    if as_json:
        _emit([e.model_dump(mode="json") for e in entries])
        return
    table = Table(title=f"Audit log: {len(entries)} entries")
    for column in ("seq", "at", "kind", "subject", "key", "sha256"):
        table.add_column(column, no_wrap=column != "key")
    for e in entries:
        table.add_row(*plain(e.seq, f"{e.at:%Y-%m-%d %H:%M:%S}", e.kind, e.subject, e.key, e.sha256[:12]))
    console.print(table)


def erase(
    contact: Annotated[str, typer.Option("--contact", help="CRM contact id to erase")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Erase a contact's personal data from every store in the data dir; adapters trained on it are marked for retraining."""
    with Services(load_settings(config)) as services, Orchestrator(services) as orch:
        report = erase_contact(services, orch, contact, services.clock())
    if as_json:
        _emit(report.model_dump(mode="json"))
        return
    console.print(f"erased contact {report.contact_id} (audit entry {report.audit_seq}): {len(report.runs_erased)} runs, "
                  f"{len(report.feedback_erased)} feedback records, {len(report.deals_redacted)} deals redacted and "
                  f"{report.cases_reindexed} cases re-indexed, {report.meetings_changed} meetings, "
                  f"{len(report.event_files_changed)} event files, {report.dataset_rows_removed} dataset rows, "
                  f"{report.mask_mappings_erased} mask mappings, {report.queued_events_erased} queued webhook events")
    if report.adapters_to_retrain:
        console.print(f"adapters marked for retraining: {', '.join(report.adapters_to_retrain)}")
    if report.leftovers:
        err.print(f"still found in: {', '.join(report.leftovers)}", markup=False)
        sys.exit(1)
