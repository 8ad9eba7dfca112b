"""Consultant calendars: find free meeting slots and book them idempotently.

`Calendar` is the backend seam; `IcsCalendar` keeps one iCalendar file per consultant.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Annotated, Protocol, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar
import recurring_ical_events
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tools.files import write_atomically
from tools.scheduling_records import Consultant, Slot

Interval = tuple[datetime, datetime]
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]

SLOT_STEP = timedelta(minutes=30)
# Floating and all-day events are placed in the consultant's zone only after expansion,
# so the expansion window is widened by more than any UTC offset and clipped afterwards.
_EXPAND_MARGIN = timedelta(days=1)


class CalendarError(Exception):
    """A calendar cannot be read or written, or a time zone is unknown."""


class BusyEvent(BaseModel):
    """One occurrence of an event that blocks a consultant's time: which event (UID) and when, nothing more.

    No summary: it may name another rep's customer, and this record is shown to whoever chose the slot."""

    model_config = ConfigDict(extra="forbid")

    uid: str
    start: datetime
    end: datetime


class SlotTaken(CalendarError):
    """The meeting's time overlaps an event already in the calendar: nothing was written."""

    def __init__(self, consultant: Consultant, booking: Booking, holder: BusyEvent):
        self.holder = holder
        super().__init__(
            f"{consultant.name} is busy {booking.start.isoformat()}–{booking.end.isoformat()}: event {holder.uid} "
            f"holds {holder.start.isoformat()}–{holder.end.isoformat()}; propose another slot"
        )


class Booking(BaseModel):
    """One meeting to write into a consultant's calendar; `uid` is the idempotency key."""

    model_config = ConfigDict(extra="forbid")

    uid: str = Field(min_length=1)
    consultant_id: str
    start: datetime
    end: datetime
    summary: str
    description: str
    attendees: list[Email]

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.utcoffset() is None:
            raise ValueError(f"{value.isoformat()} has no time zone; pass an aware datetime")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Booking:
        if self.end <= self.start:
            raise ValueError(f"end {self.end.isoformat()} is not after start {self.start.isoformat()}")
        return self


@runtime_checkable
class Calendar(Protocol):
    """What the agent needs from a calendar backend."""

    def busy(self, consultant: Consultant, start: datetime, end: datetime) -> list[Interval]:
        """Busy intervals (aware) overlapping [start, end), recurring events expanded."""
        ...

    def events(self, consultant: Consultant, start: datetime, end: datetime) -> list[BusyEvent]:
        """The events behind `busy`: each blocking occurrence overlapping [start, end), with its UID."""
        ...

    def book(self, consultant: Consultant, booking: Booking) -> bool:
        """Write the meeting once, if its time is still free, checked atomically with the write.

        False if an event with `booking.uid` already exists (a retry); raises SlotTaken, writing nothing, if another
        event blocks any of the meeting's time."""
        ...

    def erase_attendee(self, email: str) -> int:
        """Remove this person from every meeting (erasure); the number of meetings changed."""
        ...

    def bookings(self, consultant: Consultant, uid: str) -> int:
        """How many events carry `uid`."""
        ...


class IcsCalendar:
    """Calendar over `<calendar_dir>/<consultant.calendar_file>` iCalendar files."""

    def __init__(self, calendar_dir: Path) -> None:
        self.calendar_dir = Path(calendar_dir)

    def busy(self, consultant: Consultant, start: datetime, end: datetime) -> list[Interval]:
        return [(event.start, event.end) for event in self.events(consultant, start, end)]

    def events(self, consultant: Consultant, start: datetime, end: datetime) -> list[BusyEvent]:
        path = self._path(consultant)
        if not path.exists():
            return []
        return _blocking_events(_read(path), path, consultant, start, end)

    def book(self, consultant: Consultant, booking: Booking) -> bool:
        if booking.consultant_id != consultant.id:
            raise CalendarError(
                f"booking {booking.uid!r} is for consultant {booking.consultant_id!r} "
                f"but was sent to {consultant.id!r}; book it on the matching consultant"
            )
        path = self._path(consultant)
        path.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive_lock(path):
            # Re-read under the lock: another writer may have booked since our caller looked.
            calendar = _read(path) if path.exists() else _new_calendar()
            if _count_uid(calendar, booking.uid):
                return False
            # The slot was free when it was proposed; whoever booked it since then wins, and nothing is written.
            holders = _blocking_events(calendar, path, consultant, booking.start, booking.end)
            if holders:
                raise SlotTaken(consultant, booking, holders[0])
            calendar.add_component(_event(booking))
            write_atomically(path, calendar.to_ical())
        return True

    def erase_attendee(self, email: str) -> int:
        """Take a person off every meeting in every calendar file (erasure); returns how many meetings changed."""
        changed = 0
        for path in sorted(self.calendar_dir.glob("*.ics")):
            with _exclusive_lock(path):
                calendar = _read(path)
                count = sum(_drop_attendee(event, email) for event in calendar.walk("VEVENT"))
                if count:
                    write_atomically(path, calendar.to_ical())
                changed += count
        return changed

    def bookings(self, consultant: Consultant, uid: str) -> int:
        path = self._path(consultant)
        return _count_uid(_read(path), uid) if path.exists() else 0

    def _path(self, consultant: Consultant) -> Path:
        name = consultant.calendar_file
        # The name comes from configuration; keep writes inside the calendar directory.
        if not name or Path(name).name != name or name in {".", ".."}:
            raise CalendarError(
                f"consultant {consultant.id} has calendar_file {name!r}; use a plain file name such as 'ana.ics'"
            )
        return self.calendar_dir / name


def _read(path: Path) -> icalendar.Calendar:
    try:
        calendar = icalendar.Calendar.from_ical(path.read_bytes())
    except ValueError as exc:
        raise _corrupt(path, exc) from exc
    if calendar.name != "VCALENDAR":
        raise _corrupt(path, ValueError(f"top-level component is {calendar.name}, not VCALENDAR"))
    return calendar


def _corrupt(path: Path, exc: Exception) -> CalendarError:
    return CalendarError(
        f"calendar file {path} is not valid iCalendar ({exc}); "
        "restore it from backup or delete it to start an empty calendar"
    )


def _blocking_events(calendar: icalendar.Calendar, path: Path, consultant: Consultant, start: datetime, end: datetime) -> list[BusyEvent]:
    """Occurrences that block time in [start, end), recurring events expanded, earliest first."""
    zone = _zone_info(consultant.timezone, f"consultant {consultant.id}")
    try:
        found = recurring_ical_events.of(calendar).between(start - _EXPAND_MARGIN, end + _EXPAND_MARGIN)
        events = [_busy_event(event, zone) for event in found if _blocks_time(event)]
    except ValueError as exc:
        raise _corrupt(path, exc) from exc
    return sorted((e for e in events if e.start < end and e.end > start and e.end > e.start), key=lambda e: (e.start, e.end, e.uid))


def _blocks_time(event: icalendar.Event) -> bool:
    # Free-marked and cancelled events stay in calendars but must not block a slot.
    transparent = str(event.get("TRANSP", "OPAQUE")).upper() == "TRANSPARENT"
    cancelled = str(event.get("STATUS", "")).upper() == "CANCELLED"
    return not (transparent or cancelled)


def _busy_event(event: icalendar.Event, zone: ZoneInfo) -> BusyEvent:
    start, end = _interval(event, zone)
    return BusyEvent(uid=str(event.get("UID", "")), start=start, end=end)


def _interval(event: icalendar.Event, zone: ZoneInfo) -> Interval:
    return _aware(event.start, zone), _aware(event.end, zone)


def _aware(value: date | datetime, zone: ZoneInfo) -> datetime:
    """All-day dates and floating times mean the consultant's local wall clock."""
    if not isinstance(value, datetime):
        value = datetime.combine(value, time())
    return value if value.utcoffset() is not None else value.replace(tzinfo=zone)


def _drop_attendee(event: icalendar.Event, email: str) -> bool:
    attendees = event.get("ATTENDEE")
    if attendees is None:
        return False
    attendees = attendees if isinstance(attendees, list) else [attendees]
    kept = [a for a in attendees if str(a).lower().removeprefix("mailto:") != email.lower()]
    if len(kept) == len(attendees):
        return False
    del event["ATTENDEE"]
    for attendee in kept:
        event.add("attendee", attendee)
    return True


def _count_uid(calendar: icalendar.Calendar, uid: str) -> int:
    return sum(1 for event in calendar.walk("VEVENT") if str(event.get("UID", "")) == uid)


def _new_calendar() -> icalendar.Calendar:
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//salesloop//calendar//EN")
    calendar.add("version", "2.0")
    return calendar


def _event(booking: Booking) -> icalendar.Event:
    event = icalendar.Event()
    event.add("uid", booking.uid)
    event.add("dtstamp", datetime.now(timezone.utc))
    event.add("dtstart", booking.start.astimezone(timezone.utc))
    event.add("dtend", booking.end.astimezone(timezone.utc))
    event.add("summary", booking.summary)
    event.add("description", booking.description)
    for email in booking.attendees:
        event.add("attendee", icalendar.vCalAddress(f"mailto:{email}"))
    return event


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """flock a sibling lock file; it is never deleted, so every writer locks the same inode."""
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _zone_info(name: str, owner: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CalendarError(
            f"unknown time zone {name!r} for {owner}; use an IANA name such as 'Europe/Berlin'"
        ) from exc


class ConsultantMatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    consultant: Consultant
    matched_skills: list[str]
    score: int


def match_consultants(consultants: list[Consultant], industry: str, keywords: set[str]) -> list[ConsultantMatch]:
    """Consultants covering `industry`, most matching skills first, ties by id."""
    words = {keyword.lower() for keyword in keywords}
    matches = []
    for consultant in consultants:
        if industry not in consultant.industries:
            continue
        skills = [skill for skill in consultant.skills if _skill_matches(skill, words)]
        matches.append(ConsultantMatch(consultant=consultant, matched_skills=skills, score=len(skills)))
    return sorted(matches, key=lambda match: (-match.score, match.consultant.id))


def _skill_matches(skill: str, words: set[str]) -> bool:
    slug = skill.lower()
    return slug in words or any(part in words for part in slug.split("-"))


def find_free_slots(
    calendar: Calendar,
    consultant: Consultant,
    lead_timezone: str,
    not_before: datetime,
    duration_minutes: int = 60,
    count: int = 3,
    horizon_days: int = 14,
    lead_hours: tuple[int, int] = (9, 17),
) -> list[Slot]:
    """First `count` free weekday slots inside both parties' hours, in the lead's zone."""
    _check_slot_args(not_before, duration_minutes, count, horizon_days, lead_hours)
    lead_zone = _zone_info(lead_timezone, "the lead")
    consultant_zone = _zone_info(consultant.timezone, f"consultant {consultant.id}")
    duration = timedelta(minutes=duration_minutes)
    first = _next_full_hour(not_before, lead_zone)
    horizon_end = first + timedelta(days=horizon_days)
    busy = calendar.busy(consultant, first, horizon_end + duration)
    slots: list[Slot] = []
    for start in _candidates(first, horizon_end):
        end = start + duration
        if (
            _within_hours(start, end, consultant_zone, consultant.work_start_hour, consultant.work_end_hour)
            and _within_hours(start, end, lead_zone, *lead_hours)
            and not _overlaps(start, end, busy)
        ):
            slots.append(
                Slot(consultant_id=consultant.id, start=start.astimezone(lead_zone), end=end.astimezone(lead_zone))
            )
            if len(slots) == count:
                break
    return slots


def _check_slot_args(
    not_before: datetime, duration_minutes: int, count: int, horizon_days: int, lead_hours: tuple[int, int]
) -> None:
    if not_before.utcoffset() is None:
        raise ValueError(f"not_before {not_before.isoformat()} has no time zone; pass an aware datetime")
    if duration_minutes <= 0 or count <= 0 or horizon_days <= 0:
        raise ValueError(
            f"duration_minutes={duration_minutes}, count={count}, horizon_days={horizon_days}: all must be positive"
        )
    if not 0 <= lead_hours[0] < lead_hours[1] <= 24:
        raise ValueError(f"lead_hours={lead_hours} must be (start, end) with 0 <= start < end <= 24")


def _next_full_hour(moment: datetime, zone: ZoneInfo) -> datetime:
    """Round up to a whole hour on the lead's clock (zones with :30 offsets included)."""
    local = moment.astimezone(zone)
    past = timedelta(minutes=local.minute, seconds=local.second, microseconds=local.microsecond)
    start = moment.astimezone(timezone.utc) - past
    return start if not past else start + timedelta(hours=1)


def _candidates(first: datetime, horizon_end: datetime) -> Iterator[datetime]:
    start = first
    while start < horizon_end:
        yield start
        start += SLOT_STEP


def _within_hours(start: datetime, end: datetime, zone: ZoneInfo, first_hour: int, last_hour: int) -> bool:
    """Whole meeting on one weekday between the hours on that zone's wall clock."""
    local_start, local_end = start.astimezone(zone), end.astimezone(zone)
    days_later = (local_end.date() - local_start.date()).days
    start_minute = local_start.hour * 60 + local_start.minute
    end_minute = days_later * 24 * 60 + local_end.hour * 60 + local_end.minute
    return local_start.weekday() < 5 and first_hour * 60 <= start_minute and end_minute <= last_hour * 60


def _overlaps(start: datetime, end: datetime, busy: list[Interval]) -> bool:
    return any(busy_start < end and start < busy_end for busy_start, busy_end in busy)


def booking_uid(run_id: str) -> str:
    """The idempotency key: one booking per agent run, however often the step is retried."""
    return f"{run_id}@salesloop"
