"""Heartbeat leases and owners that name a process: what a lease owner says, how a process on this host is found dead
(gone, or its pid reused), and a heartbeat that keeps a worker's short lease while it works, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from service.owners import Owner, this_process
from service.queue import EventQueue
from service.worker import Heartbeat
from tests.postgres_server import database, postgres_server, postgres_url  # noqa: F401 - fixtures
from tests.test_queue import LEASE_S, T0, _at, _event

REPO = Path(__file__).resolve().parents[1]
PRINT_OWNER = "from service.owners import this_process; print(this_process('worker-0'))"


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


def _child_owner() -> str:
    """The owner name of a process that has exited by the time this returns."""
    done = subprocess.run([sys.executable, "-c", PRINT_OWNER], cwd=REPO, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_an_owner_names_host_pid_start_time_and_worker():
    owner = this_process("worker-3")
    text = str(owner)
    assert re.fullmatch(rf"{re.escape(socket.gethostname())}/{os.getpid()}/\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d\dZ/worker-3", text), text
    assert Owner.parse(text) == owner
    assert Owner.parse("worker-0") is None and Owner.parse("h/not-a-pid/2026-11-23T08:00:00.00Z/w") is None
    assert Owner.parse("h/12/yesterday/w") is None and Owner.parse(None) is None


def test_a_process_on_this_host_is_dead_when_gone_or_its_pid_is_reused_never_when_elsewhere():
    mine = this_process("worker-0")
    assert not mine.is_dead_here()
    gone = Owner.parse(_child_owner())
    assert (gone.host, gone.worker) == (mine.host, "worker-0") and gone.pid != mine.pid, "two processes, two owners"
    assert gone.is_dead_here()
    reused = Owner(mine.host, mine.pid, mine.started - timedelta(hours=1), "worker-0")  # our pid, another process's start
    assert reused.is_dead_here()
    assert not Owner("elsewhere.example", gone.pid, gone.started, "worker-0").is_dead_here(), "other hosts are never judged"


def test_the_heartbeat_keeps_a_lease_past_its_length_and_a_stopped_one_runs_out(database):
    queue, clock = EventQueue(database), Clock()
    item, _ = queue.enqueue("s", "long-draft", _event(1), T0)
    queue.claim("w1", T0, LEASE_S)
    heartbeat = Heartbeat(queue, clock, LEASE_S, every_s=0.05)
    heartbeat.hold(item.id, "w1")
    heartbeat.start()
    try:
        clock.now = _at(5 * LEASE_S)  # the worker is still drafting, five leases later
        deadline = time.monotonic() + 60
        while queue.get(item.id).lease_expires_at != _at(6 * LEASE_S) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert queue.get(item.id).lease_expires_at == _at(6 * LEASE_S), "renewed from the clock's now"
        assert queue.claim("w2", _at(5 * LEASE_S + 1), LEASE_S) is None, "not taken back while renewed"

        heartbeat.release(item.id)  # the worker died inside this process (or finished without saying so)
        clock.now = _at(6 * LEASE_S)
        time.sleep(0.3)  # several beats with nothing to renew
    finally:
        heartbeat.stop()
    reclaimed = queue.claim("w2", _at(6 * LEASE_S), LEASE_S)
    assert (reclaimed.id, reclaimed.lease_owner, reclaimed.attempts) == (item.id, "w2", 1)


def test_a_lease_found_lost_is_reported_and_no_longer_renewed(database, caplog):
    queue, clock = EventQueue(database), Clock()
    item, _ = queue.enqueue("s", "x", _event(1), T0)
    queue.claim("w1", T0, LEASE_S)
    queue.claim("w2", _at(LEASE_S), LEASE_S)  # w1's process stalled past its lease: w2 took the item back
    heartbeat = Heartbeat(queue, clock, LEASE_S, every_s=60)
    heartbeat.hold(item.id, "w1")
    clock.now = _at(LEASE_S + 1)
    with caplog.at_level(logging.WARNING, logger="salesloop.worker"):
        heartbeat.beat()
    assert f"queue item {item.id}: the lease of w1 ran out" in caplog.text
    assert queue.get(item.id).lease_owner == "w2" and queue.get(item.id).lease_expires_at == _at(2 * LEASE_S)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="salesloop.worker"):
        heartbeat.beat()
    assert caplog.text == "", "a lost lease is dropped, not reported again"
