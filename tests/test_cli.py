"""The `salesloop` command as a user runs it: real subprocesses, real files, exit codes and messages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.conftest import write_config


def salesloop(*args: str, config: Path, check: bool = True, timeout: int = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"SALESLOOP_DEBUG", "SALESLOOP_DATA_DIR", "SALESLOOP_CONFIG"}} | (env or {})
    result = subprocess.run([sys.executable, "-m", "cli", *args, "--config", str(config)], capture_output=True, text=True,
                            env=env, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"salesloop {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


@pytest.fixture
def config(tmp_path, data_dir, model_dir) -> Path:
    return write_config(tmp_path / "config.yaml", data_dir, model_dir)


def one_event_file(tmp_path: Path, data_dir: Path, name: str) -> Path:
    (source,) = sorted((data_dir / "events").glob(f"*{name}*.json"))
    target = tmp_path / source.name
    target.write_text(source.read_text())
    return target


def files_under(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_size for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "content, expected",
    [
        ('{"id": "e1", "type": "new_lead", "source": "crm", "payload": {}}', "occurred_at: Field required"),
        ('{"id": "e1", "type": "meeting_booked", "occurred_at": "2026-11-20T10:00:00Z", "source": "crm", "payload": {}}', "type: Input should be"),
        ('{"id": "e1", "type": "new_lead",', "not valid JSON"),
    ],
    ids=["missing-fields", "unknown-type", "invalid-json"],
)
def test_bad_event_is_one_line_error_and_writes_nothing(tmp_path, config, data_dir, content, expected):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    before = files_under(data_dir)
    result = salesloop("event", str(bad), config=config, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0] and str(bad) in lines[0]
    assert files_under(data_dir) == before


def test_config_with_unknown_key_is_one_line_error(tmp_path, config, data_dir):
    raw = yaml.safe_load(config.read_text())
    raw["llm"]["bakend"] = "transformers"
    bad = tmp_path / "bad-config.yaml"
    bad.write_text(yaml.safe_dump(raw))
    before = files_under(data_dir)
    result = salesloop("inbox", config=bad, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {bad}: llm.bakend: unknown key"
    assert files_under(data_dir) == before


def test_event_inbox_show_trace_decide(tmp_path, config, data_dir):
    events = one_event_file(tmp_path, data_dir, "delivery-slip")
    (run,) = json.loads(salesloop("event", str(events), "--json", config=config).stdout)
    assert run["status"] == "waiting"

    inbox = json.loads(salesloop("inbox", "--json", config=config).stdout)
    assert [r["run"]["run_id"] for r in inbox] == [run["run_id"]]
    waiting = inbox[0]["state"]
    assert waiting["grade"]["grade"] in "ABCD" and len(waiting["cases"]) >= 3 and waiting["draft"]["text"]
    assert waiting["plan"]["slots"] and waiting["plan"]["clauses"]

    shown = salesloop("show", run["run_id"], config=config).stdout
    assert "Grade" in shown and "Similar past cases" in shown and waiting["cases"][0]["case_id"] in shown
    # Every sentence shows its sources or is marked unsupported; --json carries the supported share.
    draft = json.loads(salesloop("show", run["run_id"], "--json", config=config).stdout)["state"]["draft"]
    sentences = draft["sentences"]
    assert sentences and draft["supported_share"] == sum(bool(s["sources"]) for s in sentences) / len(sentences)
    assert all(bool(s["sources"]) == (s["method"] != "none") for s in sentences)
    assert "Sources by sentence" in shown and shown.count("UNSUPPORTED") == sum(not s["sources"] for s in sentences)

    steps = json.loads(salesloop("trace", run["run_id"], "--json", config=config).stdout)["steps"]
    assert [s["step"] for s in steps][:5] == ["normalize", "grade_lead", "retrieve_cases", "plan_schedule", "draft_proposal"]
    assert all(s["inputs"] for s in steps)

    decided = json.loads(salesloop("decide", run["run_id"], "--adopt", "--rep", "rep-anna", "--json", config=config).stdout)
    again = json.loads(salesloop("decide", run["run_id"], "--adopt", "--rep", "rep-anna", "--json", config=config).stdout)
    assert decided["run"]["status"] == again["run"]["status"] == "done"
    uid = decided["applied"]["booking_uid"]
    ics = "".join(p.read_text() for p in (data_dir / "crm" / "calendars").glob("*.ics"))
    assert ics.count(f"UID:{uid}") == 1

    tree = salesloop("trace", run["run_id"], config=config).stdout
    assert "await_rep" in tree and "human:rep-anna" in tree


def test_decide_needs_exactly_one_choice(config):
    result = salesloop("decide", "run-x", config=config, check=False)
    assert result.returncode != 0 and "exactly one of --adopt, --edit FILE, --reject REASON" in result.stderr


def test_unknown_run_is_clear(config):
    result = salesloop("show", "run-nope", config=config, check=False)
    assert result.returncode == 2 and "no run 'run-nope'" in result.stderr


WAIT_THEN_HANG = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from agents.services import Services
    from configs import load_settings
    from orchestrator import Orchestrator
    from tools.crm.event_file import load_events

    from tools.cases import index_cases

    services = Services(load_settings(Path(sys.argv[1])))
    index_cases(services.crm, services.embedder, services.vectors)
    orch = Orchestrator(services)
    info, _ = orch.start(load_events(Path(sys.argv[2]))[0])
    print(info.run_id, info.status, flush=True)
    time.sleep(600)  # killed here, while the run waits for its rep
    """
)


def test_waiting_run_survives_kill_and_is_decided_after_restart(tmp_path, config, data_dir):
    events = one_event_file(tmp_path, data_dir, "new-lead-sakura")
    proc = subprocess.Popen([sys.executable, "-c", WAIT_THEN_HANG, str(config), str(events)], stdout=subprocess.PIPE, text=True)
    try:
        run_id, status = proc.stdout.readline().split()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert status == "waiting" and proc.returncode == -signal.SIGKILL

    inbox = json.loads(salesloop("inbox", "--json", config=config).stdout)
    assert [r["run"]["run_id"] for r in inbox] == [run_id]
    decided = json.loads(salesloop("decide", run_id, "--reject", "budget frozen until Q3", "--json", config=config).stdout)
    assert decided["run"]["status"] == "done" and decided["decision"]["reason"] == "budget frozen until Q3"
