"""Streams of demo events for load tests and benchmarks: inbound emails from real demo contacts, and cold web leads."""

from __future__ import annotations

import random
from collections.abc import Collection
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tools.crm.records import CRMEvent, InboundEmailPayload, NewLeadPayload
from tools.crm.source import JsonSnapshotCRM

REQUESTS = [
    ("Pricing for a rollout", "Could you send pricing for a rollout across our {n} sites? We need a proposal before our budget review."),
    ("Integration question", "We are evaluating tools and need to know how the integration with our current systems would work."),
    ("Demo request", "Our team would like a demo next week; we are comparing two vendors and decide this quarter."),
    ("Timeline", "What timeline would a rollout take for a company of our size? Our deadline is the end of the quarter."),
    ("Security review", "Before we sign, our security team needs your answers on data handling and access control."),
    ("Renewal and expansion", "We are happy with the pilot and want a quote to expand to {n} more teams."),
]


def inbound_email_stream(crm_dir: Path, count: int, seed: int = 0, start: datetime | None = None,
                         account_ids: Collection[str] | None = None, id_prefix: str | None = None) -> list[CRMEvent]:
    """`count` deterministic inbound emails, each from a real contact of the snapshot, one hour apart.

    `account_ids` draws only from those accounts' contacts (the evaluation split's parts); `id_prefix` names the
    events `<id_prefix>-0000`, … instead of `stream-<seed>-0000`. Without them the stream is what it always was."""
    rng = random.Random(seed)
    contacts = JsonSnapshotCRM(crm_dir).contacts()
    if account_ids is not None:
        contacts = [c for c in contacts if c.account_id in account_ids]
        if not contacts:
            raise ValueError(f"no contact of accounts {sorted(account_ids)} in {crm_dir}; generate the demo CRM the split was drawn from")
    start = start or datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
    prefix = id_prefix or f"stream-{seed}"
    events = []
    for i in range(count):
        contact = rng.choice(contacts)
        subject, body = rng.choice(REQUESTS)
        payload = InboundEmailPayload(message_id=f"<{prefix}-{i}@demo>", from_email=contact.email, subject=subject,
                                      body=f"Hello,\n\n{body.format(n=rng.randint(2, 12))}\n\n{contact.full_name}")
        events.append(CRMEvent(id=f"{prefix}-{i:04d}", type="inbound_email", occurred_at=start + timedelta(hours=i),
                               source="demo-stream", payload=payload))
    return events


def cold_lead_stream(count: int, seed: int = 0, start: datetime | None = None) -> list[CRMEvent]:
    """`count` web-form leads too small and too vague to draft for (graded D): recorded, never drafted."""
    rng = random.Random(seed)
    start = start or datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
    events = []
    for i in range(count):
        payload = NewLeadPayload(
            lead_id=f"cold-{seed}-{i:04d}", company=f"Tiny Shop {i}", industry="education", employees=rng.randint(1, 20),
            region="EMEA", country="DE", timezone="Europe/Berlin", contact_name=f"Visitor {i}", email=f"visitor{i}@shop{i}.example",
            title="intern", message="Just browsing.")
        events.append(CRMEvent(id=f"cold-{seed}-{i:04d}", type="new_lead", occurred_at=start + timedelta(minutes=i),
                               source="web-form", payload=payload))
    return events
