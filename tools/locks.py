"""A lock that processes on one host agree on, taken without waiting: for work that one process does for all."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def try_exclusive(path: Path) -> Iterator[bool]:
    """Hold an exclusive flock on `path` for the block if it is free; yields False at once if another holder has it.

    The lock file is never deleted, so every process locks the same inode; the kernel drops the lock when its holder
    closes the file or dies, so a crashed holder never leaves it stuck.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the lock
