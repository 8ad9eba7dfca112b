"""A burst through the webhook with 2 workers on SQLite: nothing lost, nothing run twice, no 'database is locked'.

CI runs a reduced burst (LOAD_EVENTS, default 24: a quarter drafted by the model, the rest cold leads that are
recorded without a draft); `bench/load.py` runs the full 500 and reports throughput.
"""

from __future__ import annotations

import os

import yaml

from agents.services import Services
from configs import load_settings
from demo.burst import run_burst
from demo.stream import cold_lead_stream, inbound_email_stream
from orchestrator import Orchestrator, run_id_for
from service.app import create_app
from tests.conftest import FIXED_NOW, config_dict
from tools.cases import index_cases

SECRET = "load-secret"
COUNT = int(os.environ.get("LOAD_EVENTS", "24"))


def test_a_burst_with_two_workers_loses_nothing_and_repeats_nothing(tmp_path, data_dir, model_dir, monkeypatch):
    raw = config_dict(data_dir, model_dir)
    raw["service"] = {"workers": 2}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("SALESLOOP_WEBHOOK_SECRET", SECRET)
    services = Services(load_settings(tmp_path / "config.yaml", env={}), clock=lambda: FIXED_NOW)
    index_cases(services.crm, services.embedder, services.vectors)
    drafted = COUNT // 4
    events = inbound_email_stream(data_dir / "crm", drafted, seed=5) + cold_lead_stream(COUNT - drafted, seed=5)
    app = create_app(services)

    result = run_burst(app, events, SECRET, timeout_s=1800)

    assert result.answered_5xx == 0 and result.accepted_new == COUNT, "every event acknowledged once, redeliveries too"
    assert result.queue == {"queued": 0, "processing": 0, "done": COUNT, "dead": 0}, result.queue
    assert not [e for e in result.errors if "locked" in e], "no 'database is locked' surfaced"
    with Orchestrator(services) as orch:  # the app's own closed with its lifespan
        runs = {info.run_id: info for info in orch.runs()}
    assert set(runs) == {run_id_for(e) for e in events}, "one run per event: none lost, none made twice"
    assert sum(i.status == "waiting" for i in runs.values()) == drafted
    assert sum(i.status == "done" for i in runs.values()) == COUNT - drafted
    report = services.audit.verify()
    assert report.ok and len({e.key for e in services.audit.entries()}) == report.entries
    services.close()

