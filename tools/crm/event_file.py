"""Read CRM events from a JSON file (one event or a list), all validated before any is run."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from tools.crm.records import CRMEvent

MAX_EVENT_FILE_BYTES = 20 * 1024 * 1024


class EventFileError(Exception):
    """An event file is unreadable, not JSON, or holds an invalid event."""


def load_events(path: Path) -> list[CRMEvent]:
    try:
        if path.stat().st_size > MAX_EVENT_FILE_BYTES:
            raise EventFileError(f"{path}: {path.stat().st_size} bytes is over the {MAX_EVENT_FILE_BYTES} byte limit; split the file")
        raw = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise EventFileError(f"{path}: no such file") from None
    except OSError as exc:  # a directory, no permission
        raise EventFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EventFileError(f"{path}: not valid JSON: {exc}") from None
    except ValueError:  # a number past Python's int-to-str digit limit
        raise EventFileError(f"{path}: not valid JSON: a number has too many digits") from None
    except RecursionError:
        raise EventFileError(f"{path}: not valid JSON: nested too deeply") from None
    items, prefix = (raw, "event[{}]") if isinstance(raw, list) else ([raw], "event")
    if not items:
        raise EventFileError(f"{path}: the list holds no events")
    events = [_validate(item, prefix.format(i), path) for i, item in enumerate(items)]
    _no_duplicate_ids(events, path)
    return events


def _validate(item: object, label: str, path: Path) -> CRMEvent:
    try:
        return TypeAdapter(CRMEvent).validate_python(item)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or '(event)'}: {e['msg']}" for e in exc.errors()[:3]]
        raise EventFileError(f"{path}: {label}: {'; '.join(problems)}") from None


def _no_duplicate_ids(events: list[CRMEvent], path: Path) -> None:
    seen: set[tuple[str, str]] = set()
    for event in events:
        key = (event.source, event.id)
        if key in seen:
            raise EventFileError(f"{path}: event id {event.id!r} from {event.source!r} appears twice; each event needs its own id")
        seen.add(key)
