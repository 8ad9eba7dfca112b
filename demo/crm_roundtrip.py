"""The whole CRM round trip against `salesloop serve` and a HubSpot stand-in on loopback (issue 16).

    PYTHONPATH=. .venv/bin/python demo/crm_roundtrip.py [--data-dir DIR]

1. starts the HubSpot stand-in (tools/crm/testing_hubspot.py) with a company, a deal and, later, a new contact;
2. makes a demo data dir (demo CRM, cases indexed) and a config with `crm.connector: hubspot` pointing at the stand-in;
3. starts `salesloop serve` as its own process;
4. sends HubSpot's signed `contact.creation` webhook: the worker fetches contact, company and deal, the run waits;
5. adopts the draft through the approvals API: the stand-in receives one e-mail, one meeting and one clause note;
6. the deal is won in "HubSpot" and its `deal.propertyChange` webhook arrives: the won outcome is linked to the run.
Every step prints what happened; the exit status is 0 only if the stand-in received exactly one write of each kind.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from configs.loader import DEFAULT_CONFIG  # noqa: E402
from demo.generate import generate_demo  # noqa: E402
from service.signatures import sign_hubspot_v3  # noqa: E402
from tools.crm.testing_hubspot import FakeHubSpot  # noqa: E402
from tools.data_dir import ensure_current  # noqa: E402

APP_SECRET = "demo-hubspot-app-secret"
SALESLOOP = [sys.executable, "-c", "from cli.app import main; main()"]  # the `salesloop` command, from this checkout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="where the demo data goes (default: a temporary directory, removed after)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for each run")
    args = parser.parse_args()
    work = args.data_dir or Path(tempfile.mkdtemp(prefix="salesloop-crm-"))
    try:
        with FakeHubSpot() as hubspot:
            return round_trip(hubspot, work, args.timeout)
    finally:
        if args.data_dir is None:
            shutil.rmtree(work, ignore_errors=True)


def round_trip(hubspot: FakeHubSpot, work: Path, timeout: float) -> int:
    company = hubspot.add("companies", {"name": "Lindqvist Verktyg AB", "industry": "MACHINERY", "numberofemployees": "640",
                                        "country": "Sweden"})
    deal = hubspot.add("deals", {"dealname": "Lindqvist retrofit", "amount": "150000", "dealstage": "qualifiedtobuy"})
    hubspot.associate("deals", deal, "companies", company)
    config, env = _setup(work, hubspot)
    say(f"HubSpot stand-in at {hubspot.base_url}; data in {work}")
    run = lambda *cli: subprocess.run([*SALESLOOP, *cli, "--config", str(config)], env=env, cwd=ROOT,
                                      check=True, capture_output=True, text=True).stdout.strip()
    run("index")
    token = run("tokens", "add", "demo-manager", "--role", "manager").splitlines()[-1]
    port = _free_port()
    server = subprocess.Popen([*SALESLOOP, "serve", "--port", str(port), "--config", str(config)], env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        client = httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {token}"})
        _wait_up(client, timeout)
        say("salesloop serve is up")

        contact = hubspot.add("contacts", {"firstname": "Elin", "lastname": "Lindqvist", "email": "elin@lindqvist-verktyg.se",
                                           "jobtitle": "COO", "message": "Could you quote a pilot rollout on two lines?"})
        hubspot.associate("contacts", contact, "companies", company)
        hubspot.associate("contacts", contact, "deals", deal)
        answer = _hubspot_webhook(client, base, {"eventId": 1, "subscriptionType": "contact.creation", "objectId": int(contact)})
        say(f"webhook contact.creation → {answer['events'][0]['outcome']} (fetch needed: {answer['events'][0]['needs_fetch']})")

        run_id = _wait(lambda: next((r["run"]["run_id"] for r in client.get("/api/runs").json()["runs"]), None), timeout, "a waiting run")
        shown = client.get(f"/api/runs/{run_id}").json()
        lead = shown["state"]["lead"]
        say(f"run {run_id} waits for a rep: {lead['contact_name']} at {lead['account_name']}, time zone {lead['timezone']} "
            f"({lead['refs']['timezone']['id']})")
        fetched = [ref["id"] + "@" + ref["version"] for ref in shown["state"]["trace"][0]["inputs"] if ref["id"].startswith("hubspot:")]
        say("fetched from HubSpot: " + ", ".join(fetched))

        decided = client.post(f"/api/runs/{run_id}/decision", json={"type": "accept"}).json()
        for write in decided["applied"]["crm_writes"]:
            say(f"written back: {write['kind']} {write['crm_id']} ({'created' if write['created'] else 'already there'})")
        counts = {kind: hubspot.created[kind] for kind in ("emails", "meetings", "notes")}
        say(f"the stand-in received: {counts}")

        hubspot.set_properties("deals", deal, {"dealstage": "closedwon"})
        _hubspot_webhook(client, base, {"eventId": 2, "subscriptionType": "deal.propertyChange", "objectId": int(deal),
                                        "propertyName": "dealstage", "propertyValue": "closedwon"})
        outcomes = _wait(lambda: client.get(f"/api/runs/{run_id}").json()["outcomes"] or None, timeout, "the won outcome")
        say(f"deal {deal} won → linked to run {run_id}: {json.dumps(outcomes[0])}")
        return 0 if counts == {"emails": 1, "meetings": 1, "notes": 1} else 1
    finally:
        server.terminate()
        server.wait(timeout=60)


def _setup(work: Path, hubspot: FakeHubSpot) -> tuple[Path, dict[str, str]]:
    data = work / "data"
    if not (data / "crm" / "accounts.json").exists():
        ensure_current(data, data / "crm")
        generate_demo(data / "crm", data / "events")
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["data_dir"] = str(data)
    raw["crm"] = {**raw["crm"], "connector": "hubspot", "hubspot": {"base_url": hubspot.base_url}}
    raw["llm"]["max_new_tokens"] = 48
    config = work / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SALESLOOP_HUBSPOT_APP_SECRET": APP_SECRET, "SALESLOOP_HUBSPOT_TOKEN": hubspot.token,
           "SALESLOOP_WEBHOOK_SECRET": "unused", "SALESLOOP_SALESFORCE_SECRET": "unused", "HF_HUB_OFFLINE": "1"}
    return config, env


def _hubspot_webhook(client: httpx.Client, base: str, event: dict) -> dict:
    body = json.dumps([{"subscriptionId": 2412, "portalId": 62515, "appId": 54321, "occurredAt": int(time.time() * 1000),
                        "attemptNumber": 0, "changeSource": "CRM", **event}]).encode()
    timestamp = str(int(time.time() * 1000))
    signature = sign_hubspot_v3(APP_SECRET, "POST", f"{base}/webhooks/hubspot", body, timestamp)
    answer = client.post("/webhooks/hubspot", content=body, headers={"X-HubSpot-Signature-v3": signature,
                                                                    "X-HubSpot-Request-Timestamp": timestamp})
    answer.raise_for_status()
    return answer.json()


def _wait(probe, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(1)
    raise SystemExit(f"gave up waiting for {what} after {timeout:.0f} s")


def _wait_up(client: httpx.Client, timeout: float) -> None:
    def up():
        try:
            return client.get("/api/me").status_code == 200
        except httpx.TransportError:
            return False
    _wait(up, timeout, "salesloop serve to start")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def say(text: str) -> None:
    print(f"[crm round trip] {text}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
