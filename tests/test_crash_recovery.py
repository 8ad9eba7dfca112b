"""Crash recovery: `salesloop serve` is SIGKILLed at each stage of an event's life and restarted.

Stages: an acknowledged event just claimed by a worker; mid-graph (after the draft's checkpoint); a run waiting
for its rep; the middle of applying the rep's decision (after the booking, before the node finished). After the
restarts every acknowledged event reaches its final state, no run is lost, and nothing happens twice: one booking
per run, one feedback record, one audit entry per step and decision, and an intact audit chain.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import yaml

from agents.services import Services
from configs import load_settings
from service.auth import TokenStore
from service.signatures import HMAC_HEADER, sign_hmac_sha256
from tests.conftest import config_dict
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


class Server:
    """One `salesloop serve` process on a free loopback port."""

    def __init__(self, config: Path, failpoint: str | None = None):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        env = {**os.environ, "SALESLOOP_WEBHOOK_SECRET": SECRET}
        env.pop(FAILPOINT, None)
        if failpoint:
            env[FAILPOINT] = failpoint
        # A file, not a pipe: nobody reads a pipe while the server runs, and a full one would block its logging.
        self.log = config.parent / f"serve-{self.port}.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--config", str(config), "--port", str(self.port)],
                                         env=env, stdout=subprocess.DEVNULL, stderr=log)
        STARTED.append(self.proc)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/openapi.json", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.3)
        raise AssertionError("serve did not come up in 180 s")

    def post(self, event) -> dict:
        body = json.dumps(event.model_dump(mode="json")).encode()
        answer = httpx.post(f"{self.url}/webhooks/generic", content=body, headers={HMAC_HEADER: sign_hmac_sha256(SECRET, body)}, timeout=30)
        assert answer.status_code == 202, answer.text
        return answer.json()

    def killed(self, timeout: float = 300) -> int:
        """Wait for the process to kill itself at its failpoint."""
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


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
    raw["service"] = {"lease_s": 2, "backoff_base_s": 1, "backoff_max_s": 2, "max_attempts": 10}
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

    # 2. Restarted: the lease runs out, the event is taken again, and the process dies after the draft's checkpoint.
    server = Server(config, failpoint="after_step:draft_proposal")
    assert server.killed() == -signal.SIGKILL

    # 3. Restarted: the run resumes after the draft (not from the start) and waits for its rep; a second event arrives.
    server = Server(config, failpoint="apply:after_booking")
    wait_until(lambda: run_status(server, auth, run_of["first"]) == "waiting", what="the first run to wait")
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
                assert steps == ["normalize", "grade_lead", "retrieve_cases", "draft_proposal", "plan_schedule", "await_rep", "apply"], steps
                assert len(services.feedback.for_run(run_id)) == 1
                calendars = settings.resolve(settings.scheduling.calendar_dir).glob("*.ics")
                assert sum(p.read_text().count(booking_uid(run_id)) for p in calendars) == 1
            assert len(orch.runs()) == len(run_ids), "no run lost, none made twice"
        entries = services.audit.entries()
        assert services.audit.verify().ok
        per_step = Counter((e.subject, e.data.get("step"), e.kind) for e in entries)
        assert all(count == 1 for count in per_step.values()), per_step
