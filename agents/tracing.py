"""Build a node's StepTrace: every node says what it read, what it produced and how long it took."""

from __future__ import annotations

from datetime import datetime, timezone

from provenance import SourceRef, StepTrace


class StepTimer:
    """Started when a node begins; `finish` makes the node's trace entry."""

    def __init__(self, step: str, run_id: str):
        self.step = step
        self.run_id = run_id
        self.started_at = datetime.now(timezone.utc)

    def finish(self, inputs: list[SourceRef], summary: str, **extra) -> StepTrace:
        return StepTrace(
            step=self.step,
            run_id=self.run_id,
            inputs=_unique(inputs),
            output_summary=summary,
            started_at=self.started_at,
            ended_at=datetime.now(timezone.utc),
            **extra,
        )


def _unique(refs: list[SourceRef]) -> list[SourceRef]:
    return list(dict.fromkeys(refs))
