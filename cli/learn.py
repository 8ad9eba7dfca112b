"""`salesloop feedback | finetune | adapters`: the learning loop from the command line."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.render import plain

from agents.services import Services
from configs import ConfigError, load_settings
from configs.loader import load_yaml_model
from configs.settings import FINETUNE_CPU
from feedback.export import export_dataset
from finetune.base_model import gguf_path, served_base_sha256
from finetune.evaluate import EvalReport, evaluate
from finetune.promotion import PromotionRefused, promote, promote_through_gate
from finetune.gguf_export import export_lora_gguf, exported_gguf
from finetune.records import FinetuneSettings
from finetune.rounds import RoundResult, consent_checker, corpus_round, feedback_round
from orchestrator import Orchestrator
from provenance.masking import Masker, known_values, mask_row

FINETUNE_DEFAULT = FINETUNE_CPU  # the same file continuous learning uses by default

feedback_app = typer.Typer(no_args_is_help=True, help="Rep decisions: list them, export training datasets.")
finetune_app = typer.Typer(help="LoRA fine-tuning on rep feedback (default) or on a document corpus.")
adapters_app = typer.Typer(no_args_is_help=True, help="Versioned adapters: list, evaluate, promote, roll back, A/B, report.")
console = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="settings YAML")]
FinetuneOpt = Annotated[Path, typer.Option("--finetune-config", "-f", help="fine-tuning YAML")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for machines")]


def _emit(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _services(config: Path | None) -> Services:
    return Services(load_settings(config))


class ExportFormat(str, Enum):
    sft = "sft"
    dpo = "dpo"
    kto = "kto"


class AdapterFormat(str, Enum):
    gguf = "gguf"


@feedback_app.command("list")
def feedback_list(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Every stored rep decision, oldest first."""
    records = _services(config).feedback.all()
    if as_json:
        _emit([r.model_dump(mode="json", exclude={"messages", "sources"}) for r in records])
        return
    table = Table(title=f"{len(records)} decisions · " + ", ".join(f"{k} {v}" for k, v in sorted(Counter(r.decision for r in records).items())))
    for column in ("decided", "run", "rep", "decision", "adapter", "reason"):
        table.add_column(column)
    for r in records:
        table.add_row(*plain(f"{r.decided_at:%Y-%m-%d %H:%M}", r.run_id, r.rep_id, r.decision, r.adapter_id or "base", r.reason or ""))
    console.print(table)


@feedback_app.command("export")
def feedback_export(
    fmt: Annotated[ExportFormat, typer.Option("--format", help="dataset shape, in trl's field names")],
    out: Annotated[Path, typer.Option("--out", help="directory for train.jsonl, eval.jsonl, manifest.json")],
    eval_fraction: Annotated[float, typer.Option(min=0, max=0.99, help="newest share held out")] = 0.2,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export rep decisions as a training dataset that trl's trainers load as is."""
    with _services(config) as services:
        mask = _export_masker(services) if services.settings.masking.exports else None
        manifest = export_dataset(services.feedback.all(), fmt.value, out, eval_fraction=eval_fraction,
                                  consent=consent_checker(services.crm, services.consent), created_at=services.clock(), mask=mask)
    if as_json:
        _emit(manifest.model_dump(mode="json"))
    else:
        err.print(f"{out}: " + ", ".join(f"{f.name} {f.count} rows" for f in manifest.files) + f"; left out {manifest.excluded}")


def _export_masker(services: Services) -> Callable[[dict], dict]:
    """Masks every person the CRM mirror or a run knows: exported files may leave the machine."""
    with Orchestrator(services) as orch:
        leads = [orch.state(i.run_id).lead for i in orch.runs() if i.status != "erased"]
    masker = Masker(known_values([*services.crm.contacts(), *(lead for lead in leads if lead)], services.settings.masking.fields))
    return lambda row: mask_row(row, masker)


@finetune_app.callback(invoke_without_command=True)
def finetune(ctx: typer.Context, config: ConfigOpt = None, finetune_config: FinetuneOpt = FINETUNE_DEFAULT, as_json: JsonOpt = False) -> None:
    """Train a new adapter version on the rep feedback (warm-started from the promoted one by default)."""
    if ctx.invoked_subcommand is not None:
        return
    settings = load_yaml_model(finetune_config, FinetuneSettings)
    with _services(config) as services, _progress() as progress:
        result = feedback_round(services, settings, progress=progress)
    _round_summary(result, as_json)


@finetune_app.command("corpus")
def finetune_corpus(folder: Path, config: ConfigOpt = None, finetune_config: FinetuneOpt = FINETUNE_DEFAULT, as_json: JsonOpt = False) -> None:
    """Train an adapter on company documents (.md, .txt, .pdf): won proposals, objection answers, FAQ."""
    settings = load_yaml_model(finetune_config, FinetuneSettings)
    with _services(config) as services, _progress() as progress:
        result = corpus_round(services, settings, folder, progress=progress)
    _round_summary(result, as_json)


class _progress:
    """A rich progress bar fed by the training loop's per-step callback."""

    def __enter__(self):
        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                             TimeElapsedColumn(), console=err)
        self._bar.start()
        self._tasks: dict[str, int] = {}
        return self

    def __call__(self, stage: str, step: int, total: int, metrics: dict[str, float]) -> None:
        if stage not in self._tasks:
            self._tasks[stage] = self._bar.add_task(stage, total=total, loss="…")
        self._bar.update(self._tasks[stage], completed=step, loss=f"{metrics.get('loss', float('nan')):.4f}")

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()


def _round_summary(result: RoundResult, as_json: bool) -> None:
    if as_json:
        _emit(result.model_dump(mode="json"))
        return
    a = result.adapter
    err.print(f"adapter {a.version} ({a.kind}) trained on {len(a.record_ids)} records, parent {a.parent_version or 'base'}; "
              f"{result.training.steps} steps, {result.training.tokens_per_s:.0f} tokens/s; metrics {a.metrics}")
    err.print(f"next: `salesloop adapters eval {a.version}`, then `salesloop adapters promote {a.version}`")


@adapters_app.command("list")
def adapters_list(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Adapter versions with their status, parent, data and metrics."""
    entries = _services(config).adapters.entries()
    if as_json:
        _emit([e.model_dump(mode="json") for e in entries])
        return
    table = Table(title="Adapters")
    for column in ("version", "status", "kind", "parent", "records", "created", "sha256"):
        table.add_column(column)
    for e in entries:
        m = e.metadata
        table.add_row(m.version, e.status, m.kind, m.parent_version or "base", str(len(m.record_ids)), f"{m.created_at:%Y-%m-%d %H:%M}", m.content_sha256[:12])
    console.print(table)


@adapters_app.command("eval")
def adapters_eval(version: str, config: ConfigOpt = None, finetune_config: FinetuneOpt = FINETUNE_DEFAULT, as_json: JsonOpt = False) -> None:
    """Compare a candidate with the adapter in service (or the base) on held-out feedback."""
    with _services(config) as services:
        report = evaluate(services, version, load_yaml_model(finetune_config, FinetuneSettings))
    _report(report, as_json)


def _report(report: EvalReport, as_json: bool) -> None:
    if as_json:
        _emit(report.model_dump(mode="json"))
        return
    table = Table(title=f"{report.candidate.adapter} vs {report.baseline.adapter or 'base'}: {'PASS' if report.passed else 'FAIL'}")
    for column in ("metric", "candidate", "baseline"):
        table.add_column(column)
    for metric in ("mean_loglik", "preference_accuracy", "generation_similarity"):
        table.add_row(metric, _fmt(getattr(report.candidate, metric)), _fmt(getattr(report.baseline, metric)))
    for version, drop in report.forgetting.items():
        table.add_row(f"forgetting on {version}", f"{drop:+.4f}", "")
    console.print(table)
    for reason in report.reasons:
        err.print(f"- {reason}")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


@adapters_app.command("promote")
def adapters_promote(version: str, force: Annotated[bool, typer.Option("--force", help="promote even if the gate fails")] = False,
                     config: ConfigOpt = None, finetune_config: FinetuneOpt = FINETUNE_DEFAULT) -> None:
    """Serve this version from the next event on, if it passes the evaluation gate."""
    with _services(config) as services:
        if force:
            promote(services, version)
        else:
            try:
                promote_through_gate(services, version, load_yaml_model(finetune_config, FinetuneSettings))
            except PromotionRefused as refused:
                _report(refused.report, as_json=False)
                raise
    err.print(f"{version} promoted; runs from now on draft with it")


def _base_sha256(services: Services) -> str:
    """The serving base model's hash, without loading the model."""
    return served_base_sha256(services.settings.llm, services.settings.data_dir)


@adapters_app.command("export")
def adapters_export(version: str,
                    fmt: Annotated[AdapterFormat, typer.Option("--format", help="gguf: a LoRA file for llama.cpp and its server")] = AdapterFormat.gguf,
                    out: Annotated[Optional[Path], typer.Option("--out", help="where to write it; default beside the adapter")] = None,
                    config: ConfigOpt = None) -> None:
    """Write an adapter in another runtime's format (the llamacpp backend exports on first use by itself)."""
    services = _services(config)
    llm = services.settings.llm
    if llm.gguf_file is None:
        raise ConfigError("a GGUF LoRA is made for a GGUF base, but llm.gguf_file is not set in this config; "
                          "set llm.gguf_file (and llm.gguf_package) to the GGUF that llama.cpp serves")
    services.adapters.verify(version)  # a GGUF of modified files would serve what no one registered
    ref = services.adapters.ref(version)
    base = gguf_path(llm.gguf_package, llm.gguf_file)
    path = export_lora_gguf(Path(ref.path), base, out) if out else exported_gguf(Path(ref.path), ref.content_sha256, base)
    err.print(f"{version} exported for llama.cpp: {path} (load it with --lora {path.name} beside {base.name})")


@adapters_app.command("rollback")
def adapters_rollback(config: ConfigOpt = None) -> None:
    """Go back to the previously promoted adapter (or the base model)."""
    version = _services(config).adapters.rollback()
    err.print(f"rolled back; now serving {version or 'the base model'}")


@adapters_app.command("ab")
def adapters_ab(version: Annotated[Optional[str], typer.Argument(help="candidate; omit to stop the test")] = None,
                share: Annotated[float, typer.Option(min=0, max=1, help="share of runs routed to the candidate")] = 0.1,
                config: ConfigOpt = None) -> None:
    """Route a share of new runs to a candidate adapter (deterministic per run)."""
    with _services(config) as services:
        services.adapters.set_candidate(version, share if version else 0.0, base_model_sha256=_base_sha256(services))
    err.print(f"A/B: {share:.0%} of runs to {version}" if version else "A/B test stopped")


@adapters_app.command("report")
def adapters_report(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Adoption, edit and reject rates per adapter, from the stored rep decisions."""
    counts: dict[str, Counter] = {}
    for record in _services(config).feedback.all():
        counts.setdefault(record.adapter_id or "base", Counter())[record.decision] += 1
    rows = {adapter: {d: c[d] / sum(c.values()) for d in ("adopt", "edit", "reject")} | {"decisions": sum(c.values())}
            for adapter, c in sorted(counts.items())}
    if as_json:
        _emit(rows)
        return
    table = Table(title="Rep decisions per adapter")
    for column in ("adapter", "decisions", "adopt", "edit", "reject"):
        table.add_column(column)
    for adapter, r in rows.items():
        table.add_row(adapter, str(r["decisions"]), f"{r['adopt']:.0%}", f"{r['edit']:.0%}", f"{r['reject']:.0%}")
    console.print(table)
