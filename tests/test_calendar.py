"""Calendar conformance suite (run against every backend) plus IcsCalendar and matching specifics."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest
from pydantic import ValidationError

from tools.calendar import (
    Booking,
    BusyEvent,
    Calendar,
    CalendarError,
    IcsCalendar,
    SlotTaken,
    booking_uid,
    find_free_slots,
    match_consultants,
)
from tools.scheduling_records import Consultant, Slot

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
AUCKLAND = ZoneInfo("Pacific/Auckland")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")

Seeds = list[tuple[Consultant, icalendar.Calendar]]
Backend = Callable[[Path, Seeds], Calendar]


def ics_backend(root: Path, seeds: Seeds) -> Calendar:
    for consultant, calendar in seeds:
        (root / consultant.calendar_file).write_bytes(calendar.to_ical())
    return IcsCalendar(root)


# A new backend is one more entry here: a function that stores the seed events and returns the backend.
BACKENDS = [pytest.param(ics_backend, id="ics")]


@pytest.fixture(params=BACKENDS)
def make_calendar(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Calendar]:
    backend: Backend = request.param
    return lambda *seeds: backend(tmp_path, list(seeds))


def consultant(
    id: str = "c-ana",
    timezone: str = "Europe/Berlin",
    skills: list[str] | None = None,
    industries: list[str] | None = None,
) -> Consultant:
    return Consultant(
        id=id,
        name=id.title(),
        email=f"{id}@example.com",
        skills=skills or ["predictive-maintenance"],
        industries=industries or ["manufacturing"],
        timezone=timezone,
        calendar_file=f"{id}.ics",
    )


def event(uid: str, start: datetime | date, end: datetime | date, **props: object) -> icalendar.Event:
    item = icalendar.Event()
    item.add("uid", uid)
    item.add("dtstamp", datetime(2025, 1, 1, tzinfo=UTC))
    item.add("dtstart", start)
    item.add("dtend", end)
    for name, value in props.items():
        item.add(name, value)
    return item


def ics(*events: icalendar.Event) -> icalendar.Calendar:
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//salesloop tests//EN")
    calendar.add("version", "2.0")
    for item in events:
        calendar.add_component(item)
    calendar.add_missing_timezones()  # writes VTIMEZONE so TZID parameters resolve
    return calendar


def weekly_friday_call() -> icalendar.Event:
    """Fridays 15:00-16:00 Berlin, starting in winter (CET) so expansion must honour the TZID across DST."""
    return event(
        "weekly-sync",
        datetime(2025, 1, 3, 15, tzinfo=BERLIN),
        datetime(2025, 1, 3, 16, tzinfo=BERLIN),
        rrule={"freq": "weekly"},
    )


def make_booking(who: Consultant, start: datetime, uid: str = "run-1@salesloop") -> Booking:
    return Booking(
        uid=uid,
        consultant_id=who.id,
        start=start,
        end=start + timedelta(hours=1),
        summary="Discovery call",
        description="Predictive maintenance for line 3",
        attendees=["buyer@acme.example", who.email],
    )


def assert_inside(slot: Slot, zone: ZoneInfo, first_hour: int, last_hour: int) -> None:
    start, end = slot.start.astimezone(zone), slot.end.astimezone(zone)
    assert start.weekday() < 5 and end.date() == start.date(), slot
    assert first_hour <= start.hour and (end.hour, end.minute) <= (last_hour, 0), slot


# --- conformance: every Calendar backend -------------------------------------------------


def test_busy_expands_weekly_rrule_with_tzid_into_future_weeks(make_calendar: Callable[..., Calendar]) -> None:
    ana = consultant()
    calendar = make_calendar((ana, ics(weekly_friday_call())))

    busy = calendar.busy(ana, datetime(2025, 7, 1, tzinfo=UTC), datetime(2025, 7, 15, tzinfo=UTC))

    # 15:00 Berlin is 13:00 UTC in summer (it was 14:00 UTC when the series started).
    assert busy == [
        (datetime(2025, 7, 4, 13, tzinfo=UTC), datetime(2025, 7, 4, 14, tzinfo=UTC)),
        (datetime(2025, 7, 11, 13, tzinfo=UTC), datetime(2025, 7, 11, 14, tzinfo=UTC)),
    ]
    assert all(start.utcoffset() is not None for start, _ in busy)


def test_busy_is_empty_for_a_consultant_without_events(make_calendar: Callable[..., Calendar]) -> None:
    calendar = make_calendar()

    assert calendar.busy(consultant(), datetime(2025, 7, 1, tzinfo=UTC), datetime(2025, 7, 15, tzinfo=UTC)) == []


def test_busy_ignores_free_and_cancelled_events(make_calendar: Callable[..., Calendar]) -> None:
    ana = consultant()
    start, end = datetime(2025, 7, 1, 9, tzinfo=BERLIN), datetime(2025, 7, 1, 10, tzinfo=BERLIN)
    calendar = make_calendar(
        (ana, ics(event("free", start, end, transp="TRANSPARENT"), event("off", start, end, status="CANCELLED")))
    )

    assert calendar.busy(ana, datetime(2025, 7, 1, tzinfo=UTC), datetime(2025, 7, 2, tzinfo=UTC)) == []


def test_all_day_events_block_the_consultants_whole_day(make_calendar: Callable[..., Calendar]) -> None:
    ana = consultant()
    calendar = make_calendar((ana, ics(event("holiday", date(2025, 7, 1), date(2025, 7, 2)))))

    busy = calendar.busy(ana, datetime(2025, 6, 30, tzinfo=UTC), datetime(2025, 7, 3, tzinfo=UTC))

    assert busy == [(datetime(2025, 7, 1, tzinfo=BERLIN), datetime(2025, 7, 2, tzinfo=BERLIN))]


def test_free_slots_skip_busy_time_weekends_and_hours_outside_either_zone(
    make_calendar: Callable[..., Calendar],
) -> None:
    ana = consultant(timezone="Europe/Berlin")  # works 09-17 Berlin = 09-11 New York overlap in June
    calendar = make_calendar((ana, ics(weekly_friday_call())))
    friday_8am_new_york = datetime(2025, 6, 6, 8, tzinfo=NEW_YORK)

    slots = find_free_slots(calendar, ana, "America/New_York", friday_8am_new_york, count=5)

    assert [slot.start for slot in slots] == [
        datetime(2025, 6, 6, 10, tzinfo=NEW_YORK),  # 9:00 and 9:30 clash with the weekly call
        datetime(2025, 6, 9, 9, tzinfo=NEW_YORK),  # the weekend is skipped
        datetime(2025, 6, 9, 9, 30, tzinfo=NEW_YORK),
        datetime(2025, 6, 9, 10, tzinfo=NEW_YORK),  # 10:30 would end after 17:00 in Berlin
        datetime(2025, 6, 10, 9, tzinfo=NEW_YORK),
    ]
    for slot in slots:
        assert slot.consultant_id == ana.id
        assert slot.start.tzinfo == NEW_YORK and slot.end - slot.start == timedelta(hours=1)
        assert_inside(slot, BERLIN, ana.work_start_hour, ana.work_end_hour)
        assert_inside(slot, NEW_YORK, 9, 17)


def test_free_slots_need_a_weekday_in_both_zones(make_calendar: Callable[..., Calendar]) -> None:
    # Auckland's Monday morning is Los Angeles' Sunday afternoon, and LA's Friday is Auckland's Saturday.
    kiri = consultant(id="c-kiri", timezone="Pacific/Auckland")
    calendar = make_calendar()
    friday_9am_los_angeles = datetime(2025, 6, 6, 9, tzinfo=LOS_ANGELES)

    slots = find_free_slots(calendar, kiri, "America/Los_Angeles", friday_9am_los_angeles, count=3)

    assert [slot.start for slot in slots] == [
        datetime(2025, 6, 9, 14, tzinfo=LOS_ANGELES),
        datetime(2025, 6, 9, 14, 30, tzinfo=LOS_ANGELES),
        datetime(2025, 6, 9, 15, tzinfo=LOS_ANGELES),
    ]
    for slot in slots:
        assert_inside(slot, AUCKLAND, 9, 17)
        assert_inside(slot, LOS_ANGELES, 9, 17)


def test_free_slots_start_at_the_next_full_hour(make_calendar: Callable[..., Calendar]) -> None:
    ana = consultant()
    calendar = make_calendar()

    slots = find_free_slots(calendar, ana, "Europe/Berlin", datetime(2025, 6, 10, 10, 5, tzinfo=BERLIN), count=2)

    assert [slot.start for slot in slots] == [
        datetime(2025, 6, 10, 11, tzinfo=BERLIN),
        datetime(2025, 6, 10, 11, 30, tzinfo=BERLIN),
    ]


def test_free_slots_fetch_busy_once_for_the_horizon(make_calendar: Callable[..., Calendar]) -> None:
    calls: list[tuple[datetime, datetime]] = []
    inner = make_calendar()

    class CountingCalendar:
        def busy(self, who: Consultant, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
            calls.append((start, end))
            return inner.busy(who, start, end)

    not_before = datetime(2025, 6, 6, 8, tzinfo=NEW_YORK)
    counting: Any = CountingCalendar()  # only busy() is needed to find slots
    find_free_slots(counting, consultant(), "America/New_York", not_before, count=20)

    assert len(calls) == 1
    assert calls[0][1] - calls[0][0] >= timedelta(days=14)


def test_book_is_idempotent_and_the_meeting_shows_as_busy(make_calendar: Callable[..., Calendar]) -> None:
    ana = consultant()
    calendar = make_calendar((ana, ics(weekly_friday_call())))
    lead_start = datetime(2025, 6, 9, 9, tzinfo=NEW_YORK)
    booking = make_booking(ana, lead_start, uid=booking_uid("run-42"))

    assert calendar.book(ana, booking) is True
    assert calendar.book(ana, booking) is False
    assert calendar.bookings(ana, booking.uid) == 1

    busy = calendar.busy(ana, datetime(2025, 6, 9, tzinfo=UTC), datetime(2025, 6, 10, tzinfo=UTC))
    assert busy == [(lead_start, lead_start + timedelta(hours=1))]
    slots = find_free_slots(calendar, ana, "America/New_York", datetime(2025, 6, 9, 8, tzinfo=NEW_YORK), count=1)
    assert slots[0].start == datetime(2025, 6, 9, 10, tzinfo=NEW_YORK)


def test_bookings_counts_zero_for_an_unknown_uid(make_calendar: Callable[..., Calendar]) -> None:
    assert make_calendar().bookings(consultant(), "nobody@salesloop") == 0


def test_concurrent_book_from_threads_writes_one_event(make_calendar: Callable[..., Calendar]) -> None:
    ana = consultant()
    calendar = make_calendar()
    booking = make_booking(ana, datetime(2025, 6, 9, 15, tzinfo=BERLIN))
    writers = 8
    barrier = threading.Barrier(writers)

    def book() -> bool:
        barrier.wait()
        return calendar.book(ana, booking)

    with ThreadPoolExecutor(writers) as pool:
        results = list(pool.map(lambda _: book(), range(writers)))

    assert sorted(results) == [False] * (writers - 1) + [True]
    assert calendar.bookings(ana, booking.uid) == 1


def test_events_name_each_blocking_occurrence(make_calendar: Callable[..., Calendar]) -> None:
    ana = consultant()
    calendar = make_calendar((ana, ics(
        weekly_friday_call(),
        event("free", datetime(2025, 6, 6, 9, tzinfo=BERLIN), datetime(2025, 6, 6, 10, tzinfo=BERLIN), transp="TRANSPARENT"),
        event("review", datetime(2025, 6, 9, 9, tzinfo=UTC), datetime(2025, 6, 9, 10, tzinfo=UTC)),
    )))

    found = calendar.events(ana, datetime(2025, 6, 6, tzinfo=UTC), datetime(2025, 6, 14, tzinfo=UTC))

    assert found == [
        BusyEvent(uid="weekly-sync", start=datetime(2025, 6, 6, 15, tzinfo=BERLIN), end=datetime(2025, 6, 6, 16, tzinfo=BERLIN)),
        BusyEvent(uid="review", start=datetime(2025, 6, 9, 9, tzinfo=UTC), end=datetime(2025, 6, 9, 10, tzinfo=UTC)),
        BusyEvent(uid="weekly-sync", start=datetime(2025, 6, 13, 15, tzinfo=BERLIN), end=datetime(2025, 6, 13, 16, tzinfo=BERLIN)),
    ]
    assert calendar.busy(ana, datetime(2025, 6, 6, tzinfo=UTC), datetime(2025, 6, 14, tzinfo=UTC)) == [(e.start, e.end) for e in found]


def test_book_refuses_a_time_another_event_holds_and_writes_nothing(make_calendar: Callable[..., Calendar]) -> None:
    ana = consultant()
    calendar = make_calendar((ana, ics(weekly_friday_call())))
    first = make_booking(ana, datetime(2025, 6, 9, 15, tzinfo=BERLIN), uid=booking_uid("run-a"))
    assert calendar.book(ana, first) is True
    before = calendar.events(ana, datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 7, 1, tzinfo=UTC))

    # Half an hour of overlap is enough; the holder is named, whether a booking or a recurring meeting.
    with pytest.raises(SlotTaken, match="run-a@salesloop") as taken:
        calendar.book(ana, make_booking(ana, datetime(2025, 6, 9, 15, 30, tzinfo=BERLIN), uid=booking_uid("run-b")))
    assert taken.value.holder == BusyEvent(uid=first.uid, start=first.start, end=first.end)
    with pytest.raises(SlotTaken, match="weekly-sync"):
        calendar.book(ana, make_booking(ana, datetime(2025, 6, 13, 15, tzinfo=BERLIN), uid=booking_uid("run-c")))

    assert calendar.bookings(ana, booking_uid("run-b")) == calendar.bookings(ana, booking_uid("run-c")) == 0
    assert calendar.events(ana, datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 7, 1, tzinfo=UTC)) == before
    # Back to back is not an overlap, and a retry of the booking that holds the time is still just a retry.
    assert calendar.book(ana, make_booking(ana, datetime(2025, 6, 9, 16, tzinfo=BERLIN), uid=booking_uid("run-d"))) is True
    assert calendar.book(ana, first) is False


def test_concurrent_bookings_of_one_time_from_threads_write_one_event(make_calendar: Callable[..., Calendar]) -> None:
    ana = consultant()
    calendar = make_calendar()
    start = datetime(2025, 6, 9, 15, tzinfo=BERLIN)
    writers = 8
    barrier = threading.Barrier(writers)

    def book(n: int) -> str:
        barrier.wait()
        try:
            return "booked" if calendar.book(ana, make_booking(ana, start, uid=booking_uid(f"run-{n}"))) else "retry"
        except SlotTaken as taken:
            return f"taken by {taken.holder.uid}"

    with ThreadPoolExecutor(writers) as pool:
        results = list(pool.map(book, range(writers)))

    (winner,) = [n for n, result in enumerate(results) if result == "booked"]
    assert results.count(f"taken by {booking_uid(f'run-{winner}')}") == writers - 1
    assert [e.uid for e in calendar.events(ana, start, start + timedelta(hours=1))] == [booking_uid(f"run-{winner}")]


def test_unknown_time_zones_raise_calendar_error(make_calendar: Callable[..., Calendar]) -> None:
    calendar = make_calendar()
    not_before = datetime(2025, 6, 6, 8, tzinfo=UTC)

    with pytest.raises(CalendarError, match="Mars/Olympus"):
        find_free_slots(calendar, consultant(), "Mars/Olympus", not_before)
    with pytest.raises(CalendarError, match="Europe/Atlantis"):
        find_free_slots(calendar, consultant(timezone="Europe/Atlantis"), "Europe/Berlin", not_before)


# --- IcsCalendar specifics ---------------------------------------------------------------


def test_booked_file_parses_and_carries_the_meeting(tmp_path: Path) -> None:
    ana = consultant()
    booking = make_booking(ana, datetime(2025, 6, 9, 9, tzinfo=NEW_YORK))

    IcsCalendar(tmp_path).book(ana, booking)

    parsed = icalendar.Calendar.from_ical((tmp_path / ana.calendar_file).read_bytes())
    [vevent] = parsed.walk("VEVENT")
    assert str(vevent["UID"]) == booking.uid
    assert vevent["DTSTART"].dt == datetime(2025, 6, 9, 13, tzinfo=UTC)
    assert vevent["DTEND"].dt == datetime(2025, 6, 9, 14, tzinfo=UTC)
    assert vevent["DTSTAMP"].dt.utcoffset() == timedelta(0)
    assert str(vevent["SUMMARY"]) == booking.summary and str(vevent["DESCRIPTION"]) == booking.description
    assert [str(a) for a in vevent["ATTENDEE"]] == [f"mailto:{email}" for email in booking.attendees]
    assert sorted(p.name for p in tmp_path.iterdir()) == [ana.calendar_file, ana.calendar_file + ".lock"]


def _book_in_child(calendar_dir: Path, who: Consultant, booking: Booking, barrier: Any, results: Any) -> None:
    barrier.wait()
    results.put(IcsCalendar(calendar_dir).book(who, booking))


def test_concurrent_book_from_processes_writes_one_event(tmp_path: Path) -> None:
    ana = consultant()
    booking = make_booking(ana, datetime(2025, 6, 9, 15, tzinfo=BERLIN))
    writers = 4
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(writers), context.Queue()
    children = [
        context.Process(target=_book_in_child, args=(tmp_path, ana, booking, barrier, results)) for _ in range(writers)
    ]
    for child in children:
        child.start()
    outcomes = sorted(results.get(timeout=30) for _ in children)
    for child in children:
        child.join(timeout=30)

    assert [child.exitcode for child in children] == [0] * writers
    assert outcomes == [False] * (writers - 1) + [True]
    assert IcsCalendar(tmp_path).bookings(ana, booking.uid) == 1


def _book_time_in_child(calendar_dir: Path, who: Consultant, booking: Booking, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        results.put((booking.uid, IcsCalendar(calendar_dir).book(who, booking)))
    except SlotTaken as taken:
        results.put((booking.uid, taken.holder.uid))


def test_concurrent_bookings_of_one_time_from_processes_write_one_event(tmp_path: Path) -> None:
    ana = consultant()
    start = datetime(2025, 6, 9, 15, tzinfo=BERLIN)
    writers = 4
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(writers), context.Queue()
    children = [
        context.Process(target=_book_time_in_child, args=(tmp_path, ana, make_booking(ana, start, uid=f"run-{n}@salesloop"), barrier, results))
        for n in range(writers)
    ]
    for child in children:
        child.start()
    outcomes = dict(results.get(timeout=30) for _ in children)
    for child in children:
        child.join(timeout=30)

    assert [child.exitcode for child in children] == [0] * writers
    (winner,) = [uid for uid, outcome in outcomes.items() if outcome is True]
    assert sorted(outcomes.values(), key=str) == sorted([True] + [winner] * (writers - 1), key=str)
    assert [e.uid for e in IcsCalendar(tmp_path).events(ana, start, start + timedelta(hours=1))] == [winner]


GARBAGE = b"this is not a calendar\r\n"
TRUNCATED = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:x\r\n"  # cut off mid-write
BAD_DTSTART = b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nDTSTART:tomorrow\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"


@pytest.mark.parametrize("content", [GARBAGE, TRUNCATED, BAD_DTSTART], ids=["garbage", "truncated", "bad-dtstart"])
def test_busy_on_a_corrupt_file_raises_calendar_error_naming_the_file(tmp_path: Path, content: bytes) -> None:
    ana = consultant()
    path = tmp_path / ana.calendar_file
    path.write_bytes(content)

    with pytest.raises(CalendarError, match=rf"{path}.*restore it from backup"):
        IcsCalendar(tmp_path).busy(ana, datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 6, 30, tzinfo=UTC))


@pytest.mark.parametrize("content", [GARBAGE, TRUNCATED], ids=["garbage", "truncated"])
def test_book_on_an_unparsable_file_raises_and_leaves_it_alone(tmp_path: Path, content: bytes) -> None:
    ana = consultant()
    path = tmp_path / ana.calendar_file
    path.write_bytes(content)

    with pytest.raises(CalendarError, match=str(path)):
        IcsCalendar(tmp_path).book(ana, make_booking(ana, datetime(2025, 6, 9, 9, tzinfo=UTC)))
    assert path.read_bytes() == content  # kept for the operator to inspect


def test_book_refuses_a_booking_for_another_consultant(tmp_path: Path) -> None:
    ana, ben = consultant(), consultant(id="c-ben")

    with pytest.raises(CalendarError, match="'c-ben'.*'c-ana'"):
        IcsCalendar(tmp_path).book(ana, make_booking(ben, datetime(2025, 6, 9, 9, tzinfo=UTC)))


def test_calendar_file_must_stay_inside_the_directory(tmp_path: Path) -> None:
    sneaky = consultant().model_copy(update={"calendar_file": "../outside.ics"})

    with pytest.raises(CalendarError, match="outside.ics"):
        IcsCalendar(tmp_path / "cals").busy(sneaky, datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 6, 2, tzinfo=UTC))


def test_booking_needs_aware_ordered_times() -> None:
    ana = consultant()
    with pytest.raises(ValidationError, match="no time zone"):
        make_booking(ana, datetime(2025, 6, 9, 9))
    fields = make_booking(ana, datetime(2025, 6, 9, 9, tzinfo=UTC)).model_dump()
    with pytest.raises(ValidationError, match="not after start"):
        Booking(**{**fields, "end": datetime(2025, 6, 9, 8, tzinfo=UTC)})


def test_booking_uid_is_keyed_by_run() -> None:
    assert booking_uid("run-42") == "run-42@salesloop"


# --- consultant matching -----------------------------------------------------------------


def test_match_consultants_ranks_by_matching_skills_then_id() -> None:
    team = [
        consultant(id="c-zoe", skills=["predictive-maintenance", "iot-sensors"]),
        consultant(id="c-ada", skills=["predictive-maintenance", "sensors"]),
        consultant(id="c-bob", skills=["erp-integration"]),
        consultant(id="c-eve", skills=["predictive-maintenance"], industries=["saas"]),
        consultant(id="c-max", skills=["vision-qa", "scada"]),
    ]

    matches = match_consultants(team, "manufacturing", {"Maintenance", "sensors", "scada"})

    assert [(m.consultant.id, m.score, m.matched_skills) for m in matches] == [
        ("c-ada", 2, ["predictive-maintenance", "sensors"]),
        ("c-zoe", 2, ["predictive-maintenance", "iot-sensors"]),
        ("c-max", 1, ["scada"]),
        ("c-bob", 0, []),
    ]


def test_match_consultants_matches_whole_slugs() -> None:
    [match] = match_consultants([consultant(skills=["edge-ai"])], "manufacturing", {"edge-ai"})

    assert match.matched_skills == ["edge-ai"]


def test_match_consultants_is_empty_when_nobody_covers_the_industry() -> None:
    assert match_consultants([consultant()], "education", {"maintenance"}) == []
