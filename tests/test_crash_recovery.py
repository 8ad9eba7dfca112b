"""Crash recovery: `salesloop serve` is SIGKILLed at each stage of an event's life and restarted.

Stages: an acknowledged event just claimed by a worker; mid-graph (after the draft's checkpoint); a run waiting
for its rep; the middle of applying the rep's decision (after the booking, before the node finished). After the
restarts every acknowledged event reaches its final state, no run is lost, and nothing happens twice: one booking
per run, one feedback record, one audit entry per step and decision, and an intact audit chain.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import yaml

from agents.services import Services
from configs import load_settings
from service.auth import TokenStore
from service.owners import Owner
from demo.crash_burst import DRAFTED_STEPS, RECORDED_STEPS, REPLANNED_STEPS, ServeProcess, crash_burst, interleave, second_vector_store
from demo.stream import cold_lead_stream, inbound_email_stream
from tests.conftest import config_dict
from tests.postgres_server import postgres_server, postgres_url  # noqa: F401 - fixtures
from tests.test_graph import demo_event
from orchestrator import run_id_for
from tools.calendar import booking_uid
from tools.cases import index_cases
from tools.failpoints import ENV as FAILPOINT

SECRET = "crash-test-secret"


STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_server_left_behind():
    yield
    for proc in STARTED:  # a failed assertion must not leave a server holding the data dir
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    STARTED.clear()


class Server(ServeProcess):
    """One `salesloop serve` process on a free loopback port, up and answering; optionally with a failpoint."""

    def __init__(self, config: Path, failpoint: str | None = None):
        env = {**os.environ, "SALESLOOP_WEBHOOK_SECRET": SECRET}
        env.pop(FAILPOINT, None)
        if failpoint:
            env[FAILPOINT] = failpoint
        super().__init__(config, env, config.parent, ready_timeout_s=180)
        STARTED.append(self.proc)
        self.wait_ready()

    def post(self, event) -> dict:
        return super().post(event, SECRET)

    def killed(self, timeout: float = 300) -> int:
        """Wait for the process to kill itself at its failpoint."""
        return self.proc.wait(timeout=timeout)


def wait_until(check, timeout: float = 300, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def setup(tmp_path, data_dir, model_dir):
    raw = config_dict(data_dir, model_dir)
    # A lease far longer than the test waits: an event comes back after a restart only because the restarted
    # process takes over at once the items of the dead one on its host, never because a lease ran out.
    raw["service"] = {"lease_s": 3600, "backoff_base_s": 1, "backoff_max_s": 2, "max_attempts": 10}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    settings = load_settings(config, env={})
    with Services(settings) as services:  # index before any server: Qdrant local mode is one process at a time
        index_cases(services.crm, services.embedder, services.vectors)
    store = TokenStore(settings.resolve(settings.service.tokens_file))
    manager, admin = store.add("lee", "manager"), store.add("ops", "admin")
    return config, settings, {"Authorization": f"Bearer {manager}"}, {"Authorization": f"Bearer {admin}"}


def run_status(server: Server, auth: dict, run_id: str) -> str | None:
    answer = httpx.get(f"{server.url}/api/runs/{run_id}", headers=auth, timeout=30)
    return answer.json()["run"]["status"] if answer.status_code == 200 else None


def test_sigkill_at_every_stage_loses_nothing_and_repeats_nothing(setup, data_dir):
    config, settings, auth, admin = setup
    first, second = demo_event(data_dir, "security-review"), demo_event(data_dir, "06-deal-stage-change")
    run_of = {"first": run_id_for(first), "second": run_id_for(second)}

    # 1. An acknowledged event, claimed by a worker that dies before doing anything with it.
    server = Server(config, failpoint="worker:claimed")
    server.post(first)
    assert server.killed() == -signal.SIGKILL

    # 2. Restarted: the dead worker's event is taken over at start-up and processed; the process dies after the draft.
    server = Server(config, failpoint="after_step:draft_proposal")
    assert server.killed() == -signal.SIGKILL

    # 3. Restarted: the queue item, still leased to the dead worker, is taken over at once; the run resumes after the
    # draft (not from the start), waits for its rep, and the item ends done with that run. A second event arrives.
    server = Server(config, failpoint="apply:after_booking")
    wait_until(lambda: run_status(server, auth, run_of["first"]) == "waiting", what="the first run to wait")
    item = wait_until(lambda: [i for i in httpx.get(f"{server.url}/api/queue", headers=admin, timeout=30).json()["items"]
                               if i["status"] == "done"], what="the first item to be done")[0]
    assert (item["run_id"], item["attempts"], item["lease_owner"]) == (run_of["first"], 2, None), item
    assert "died before it finished" in item["last_error"], "each death counted as a failed attempt"
    server.post(second)
    wait_until(lambda: run_status(server, auth, run_of["second"]) == "waiting", what="the second run to wait")

    # 4. The rep adopts the first draft: the process dies after booking, before the apply step finished.
    with pytest.raises(httpx.TransportError):
        httpx.post(f"{server.url}/api/runs/{run_of['first']}/decision", json={"type": "accept"}, headers=auth, timeout=120)
    assert server.killed() == -signal.SIGKILL

    # 5. Restarted: recovery finishes applying the decision. Then the process is killed while the second run waits.
    server = Server(config)
    wait_until(lambda: run_status(server, auth, run_of["first"]) == "done", what="recovery to finish the first run")
    assert run_status(server, auth, run_of["second"]) == "waiting"
    server.kill()

    # 6. Restarted: the second run still waits; its rep adopts it.
    server = Server(config)
    decided = httpx.post(f"{server.url}/api/runs/{run_of['second']}/decision", json={"type": "accept"}, headers=auth, timeout=300)
    assert decided.status_code == 200, decided.text
    queue = httpx.get(f"{server.url}/api/queue", headers=admin, timeout=30).json()
    server.kill()

    assert queue["counts"]["done"] == 2 and sum(queue["counts"].values()) == 2, "both acknowledged events reached done"
    _assert_nothing_twice(settings, list(run_of.values()))


def _assert_nothing_twice(settings, run_ids: list[str]) -> None:
    with Services(settings) as services:
        from orchestrator import Orchestrator

        with Orchestrator(services) as orch:
            for run_id in run_ids:
                state = orch.state(run_id)
                steps = [s.step for s in state.trace]
                assert steps == ["normalize", "grade_lead", "retrieve_cases", "plan_schedule", "draft_proposal", "await_rep", "apply"], steps
                assert len(services.feedback.for_run(run_id)) == 1
                calendars = settings.resolve(settings.scheduling.calendar_dir).glob("*.ics")
                assert sum(p.read_text().count(booking_uid(run_id)) for p in calendars) == 1
            assert len(orch.runs()) == len(run_ids), "no run lost, none made twice"
        entries = services.audit.entries()
        assert services.audit.verify().ok
        per_step = Counter((e.subject, e.data.get("step"), e.kind) for e in entries)
        assert all(count == 1 for count in per_step.values()), per_step


# Short next to the 15 minutes a lease used to be, and long enough that two of them cover restarting a serve process
# and draining the rest of the burst on a loaded 2-core machine (`bench/load.py --crash`: 50 s with 30 s leases).
BURST_LEASE_S = 60.0


def test_two_processes_on_postgres_a_sigkill_mid_burst_loses_nothing_and_repeats_nothing(tmp_path, data_dir, model_dir, postgres_url,
                                                                                         monkeypatch):
    monkeypatch.setenv("SALESLOOP_POSTGRES_URL", postgres_url)
    raw = config_dict(data_dir, model_dir)
    raw["database"] = {"backend": "postgres"}
    raw["service"] = {"lease_s": BURST_LEASE_S}
    configs = (tmp_path / "a.yaml", tmp_path / "b.yaml")
    configs[0].write_text(yaml.safe_dump(raw))
    with Services(load_settings(configs[0], env={})) as services:
        index_cases(services.crm, services.embedder, services.vectors)
    raw["vector_store"]["path"] = second_vector_store(data_dir)  # Qdrant local mode: one process per directory
    configs[1].write_text(yaml.safe_dump(raw))
    drafted, cold = inbound_email_stream(data_dir / "crm", 4, seed=11), cold_lead_stream(12, seed=11)
    events = interleave(drafted, cold)  # a draft, three cold leads, a draft, ...

    result = crash_burst(configs, events, {e.id for e in drafted}, SECRET, tmp_path)

    assert result.queue == {"queued": 0, "processing": 0, "done": len(events), "dead": 0}, result
    assert result.killed_holding and result.done_before_kill, "killed mid-burst, holding an item"
    assert result.seconds_to_done <= 2 * BURST_LEASE_S, f"every item done within two leases of the restart: {result}"
    assert set(result.attempts) <= set(result.killed_holding) and set(result.attempts.values()) <= {1}, \
        "only the killed process's items were taken back, once; no live lease ran out"
    assert result.held_by_two == [], "two live processes never held the same item"
    a, b, restarted = (result.owners[k] for k in ("A", "B", "A restarted"))
    assert a and b and not set(a) & set(b) and not set(restarted) & set(a), result.owners
    assert len({Owner.parse(o).host for o in a + b}) == 1 and len({Owner.parse(o).pid for o in a + b}) == 2, "same host, two processes"
    assert (result.bookings.expected, result.feedback.expected) == (4, 4)
    # Drafted runs may share a consultant's slot: an adopt sent back (issue 21) re-plans, and its steps are audited again.
    assert result.audit.expected == 4 * (len(DRAFTED_STEPS) + 1) + 12 * len(RECORDED_STEPS) + len(REPLANNED_STEPS) * result.sent_back
    for effect in (result.bookings, result.feedback, result.audit):
        assert (effect.lost, effect.duplicated) == (0, 0), result
