"""Trigger rules (configs/triggers.yaml): which CRM events start which graph route.

Rules are checked in order and the first whose conditions all hold fires; its id and route become a SourceRef
in the run's trace. A route names the prompt that drafts for it, or records the lead without drafting.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agents.state import RouteChoice
from provenance import SourceRef
from tools.crm.records import CRMEvent, DealStage, DealStageChangePayload, EventType, InboundEmailPayload, NewLeadPayload


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Route(Strict):
    description: str
    prompt: str | None = Field(description="the prompt file that drafts for this route; none = record the lead only")


class Conditions(Strict):
    """All given conditions must hold; an empty set matches every event."""

    event_type: EventType | None = None
    text_any: list[str] = Field(default_factory=list, description="the event's text contains any of these words (case-insensitive)")
    attachment_types: list[str] = Field(default_factory=list, description="an attachment has one of these content types")
    to_stage: list[DealStage] = Field(default_factory=list, description="a deal stage change to one of these stages")

    def hold_for(self, event: CRMEvent) -> bool:
        payload = event.payload
        if self.event_type and event.type != self.event_type:
            return False
        if self.text_any and not any(word.lower() in _text(event).lower() for word in self.text_any):
            return False
        if self.attachment_types and not (isinstance(payload, InboundEmailPayload)
                                          and any(a.content_type in self.attachment_types for a in payload.attachments)):
            return False
        return not self.to_stage or (isinstance(payload, DealStageChangePayload) and payload.to_stage in self.to_stage)


class TriggerRule(Strict):
    id: str = Field(min_length=1)
    description: str
    when: Conditions
    route: str
    record_below_grade: Literal["A", "B", "C", "D"] | None = Field(
        default=None, description="a lead graded below this is recorded only, with no draft (e.g. C for cold web leads)")


class TriggerRules(Strict):
    routes: dict[str, Route] = Field(min_length=1)
    rules: list[TriggerRule]
    default_route: str

    @model_validator(mode="after")
    def _routes_exist(self) -> TriggerRules:
        named = [(f"rule {r.id}", r.route) for r in self.rules] + [("default_route", self.default_route)]
        for where, route in named:
            if route not in self.routes:
                raise ValueError(f"{where} names route {route!r}, which is not under routes (known: {', '.join(sorted(self.routes))})")
        ids = [r.id for r in self.rules]
        if len(ids) != len(set(ids)):
            raise ValueError(f"rule ids must be unique; repeated: {', '.join(sorted({i for i in ids if ids.count(i) > 1}))}")
        return self

    def route_for(self, event: CRMEvent) -> RouteChoice:
        for rule in self.rules:
            if rule.when.hold_for(event):
                ref = SourceRef(kind="rule", id=f"trigger:{rule.id}", field=rule.route, note=rule.description)
                return self._choice(rule.route, ref, rule.record_below_grade)
        return self._choice(self.default_route, SourceRef(kind="rule", id="trigger:default", field=self.default_route, note="no rule matched"), None)

    def _choice(self, route: str, rule: SourceRef, record_below_grade: str | None) -> RouteChoice:
        return RouteChoice(name=route, prompt=self.routes[route].prompt, record_below_grade=record_below_grade, rule=rule)


def _text(event: CRMEvent) -> str:
    payload = event.payload
    if isinstance(payload, InboundEmailPayload):
        return f"{payload.subject}\n{payload.body}"
    if isinstance(payload, NewLeadPayload):
        return payload.message
    return ""
