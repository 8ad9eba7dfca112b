"""Failpoints: named places where a crash test can kill the process outright, as a power cut or OOM kill would.

Set SALESLOOP_FAILPOINT=<name> and the process SIGKILLs itself when it reaches that point: no cleanup, no
finally blocks, no flushed buffers. Unset (always, outside crash tests) a failpoint is one dict lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "SALESLOOP_FAILPOINT"


def failpoint(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
