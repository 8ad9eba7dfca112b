"""Read a JSON list of records, failing with the file, the record index and the field."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

T = TypeVar("T", bound=BaseModel)


class RecordFileError(Exception):
    """A data file is missing or holds an invalid record."""


def load_records(path: Path, model: type[T], fix: str) -> list[T]:
    """`fix` tells the user what to do when the file is missing."""
    try:
        return TypeAdapter(list[model]).validate_json(path.read_bytes())
    except FileNotFoundError:
        raise RecordFileError(f"{path} is missing; {fix}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise RecordFileError(f"{path}: record {where}: {first['msg']}") from None
