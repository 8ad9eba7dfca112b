"""A burst of CRM events through the service's webhook, each delivered twice, then drained by its workers.

Used by tests/test_load.py (a reduced count, in CI) and bench/load.py (the full 500).
"""

from __future__ import annotations

import json
import time

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict

from service.signatures import HMAC_HEADER, sign_hmac_sha256
from tools.crm.records import CRMEvent


class BurstResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    posted: int
    accepted_new: int
    answered_5xx: int
    seconds_to_post: float
    seconds_to_drain: float
    queue: dict[str, int]
    errors: list[str]


def run_burst(app: FastAPI, events: list[CRMEvent], secret: str, timeout_s: float = 3600) -> BurstResult:
    """Post every event twice (a CRM's redelivery), then wait until the queue holds nothing queued or processing."""
    started = time.monotonic()
    new, server_errors = 0, 0
    with TestClient(app) as client:  # entering starts the app's workers
        for event in events + events:
            body = json.dumps(event.model_dump(mode="json")).encode()
            answer = client.post("/webhooks/generic", content=body, headers={HMAC_HEADER: sign_hmac_sha256(secret, body)})
            server_errors += answer.status_code >= 500
            new += sum(a["new"] for a in answer.json().get("accepted", [])) if answer.status_code == 202 else 0
        posted = time.monotonic()
        queue = app.state.queue
        while _pending(queue.counts()) and time.monotonic() - posted < timeout_s:
            time.sleep(0.5)
        drained = time.monotonic()
    errors = [item.last_error for item in queue.list(limit=10_000) if item.last_error]
    return BurstResult(posted=2 * len(events), accepted_new=new, answered_5xx=server_errors, seconds_to_post=posted - started,
                       seconds_to_drain=drained - posted, queue=queue.counts(), errors=errors)


def _pending(counts: dict[str, int]) -> int:
    return counts.get("queued", 0) + counts.get("processing", 0)
