"""The durable event queue: idempotent on (source, external id), oldest first, leases that expire, retries with
capped exponential backoff, dead letters and replay, no item claimed twice across processes, all kept on disk.
Every test runs on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from service.queue import MAX_ERROR_CHARS, EventQueue, ItemNotFound, QueueError
from tests.postgres_server import database, postgres_server, postgres_url, stored_bytes  # noqa: F401 - fixtures
from tools.crm.records import CRMEvent
from tools.sql import Database

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
LEASE_S = 60.0


def _email(n: int, sender: str) -> CRMEvent:
    return CRMEvent.model_validate({
        "id": f"mail-{n}", "type": "inbound_email", "occurred_at": "2026-11-09T07:42:00Z", "source": "salesforce",
        "payload": {"message_id": f"<m{n}@example.com>", "from_email": sender, "subject": "Pricing", "body": "Hi"}})


def _event(n: int) -> CRMEvent:
    return CRMEvent.model_validate({
        "id": f"evt-{n:04d}", "type": "deal_stage_change", "occurred_at": "2026-11-18T15:30:00Z", "source": "demo-crm",
        "payload": {"deal_id": "deal-0152", "from_stage": "qualification", "to_stage": "proposal"}})


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def queue(database: Database) -> EventQueue:
    return EventQueue(database, max_attempts=3, backoff_base_s=10, backoff_max_s=15)


def test_enqueue_is_idempotent_per_source_and_external_id(queue):
    first, new = queue.enqueue("hubspot", "hs-1", _event(1), T0)
    again, new_again = queue.enqueue("hubspot", "hs-1", _event(1), _at(30))
    other, new_other = queue.enqueue("salesforce", "hs-1", _event(1), _at(30))
    assert (new, new_again, new_other) == (True, False, True)
    assert again == first  # the redelivery finds the stored row, received_at and all
    assert (first.status, first.attempts, first.received_at, first.next_attempt_at) == ("queued", 0, T0, T0)
    assert first.event == _event(1)
    assert other.id != first.id
    assert queue.counts() == {"queued": 2, "processing": 0, "done": 0, "dead": 0}
    assert queue.counts_by_source() == {"hubspot": {"queued": 1, "processing": 0, "done": 0, "dead": 0},
                                        "salesforce": {"queued": 1, "processing": 0, "done": 0, "dead": 0}}


def test_an_enqueued_event_is_committed_when_enqueue_returns(queue, database):
    item, _ = queue.enqueue("generic", "demo-crm:evt-0001", _event(1), T0)
    assert EventQueue(database).get(item.id) == item  # another connection, as after a crash right after the 2xx


def test_claim_takes_the_oldest_due_item_and_leases_it(queue):
    late, _ = queue.enqueue("s", "late", _event(2), _at(5))
    early, _ = queue.enqueue("s", "early", _event(1), _at(1))
    assert queue.claim("w1", T0, LEASE_S) is None  # nothing received by T0 is due yet

    claimed = queue.claim("w1", _at(10), LEASE_S)
    assert claimed.id == early.id
    assert (claimed.status, claimed.lease_owner, claimed.lease_expires_at) == ("processing", "w1", _at(10 + LEASE_S))
    assert queue.claim("w2", _at(10), LEASE_S).id == late.id
    assert queue.claim("w3", _at(10), LEASE_S) is None


def test_an_expired_lease_is_taken_back_as_a_failed_attempt(queue):
    item, _ = queue.enqueue("s", "x", _event(1), T0)
    queue.claim("crashed", T0, LEASE_S)
    assert queue.claim("w2", _at(LEASE_S - 1), LEASE_S) is None  # the lease still holds

    reclaimed = queue.claim("w2", _at(LEASE_S), LEASE_S)
    assert (reclaimed.id, reclaimed.lease_owner, reclaimed.attempts) == (item.id, "w2", 1)
    assert "lease ran out" in reclaimed.last_error


def test_an_event_that_kills_every_worker_ends_dead(queue):
    item, _ = queue.enqueue("s", "poison", _event(1), T0)
    for attempt in range(3):
        assert queue.claim(f"w{attempt}", _at(attempt * LEASE_S), LEASE_S).id == item.id
    assert queue.claim("w3", _at(3 * LEASE_S), LEASE_S) is None
    dead = queue.get(item.id)
    assert (dead.status, dead.attempts, dead.lease_owner) == ("dead", 3, None)


def test_failures_retry_with_capped_exponential_backoff(database):
    queue = EventQueue(database, max_attempts=5, backoff_base_s=10, backoff_max_s=25)
    item, _ = queue.enqueue("s", "x", _event(1), T0)
    now, waits = T0, []
    for _ in range(3):
        claimed = queue.claim("w", now, LEASE_S)
        assert claimed.id == item.id
        failed = queue.fail(item.id, "RunError: the model server is down", now)
        waits.append((failed.next_attempt_at - now).total_seconds())
        assert queue.claim("w", failed.next_attempt_at - timedelta(microseconds=1), LEASE_S) is None  # not before its time
        now = failed.next_attempt_at
    assert waits == [10, 20, 25]
    assert (failed.status, failed.attempts, failed.lease_owner) == ("queued", 3, None)
    assert failed.last_error == "RunError: the model server is down"


def test_after_max_attempts_an_item_is_dead_until_replayed(queue):
    item, _ = queue.enqueue("s", "x", _event(1), T0)
    for attempt in range(3):
        queue.claim("w", _at(100 * attempt), LEASE_S)
        failed = queue.fail(item.id, f"CRMDataError: attempt {attempt} " + "x" * 5000, _at(100 * attempt))
    assert (failed.status, failed.attempts) == ("dead", 3)
    assert failed.last_error.startswith("CRMDataError: attempt 2") and len(failed.last_error) == MAX_ERROR_CHARS
    assert queue.dead_letters() == [failed]
    assert queue.claim("w", _at(10_000), LEASE_S) is None

    replayed = queue.replay(item.id, _at(500))
    assert (replayed.status, replayed.attempts, replayed.replays, replayed.next_attempt_at) == ("queued", 0, 1, _at(500))
    assert queue.dead_letters() == []
    assert queue.claim("w", _at(500), LEASE_S).id == item.id


def test_complete_records_the_run_and_is_final(queue):
    item, _ = queue.enqueue("s", "x", _event(1), T0)
    queue.claim("w", T0, LEASE_S)
    done = queue.complete(item.id, "run-0001")
    assert (done.status, done.run_id, done.lease_owner) == ("done", "run-0001", None)
    assert queue.complete(item.id, "run-0002") == done  # a retried complete changes nothing
    assert queue.claim("w", _at(10_000), LEASE_S) is None
    assert queue.list("done") == [done] and queue.list("queued") == []


def test_what_an_item_cannot_do_is_refused(queue):
    item, _ = queue.enqueue("s", "x", _event(1), T0)
    with pytest.raises(QueueError, match=f"queue item {item.id} is queued, not processing"):
        queue.fail(item.id, "boom", T0)
    with pytest.raises(QueueError, match=f"queue item {item.id} is queued: only dead items can be replayed"):
        queue.replay(item.id, T0)
    with pytest.raises(ItemNotFound, match="no queue item 999"):
        queue.get(999)
    with pytest.raises(ValueError, match="no time zone"):
        queue.claim("w", datetime(2026, 11, 23, 8, 0), LEASE_S)


def test_list_is_newest_first_and_limited(queue):
    for n in range(5):
        queue.enqueue("s", f"e{n}", _event(n), _at(n))
    assert [i.external_id for i in queue.list(limit=3)] == ["e4", "e3", "e2"]


def test_concurrent_claims_never_hand_out_an_item_twice(database):
    queues = [EventQueue(database), EventQueue(database)]  # two "processes" on one database
    ids = {queues[0].enqueue("s", f"e{n}", _event(n), _at(n))[0].id for n in range(60)}
    claimed: list[int] = []
    lock = threading.Lock()

    def work(worker: str, queue: EventQueue) -> None:
        while (item := queue.claim(worker, _at(100), LEASE_S)) is not None:
            queue.complete(item.id, f"run-{item.id}")
            with lock:
                claimed.append(item.id)

    threads = [threading.Thread(target=work, args=(f"w{i}", queues[i % 2])) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(ids)  # every item once, none twice
    assert queues[1].counts() == {"queued": 0, "processing": 0, "done": 60, "dead": 0}


def test_everything_survives_reopening_the_database(queue, database):
    kept, _ = queue.enqueue("s", "kept", _event(1), T0)
    queue.claim("w", T0, LEASE_S)
    failed = queue.fail(kept.id, "boom", T0)
    leased, _ = queue.enqueue("s", "leased", _event(2), _at(1))
    leased = queue.claim("w", _at(1), LEASE_S)
    del queue

    reopened = EventQueue(database, max_attempts=3, backoff_base_s=10, backoff_max_s=15)
    assert reopened.get(kept.id) == failed
    assert reopened.get(leased.id) == leased
    assert reopened.enqueue("s", "kept", _event(1), _at(50)) == (failed, False)


def test_erasing_a_person_leaves_no_trace_on_disk(queue, database):
    kept, _ = queue.enqueue("s", "a", _email(1, "jordan@quillstack.io"), T0)
    erased, _ = queue.enqueue("s", "b", _email(2, "Y.Mori@sakura-medtech.co.jp"), T0)
    failing, _ = queue.enqueue("s", "c", _event(3), T0)
    queue.claim("w", T0, LEASE_S)
    queue.claim("w", T0, LEASE_S)
    queue.claim("w", T0, LEASE_S)
    queue.fail(failing.id, "CRMDataError: no contact with email 'y.mori@sakura-medtech.co.jp'", T0)

    assert sorted(queue.erase(["Yuki Mori", "y.mori@sakura-medtech.co.jp"])) == [erased.id, failing.id]
    assert [i.id for i in queue.list()] == [kept.id]
    stored = stored_bytes(database, "queue")
    assert b"sakura-medtech" not in stored.lower() and b"jordan@quillstack.io" in stored


def test_a_renewed_lease_is_not_taken_back_and_a_lost_one_is_not_renewed(queue):
    item, _ = queue.enqueue("s", "x", _event(1), T0)
    queue.claim("w1", T0, LEASE_S)
    assert queue.renew({item.id: "w1"}, _at(LEASE_S - 1), LEASE_S) == {item.id}
    assert queue.get(item.id).lease_expires_at == _at(2 * LEASE_S - 1)
    assert queue.claim("w2", _at(LEASE_S + 10), LEASE_S) is None  # past the first lease, within the renewed one
    assert queue.renew({item.id: "w2"}, _at(LEASE_S), LEASE_S) == set(), "only the owner renews"

    reclaimed = queue.claim("w2", _at(2 * LEASE_S), LEASE_S)  # no renewal came: taken back, as before heartbeats
    assert (reclaimed.lease_owner, reclaimed.attempts) == ("w2", 1)
    assert queue.renew({item.id: "w1"}, _at(2 * LEASE_S), LEASE_S) == set(), "a lease taken back stays lost"
    queue.complete(item.id, "run-1")
    assert queue.renew({item.id: "w2"}, _at(2 * LEASE_S), LEASE_S) == set()


def test_items_of_dead_owners_are_taken_over_at_once_as_a_failed_attempt(queue):
    poison, _ = queue.enqueue("s", "poison", _event(3), T0)
    for attempt in range(2):  # the poison item already failed twice: one more death makes three
        assert queue.claim("gone-2", _at(10 * attempt), LEASE_S).id == poison.id
        queue.fail(poison.id, "boom", _at(10 * attempt))
    dead, _ = queue.enqueue("s", "dead", _event(1), _at(30))
    live, _ = queue.enqueue("s", "live", _event(2), _at(31))
    assert [queue.claim(owner, _at(100), LEASE_S).id for owner in ("gone-2", "gone-1", "alive")] == [poison.id, dead.id, live.id]

    (taken,) = queue.take_over_dead(lambda owner: owner.startswith("gone"), "me/recovery", _at(101), LEASE_S)
    assert (taken.id, taken.status, taken.lease_owner, taken.attempts) == (dead.id, "processing", "me/recovery", 1)
    assert taken.lease_expires_at == _at(101 + LEASE_S) and "gone-1 died" in taken.last_error
    assert queue.get(live.id).lease_owner == "alive", "a live owner keeps its item"
    assert (queue.get(poison.id).status, queue.get(poison.id).attempts) == ("dead", 3), "max_attempts holds for deaths too"

    assert queue.release(dead.id, "someone-else", _at(102)) == taken, "only the owner releases"
    released = queue.release(dead.id, "me/recovery", _at(102))
    assert (released.status, released.attempts, released.lease_owner, released.next_attempt_at) == ("queued", 1, None, _at(102))
    assert queue.claim("w", _at(102), LEASE_S).id == dead.id
    assert [i.id for i in queue.unfinished()] == [poison.id, dead.id, live.id]
