"""`salesloop serve`: CRM webhooks in, a durable queue, the approvals API, the reps' web inbox, and /metrics.

Every accepted webhook event is committed to the queue before the 2xx answer; workers turn queued events into runs.
Bad input is a 4xx with a message, never a 5xx, and nothing is stored half-way.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Request
from fastapi import Path as FastAPIPath
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.inbox import ActionRequest, HumanResponse, InvalidDecision
from agents.schedule import slot_status
from agents.services import Services
from orchestrator import Orchestrator, RunError, RunInfo, RunStatus, UnknownRun
from provenance import StepTrace
from service.auth import AuthError, Principal, TokenStore, require
from service.learning import Learner, LearningStatus, round_counts
from service.learning import status as learning_status
from service.metrics import LearningCollector, Metrics, StoreCollector
from service.queue import EventQueue, ItemNotFound, QueueError, QueueStatus
from service.signatures import HMAC_HEADER, SignatureError, verify_hmac_sha256, verify_hubspot_v3
from service.webhooks import Mapped, WebhookError, load_mapping, parse_generic, parse_hubspot, parse_salesforce
from service.completion import complete as complete_event
from tools.crm.connector import ConnectorError
from service.worker import Workers

STATIC = Path(__file__).resolve().parent / "static"
WRITEBACK_SOURCE = "crm-writeback"  # the queue's source for a decided run whose CRM write-back is retried


class DecisionRequest(BaseModel):
    """A rep's answer in Agent Inbox's HumanResponse shape; who decides comes from the API token."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="accept | edit | response (reject with the reason as args) | ignore")
    args: ActionRequest | str | None = None
    slot_index: int | None = Field(default=None, ge=0, description="which proposed slot to book; left out: the first")


def create_app(services: Services, start_workers: bool = True) -> FastAPI:
    settings = services.settings
    service = settings.service
    services.places  # the place table is checked at start-up, not at the first lead
    # Off by default: without learning.enabled there is no thread, no lock file, no extra metric.
    learner = Learner.from_services(services) if settings.learning.enabled else None
    orch = Orchestrator(services)
    queue = EventQueue.from_settings(settings)
    tokens = TokenStore(settings.resolve(service.tokens_file))
    metrics = Metrics(StoreCollector(queue.counts_by_source, lambda: len(orch.runs("waiting")),
                                     lambda: Counter(r.decision for r in services.feedback.all())))
    orch.on_step = lambda step: _observe(step, metrics, learner)
    if learner is not None:
        metrics.registry.register(LearningCollector(lambda: learning_status(services, learner),
                                                    lambda: round_counts(services)))
    mappings = {name: load_mapping(src.kind, src.mapping) for name, src in service.sources.items() if src.kind != "generic"}
    workers = Workers(orch, queue, service.workers, service.lease_s, services.clock,
                      complete=lambda event: complete_event(event, services.connector, mappings))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if start_workers:
            workers.start()
        if learner is not None:
            learner.start()
        yield
        if learner is not None:
            learner.stop()  # first: a round in training stops at its next step
        workers.stop()
        orch.close()

    app = FastAPI(title="salesloop", version="0.1.0", lifespan=lifespan,
                  description="CRM webhooks in, drafts out for a rep's decision; every step traced to its sources.")
    app.state.orch, app.state.queue, app.state.workers, app.state.tokens = orch, queue, workers, tokens
    app.state.learner = learner
    _error_handlers(app)
    app.middleware("http")(_security_headers)

    @app.post("/webhooks/{source}", status_code=202, tags=["ingestion"])
    async def webhook(source: str, request: Request) -> dict:
        """Authenticate, parse and durably queue a CRM's webhook delivery; a redelivered event id is accepted once."""
        if source not in service.sources:
            raise AuthError(404, f"no webhook source {source!r}; configured: {', '.join(sorted(service.sources))}")
        body = await _read_body(request, service.max_body_bytes)
        src = service.sources[source]
        secret = os.environ.get(src.secret_env, "")
        if not secret:
            raise AuthError(503, f"webhook source {source!r} has no secret: set the environment variable {src.secret_env}")
        _verify(src.kind, secret, request, body, service.public_url)
        mapped = _parse(src.kind, body, mappings.get(source), services)
        if all(item.rejected for item in mapped):  # nothing in the delivery is what the source sends: the delivery is bad
            raise WebhookError("; ".join(dict.fromkeys(item.rejected for item in mapped)))
        # Each event stands alone: the good ones are queued in one transaction before the answer, a bad one is
        # reported with its reason and not queued (no retry can make it valid), an unmapped one is reported ignored.
        events = [item for item in mapped if item.event is not None]
        stored = iter(queue.enqueue_many(source, [(item.external_id, item.event) for item in events], services.clock()))
        workers.wake()
        results = [_outcome(item, next(stored) if item.event is not None else None) for item in mapped]
        return {"events": results,
                "accepted": [r for r in results if r["outcome"] == "accepted"],
                "ignored": [r for r in results if r["outcome"] == "ignored"],
                "rejected": [r for r in results if r["outcome"] == "rejected"]}

    @app.get("/api/me", tags=["approvals"])
    def me(caller: Caller) -> Principal:
        return caller

    @app.get("/api/runs", tags=["approvals"])
    def list_runs(caller: Caller, status: RunStatus | Literal["all"] = "waiting") -> dict:
        """Runs the caller may see, with what the inbox lists for each."""
        rows = []
        for info in orch.runs(status if status != "all" else None):
            if info.status == "erased":
                continue
            state = orch.state(info.run_id)
            if state.lead is None or not caller.may_read(state.lead.owner_rep_id):
                continue
            rows.append({"run": info.model_dump(mode="json"), "company": state.lead.account_name,
                         "contact": state.lead.contact_name, "owner_rep_id": state.lead.owner_rep_id,
                         "grade": state.grade.grade if state.grade else None, "score": state.grade.score if state.grade else None,
                         "route": state.route, "draft": state.draft.text if state.draft else None})
        return {"runs": rows}

    @app.get("/api/runs/{run_id}", tags=["approvals"])
    def show_run(run_id: str, caller: Caller) -> dict:
        """One run: grade with reasons, cases, the draft with its sentences' sources, slots, clauses, the interrupt."""
        info, state = _readable(run_id, caller)
        interrupt = orch.pending_interrupt(run_id)
        return {"run": info.model_dump(mode="json"), "state": state.model_dump(mode="json", exclude={"draft": {"messages"}}),
                "slot_status": [s.model_dump(mode="json") for s in slot_status(services.calendar, state)],
                "interrupt": interrupt, "may_decide": info.status == "waiting" and caller.may_decide(_owner(state)),
                "outcomes": [o.model_dump(mode="json") for o in orch.outcomes(run_id)]}

    @app.post("/api/runs/{run_id}/decision", tags=["approvals"])
    def decide(run_id: str, answer: DecisionRequest, caller: Caller) -> dict:
        """Adopt (accept), edit (args.args.draft) or reject (response, with the reason): as `salesloop decide`."""
        info, state = _readable(run_id, caller)
        if not caller.may_decide(_owner(state)):
            raise AuthError(403, f"{caller.name} ({caller.role}) may not decide run {run_id}: its lead belongs to {_owner(state) or 'nobody yet'}")
        try:
            response = HumanResponse(type=answer.type, args=answer.args, rep_id=caller.decides_as, slot_index=answer.slot_index)
        except ValidationError as exc:
            raise WebhookError(_first_error(exc)) from None
        try:
            info = orch.decide(run_id, response)
        except ConnectorError as exc:
            # The decision is checkpointed; the CRM write-back failed. A worker finishes it from the queue with backoff,
            # then dead-letters it; the writes carry external ids, so a retry never duplicates what already landed.
            queued, _ = queue.enqueue(WRITEBACK_SOURCE, f"{run_id}:apply", orch.state(run_id).event, services.clock())
            workers.wake()
            return JSONResponse({"run": orch.info(run_id).model_dump(mode="json"),
                                 "writeback": {"status": "queued", "queue_id": queued.id, "error": str(exc)}}, status_code=202)
        state = orch.state(run_id)
        return {"run": info.model_dump(mode="json"), "decision": state.decision.model_dump(mode="json"),
                "applied": state.applied.model_dump(mode="json") if state.applied else None}

    @app.get("/api/runs/{run_id}/trace", tags=["audit"])
    def run_trace(run_id: str, caller: Caller) -> dict:
        info, state = _readable(run_id, caller)
        return {"run": info.model_dump(mode="json"), "steps": [s.model_dump(mode="json") for s in state.trace]}

    @app.get("/api/audit/verify", tags=["audit"])
    def audit_verify(caller: Caller) -> dict:
        require(caller, "auditor", "admin")
        return services.audit.verify().model_dump(mode="json")

    @app.get("/api/learning", tags=["learning"])
    def learning(caller: Caller) -> LearningStatus:
        """Continuous learning: decisions toward the next round, candidates awaiting approval, the latest rounds."""
        require(caller, "manager", "admin", "auditor")
        return learning_status(services, learner)

    @app.get("/api/queue", tags=["ingestion"])
    def queue_list(caller: Caller, status: QueueStatus | None = None) -> dict:
        """Queued events, newest first; `status=dead` is the dead-letter table."""
        require(caller, "admin", "auditor")
        return {"counts": queue.counts(), "items": [q.model_dump(mode="json") for q in queue.list(status)]}

    @app.post("/api/queue/{item_id}/replay", tags=["ingestion"])
    def queue_replay(item_id: Annotated[int, FastAPIPath(ge=1, le=2**63 - 1)], caller: Caller) -> dict:
        require(caller, "admin")
        item = queue.replay(item_id, services.clock())
        workers.wake()
        return item.model_dump(mode="json")

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    @app.get("/inbox", include_in_schema=False)
    def inbox_page() -> FileResponse:
        return FileResponse(STATIC / "inbox.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def _readable(run_id: str, caller: Principal) -> tuple[RunInfo, Any]:
        info, state = orch.info(run_id), orch.state(run_id)
        if not caller.may_read(_owner(state)):
            raise AuthError(403, f"{caller.name} ({caller.role}) may not see run {run_id}")
        return info, state

    return app


def _observe(step: StepTrace, metrics: Metrics, learner: Learner | None) -> None:
    metrics.observe([step])
    if learner is not None and step.step == "apply":  # a decision has landed in the feedback store: count again
        learner.wake()


def _principal(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    return request.app.state.tokens.authenticate(authorization)


Caller = Annotated[Principal, Depends(_principal)]


_PAGE_HEADERS = {
    # The inbox shows CRM data and model output: no inline script may run, whatever a record contains.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def _security_headers(request: Request, call_next):
    response = await call_next(request)
    response.headers.update(_PAGE_HEADERS)
    if request.url.path.startswith("/api/"):
        response.headers["Cache-Control"] = "no-store"
    return response


def _owner(state: Any) -> str | None:
    return state.lead.owner_rep_id if state.lead else None


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    # A length with more digits than any real body has is refused before int() is asked to parse it.
    if declared and declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise PayloadTooLarge(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:  # a missing or false Content-Length does not get past the limit
            raise PayloadTooLarge(limit)
    return bytes(body)


def _verify(kind: str, secret: str, request: Request, body: bytes, public_url: str | None) -> None:
    if kind == "hubspot":
        # HubSpot signs the URL it called; behind a proxy that is the public URL, not the one we see.
        uri = (public_url.rstrip("/") + request.url.path + (f"?{request.url.query}" if request.url.query else "")) if public_url else str(request.url)
        verify_hubspot_v3(secret, request.method, uri, body, request.headers.get("x-hubspot-signature-v3"),
                          request.headers.get("x-hubspot-request-timestamp"), int(time.time() * 1000))
    else:
        verify_hmac_sha256(secret, body, request.headers.get(HMAC_HEADER))


def _outcome(item: Mapped, stored: tuple | None) -> dict:
    """One event's line in the answer to its delivery."""
    if item.event is not None:
        queued, new = stored
        return {"external_id": item.external_id, "kind": item.kind, "outcome": "accepted", "queue_id": queued.id, "new": new,
                "needs_fetch": item.event.type == "crm_change"}
    outcome, reason = ("ignored", item.ignored) if item.ignored is not None else ("rejected", item.rejected)
    return {"external_id": item.external_id, "kind": item.kind, "outcome": outcome, "reason": reason}


def _parse(kind: str, body: bytes, mapping: Any, services: Services) -> list[Mapped]:
    if kind == "hubspot":
        return parse_hubspot(body, mapping, services.crm)
    if kind == "salesforce":
        return parse_salesforce(body, mapping, services.crm)
    return parse_generic(body)


class PayloadTooLarge(Exception):
    def __init__(self, limit: int):
        super().__init__(f"the body is larger than {limit} bytes (service.max_body_bytes); split the batch")


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"]) or "body"
    return f"{where}: {error['msg']}"


def _error_handlers(app: FastAPI) -> None:
    """Every failure a client can cause is a 4xx with one readable message; nothing else leaks."""

    def reply(status: int, message: str) -> JSONResponse:
        return JSONResponse({"detail": message[:500]}, status_code=status)

    app.add_exception_handler(AuthError, lambda _, exc: reply(exc.status, str(exc)))
    app.add_exception_handler(SignatureError, lambda _, exc: reply(401, str(exc)))
    app.add_exception_handler(WebhookError, lambda _, exc: reply(400, str(exc)))
    app.add_exception_handler(InvalidDecision, lambda _, exc: reply(400, str(exc)))
    app.add_exception_handler(PayloadTooLarge, lambda _, exc: reply(413, str(exc)))
    app.add_exception_handler(ItemNotFound, lambda _, exc: reply(404, str(exc)))
    app.add_exception_handler(QueueError, lambda _, exc: reply(409, str(exc)))
    app.add_exception_handler(UnknownRun, lambda _, exc: reply(404, str(exc)))
    app.add_exception_handler(RunError, lambda _, exc: reply(409, str(exc)))
    app.add_exception_handler(RequestValidationError, lambda _, exc: reply(422, _request_error(exc)))


def _request_error(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "the request is not valid"
    error = errors[0]
    return f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
