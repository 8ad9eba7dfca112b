"""Training lineage: which adapters learned from a run, and which runs and decisions an adapter learned from."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from feedback.store import FeedbackStore
from finetune.registry import AdapterRegistry
from finetune.rounds import lineage_record_ids


class LineageRecord(BaseModel):
    """One feedback record an adapter trained on; the decision's details are gone if the person was erased."""

    model_config = ConfigDict(extra="forbid")

    record_id: str
    run_id: str | None
    adapter: str  # the version whose training set held it: the adapter itself or an ancestor it was warm-started from
    decision: Literal["adopt", "edit", "reject"] | None
    rep_id: str | None
    decided_at: datetime | None


def adapters_trained_on(registry: AdapterRegistry, record_ids: set[str]) -> list[str]:
    """Adapter versions that learned from any of these feedback records, directly or through a warm-start parent."""
    return [e.metadata.version for e in registry.entries() if record_ids & lineage_record_ids(registry, e.metadata.version)]


def adapter_lineage(registry: AdapterRegistry, feedback: FeedbackStore, version: str) -> list[LineageRecord]:
    """Every feedback record `version` learned from, its ancestors' included, with the run and rep behind it."""
    stored = {r.id: r for r in feedback.all()}
    rows: list[LineageRecord] = []
    current: str | None = version
    while current is not None:
        metadata = registry.get(current)
        for record_id in metadata.record_ids:
            record = stored.get(record_id)
            rows.append(LineageRecord(
                record_id=record_id, run_id=record.run_id if record else _run_of(record_id), adapter=current,
                decision=record.decision if record else None, rep_id=record.rep_id if record else None,
                decided_at=record.decided_at if record else None,
            ))
        current = metadata.parent_version
    return rows


def _run_of(record_id: str) -> str | None:
    """An erased decision's run, from its id (`<run>:decision`); corpus chunks have no run."""
    return record_id.removesuffix(":decision") if record_id.endswith(":decision") else None
