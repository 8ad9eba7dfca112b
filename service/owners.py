"""Lease owners that name a process: `host/pid/start time/worker`, e.g. `sales-1/4711/2026-11-23T08:00:00.12Z/worker-0`.

An operator reading the queue sees which process on which host holds an item, and two processes never share a name:
a pid alone repeats across hosts and, after it is reused, on one host. A process can tell whether an owner on its own
host still runs (the pid exists and started when the owner says), so at start-up it takes back a dead process's
items at once instead of waiting for their leases to run out. Hosts are told apart by host name: processes that
share one must also see each other's pids (containers sharing a host name but not a pid namespace must not share a
queue), else a live owner could look dead.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path

# Start times are read from /proc as ticks after boot plus the boot time, which the kernel recomputes when the wall
# clock is adjusted (NTP): the same process can read a little differently over its life, a reused pid cannot.
SAME_START = timedelta(seconds=2)
_STAMP = "%Y-%m-%dT%H:%M:%S.%f"


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    started: datetime
    worker: str

    def __str__(self) -> str:
        return f"{self.host}/{self.pid}/{self.started.strftime(_STAMP)[:-4]}Z/{self.worker}"  # centiseconds: /proc's ticks

    @classmethod
    def parse(cls, text: str | None) -> Owner | None:
        """The owner a lease_owner names; None for anything else (a name written by an older salesloop: `worker-0`)."""
        parts = (text or "").split("/")
        if len(parts) != 4 or not parts[1].isdigit():
            return None
        try:
            started = datetime.fromisoformat(parts[2])
        except ValueError:
            return None
        return cls(parts[0], int(parts[1]), started, parts[3])

    def is_dead_here(self) -> bool:
        """True only when this owner is a process on this host that no longer runs; an owner elsewhere is never judged."""
        if self.host != socket.gethostname():
            return False
        started = process_start(self.pid)
        if started is None:
            return not _pid_exists(self.pid)
        return abs(started - self.started) > SAME_START  # another process has the pid now


def this_process(worker: str) -> Owner:
    """The owner name for `worker` in this process."""
    return Owner(socket.gethostname(), os.getpid(), _own_start(), worker)


@cache
def _own_start() -> datetime:
    # Read the way other processes will read it, so that they find it alive; where /proc is missing, the time now
    # (a process there is judged by its pid alone).
    return process_start(os.getpid()) or datetime.now(timezone.utc)


def process_start(pid: int) -> datetime | None:
    """When a process on this host started, from /proc; None where /proc cannot tell (no such pid, or no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime "))
    except (OSError, StopIteration, ValueError):
        return None
    ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime; the command name before ")" may hold spaces
    return datetime.fromtimestamp(boot, timezone.utc) + timedelta(seconds=ticks / os.sysconf("SC_CLK_TCK"))


def _pid_exists(pid: int) -> bool:
    if not Path("/proc/self/stat").exists():  # no /proc at all (macOS): ask the kernel whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return False  # /proc is there and has no such pid
