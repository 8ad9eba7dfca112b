"""Node 6: pause for a sales rep. The run waits in the checkpointer, across process restarts."""

from __future__ import annotations

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from agents.inbox import HumanResponse, review_request
from agents.services import Services
from agents.state import RunState
from agents.tracing import StepTimer
from provenance import SourceRef


def await_rep(state: RunState, runtime: Runtime[Services]) -> dict:
    # Runs twice: once up to interrupt(), then again from the top when the rep's answer resumes it.
    answer = HumanResponse.model_validate(interrupt(review_request(state).model_dump(mode="json")))
    timer = StepTimer("await_rep", state.run_id)
    decision = answer.to_decision(runtime.context.clock())
    human = SourceRef(kind="human", id=decision.rep_id, field=decision.decision, note=decision.reason)
    return {"decision": decision, "trace": [timer.finish([human], f"{decision.decision} by {decision.rep_id}")]}
