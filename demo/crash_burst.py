"""A SIGKILL mid-burst: two `salesloop serve` processes share one PostgreSQL database, a burst of CRM events comes in
through both, one process is killed outright while it holds an event, and it is restarted at once.

Measured: the time from the restart until every event is `done`, which items the killed process held, which lease
owners held each item (two live processes must never hold the same one), and the side effects counted after every
drafted run is adopted: bookings, feedback records and audit entries, each expected once; what is missing is lost,
what is there more than once is duplicated. Used by tests/test_crash_recovery.py and `bench/load.py --crash`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from pydantic import BaseModel, ConfigDict, Field

from agents.inbox import adopt
from agents.services import Services
from configs import load_settings
from configs.settings import Settings
from orchestrator import NODES, Orchestrator, SentBack, run_id_for
from service.owners import Owner
from service.queue import EventQueue
from service.signatures import HMAC_HEADER, sign_hmac_sha256
from tools.calendar import booking_uid
from tools.crm.records import CRMEvent
from tools.sql import connect_postgres, postgres_url

RECORDED_STEPS = ["normalize", "grade_lead"]  # a lead graded too low for a draft ends after these
DRAFTED_STEPS = [name for name, _ in NODES]
REPLANNED_STEPS = ("apply", "plan_schedule", "await_rep")  # run again, each traced and audited, when a slot was taken
MAX_SEND_BACKS = 5


class ServeProcess:
    """One `salesloop serve` process on a free loopback port, its stderr in a log file (nobody reads a pipe)."""

    def __init__(self, config: Path, env: dict[str, str], log_dir: Path, ready_timeout_s: float = 300):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / f"serve-{self.port}.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--config", str(config), "--port", str(self.port)],
                                         env=env, stdout=subprocess.DEVNULL, stderr=log)
        self.ready_timeout_s = ready_timeout_s

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self) -> ServeProcess:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/openapi.json", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"serve did not come up in {self.ready_timeout_s:.0f} s: {self.log.read_text()[-2000:]}")

    def post(self, event: CRMEvent, secret: str) -> dict:
        body = json.dumps(event.model_dump(mode="json")).encode()
        answer = httpx.post(f"{self.url}/webhooks/generic", content=body, headers={HMAC_HEADER: sign_hmac_sha256(secret, body)}, timeout=60)
        assert answer.status_code == 202, answer.text
        return answer.json()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()


class SideEffect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expected: int
    lost: int = Field(description="expected, not there")
    duplicated: int = Field(description="there more than once (each extra copy counts), or there and not expected")


class CrashBurstResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: int
    drafted: int
    lease_s: float
    killed_holding: list[int] = Field(description="queue items the killed process held when it died")
    done_before_kill: int
    seconds_to_serving: float = Field(description="from the restart (launch) until the restarted process answers")
    seconds_to_done: float = Field(description="from the restart (launch) until every item is done")
    queue: dict[str, int]
    attempts: dict[int, int] = Field(description="failed attempts per item, for items with any")
    owners: dict[str, list[str]] = Field(description="process (A, B, restarted A) → the lease owners seen holding items")
    held_by_two: list[int] = Field(description="items seen held by two processes, other than those the killed one held")
    bookings: SideEffect
    feedback: SideEffect
    audit: SideEffect
    sent_back: int = Field(description="adopts sent back because another run of the burst had booked the slot; each one "
                                       "re-plans, so its apply, plan_schedule and await_rep steps are audited once more")


class _Sampler:
    """Which owners held which items, and the items per status, read from the queue table every `every_s` in a thread
    of its own, on one connection: the servers, not this watcher, should have the CPU."""

    def __init__(self, url: str, every_s: float = 0.2):
        self.url, self.every_s = url, every_s
        self.seen: dict[int, set[str]] = {}
        self.counts: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def settled(self) -> bool:
        return bool(self.counts) and not (self.counts.get("queued") or self.counts.get("processing"))

    def _loop(self) -> None:
        with connect_postgres(self.url, autocommit=True) as db:
            while not self._stop.wait(self.every_s):
                for item_id, owner in db.execute("SELECT id, lease_owner FROM queue WHERE status = 'processing'").fetchall():
                    self.seen.setdefault(item_id, set()).add(owner)
                self.counts = dict(db.execute("SELECT status, count(*) FROM queue GROUP BY status").fetchall())


def crash_burst(configs: tuple[Path, Path], events: list[CRMEvent], drafted: set[str], secret: str, log_dir: Path,
                timeout_s: float = 900) -> CrashBurstResult:
    """Run the scenario on two configs that share data_dir and a PostgreSQL database (SALESLOOP_POSTGRES_URL or the
    config's url_env set in this process's environment) and differ in vector_store.path (Qdrant local mode is one
    process per directory). `drafted`: the ids of the events that get a draft; the rest are recorded without one."""
    settings = load_settings(configs[0])
    env = {**os.environ, "SALESLOOP_WEBHOOK_SECRET": secret}
    queue = EventQueue.from_settings(settings)
    servers = [ServeProcess(config, env, log_dir) for config in configs]
    try:
        first, second = (server.wait_ready() for server in servers)
        with _Sampler(postgres_url(settings.database)) as sampler:
            for n, event in enumerate(events):
                (first if n % 2 == 0 else second).post(event, secret)
            held, done_before = _kill_holding(first, queue, len(events), timeout_s)
            restarted_at = time.monotonic()
            restarted = ServeProcess(configs[0], env, log_dir)
            servers.append(restarted)
            restarted.wait_ready()
            serving_at = time.monotonic()
            _wait(sampler.settled, timeout_s, "every item to be settled")
            done_at = time.monotonic()
    finally:
        for server in servers:
            server.stop()
    owners = {label: _owners_of(server.pid, sampler.seen) for label, server in zip(("A", "B", "A restarted"), servers)}
    items = queue.list(limit=len(events) + 1)
    effects, sent_back = count_side_effects(settings, events, drafted)
    return CrashBurstResult(
        events=len(events), drafted=len(drafted), lease_s=settings.service.lease_s, killed_holding=held, done_before_kill=done_before,
        seconds_to_serving=serving_at - restarted_at, seconds_to_done=done_at - restarted_at, queue=queue.counts(),
        attempts={i.id: i.attempts for i in items if i.attempts}, owners=owners,
        held_by_two=sorted(i for i, holders in sampler.seen.items() if len({_pid(h) for h in holders}) > 1 and i not in held),
        sent_back=sent_back, **effects)


def _kill_holding(server: ServeProcess, queue: EventQueue, total: int, timeout_s: float) -> tuple[list[int], int]:
    """SIGKILL `server` mid-burst while it holds an item: frozen first (SIGSTOP), so what it holds cannot change
    between looking and killing. Returns the items it held and how many were done before."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = queue.counts()["done"]
        if done >= total:
            raise AssertionError("the burst finished before the process to kill held an item: make the burst larger")
        server.proc.send_signal(signal.SIGSTOP)
        held = [i.id for i in queue.list("processing", limit=1000) if _pid(i.lease_owner) == server.pid]
        if held and done:  # mid-burst: some work done, and this process in the middle of more
            server.kill()
            return held, done
        server.proc.send_signal(signal.SIGCONT)
        time.sleep(0.2)
    raise AssertionError("the process to kill never held an item")


def count_side_effects(settings: Settings, events: list[CRMEvent], drafted: set[str]) -> tuple[dict[str, SideEffect], int]:
    """Adopt every drafted run that waits, then count bookings, feedback records and audit entries per event; also
    returns how many adopts were sent back (their slot taken by another run of the burst)."""
    with Services(settings) as services, Orchestrator(services) as orch:
        for event in events:
            run_id = run_id_for(event)
            info = orch.info(run_id, missing_ok=True)
            if info is not None and info.status == "waiting":
                _adopt(orch, run_id, settings.rep_id)
        calendars = "".join(p.read_text() for p in settings.resolve(settings.scheduling.calendar_dir).glob("*.ics"))
        audit = Counter((e.subject, e.kind, e.data.get("step")) for e in services.audit.entries() if e.kind in ("step", "decision"))
        bookings, feedback, logged, sent_back = [], [], [], 0
        for event in events:
            run_id, is_drafted = run_id_for(event), event.id in drafted
            replans = 0
            if is_drafted:
                bookings.append((1, calendars.count(booking_uid(run_id))))
                feedback.append((1, len(services.feedback.for_run(run_id))))
                logged.append((1, audit.pop((run_id, "decision", None), 0)))
                replans = len(orch.state(run_id).conflicts)
                sent_back += replans
            for step in DRAFTED_STEPS if is_drafted else RECORDED_STEPS:
                logged.append((1 + (replans if step in REPLANNED_STEPS else 0), audit.pop((run_id, "step", step), 0)))
        logged += [(0, count) for count in audit.values()]  # entries no event should have made
    return {"bookings": _tally(bookings), "feedback": _tally(feedback), "audit": _tally(logged)}, sent_back


def _adopt(orch: Orchestrator, run_id: str, rep_id: str) -> None:
    """Adopt a waiting run; if its slot went to another run of the burst meanwhile, adopt again on the new slots."""
    for _ in range(MAX_SEND_BACKS):
        try:
            orch.decide(run_id, adopt(rep_id))
            return
        except SentBack:
            continue
    raise AssertionError(f"run {run_id} was sent back {MAX_SEND_BACKS} times")


def _tally(pairs: list[tuple[int, int]]) -> SideEffect:
    """(expected, found) per side effect → how many were expected, lost and duplicated."""
    return SideEffect(expected=sum(e for e, _ in pairs), lost=sum(max(e - f, 0) for e, f in pairs),
                      duplicated=sum(max(f - e, 0) for e, f in pairs))


def _owners_of(pid: int, seen: dict[int, set[str]]) -> list[str]:
    return sorted({h for holders in seen.values() for h in holders if _pid(h) == pid})


def _pid(owner: str | None) -> int | None:
    parsed = Owner.parse(owner)
    return parsed.pid if parsed else None


def _wait(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.2)


def interleave(drafted: list[CRMEvent], cold: list[CRMEvent]) -> list[CRMEvent]:
    """The drafted events spread through the cold ones: a draft, then its share of cold leads, the next draft, ..."""
    if not drafted:
        return list(cold)
    share = -(-len(cold) // len(drafted))
    return [e for n, draft in enumerate(drafted) for e in (draft, *cold[n * share:(n + 1) * share])]


def second_vector_store(data_dir: Path, path: str = "qdrant", copy: str = "qdrant-b") -> str:
    """A copy of the indexed Qdrant local directory for the second process; its path relative to data_dir."""
    shutil.copytree(data_dir / path, data_dir / copy)
    return copy
