"""The consultant roster the scheduler books from."""

from __future__ import annotations

from pathlib import Path

from tools.records_io import load_records
from tools.scheduling_records import Consultant


def load_consultants(path: Path) -> list[Consultant]:
    return load_records(path, Consultant, "run `salesloop demo` or point scheduling.consultants at your roster")
