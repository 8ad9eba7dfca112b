"""A slot is checked when it is booked, and a rep's choice is refused, never repaired.

Two demo runs propose the same consultant and hour (Daniel Okafor, Mon 23 Nov 15:00 UTC with the suite's clock): the
security-review e-mail and the second stage change. Both are adopted at once, from two threads and from two processes:
one books, the other books nothing and waits again with new slots. Real graph, model, SQLite and iCalendar files.

The race tests run once by default; SLOT_RACE_REPEAT=20 runs each 20 times (the acceptance check).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from agents.inbox import adopt, edit, reject
from agents.services import Services
from orchestrator import Orchestrator, RunError, SentBack
from provenance.prov_export import run_document, step_id
from tests.conftest import FIXED_NOW
from tests.test_cli import salesloop
from tests.test_governance import SLIP_CONTACT, WITHDRAWN, make_services, set_consent
from tests.test_graph import demo_event
from tools.calendar import Booking, booking_uid
from tools.cases import index_cases

SECURITY, STAGE, SLIP = "security-review", "07-deal-stage", "delivery-slip"
OKAFOR = "cons-okafor"
SHARED_START = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)
REPEAT = range(int(os.environ.get("SLOT_RACE_REPEAT", "1")))


@pytest.fixture(scope="module")
def template(tmp_path_factory, demo_source, model_dir) -> dict:
    """A data dir where three runs wait: two sharing Okafor's 15:00 slot, and one proposing no meeting at all."""
    root = tmp_path_factory.mktemp("slot-conflicts")
    data = root / "data"
    shutil.copytree(demo_source, data)
    set_consent(data, SLIP_CONTACT, "phone_marketing", WITHDRAWN)  # no call, so the slip run proposes no slot
    with make_services(root, data, model_dir) as services, Orchestrator(services) as orch:
        index_cases(services.crm, services.embedder, services.vectors)
        runs = {name: orch.start(demo_event(data, name))[0].run_id for name in (SECURITY, STAGE, SLIP)}
        states = {name: orch.state(run) for name, run in runs.items()}
    labels = [f"{i}: {slot.label()}" for i, slot in enumerate(states[SECURITY].plan.slots)]
    for name in (SECURITY, STAGE):
        plan = states[name].plan
        assert plan.consultant.consultant.id == OKAFOR and plan.slots[0].start == SHARED_START, (name, plan.slots)
        assert len(plan.slots) == 3
    assert states[SLIP].plan.slots == [] and states[SLIP].plan.consultant is None
    return {"data": data, "runs": runs, "labels": labels}


@pytest.fixture
def copy(template, tmp_path, model_dir):
    """A fresh copy of the template's data dir, and services over it."""
    data = tmp_path / "data"
    shutil.copytree(template["data"], data)
    with make_services(tmp_path, data, model_dir) as services:
        yield {"data": data, "runs": template["runs"], "labels": template["labels"], "services": services, "config": tmp_path / "config.yaml"}


def okafor(services: Services):
    (consultant,) = [c for c in services.consultants if c.id == OKAFOR]
    return consultant


def events_at(services: Services, start: datetime) -> list[str]:
    return [e.uid for e in services.calendar.events(okafor(services), start, start + timedelta(hours=1))]


def digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*")) if p.is_file()}


def assert_one_booked_one_sent_back(services: Services, orch: Orchestrator, runs: dict, outcomes: dict) -> tuple[str, str]:
    """Exactly one VEVENT at the shared time; the other run books nothing, stores nothing and waits with new slots."""
    assert sorted(outcomes.values()) == ["done", "sent back"], outcomes
    (winner,) = [runs[n] for n, outcome in outcomes.items() if outcome == "done"]
    (loser,) = [runs[n] for n, outcome in outcomes.items() if outcome == "sent back"]
    assert events_at(services, SHARED_START) == [booking_uid(winner)]
    assert services.calendar.bookings(okafor(services), booking_uid(loser)) == 0
    assert orch.state(winner).applied.booked_slot.start == SHARED_START

    info, state = orch.info(loser), orch.state(loser)
    assert info.status == "waiting" and state.decision is None and state.applied is None
    assert state.plan.slots and not any(s.start < SHARED_START + timedelta(hours=1) and SHARED_START < s.end for s in state.plan.slots)
    (conflict,) = state.conflicts
    assert conflict.taken_by.uid == booking_uid(winner) and conflict.slot.start == SHARED_START
    # The trace names the booking that took the slot, then plans again; the audit log and the interrupt say so too.
    apply_step, replan = state.trace[-2:]
    assert (apply_step.step, replan.step) == ("apply", "plan_schedule")
    assert booking_uid(winner) in apply_step.output_summary and "nothing was booked or sent" in apply_step.output_summary
    assert any(r.id == "calendar" and r.version == booking_uid(winner) for r in apply_step.inputs)
    assert booking_uid(winner) in state.plan.notes[0]
    (entry,) = services.audit.entries(subject=loser, kind="booking")
    assert entry.data["taken_by_uid"] == booking_uid(winner) and entry.key == f"{loser}:slot_taken:1"
    assert booking_uid(winner) in orch.pending_interrupt(loser)["description"]
    assert services.feedback.for_run(loser) == [] and len(services.feedback.for_run(winner)) == 1
    assert services.audit.verify().ok
    return winner, loser


@pytest.mark.parametrize("attempt", REPEAT)
def test_two_adopts_of_one_slot_from_threads_book_it_once(copy, attempt):
    services, runs = copy["services"], copy["runs"]
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    with Orchestrator(services) as orch:  # one orchestrator, as the service's API and workers share one
        def decide(name: str) -> None:
            barrier.wait()
            try:
                outcomes[name] = orch.decide(runs[name], adopt("rep-anna", slot_index=0)).status
            except SentBack:
                outcomes[name] = "sent back"

        threads = [threading.Thread(target=decide, args=(name,)) for name in (SECURITY, STAGE)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        winner, loser = assert_one_booked_one_sent_back(services, orch, runs, outcomes)

        # The rep decides again on the new slots; this time it books, and the trace shows both rounds.
        fresh = orch.state(loser).plan.slots[1]
        assert orch.decide(loser, adopt("rep-anna", slot_index=1)).status == "done"
        state = orch.state(loser)
        prov = run_document(orch.info(loser), state, [])
    # Both rounds stay apart in the PROV export: the second apply is an activity of its own.
    assert prov.get_record(step_id(loser, "apply")) and prov.get_record(step_id(loser, "apply", 2))
    assert state.applied.booked_slot == fresh and events_at(services, fresh.start) == [booking_uid(loser)]
    assert [t.step for t in state.trace][-5:] == ["await_rep", "apply", "plan_schedule", "await_rep", "apply"]
    assert len(services.feedback.for_run(loser)) == 1


DECIDE_IN_CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from agents.inbox import adopt
    from agents.services import Services
    from configs import load_settings
    from datetime import datetime
    from orchestrator import Orchestrator, SentBack

    now = datetime.fromisoformat(sys.argv[3])  # the suite's clock, so the new slots are the same in every run
    services = Services(load_settings(Path(sys.argv[1]), env={}), clock=lambda: now)
    with Orchestrator(services) as orch:
        orch.info(sys.argv[2])  # everything opened before the start line
        print("ready", flush=True)
        sys.stdin.readline()
        try:
            print(json.dumps({"outcome": orch.decide(sys.argv[2], adopt("rep-anna", slot_index=0)).status}), flush=True)
        except SentBack as exc:
            print(json.dumps({"outcome": "sent back", "message": str(exc)}), flush=True)
    """
)


@pytest.mark.parametrize("attempt", REPEAT)
def test_two_adopts_of_one_slot_from_two_processes_book_it_once(copy, attempt):
    services, runs = copy["services"], copy["runs"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    children = {name: subprocess.Popen([sys.executable, "-c", DECIDE_IN_CHILD, str(copy["config"]), runs[name], FIXED_NOW.isoformat()], env=env,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for name in (SECURITY, STAGE)}
    try:
        for child in children.values():
            assert child.stdout.readline().strip() == "ready"
        for child in children.values():  # both are loaded and waiting: let them go as close together as we can
            child.stdin.write("go\n")
            child.stdin.flush()
        answers = {name: json.loads(child.stdout.readline()) for name, child in children.items()}
    finally:
        for child in children.values():
            child.stdin.close()
            child.wait(timeout=120)
    assert [child.returncode for child in children.values()] == [0, 0]
    with Orchestrator(services) as orch:
        winner, loser = assert_one_booked_one_sent_back(services, orch, runs, {n: a["outcome"] for n, a in answers.items()})
    (message,) = [a["message"] for a in answers.values() if a["outcome"] == "sent back"]
    assert booking_uid(winner) in message and f"Run {loser} waits again with new slots" in message


def test_out_of_range_slot_in_the_cli_is_refused_and_the_data_dir_is_unchanged(copy):
    run, data = copy["runs"][SECURITY], copy["data"]
    before = digest(data)
    result = salesloop("decide", run, "--adopt", "--slot", "9", config=copy["config"], check=False)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: slot 9 is not one of run") and "choose a slot from 0 to 2" in line
    assert f"({', '.join(copy['labels'])})" in line  # the valid slots, as the rep saw them
    assert digest(data) == before

    # A slot on a run that proposes no meeting, and a slot on a rejection: refused the same way.
    slip = copy["runs"][SLIP]
    result = salesloop("decide", slip, "--adopt", "--slot", "0", config=copy["config"], check=False)
    assert result.returncode == 2 and "proposes no meeting" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = salesloop("decide", run, "--reject", "not now", "--slot", "1", config=copy["config"], check=False)
    assert result.returncode == 2 and "takes no --slot" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    empty = copy["data"].parent / "edited.txt"
    empty.write_text("  \n")
    result = salesloop("decide", run, "--edit", str(empty), config=copy["config"], check=False)
    assert result.returncode == 2 and result.stderr.strip() == f"error: the edited draft {empty} is empty; use --reject to turn the draft down"
    assert digest(data) == before


def test_bad_decisions_in_the_api_get_a_4xx_and_nothing_is_written(copy):
    from service.app import create_app
    from service.auth import TokenStore

    services, runs, data = copy["services"], copy["runs"], copy["data"]
    token = TokenStore(services.settings.resolve(services.settings.service.tokens_file)).add("manager", "manager")
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(services, start_workers=False)):
        pass  # the service's first start creates its queue database: that is not the decisions' doing
    before = digest(data)
    with TestClient(create_app(services, start_workers=False)) as client:
        refused = [
            (runs[SECURITY], {"type": "accept", "slot_index": 9}, 400, "choose a slot from 0 to 2"),
            (runs[SLIP], {"type": "accept", "slot_index": 0}, 400, "proposes no meeting"),
            (runs[SECURITY], {"type": "edit", "args": {"action": "send_proposal", "args": {"draft": "   "}}}, 400, "edited text"),
            (runs[SECURITY], {"type": "response", "args": "not now", "slot_index": 1}, 400, "takes no slot"),
            (runs[SECURITY], {"type": "accept", "args": "please call me"}, 400, "send type edit"),
            (runs[SECURITY], {"type": "accept", "slot_index": -1}, 422, "greater than or equal to 0"),
        ]
        for run, body, status, message in refused:
            answer = client.post(f"/api/runs/{run}/decision", json=body, headers=headers)
            assert answer.status_code == status and message in answer.json()["detail"], (body, answer.text)
    assert digest(data) == before  # compared with every connection closed, so SQLite's -wal/-shm files are gone too

    with TestClient(create_app(services, start_workers=False)) as client:
        # A decided run is not waiting: another decision is a 409, and a different slot is not a retry.
        decision = f"/api/runs/{runs[STAGE]}/decision"
        assert client.post(decision, json={"type": "accept", "slot_index": 1}, headers=headers).status_code == 200
        again = client.post(decision, json={"type": "accept", "slot_index": 2}, headers=headers)
        assert again.status_code == 409 and "already decided: adopt, slot 1" in again.json()["detail"]
        assert client.post(decision, json={"type": "accept"}, headers=headers).status_code == 200  # the same answer, retried
    assert services.feedback.for_run(runs[SECURITY]) == [] and services.feedback.for_run(runs[SLIP]) == []


def test_a_slot_booked_since_the_plan_shows_as_taken_in_show(copy):
    services, run = copy["services"], copy["runs"][SECURITY]
    consultant = okafor(services)
    # Someone books Okafor from 14:30 to 15:30 in another tool: slot 0 (15:00) is taken, slot 1 (15:30) is not.
    services.calendar.book(consultant, Booking(uid="board-review@example.com", consultant_id=OKAFOR, start=SHARED_START - timedelta(minutes=30),
                                               end=SHARED_START + timedelta(minutes=30), summary="Board review", description="",
                                               attendees=[consultant.email]))
    shown = json.loads(salesloop("show", run, "--json", config=copy["config"]).stdout)
    status = shown["slot_status"]
    assert [s["index"] for s in status] == [0, 1, 2]
    assert status[0]["taken_by"]["uid"] == "board-review@example.com" and [s["taken_by"] for s in status[1:]] == [None, None]
    text = salesloop("show", run, config=copy["config"], env={"COLUMNS": "300"}).stdout
    assert "TAKEN since the plan (by board-review@example.com)" in text and text.count("TAKEN") == 1

    # Choosing it anyway books nothing: apply finds the board review under the lock and sends the run back.
    with Orchestrator(services) as orch:
        with pytest.raises(SentBack, match="board-review@example.com"):
            orch.decide(run, adopt("rep-anna", slot_index=0))
        assert orch.state(run).plan.slots[0].start >= SHARED_START + timedelta(minutes=30)
        # Once decided, a different decision is refused, not applied in its place.
        orch.decide(run, reject("rep-anna", "customer went quiet"))
        with pytest.raises(RunError, match="already decided: reject"):
            orch.decide(run, edit("rep-anna", "Another text."))
    assert services.calendar.bookings(consultant, booking_uid(run)) == 0
