"""Workers: threads that take queued CRM events and run them through the graph, retrying failures with backoff.

A worker's lease is short (service.lease_s) and the process's heartbeat renews it while the worker works, so a long
draft keeps its event and a dead process's events come back within one lease. Lease owners name the process
(service/owners.py): at start-up a process takes over at once the events of dead processes on its own host.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from orchestrator import Orchestrator, run_id_for
from service.owners import Owner, this_process
from service.queue import EventQueue, QueueError, QueuedEvent
from tools.crm.records import CRMEvent
from tools.failpoints import failpoint

log = logging.getLogger("salesloop.worker")
HEARTBEATS_PER_LEASE = 3  # a lease survives two missed renewals (a slow database, a busy CPU)


class Heartbeat:
    """Renews the leases this process holds, every `every_s`, in a thread of its own."""

    def __init__(self, queue: EventQueue, clock: Callable[[], datetime], lease_s: float, every_s: float):
        self.queue, self.clock, self.lease_s, self.every_s = queue, clock, lease_s, every_s
        self._held: dict[int, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, item_id: int, owner: str) -> None:
        with self._lock:
            self._held[item_id] = owner

    def release(self, item_id: int) -> None:
        with self._lock:
            self._held.pop(item_id, None)

    def beat(self) -> None:
        """Renew every lease held now; a lease found lost is dropped (with a warning) and no longer renewed."""
        with self._lock:
            held = dict(self._held)
        if not held:
            return
        renewed = self.queue.renew(held, self.clock(), self.lease_s)
        with self._lock:
            lost = [i for i, owner in held.items() if i not in renewed and self._held.get(i) == owner]
            for item_id in lost:
                del self._held[item_id]
        for item_id in lost:
            # The worker goes on: a run is idempotent on its event, and completing an item that is not ours still counts.
            log.warning("queue item %s: the lease of %s ran out before a renewal and the item was taken back", item_id, held[item_id])

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="salesloop-heartbeat")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - a database hiccup must not end the renewals; the next beat retries
                log.exception("lease renewal failed; retrying in %.1f s", self.every_s)


class Workers:
    def __init__(self, orch: Orchestrator, queue: EventQueue, count: int, lease_s: float, clock: Callable[[], datetime],
                 idle_s: float = 1.0, heartbeat_s: float | None = None, complete: Callable[[CRMEvent], CRMEvent] | None = None):
        """`complete`: turns a thin `crm_change` event into the full event by fetching its records from the CRM;
        raises service.completion.Ignored when the records cannot make one."""
        self.orch, self.queue, self.count, self.lease_s, self.clock, self.idle_s = orch, queue, count, lease_s, clock, idle_s
        self.heartbeat = Heartbeat(queue, clock, lease_s, heartbeat_s or lease_s / HEARTBEATS_PER_LEASE)
        self.complete = complete
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self.recover()
        self.heartbeat.start()
        self._threads = [threading.Thread(target=self._loop, args=(f"worker-{i}",), daemon=True, name=f"salesloop-worker-{i}")
                         for i in range(self.count)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=120)
        self.heartbeat.stop()  # after the workers: an event still being finished keeps its lease

    def wake(self) -> None:
        self._wake.set()

    def owner(self, worker: str) -> str:
        """The lease owner name of `worker` in this process: host/pid/start time/worker."""
        return str(this_process(worker))

    def recover(self) -> list[str]:
        """Finish what a crash cut off, in agreement with the queue. Returns the runs resumed here.

        The events that dead processes on this host held are taken over at once: one whose run got past the start (it
        waits for its rep, or is done) ends `done` with that run, and is not processed again; any other is queued again,
        due at once, for the first free worker here or in another process, which resumes its run from the last
        checkpoint. Runs the queue will hand out like that (queued, dead, or held by a live worker) are left to it; the
        rest that a crash cut off (mid-graph, or mid side effects after the rep decided) are resumed here.
        """
        recovery = self.owner("recovery")
        for item in self.queue.take_over_dead(_dead_here, recovery, self.clock(), self.lease_s):
            log.warning("took over queue item %s: %s", item.id, item.last_error)
            self._settle_taken(item, recovery)
        resumed = self.orch.recover({run_id_for(item.event) for item in self.queue.unfinished()})
        for run_id in resumed:
            log.warning("resumed run %s, cut off by an earlier crash", run_id)
        return resumed

    def run_once(self, worker: str = "worker-0") -> bool:
        """Process one due event, if any; True if one was taken. Failures go back to the queue, never up."""
        owner = self.owner(worker)
        item = self.queue.claim(owner, self.clock(), self.lease_s)
        if item is None:
            return False
        self.heartbeat.hold(item.id, owner)
        try:
            self._process(item)
        finally:
            self.heartbeat.release(item.id)
        return True

    def _process(self, item: QueuedEvent) -> None:
        failpoint("worker:claimed")
        from service.completion import Ignored

        try:
            info, _ = self.orch.start(self._full(item.event))
        except Ignored as exc:  # the CRM's records cannot make a run: done, with the reason, and never retried
            self._settle(lambda: self.queue.complete(item.id, None, note=f"ignored: {exc}"), item)
            log.info("event %s from %s ignored: %s", item.external_id, item.source, exc)
        except Exception as exc:  # noqa: BLE001 - any failure is retried, then dead-lettered with its message
            self._settle(lambda: self.queue.fail(item.id, f"{type(exc).__name__}: {exc}", self.clock()), item)
            log.warning("event %s from %s failed: %s", item.external_id, item.source, exc)
        else:
            self._settle(lambda: self.queue.complete(item.id, info.run_id), item)

    def _settle_taken(self, item: QueuedEvent, owner: str) -> None:
        info = self.orch.info(run_id_for(item.event), missing_ok=True)
        if info is not None and info.status in ("waiting", "done", "erased"):
            self.queue.complete(item.id, info.run_id)
        else:  # a warm worker elsewhere may take it before this process has loaded its model
            self.queue.release(item.id, owner, self.clock())

    def _full(self, event: CRMEvent) -> CRMEvent:
        if event.type != "crm_change":
            return event
        if self.complete is None:
            raise RuntimeError("a crm_change event needs the CRM connector to fetch its records; no completion is configured")
        return self.complete(event)

    def _settle(self, action: Callable[[], object], item: QueuedEvent) -> None:
        try:
            action()
        except QueueError as exc:  # our lease ran out and another worker owns the item now: its outcome stands
            log.warning("event %s: %s", item.external_id, exc)

    def _loop(self, name: str) -> None:
        while not self._stop.is_set():
            if not self.run_once(name):
                self._wake.wait(self.idle_s)
                self._wake.clear()


def _dead_here(holder: str) -> bool:
    owner = Owner.parse(holder)
    return owner is not None and owner.is_dead_here()
