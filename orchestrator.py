"""The graph: CRM event → normalize → grade → similar cases → schedule → draft → rep → apply.

The schedule is planned before the draft, so the draft's content plan can name the proposed consultant and slot.

Runs are LangGraph threads in a checkpointer (SQLite, or PostgreSQL when database.backend says so), so a run waiting
for its rep survives restarts. A small index table beside the checkpoints lists runs by status for the inbox.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from datetime import datetime, timezone
from typing import Callable, Literal, get_args

from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field

from agents.approval import await_rep
from agents.apply import after_apply, apply_decision
from agents.draft import draft_proposal
from agents.grade import grade_lead
from agents.inbox import HumanResponse, check_response
from agents.normalize import normalize
from agents.retrieve import retrieve_cases
from agents.schedule import plan_schedule
from agents.services import Services
from agents.state import RepDecision, RunState
from provenance import StepTrace, sha256_text
from provenance.audit import log_step
from tools.crm.records import CRMEvent, DealStageChangePayload
from tools.failpoints import failpoint
from tools.sql import Database, PostgresDatabase, connect_postgres, open_database, schema_lock

NODES = [
    ("normalize", normalize),
    ("grade_lead", grade_lead),
    ("retrieve_cases", retrieve_cases),
    ("plan_schedule", plan_schedule),
    ("draft_proposal", draft_proposal),
    ("await_rep", await_rep),
    ("apply", apply_decision),
]
RunStatus = Literal["running", "waiting", "done", "failed", "erased"]
RUNS_SCHEMA = """CREATE TABLE IF NOT EXISTS salesloop_runs (run_id {text} PRIMARY KEY, event_id {text} NOT NULL,
    event_type {text} NOT NULL, status {text} NOT NULL, created_at {instant} NOT NULL, updated_at {instant} NOT NULL, error {text})"""
_RUN_COLUMNS = "run_id, event_id, event_type, status, created_at, updated_at, error"
# Outcomes flow back: a deal's later won/lost stage change, linked to each run that drafted for the deal.
OUTCOMES_SCHEMA = """CREATE TABLE IF NOT EXISTS salesloop_outcomes (run_id {text} NOT NULL, deal_id {text} NOT NULL,
    outcome {text} NOT NULL, outcome_event_id {text} NOT NULL, outcome_run_id {text} NOT NULL, linked_at {instant} NOT NULL,
    PRIMARY KEY (run_id, outcome_event_id))"""
CLOSED = {"closed_won": "won", "closed_lost": "lost"}
# What PostgresSaver deletes a thread from; VACUUM FULL rewrites them without the erased rows.
_POSTGRES_CHECKPOINT_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")


class RunError(Exception):
    """A run cannot do what was asked (unknown run, already decided, not waiting)."""


class UnknownRun(RunError):
    """No run has this id."""


class SentBack(RunError):
    """The rep's slot was booked by someone else since the plan: nothing was booked or sent, the run waits again."""


class RunInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str
    event_id: str
    event_type: str
    status: RunStatus
    created_at: datetime
    updated_at: datetime
    error: str | None = None


def build_graph() -> StateGraph:
    graph = StateGraph(RunState, context_schema=Services)
    previous = START
    for name, node in NODES:
        graph.add_node(name, node)
        if previous == "grade_lead":  # a record-only route, or a lead graded too low, ends here with nothing to decide
            graph.add_conditional_edges(previous, _after_grade, {name: name, END: END})
        elif previous == "plan_schedule":  # planned again after a taken slot: the rep's draft stays, nothing redrafts
            graph.add_conditional_edges(previous, _after_schedule, {name: name, "await_rep": "await_rep"})
        else:
            graph.add_edge(previous, name)
        previous = name
    # A decision whose slot was taken since the plan books nothing: the run plans again and waits for its rep.
    graph.add_conditional_edges(previous, after_apply, {"plan_schedule": "plan_schedule", END: END})
    return graph


def _after_grade(state: RunState) -> str:
    return END if state.route.records_only(state.grade.grade) else "retrieve_cases"


def _after_schedule(state: RunState) -> str:
    return "await_rep" if state.draft is not None else "draft_proposal"


def model_types(model: type[BaseModel]) -> set[type[BaseModel]]:
    """`model` and every pydantic model reachable through its fields' annotations."""
    found: set[type[BaseModel]] = set()

    def visit(annotation: object) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation not in found:
                found.add(annotation)
                for field in annotation.model_fields.values():
                    visit(field.annotation)
        for arg in get_args(annotation):
            visit(arg)

    visit(model)
    return found


class Outcome(BaseModel):
    """A won or lost deal, linked to a run that drafted for it."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    deal_id: str
    outcome: Literal["won", "lost"]
    outcome_event_id: str = Field(description="the stage change that closed the deal")
    outcome_run_id: str = Field(description="the run that event started")
    linked_at: datetime


class RunIndex:
    """The runs by status, for the inbox: one table in the checkpoints' database."""

    def __init__(self, db: Database):
        self.db = db
        db.create(db.dialect.schema(RUNS_SCHEMA))
        db.create(db.dialect.schema(OUTCOMES_SCHEMA))

    def link_outcome(self, outcome: Outcome) -> None:
        with self.db.write() as db:
            db.execute("INSERT INTO salesloop_outcomes (run_id, deal_id, outcome, outcome_event_id, outcome_run_id, linked_at) "
                       "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, outcome_event_id) DO NOTHING",
                       (outcome.run_id, outcome.deal_id, outcome.outcome, outcome.outcome_event_id, outcome.outcome_run_id,
                        outcome.linked_at.isoformat()))

    def outcomes(self, run_id: str) -> list[Outcome]:
        with self.db.read() as db:
            rows = db.execute("SELECT run_id, deal_id, outcome, outcome_event_id, outcome_run_id, linked_at FROM salesloop_outcomes "
                              "WHERE run_id = ? ORDER BY linked_at", (run_id,)).fetchall()
        keys = ["run_id", "deal_id", "outcome", "outcome_event_id", "outcome_run_id", "linked_at"]
        return [Outcome.model_validate(dict(zip(keys, row))) for row in rows]

    def get(self, run_id: str) -> RunInfo | None:
        with self.db.read() as db:
            row = db.execute(f"SELECT {_RUN_COLUMNS} FROM salesloop_runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else _info(row)

    def list(self, status: RunStatus | None) -> list[RunInfo]:
        where, params = (" WHERE status = ?", (status,)) if status else ("", ())
        with self.db.read() as db:
            rows = db.execute(f"SELECT {_RUN_COLUMNS} FROM salesloop_runs{where} ORDER BY created_at, run_id", params).fetchall()
        return [_info(r) for r in rows]

    def record(self, run_id: str, event: CRMEvent, status: RunStatus) -> None:
        now = _now()
        with self.db.write() as db:
            db.execute(
                f"INSERT INTO salesloop_runs ({_RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL) ON CONFLICT (run_id) DO UPDATE SET"
                " status = excluded.status, updated_at = excluded.updated_at, error = NULL",
                (run_id, event.id, event.type, status, now, now),
            )

    def set_status(self, run_id: str, status: RunStatus, error: str | None) -> None:
        with self.db.write() as db:
            db.execute("UPDATE salesloop_runs SET status = ?, updated_at = ?, error = ? WHERE run_id = ?", (status, _now(), error, run_id))


def checkpointer(db: Database, serde: JsonPlusSerializer) -> SqliteSaver | PostgresSaver:
    """LangGraph's saver for the database, on one connection of its own that worker threads share under its lock."""
    if isinstance(db, PostgresDatabase):
        saver = PostgresSaver(connect_postgres(db.url, autocommit=True, prepare_threshold=0, row_factory=dict_row), serde=serde)
        with schema_lock(saver.conn):
            saver.setup()
        return saver
    return SqliteSaver(sqlite3.connect(db.path, check_same_thread=False, timeout=30), serde=serde)


def run_id_for(event: CRMEvent) -> str:
    """The same event (source + id) always maps to the same run: a redelivered event starts nothing new."""
    return "run-" + sha256_text(f"{event.source}\x00{event.id}")[:16]


class Orchestrator:
    def __init__(self, services: Services, on_step: Callable[[StepTrace], None] | None = None):
        self.services = services
        self.on_step = on_step  # e.g. the service's latency histogram
        settings = services.settings
        self._db = open_database(settings.database, settings.resolve(settings.checkpoint.path))
        self._runs = RunIndex(self._db)
        # Strict deserialization: only the state schema's own types come back out of the checkpoint.
        serde = JsonPlusSerializer(allowed_msgpack_modules=sorted((t.__module__, t.__name__) for t in model_types(RunState)))
        self._saver = checkpointer(self._db, serde)
        self.graph = build_graph().compile(checkpointer=self._saver)

    def close(self) -> None:
        self._saver.conn.close()

    def __enter__(self) -> Orchestrator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self, event: CRMEvent) -> tuple[RunInfo, bool]:
        """Run an event up to the rep's decision. Returns the run and whether it was new."""
        run_id = run_id_for(event)
        existing = self.info(run_id, missing_ok=True)
        if existing is not None and existing.status not in ("failed", "running"):
            return existing, False
        self._runs.record(run_id, event, "running")
        # A failed run, or one whose process died mid-graph ("running" with nobody running it: the queue's lease
        # says so), resumes from its last checkpoint: steps that succeeded are neither redone nor traced twice.
        resume = existing is not None and bool(self.graph.get_state(self._config(run_id)).next)
        # The trigger rules pick the route once, when the event comes; a resume keeps it.
        self._invoke(run_id, None if resume else RunState(run_id=run_id, event=event, route=self.services.triggers.route_for(event)))
        self._link_outcome(event, run_id)
        return self.info(run_id), True

    def outcomes(self, run_id: str) -> list[Outcome]:
        """The won/lost stage changes of the deal this run drafted for, once they came."""
        return self._runs.outcomes(run_id)

    def _link_outcome(self, event: CRMEvent, outcome_run_id: str) -> None:
        """A deal closed: link the stage change to every run that drafted for that deal (issue 12 measures conversion)."""
        payload = event.payload
        if not isinstance(payload, DealStageChangePayload) or payload.to_stage not in CLOSED:
            return
        for info in self.runs():
            if info.run_id == outcome_run_id or info.status == "erased":
                continue
            state = RunState.model_validate(self.graph.get_state(self._config(info.run_id)).values)
            if state.lead is not None and state.lead.deal_id == payload.deal_id and state.draft is not None:
                self._runs.link_outcome(Outcome(run_id=info.run_id, deal_id=payload.deal_id, outcome=CLOSED[payload.to_stage],
                                                outcome_event_id=event.id, outcome_run_id=outcome_run_id,
                                                linked_at=datetime.now(timezone.utc)))

    def decide(self, run_id: str, response: HumanResponse) -> RunInfo:
        """Resume a waiting run with the rep's answer; a retry of the same answer after it was applied is a no-op.

        An answer that does not fit the run (InvalidDecision) or comes when the run is not waiting (RunError) is refused
        before anything is written. If the chosen slot was booked by someone else since the plan, nothing is booked and
        SentBack says so: the run waits again, with new slots."""
        info = self.info(run_id)
        snapshot = self.graph.get_state(self._config(run_id))
        state = RunState.model_validate(snapshot.values) if snapshot.values else None
        if info.status == "done":
            _check_same_answer(run_id, state.decision, response)
            return info
        if snapshot.next == ("await_rep",):
            checked = check_response(response, state)
            self._invoke(run_id, Command(resume=checked.model_dump(mode="json")))
            after = self.state(run_id)
            if len(after.conflicts) > len(state.conflicts):
                raise SentBack(_sent_back_message(after))
        elif snapshot.next and state.decision is not None:  # crashed after the decision, mid side effects: finish them
            _check_same_answer(run_id, state.decision, response)
            self._invoke(run_id, None)
        else:
            raise RunError(f"run {run_id} is {info.status}, not waiting for a decision")
        return self.info(run_id)

    def recover(self, leave: Collection[str] = ()) -> list[str]:
        """After a crash: finish runs that were cut off mid-graph or mid side effects. Returns the runs resumed.

        A run waiting for its rep is left waiting; one whose rep already decided finishes applying the decision
        (every side effect is idempotent on the run id, so what was done before the crash is not done twice).
        Runs cut off mid-graph whose ids are in `leave` are left to whoever the queue hands their event to.
        """
        resumed = []
        for info in self.runs("running") + self.runs("waiting"):
            if info.status == "running" and info.run_id in leave:
                continue
            snapshot = self.graph.get_state(self._config(info.run_id))
            pending = snapshot.next
            if pending and pending != ("await_rep",):
                self._runs.set_status(info.run_id, "running", None)
                self._invoke(info.run_id, None)
                resumed.append(info.run_id)
            elif info.status == "running" and snapshot.values:  # the crash fell between its last checkpoint and its index row
                self._runs.set_status(info.run_id, "waiting" if pending else "done", None)
        return resumed

    def state(self, run_id: str) -> RunState:
        info = self.info(run_id)
        if info.status == "erased":
            raise RunError(f"run {run_id} was erased on {info.updated_at:%Y-%m-%d %H:%M} at a customer's request; the audit log keeps its hashes")
        return RunState.model_validate(self.graph.get_state(self._config(run_id)).values)

    def pending_interrupt(self, run_id: str) -> dict | None:
        """What a waiting run asks its rep (Agent Inbox HumanInterrupt), or None."""
        for task in self.graph.get_state(self._config(run_id)).tasks:
            if task.interrupts:
                return task.interrupts[0].value
        return None

    def info(self, run_id: str, missing_ok: bool = False) -> RunInfo | None:
        info = self._runs.get(run_id)
        if info is None and not missing_ok:
            raise UnknownRun(f"no run {run_id!r}; `salesloop inbox` lists the waiting runs")
        return info

    def runs(self, status: RunStatus | None = None) -> list[RunInfo]:
        return self._runs.list(status)

    def runs_mentioning(self, identifiers: list[str]) -> list[str]:
        """Runs whose state holds any of these strings (case-insensitive): what erasing a person must reach."""
        wanted = [i.lower() for i in identifiers if i]
        found = []
        for info in self.runs():
            if info.status == "erased":
                continue
            values = self.graph.get_state(self._config(info.run_id)).values
            dumped = RunState.model_validate(values).model_dump_json().lower() if values else ""
            if any(w in dumped for w in wanted):
                found.append(info.run_id)
        return found

    def erase_runs(self, run_ids: list[str]) -> None:
        """Delete the runs' checkpoints for good; their index rows stay, marked erased, so the run ids still resolve."""
        for run_id in run_ids:
            self._saver.delete_thread(run_id)
            self._runs.set_status(run_id, "erased", None)
        with self._saver.lock:  # no checkpoint write of this process in the way of the rebuild
            self._db.compact(_POSTGRES_CHECKPOINT_TABLES)

    def _invoke(self, run_id: str, value: object) -> None:
        audited: set[str] = set()
        try:
            # Sync durability: a step's checkpoint is on disk before the next step starts, so a crash loses at most
            # the step in flight. The audit log follows the checkpoints, step by step, never ahead of them.
            for update in self.graph.stream(value, self._config(run_id), context=self.services, stream_mode="updates", durability="sync"):
                self._observe(update)
                self._audit_persisted(run_id, audited)
        except Exception as exc:
            self._audit_persisted(run_id, audited)
            self._runs.set_status(run_id, "failed", f"{type(exc).__name__}: {exc}")
            raise
        self._audit_persisted(run_id, audited)
        status = "waiting" if self.graph.get_state(self._config(run_id)).next == ("await_rep",) else "done"
        self._runs.set_status(run_id, status, None)

    def _observe(self, update: dict) -> None:
        for output in update.values():
            for trace in (output or {}).get("trace", []) if isinstance(output, dict) and self.on_step else []:
                self.on_step(trace)

    def _audit_persisted(self, run_id: str, audited: set[str]) -> None:
        """Log the steps whose checkpoint is written: a step a crash cut off is redone, and logged once, when it is."""
        for trace in self.graph.get_state(self._config(run_id)).values.get("trace", []):
            key = f"{trace.step}:{trace.started_at.isoformat()}"
            if key not in audited:  # the audit log itself is idempotent too; this only saves the writes
                audited.add(key)
                log_step(self.services.audit, trace)
                failpoint(f"after_step:{trace.step}")

    def _config(self, run_id: str) -> dict:
        return {"configurable": {"thread_id": run_id}}


def _check_same_answer(run_id: str, decided: RepDecision | None, response: HumanResponse) -> None:
    """A retry of the decision already taken passes; a different one is refused, never applied in its place."""
    if decided is None:
        raise RunError(f"run {run_id} ended without asking for a decision: its route recorded the lead only")
    wanted = response.to_decision(decided.decided_at)
    same_slot = response.slot_index is None or response.slot_index == decided.slot_index
    if (wanted.decision, wanted.final_text, wanted.reason) != (decided.decision, decided.final_text, decided.reason) or not same_slot:
        chose = f", slot {decided.slot_index}" if decided.slot_index is not None else ""
        raise RunError(f"run {run_id} was already decided: {decided.decision}{chose} by {decided.rep_id} at {decided.decided_at:%Y-%m-%d %H:%M}")


def _sent_back_message(state: RunState) -> str:
    slots = ", ".join(f"{i}: {slot.label()}" for i, slot in enumerate(state.plan.slots)) or "none; arrange the meeting by hand"
    return f"{state.conflicts[-1].describe()}. Run {state.run_id} waits again with new slots ({slots}); decide again"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _info(row: tuple) -> RunInfo:
    keys = ["run_id", "event_id", "event_type", "status", "created_at", "updated_at", "error"]
    return RunInfo.model_validate(dict(zip(keys, row)))
