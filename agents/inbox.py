"""The rep's side of an interrupt, in LangChain's Agent Inbox shape (HumanInterrupt / HumanResponse)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agents.injection import describe
from agents.state import RepDecision, RunState


class InterruptConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    allow_ignore: bool
    allow_respond: bool
    allow_edit: bool
    allow_accept: bool


class ActionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: str
    args: dict[str, Any]


class HumanInterrupt(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action_request: ActionRequest
    config: InterruptConfig
    description: str


class InvalidDecision(ValueError):
    """A rep's answer that does not fit the run it answers; refused before anything is written."""


class HumanResponse(BaseModel):
    """Agent Inbox's answer; `rep_id` and `slot_index` are our additions (who decided, which slot to book)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["accept", "edit", "response", "ignore"]
    args: ActionRequest | str | None = None
    rep_id: str = Field(min_length=1)
    slot_index: int | None = Field(default=None, ge=0, description="which proposed slot to book; none given: the first one")

    @model_validator(mode="after")
    def _args_fit_type(self) -> HumanResponse:
        if self.type == "edit" and not (isinstance(self.args, ActionRequest) and str(self.args.args.get("draft", "")).strip()):
            raise ValueError("an edit needs args.args.draft with the edited text")
        if self.type == "response" and not (isinstance(self.args, str) and self.args.strip()):
            raise ValueError("a response (reject) needs the reason as args")
        return self

    def to_decision(self, decided_at: datetime) -> RepDecision:
        if self.type == "accept":
            return RepDecision(decision="adopt", rep_id=self.rep_id, slot_index=self.slot_index, decided_at=decided_at)
        if self.type == "edit":
            return RepDecision(decision="edit", rep_id=self.rep_id, final_text=str(self.args.args["draft"]).strip(),
                               slot_index=self.slot_index, decided_at=decided_at)
        reason = self.args.strip() if isinstance(self.args, str) else "ignored in the inbox"
        return RepDecision(decision="reject", rep_id=self.rep_id, reason=reason, decided_at=decided_at)


def adopt(rep_id: str, slot_index: int | None = None) -> HumanResponse:
    return HumanResponse(type="accept", rep_id=rep_id, slot_index=slot_index)


def edit(rep_id: str, text: str, slot_index: int | None = None) -> HumanResponse:
    return HumanResponse(type="edit", args=ActionRequest(action="send_proposal", args={"draft": text}), rep_id=rep_id, slot_index=slot_index)


def reject(rep_id: str, reason: str) -> HumanResponse:
    return HumanResponse(type="response", args=reason, rep_id=rep_id)


def check_response(response: HumanResponse, state: RunState) -> HumanResponse:
    """The answer with its slot resolved against the run's proposed slots; InvalidDecision, saying what to change, if it
    does not fit. A rep's explicit choice is never replaced by another one."""
    slots = state.plan.slots if state.plan else []
    if response.type in ("response", "ignore"):
        if response.slot_index is not None:
            raise InvalidDecision(f"a rejection books nothing, so it takes no slot (got slot {response.slot_index}); leave the slot out")
        return response
    if response.type == "accept" and response.args is not None and _draft_in(response.args) != state.draft.text:
        raise InvalidDecision("an accept sends the draft as written, but this one carries other text; "
                              "send type edit with args.args.draft to change the draft")
    if not slots:
        if response.slot_index is not None:
            why = "; ".join(state.plan.notes) if state.plan and state.plan.notes else "no consultant was matched"
            raise InvalidDecision(f"run {state.run_id} proposes no meeting ({why}), so slot {response.slot_index} cannot be "
                                  "booked; leave the slot out and arrange the meeting by hand")
        return response
    if response.slot_index is None:
        return response.model_copy(update={"slot_index": 0})  # the documented default: the first proposed slot
    if response.slot_index >= len(slots):
        listed = ", ".join(f"{i}: {slot.label()}" for i, slot in enumerate(slots))
        raise InvalidDecision(f"slot {response.slot_index} is not one of run {state.run_id}'s proposed slots ({listed}); "
                              f"choose a slot from 0 to {len(slots) - 1}")
    return response


def _draft_in(args: ActionRequest | str) -> object:
    return args.args.get("draft") if isinstance(args, ActionRequest) else args


def review_request(state: RunState) -> HumanInterrupt:
    """Everything the rep needs to decide, with the sources of each part."""
    lead, grade, plan, draft = state.lead, state.grade, state.plan, state.draft
    args = {
        "run_id": state.run_id,
        "lead": {"id": lead.lead_id, "company": lead.account_name, "contact": lead.contact_name, "role": lead.role, "owner_rep_id": lead.owner_rep_id},
        "grade": grade.model_dump(mode="json"),
        "cases": [{"marker": c.marker, "case_id": c.case_id, "outcome": c.outcome, "score": c.score, "chunk_ids": [k.id for k in c.chunks]} for c in state.cases],
        "draft": draft.text,
        "citations": [c.model_dump(mode="json") for c in draft.citations],
        "slots": [s.model_dump(mode="json") for s in plan.slots],
        "consultant": plan.consultant.consultant.id if plan.consultant else None,
        "clauses": [{"id": c.clause.id, "version": c.clause.version, "rule": c.rule_id} for c in plan.clauses],
    }
    description = (f"Proposal draft for {lead.account_name} (grade {grade.grade}, score {grade.score:.0f}). "
                   "Accept to send it and book the first slot, edit the draft, or respond with a reason to reject.")
    if state.conflicts:  # only a run sent back has conflicts while it waits: the latest one is why it waits again
        description += f" Your earlier decision was not applied: {state.conflicts[-1].describe()}. Choose one of the new slots."
    if draft.fallback_reason:
        description += f" This is a fallback template draft: {draft.fallback_reason}."
    if draft.injection:
        description += f" Warning: {describe(draft.injection)}; read the customer's text before accepting."
    return HumanInterrupt(
        action_request=ActionRequest(action="send_proposal", args=args),
        config=InterruptConfig(allow_ignore=True, allow_respond=True, allow_edit=True, allow_accept=True),
        description=description,
    )
