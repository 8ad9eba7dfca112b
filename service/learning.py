"""Continuous learning in `salesloop serve`: a LoRA round once enough new rep decisions have accumulated.

One job: decide when a round is due, run it in a background thread, put the candidate through the evaluation gate,
and promote it (`learning.promotion: auto`) or leave it registered for a person's approval (`approval`, the default).
Rounds never run in a request handler; one runs at a time in a process (one thread runs them, behind a mutex) and
across processes (a lock file in the data dir). Every step is an audit entry. A round that fails anywhere changes
nothing that is served: the registry changes what it serves only in `promote`, atomically, after the gate passed.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from agents.services import Services
from configs.loader import ConfigError, load_yaml_model
from configs.settings import FINETUNE_CPU, LearningSettings
from finetune.evaluate import EvalReport, dataset_dir
from finetune.promotion import PromotionRefused, gate, promote_through_gate
from finetune.records import AdapterMetadata, DatasetManifest, FinetuneSettings
from finetune.registry import AdapterRegistry
from provenance import sha256_text
from provenance.audit import AuditEntry, AuditKind
from tools.locks import try_exclusive

if TYPE_CHECKING:
    from finetune.rounds import RoundResult

log = logging.getLogger("salesloop.learning")
LOCK_FILE = "learning.lock"
ROUND_KINDS: tuple[AuditKind, ...] = ("round_started", "round_finished", "round_failed", "gate_passed", "gate_failed",
                                      "awaiting_approval")
Outcome = Literal["promoted", "awaiting_approval", "gate_failed", "failed", "busy"]
ERROR_CHARS = 500  # an exception's message in the audit log: enough to act on, never a whole traceback


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Backlog(Strict):
    """What a round would learn from now."""

    serving: str | None = Field(description="the promoted adapter; None = the base model")
    decisions: int = Field(description="decisions in the feedback store")
    new: int = Field(description="decisions no round of the served adapter's lineage or of an unserved candidate "
                                 "(awaiting approval, refused by the gate, in an A/B test) trained on or held out")


class RoundOutcome(Strict):
    round_id: str | None = Field(description="None when no round ran (another process holds the lock)")
    outcome: Outcome
    version: str | None = None
    error: str | None = None


class PendingApproval(Strict):
    version: str
    round_id: str
    at: datetime
    approve_with: str
    gate: dict[str, JsonValue]


class LearningStatus(Strict):
    """What a manager looks at: is learning on, how far is the next round, what waits for approval, what happened."""

    enabled: bool
    promotion: Literal["approval", "auto"]
    every_decisions: int
    backlog: Backlog
    running: str | None = Field(description="the round this process is running, if any")
    pending_approvals: list[PendingApproval]
    rounds: list[AuditEntry] = Field(description="the latest continuous-learning audit entries, newest first")


class RoundInterrupted(Exception):
    """The service is stopping: training stops at its next step."""


def backlog(services: Services) -> Backlog:
    registry = services.adapters
    serving = registry.promoted()
    # What the served adapter's lineage used, and what every candidate not served yet used: a refused or unapproved
    # candidate must not make the same data due again (that would retrain on it at every check). The next round
    # trains on those decisions anyway, since they are not in the served lineage.
    versions = _lineage(registry, serving) | {e.metadata.version for e in registry.entries() if e.status != "retired"}
    used = set().union(*(_decisions_used(services, registry.get(v)) for v in versions))
    ids = services.feedback.ids()
    return Backlog(serving=serving, decisions=len(ids), new=len(ids - used))


def _lineage(registry: AdapterRegistry, version: str | None) -> set[str]:
    versions = set()
    while version is not None:
        versions.add(version)
        version = registry.get(version).parent_version
    return versions


def _decisions_used(services: Services, metadata: AdapterMetadata) -> set[str]:
    """The decisions a round used: trained on (in the metadata) and held out for its gate (in its datasets' manifests)."""
    used = set(metadata.record_ids)
    for path in dataset_dir(services, metadata.dataset_manifest_sha256).glob("*/manifest.json"):
        used.update(DatasetManifest.model_validate_json(path.read_bytes()).eval_record_ids)
    return used


def pending_approvals(services: Services) -> list[PendingApproval]:
    """Candidates that passed the gate in approval mode and are not served or retired yet."""
    status = {e.metadata.version: e.status for e in services.adapters.entries()}
    unserved = {version for version, s in status.items() if s in ("available", "candidate")}
    waiting = [e for e in services.audit.entries(kind="awaiting_approval") if e.subject in unserved]
    return [PendingApproval(version=e.subject, round_id=str(e.data["round_id"]), at=e.at,
                            approve_with=str(e.data["approve_with"]), gate=e.data["gate"]) for e in waiting]


def round_entries(services: Services, limit: int = 50) -> list[AuditEntry]:
    entries = [e for kind in ROUND_KINDS for e in services.audit.entries(kind=kind)]
    return sorted(entries, key=lambda e: e.seq, reverse=True)[:limit]


def round_counts(services: Services) -> Counter:
    """Rounds ended, by outcome, from the audit log (so they survive restarts and agree across processes)."""
    counts = Counter(str(e.data["outcome"]) for e in services.audit.entries(kind="round_finished"))
    counts["failed"] += len(services.audit.entries(kind="round_failed"))
    return counts


def status(services: Services, learner: Learner | None) -> LearningStatus:
    settings = services.settings.learning
    return LearningStatus(enabled=learner is not None, promotion=settings.promotion,
                          every_decisions=settings.every_decisions, backlog=backlog(services),
                          running=learner.running if learner else None,
                          pending_approvals=pending_approvals(services), rounds=round_entries(services))


def gate_services_for(services: Services) -> Services | None:
    """Services that can score adapters: llama.cpp and remote servers cannot, so the gate loads the weights locally."""
    llm = services.settings.llm
    if llm.backend == "transformers":
        return None
    if llm.hf_dir is None and llm.gguf_file is None:
        raise ConfigError(f"learning.enabled: the evaluation gate scores with local weights, but llm.backend "
                          f"is {llm.backend} with neither llm.hf_dir nor llm.gguf_file; set one to the served model's "
                          "weights, or set learning.enabled: false")
    scoring = services.settings.model_copy(update={"llm": llm.model_copy(update={"backend": "transformers"})})
    return Services(scoring, clock=services.clock)


class Learner:
    """Runs due rounds in one background thread; `wake` after a decision landed, `check` for one pass."""

    def __init__(self, services: Services, settings: LearningSettings, finetune: FinetuneSettings,
                 gate_services: Services | None = None):
        self.services, self.settings, self.finetune, self.gate_services = services, settings, finetune, gate_services
        self.running: str | None = None
        self._retry_at: int | None = None  # after a failed round: the backlog that makes the next one due
        self._busy = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_services(cls, services: Services) -> Learner:
        """A broken fine-tuning file or an unscorable backend fails here, at start-up, not at the first round."""
        settings = services.settings.learning
        finetune = load_yaml_model(settings.finetune_config, FinetuneSettings)
        return cls(services, settings, finetune, gate_services_for(services))

    # ---------------------------------------------------------------- the thread

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="salesloop-learning")
        self._thread.start()

    def stop(self, timeout_s: float = 60) -> None:
        """Stop the thread; a round in training stops at its next step and is audited as failed (nothing is served)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def wake(self) -> None:
        """A decision landed: count again now (cheap; the round itself runs in the thread)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.check()
            except Exception:  # noqa: BLE001 - a database hiccup while counting must not end continuous learning
                log.exception("continuous learning: counting decisions failed; trying again in %.0f s",
                              self.settings.check_every_s)
            self._wake.wait(self.settings.check_every_s)

    # ---------------------------------------------------------------- one pass

    def due(self, current: Backlog) -> bool:
        return current.new >= (self._retry_at or self.settings.every_decisions)

    def check(self) -> RoundOutcome | None:
        """Run a round if one is due; None if none was. Never raises for a failed round: that is audited instead."""
        with self._busy:
            if not self.due(backlog(self.services)):
                return None
            with try_exclusive(self.services.settings.data_dir / LOCK_FILE) as mine:
                if not mine:
                    log.info("a round is due, but another process is running one; counting again later")
                    return RoundOutcome(round_id=None, outcome="busy")
                current = backlog(self.services)  # again, under the lock: the other process may just have covered it
                return self._round(current) if self.due(current) else None

    def _round(self, current: Backlog) -> RoundOutcome:
        round_id = f"round-{self.services.clock():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        version, stage = None, "training"
        self._audit(round_id, "round_started", round_id, {
            "serving": current.serving, "new_decisions": current.new, "decisions": current.decisions,
            "every_decisions": self.settings.every_decisions, "promotion": self.settings.promotion,
            "finetune_config": str(self.settings.finetune_config),
            "finetune_sha256": sha256_text(self.finetune.model_dump_json())})
        self.running = round_id
        try:
            from finetune.rounds import feedback_round

            result = feedback_round(self.services, self.finetune, progress=self._progress)
            version = result.adapter.version
            stage = "gate" if self.settings.promotion == "approval" else "gate and promotion"
            outcome = self._gate(round_id, version)
        except Exception as exc:  # noqa: BLE001 - any failure: audited, and what is served stays as it was
            return self._failed(round_id, version, stage, current, exc)
        finally:
            self.running = None
        self._retry_at = None
        self._audit(round_id, "round_finished", round_id, {
            "outcome": outcome, "version": version, "serving": self.services.adapters.promoted(), **_trained(result)})
        log.info("continuous learning: %s trained %s: %s", round_id, version, outcome)
        return RoundOutcome(round_id=round_id, outcome=outcome, version=version)

    def _gate(self, round_id: str, version: str) -> Outcome:
        if self.settings.promotion == "auto":
            try:
                report = promote_through_gate(self.services, version, self.finetune, self.gate_services)
            except PromotionRefused as refused:
                self._audit(round_id, "gate_failed", version, _verdict(round_id, refused.report))
                return "gate_failed"
            self._audit(round_id, "gate_passed", version, {**_verdict(round_id, report), "promoted": True})
            return "promoted"
        report = gate(self.services, version, self.finetune, self.gate_services)
        if not report.passed:
            self._audit(round_id, "gate_failed", version, _verdict(round_id, report))
            return "gate_failed"
        self._audit(round_id, "gate_passed", version, {**_verdict(round_id, report), "promoted": False})
        # `adapters promote` runs the gate again: against what is served then, which may have changed meanwhile.
        self._audit(round_id, "awaiting_approval", version, {
            "round_id": round_id, "gate": _verdict(round_id, report)["gate"],
            "approve_with": self._approve_with(version)})
        return "awaiting_approval"

    def _approve_with(self, version: str) -> str:
        """The command that approves `version`, gating it with the same fine-tuning settings as the round did."""
        path = self.settings.finetune_config
        return f"salesloop adapters promote {version}" + ("" if path == FINETUNE_CPU else f" --finetune-config {path}")

    def _failed(self, round_id: str, version: str | None, stage: str, current: Backlog, exc: Exception) -> RoundOutcome:
        # A round that failed before it registered a candidate would fail the same way at every check (its config,
        # its data): not again until every_decisions more decisions came in, or a restart after a fix. A registered
        # candidate covers its decisions, so the usual count applies.
        self._retry_at = None if version else current.new + self.settings.every_decisions
        error = f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]
        self._audit(round_id, "round_failed", round_id, {
            "stage": stage, "version": version, "error": error, "serving": self.services.adapters.promoted(),
            "next_round_at_new_decisions": self._retry_at or self.settings.every_decisions})
        log.warning("continuous learning: %s failed in %s (%s); %s stays in service", round_id, stage, error,
                    self.services.adapters.promoted() or "the base model")
        return RoundOutcome(round_id=round_id, outcome="failed", version=version, error=error)

    def _progress(self, stage: str, step: int, total: int, metrics: dict[str, float]) -> None:
        if self._stop.is_set():
            raise RoundInterrupted(f"the service stopped during {stage} step {step} of {total}")

    def _audit(self, round_id: str, kind: AuditKind, subject: str, data: dict[str, JsonValue]) -> None:
        self.services.audit.append(f"learning:{round_id}:{kind}", kind, subject, data, at=self.services.clock())


def _verdict(round_id: str, report: EvalReport) -> dict[str, JsonValue]:
    return {"round_id": round_id, "gate": {
        "passed": report.passed, "reasons": report.reasons, "candidate": report.candidate.model_dump(mode="json"),
        "baseline": report.baseline.model_dump(mode="json"), "forgetting": report.forgetting}}


def _trained(result: RoundResult) -> dict[str, JsonValue]:
    return {"parent": result.adapter.parent_version, "train_records": len(result.adapter.record_ids),
            "dataset_manifest_sha256": result.adapter.dataset_manifest_sha256, "steps": result.training.steps,
            "train_seconds": result.training.seconds, "metrics": result.adapter.metrics}
