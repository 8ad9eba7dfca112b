"""Workers: threads that take queued CRM events and run them through the graph, retrying failures with backoff."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from orchestrator import Orchestrator
from service.queue import EventQueue, QueueError, QueuedEvent
from tools.crm.records import CRMEvent
from tools.failpoints import failpoint

log = logging.getLogger("salesloop.worker")


class Workers:
    def __init__(self, orch: Orchestrator, queue: EventQueue, count: int, lease_s: float, clock: Callable[[], datetime],
                 idle_s: float = 1.0, complete: Callable[[CRMEvent], CRMEvent] | None = None):
        """`complete`: turns a thin `crm_change` event into the full event by fetching its records from the CRM;
        raises service.completion.Ignored when the records cannot make one."""
        self.orch, self.queue, self.count, self.lease_s, self.clock, self.idle_s = orch, queue, count, lease_s, clock, idle_s
        self.complete = complete
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        # Runs a crash cut off (mid-graph, or mid side effects after the rep decided) finish before new work starts.
        for run_id in self.orch.recover():
            log.warning("resumed run %s, cut off by an earlier crash", run_id)
        self._threads = [threading.Thread(target=self._loop, args=(f"worker-{i}",), daemon=True, name=f"salesloop-worker-{i}")
                         for i in range(self.count)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=120)

    def wake(self) -> None:
        self._wake.set()

    def run_once(self, worker: str = "worker") -> bool:
        """Process one due event, if any; True if one was taken. Failures go back to the queue, never up."""
        item = self.queue.claim(worker, self.clock(), self.lease_s)
        if item is None:
            return False
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
        return True

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
