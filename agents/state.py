"""The run state the graph carries, and the records each node adds to it."""

from __future__ import annotations

import operator
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from agents.injection import InjectionSignal
from prompts.templates import ChatMessage
from provenance import SourceRef, StepTrace
from provenance.consent import ConsentFlag
from tools.calendar import BusyEvent, ConsultantMatch
from tools.clauses import ClauseChoice
from tools.crm.connector import WrittenRecord
from tools.crm.records import CRMEvent, DealStage, DocumentChunk, Industry, Region
from tools.scheduling_records import Slot


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LeadFact(Model):
    """One fact the draft may cite as [marker], with the CRM field it came from."""

    marker: str
    field: str = Field(default="unknown", description="the profile field it states: what the consent policy allows or refuses "
                                                       "(runs from before it existed say unknown, which no purpose allows)")
    label: str
    value: str
    source: SourceRef


class LeadProfile(Model):
    lead_id: str
    account_id: str | None
    account_name: str
    industry: Industry
    employees: int
    region: Region | Literal["unknown"] = Field(description="the sales region, stated or derived from the country; unknown if neither")
    country: str
    timezone: str = Field(description="stated, derived from country and state, or the default: refs['timezone'] names the rule")
    owner_rep_id: str | None
    contact_id: str | None
    contact_name: str
    email: str
    raw_title: str
    role: str
    seniority: str
    decision_maker: bool
    budget_usd: int | None
    engagement: dict[str, int] = Field(description="activity counts by kind: web_visit, email_open, demo_request, inbound_email, stage_change")
    deal_id: str | None = None
    deal_stage: DealStage | None = None
    request: str = Field(default="", description="what the customer wrote: form message, email body, attachment text")
    consents: dict[str, ConsentFlag] = Field(default_factory=dict, description="the contact's consent flags when the event came")
    facts: list[LeadFact]
    refs: dict[str, SourceRef] = Field(description="where each profile field was read")


class SignalScore(Model):
    signal: str
    weight: float
    fraction: float = Field(ge=0, le=1)
    points: float
    reason: str
    sources: list[SourceRef] = Field(min_length=1)


class LeadGrade(Model):
    score: float = Field(ge=0, le=100)
    grade: Literal["A", "B", "C", "D"]
    signals: list[SignalScore]


class CaseHit(Model):
    marker: str
    case_id: str
    account_id: str
    industry: Industry
    outcome: Literal["won", "lost"]
    score: float
    summary: str
    chunks: list[DocumentChunk]


class Citation(Model):
    marker: str
    sources: list[SourceRef]


class DraftSentence(Model):
    """One sentence of a draft and the sources that support it; no sources means unsupported."""

    text: str
    sources: list[SourceRef]
    method: Literal["marker", "similarity", "plan", "none"] = Field(
        description="marker: the model's own validated markers; similarity: embedding attribution; plan: written from a "
                    "content-plan item and verified against its sources (drafting.mode plan); none: unsupported")
    similarity: float | None = Field(default=None, description="best cosine similarity to a given fact or chunk")

    @property
    def supported(self) -> bool:
        return bool(self.sources)


class ProposalDraft(Model):
    text: str
    citations: list[Citation]
    sentences: list[DraftSentence] = Field(default_factory=list)
    supported_share: float | None = Field(default=None, ge=0, le=1, description="share of sentences with at least one source")
    removed_markers: list[str] = Field(description="markers the model wrote that it was not given")
    messages: list[ChatMessage] = Field(description="the chat as rendered; a remote model got it masked (see the step's notes)")
    prompt_name: str
    prompt_sha256: str
    model_id: str
    model_version: str
    adapter_id: str | None
    adapter_sha256: str | None = None
    input_tokens: int | None = None
    output_tokens: int
    stopped_by: str = Field(description="eos, max_tokens, max_sentences, deadline, or fallback (a template wrote it)")
    fallback_reason: str | None = Field(default=None, description="why the model's text was not used, if it was not")
    injection: list[InjectionSignal] = Field(default_factory=list, description="prompt-injection signals in the customer's text")
    guard_notes: list[str] = Field(default_factory=list, description="sentences the output guard removed, and why")


class SchedulePlan(Model):
    consultant: ConsultantMatch | None
    slots: list[Slot]
    clauses: list[ClauseChoice]
    notes: list[str] = Field(default_factory=list)


class RepDecision(Model):
    decision: Literal["adopt", "edit", "reject"]
    rep_id: str
    final_text: str | None = None
    reason: str | None = None
    slot_index: int | None = Field(default=None, ge=0, description="the proposed slot to book; None when nothing is to be booked")
    decided_at: datetime


class SlotConflict(Model):
    """A decision apply could not carry out: the slot the rep chose was booked by another event after the plan was made."""

    rep_id: str
    decision: Literal["adopt", "edit"]
    slot_index: int
    slot: Slot
    consultant_id: str
    taken_by: BusyEvent = Field(description="the event holding the time when apply looked, under the calendar's lock")
    detected_at: datetime

    def describe(self) -> str:
        return (f"slot {self.slot_index} ({self.slot.label()}) that {self.rep_id} chose was booked by {self.taken_by.uid} "
                "since the plan was made; nothing was booked or sent")


class ApplyResult(Model):
    booking_uid: str | None
    booked_now: bool
    booked_slot: Slot | None
    clause_ids: list[str]
    feedback_id: str
    crm_writes: list[WrittenRecord] = Field(default_factory=list, description="what the write-back left in the CRM, with its ids")


class RouteChoice(Model):
    """The route a trigger rule chose when the event came; kept with the run so a resume follows the same route."""

    name: str
    prompt: str | None = Field(description="the prompt that drafts on this route; None = record the lead only")
    record_below_grade: Literal["A", "B", "C", "D"] | None
    rule: SourceRef

    def records_only(self, grade: str) -> bool:
        # Grades sort A < B < C < D: a grade after the threshold is below it.
        return self.prompt is None or (self.record_below_grade is not None and grade > self.record_below_grade)


DEFAULT_ROUTE = RouteChoice(name="proposal", prompt="draft_proposal", record_below_grade=None,
                            rule=SourceRef(kind="rule", id="trigger:none", field="proposal", note="run started without trigger rules"))


class RunState(Model):
    run_id: str
    event: CRMEvent
    route: RouteChoice = DEFAULT_ROUTE
    lead: LeadProfile | None = None
    grade: LeadGrade | None = None
    cases: list[CaseHit] = Field(default_factory=list)
    draft: ProposalDraft | None = None
    plan: SchedulePlan | None = None
    decision: RepDecision | None = None
    applied: ApplyResult | None = None
    conflicts: list[SlotConflict] = Field(default_factory=list, description="decisions sent back to the rep because their slot was taken")
    trace: Annotated[list[StepTrace], operator.add] = Field(default_factory=list)
