"""Rich views of runs for people; every command also has --json for machines."""

from __future__ import annotations

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from agents.injection import describe
from agents.schedule import SlotStatus
from agents.state import ProposalDraft, RunState
from orchestrator import RunInfo
from provenance.lineage import LineageRecord


def plain(*cells: object) -> list[Text]:
    """Table cells as literal text: CRM data and model output may hold [brackets] or :emoji: codes rich would interpret."""
    return [cell if isinstance(cell, Text) else Text(str(cell)) for cell in cells]


def inbox_table(rows: list[tuple[RunInfo, RunState]]) -> Table:
    table = Table(title=f"Waiting for a rep: {len(rows)} run(s)", expand=True)
    table.add_column("run", no_wrap=True, min_width=20)
    table.add_column("event", no_wrap=True)
    table.add_column("company", no_wrap=True, max_width=22, overflow="ellipsis")
    table.add_column("grade", no_wrap=True)
    table.add_column("cases/slots/clauses", no_wrap=True, justify="center")
    table.add_column("draft", no_wrap=True, overflow="ellipsis", ratio=1)
    for info, state in rows:
        counts = f"{len(state.cases)}/{len(state.plan.slots)}/{len(state.plan.clauses)}"
        table.add_row(*plain(info.run_id, info.event_type, state.lead.account_name, f"{state.grade.grade} {state.grade.score:.0f}",
                      counts, " ".join(state.draft.text.split())))
    return table


def run_view(info: RunInfo, state: RunState, slots: list[SlotStatus] | None = None) -> Group:
    """A run as a rep reviews it: grade with reasons, cases, draft with citations, slots (`slots`: as the calendar has
    them now), clauses."""
    parts: list = [Text(f"{info.run_id} · {info.status} · event {info.event_id} ({info.event_type})", style="bold")]
    if state.lead:
        lead = state.lead
        parts.append(Text(f"{lead.contact_name} ({lead.raw_title!r} → {lead.role}/{lead.seniority}) at {lead.account_name}, "
                          f"{lead.industry}, {lead.employees} employees, {lead.timezone}"))
    if state.grade:
        grade = Table(title=f"Grade {state.grade.grade} · score {state.grade.score:.1f}/100", show_edge=False)
        for column in ("signal", "points", "reason", "read from"):
            grade.add_column(column)
        for s in state.grade.signals:
            grade.add_row(*plain(s.signal, f"{s.points:.1f}/{s.weight:.0f}", s.reason, ", ".join(r.label() for r in s.sources)))
        parts.append(grade)
    if state.cases:
        cases = Table(title="Similar past cases", show_edge=False)
        for column in ("", "case", "outcome", "score", "chunks", "summary"):
            cases.add_column(column)
        for c in state.cases:
            cases.add_row(*plain(c.marker, c.case_id, c.outcome, f"{c.score:.3f}", ", ".join(k.id for k in c.chunks), _clip(c.summary, 70)))
        parts.append(cases)
    if state.draft:
        parts.append(_draft(state.draft))
    if state.plan:
        parts.append(_plan(state, slots or []))
    if state.decision:
        dec = state.decision
        parts.append(Text(f"Decision: {dec.decision} by {dec.rep_id} at {dec.decided_at:%Y-%m-%d %H:%M}" + (f" — {dec.reason}" if dec.reason else "")))
    if state.applied and state.applied.booking_uid:
        parts.append(Text(f"Booked {state.applied.booked_slot.start:%a %Y-%m-%d %H:%M %Z} (uid {state.applied.booking_uid})"))
    return Group(*parts)


def _draft(d: ProposalDraft) -> Panel:
    adapter = f"adapter {d.adapter_id}@{d.adapter_sha256[:12]}" if d.adapter_id else "no adapter"
    body = Text(f"FALLBACK DRAFT: {d.fallback_reason}\n\n", style="bold yellow") if d.fallback_reason else Text()
    if d.injection:
        body.append(describe(d.injection) + " — read the customer's text before sending\n\n", style="bold red")
    for note in d.guard_notes:
        body.append(f"guard: {note}\n", style="yellow")
    body.append(d.text + "\n")
    body.append_text(sentence_sources(d))
    if d.removed_markers:
        body.append(f"\nremoved unknown markers: {', '.join(d.removed_markers)}", style="yellow")
    return Panel(body, title=f"Draft · {d.model_id} · {adapter} · prompt {d.prompt_name}@{d.prompt_sha256[:12]}")


def sentence_sources(d: ProposalDraft) -> Text:
    """Each sentence with the sources behind it, or marked unsupported, and the supported share."""
    share = "n/a" if d.supported_share is None else f"{d.supported_share:.0%}"
    text = Text(f"\nSources by sentence ({share} supported):\n", style="bold")
    for i, sentence in enumerate(d.sentences, 1):
        text.append(f"{i}. {_clip(sentence.text, 60)} — ")
        if sentence.supported:
            how = "cited" if sentence.method == "marker" else f"similarity {sentence.similarity:.2f}"
            text.append(f"{', '.join(r.label() for r in sentence.sources)} ({how})\n")
        else:
            text.append("UNSUPPORTED\n", style="red")
    return text


def _plan(state: RunState, status: list[SlotStatus]) -> Table:
    plan = state.plan
    match = plan.consultant
    who = (f"{match.consultant.name} ({', '.join(match.matched_skills) or 'industry match'}; calendar {match.consultant.calendar_file})"
           if match else "no consultant")
    table = Table(title=f"Proposed meeting with {who} · clauses", show_edge=False)
    table.add_column("slot (lead's time)")
    table.add_column("clause")
    taken = {s.index: s.taken_by for s in status if s.taken_by is not None}
    slots = [f"{i}: {s.label()}" + (f" TAKEN since the plan (by {taken[i].uid})" if i in taken else "") for i, s in enumerate(plan.slots)]
    clauses = [f"{c.clause.id} v{c.clause.version} {c.clause.title} (rule {c.rule_id})" for c in plan.clauses]
    for i in range(max(len(slots), len(clauses))):
        table.add_row(*plain(slots[i] if i < len(slots) else "", clauses[i] if i < len(clauses) else ""))
    for note in plan.notes:
        table.add_row(*plain(Text(note, style="yellow"), ""))
    return table


def trace_tree(info: RunInfo, state: RunState, trained_adapters: list[str]) -> Tree:
    """Event → steps with their sources → the draft's sentences → the rep's decision → adapters that learned from it."""
    tree = Tree(Text.assemble((info.run_id, "bold"), f" · {info.status}"))
    event = state.event
    tree.add(Text(f"event {event.id} ({event.type}) from {event.source} at {event.occurred_at:%Y-%m-%d %H:%M}"))
    for step in state.trace:
        extra = " · ".join(x for x in [
            f"model {step.model_id}" if step.model_id else "",
            f"adapter {step.adapter_id}" if step.adapter_id else "",
            f"prompt {step.prompt_name}@{step.prompt_sha256[:12]}" if step.prompt_name else "",
            "FALLBACK" if step.fallback else "",
        ] if x)
        seconds = (step.ended_at - step.started_at).total_seconds()
        node = tree.add(Text.assemble((step.step, "bold"), f" [{step.status}] {seconds:.2f}s — {step.output_summary}" + (f" ({extra})" if extra else "")))
        for ref in step.inputs:
            node.add(Text(ref.label() + (f" — {ref.note}" if ref.note else "")))
        for note in step.notes:
            node.add(Text(f"note: {note}", style="yellow"))
        if step.step == "draft_proposal" and state.draft:
            node.add(sentence_sources(state.draft))
    if state.decision:
        dec = state.decision
        tree.add(Text(f"decision: {dec.decision} by {dec.rep_id} at {dec.decided_at:%Y-%m-%d %H:%M}" + (f" — {dec.reason}" if dec.reason else "")))
    tree.add(Text("trained into adapters: " + (", ".join(trained_adapters) or "none yet")))
    return tree


def lineage_table(version: str, rows: list[LineageRecord]) -> Table:
    table = Table(title=f"Adapter {version} learned from {len(rows)} feedback record(s)")
    for column in ("record", "run", "via", "decision", "rep", "decided"):
        table.add_column(column)
    for r in rows:
        table.add_row(*plain(r.record_id, r.run_id or "—", r.adapter, r.decision or "erased", r.rep_id or "—",
                      f"{r.decided_at:%Y-%m-%d %H:%M}" if r.decided_at else "—"))
    return table


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
