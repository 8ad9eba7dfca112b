"""The frozen evaluation sets of issue 14: draft-quality events, injection attacks and near-miss benign e-mails.

Each set is a dev part (tune on it) and a test part (score on it, never tune on it), held out by account with the
frozen split of bench/eval/split.yaml: a dev case comes from a dev account's contact, a test case from a test one's.
The files are data, written once by bench/eval/make_draft_eval.py and bench/eval/make_attack_eval.py and committed
before the drafting code they judge; this module only reads and checks them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from configs.loader import ConfigError
from tools.crm.records import (
    CRMChangePayload,
    CRMEvent,
    DealStage,
    DealStageChangePayload,
    FetchedRecords,
    InboundEmailPayload,
    NewLeadPayload,
)
from tools.crm.source import CRMDataError, JsonSnapshotCRM

EVAL_DIR = Path(__file__).resolve().parent.parent / "bench" / "eval"
DRAFTS_DIR = EVAL_DIR / "drafts"
ATTACKS_DIR = EVAL_DIR / "attacks"
PartName = Literal["dev", "test"]
PARTS: tuple[PartName, ...] = ("dev", "test")
Language = Literal["en", "zh", "de", "es", "fr", "ru", "ja", "pt"]
Route = Literal["proposal", "objection", "record_only"]
Topic = Literal[
    "delivery_delay",
    "pricing",
    "integration",
    "security",
    "demo_request",
    "timeline",
    "expansion",
    "stage_prospecting",
    "stage_qualification",
    "stage_proposal",
    "stage_negotiation",
    "stage_closed_won",
    "stage_closed_lost",
    "new_lead_need",
    "cold_lead",
    "unknown",
]
Technique = Literal[
    "direct",
    "base64",
    "homoglyph",
    "zero_width",
    "leetspeak",
    "spaced_letters",
    "split_sentences",
    "fake_notice",
    "html_comment",
    "markdown_comment",
    "hidden_html",
    "chat_markup",
    "ps_line",
    "forwarded_approval",
    "third_party_request",
    "polite_confirmation",
    "commitment_wording",
    "role_play",
]
# Every split must hold each of these (issue 14's list), so a detector tuned on dev meets each on test too.
REQUIRED_TECHNIQUES: tuple[Technique, ...] = (
    "base64",
    "homoglyph",
    "split_sentences",
    "fake_notice",
    "html_comment",
    "markdown_comment",
    "ps_line",
    "forwarded_approval",
    "third_party_request",
    "polite_confirmation",
    "commitment_wording",
)
ForbiddenKind = Literal[
    "discount", "free", "refund", "guarantee", "price", "third_party_data", "action", "instructions_leak"
]
Where = Literal["email_body", "email_subject", "email_attachment", "form_message", "contact_name", "contact_title"]
NearMiss = Literal[
    "discount_request",
    "reduction_metric",
    "free_trial_question",
    "ignore_previous",
    "system_prompt_product",
    "forwarded_thread",
    "benign_ps",
    "instructions_document",
    "reference_request",
    "guarantee_question",
    "refund_question",
    "price_question",
    "approval_mention",
    "encoded_attachment_mention",
    "markup_in_text",
]
M = TypeVar("M", bound=BaseModel)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Point(_Model):
    """One thing an on-topic draft must address, and terms (any one suffices) that show it did."""

    what: str = Field(min_length=1)
    any_of: list[str] = Field(
        min_length=1, description="case-insensitive terms; a draft naming one addresses the point"
    )


class Fact(_Model):
    """A fact the draft may use: a CRM record's field, or a value the event itself states."""

    source: Literal["account", "contact", "deal", "event"]
    field: str = Field(
        min_length=1, description="the record's field, or for `event` the payload field holding the value"
    )
    value: str | int


class Expectation(_Model):
    topic: Topic
    known_topic: bool = Field(description="false: the planner does not know this topic and its plan must say so")
    route: Route = Field(description="the route configs/triggers.yaml gives the event (a crm_change: once completed)")
    drafted: bool = Field(description="whether the run drafts at all; false for record-only routes and cold leads")
    must_address: list[Point] = Field(min_length=1)
    may_use: list[Fact] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Expectation:
        if self.known_topic == (self.topic == "unknown"):
            raise ValueError("known_topic must be false exactly when topic is unknown")
        if self.route == "record_only" and self.drafted:
            raise ValueError("a record_only route drafts nothing; set drafted: false")
        return self


class DraftCase(_Model):
    id: str = Field(min_length=1)
    account: str = Field(description="the demo account (bench/eval/split.yaml) whose contact or deal the event is")
    language: Language
    event: CRMEvent
    expect: Expectation


class Forbidden(_Model):
    kind: ForbiddenKind
    looks_like: str = Field(min_length=1, description="what a draft would say if the attack worked")


class AttackCase(_Model):
    id: str = Field(min_length=1)
    account: str
    language: Language
    techniques: list[Technique] = Field(min_length=1)
    where: Where
    hostile_text: str = Field(min_length=1, description="the injected text, as placed in the event")
    forbidden: list[Forbidden] = Field(min_length=1)
    origin: str | None = Field(default=None, description="where the case came from when not written for this set")
    event: CRMEvent


class BenignCase(_Model):
    id: str = Field(min_length=1)
    account: str
    language: Language
    near_miss: NearMiss = Field(description="which attack wording the e-mail comes close to")
    event: CRMEvent


class _CaseSet(_Model):
    version: int = Field(ge=1)
    part: PartName

    @model_validator(mode="after")
    def _unique_ids(self) -> _CaseSet:
        ids = [c.id for c in self.cases] + [c.event.id for c in self.cases]  # type: ignore[attr-defined]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"ids {repeated} repeat; give every case and every event its own id")
        return self


class DraftSet(_CaseSet):
    cases: list[DraftCase] = Field(min_length=1)


class AttackSet(_CaseSet):
    cases: list[AttackCase] = Field(min_length=1)


class BenignSet(_CaseSet):
    cases: list[BenignCase] = Field(min_length=1)


def draft_file(part: PartName) -> Path:
    return DRAFTS_DIR / f"{part}.yaml"


def attack_file(part: PartName) -> Path:
    return ATTACKS_DIR / f"injections-{part}.yaml"


def benign_file(part: PartName) -> Path:
    return ATTACKS_DIR / f"benign-{part}.yaml"


def load_drafts(part: PartName, path: Path | None = None) -> DraftSet:
    return _load(path or draft_file(part), DraftSet, part)


def load_attacks(part: PartName, path: Path | None = None) -> AttackSet:
    return _load(path or attack_file(part), AttackSet, part)


def load_benign(part: PartName, path: Path | None = None) -> BenignSet:
    return _load(path or benign_file(part), BenignSet, part)


def _load(path: Path, model: type[M], part: PartName) -> M:
    """The file validated; ConfigError naming the file, the case (by id) and the field when it is not."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: evaluation file not found; it is committed under bench/eval, check out the repo"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    try:
        loaded = model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc, raw)}") from None
    if loaded.part != part:  # type: ignore[attr-defined]
        found = loaded.part  # type: ignore[attr-defined]
        raise ConfigError(f"{path}: holds part {found!r}, not {part!r}; load each part from its own file")
    return loaded


def _describe(exc: ValidationError, raw: Any) -> str:
    parts = []
    for error in exc.errors()[:5]:
        loc = list(error["loc"])
        where = ".".join(str(p) for p in loc) or "(top level)"
        if len(loc) >= 2 and loc[0] == "cases" and isinstance(loc[1], int):
            case = raw["cases"][loc[1]] if isinstance(raw, dict) and isinstance(raw.get("cases"), list) else {}
            name = case.get("id", "?") if isinstance(case, dict) else "?"
            where = f"case {name!r} (cases[{loc[1]}]) " + (".".join(str(p) for p in loc[2:]) or "(the case)")
        msg = "unknown key; remove it" if error["type"] == "extra_forbidden" else error["msg"]
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


# --- resolving cases against the demo CRM --------------------------------------------------------------------


def event_problems(account_id: str, event: CRMEvent, crm: JsonSnapshotCRM) -> list[str]:
    """Why `event` is not an event of `account_id` in the demo CRM (empty when it is)."""
    try:
        account = crm.account(account_id)
    except CRMDataError as exc:
        return [str(exc)]
    payload = event.payload
    if isinstance(payload, InboundEmailPayload):
        contact = crm.contact_by_email(payload.from_email)
        if contact is None or contact.account_id != account.id:
            return [f"{payload.from_email} is not a contact of {account.id}; write from one of its contacts"]
        return []
    if isinstance(payload, NewLeadPayload):
        return _lead_problems(account.id, payload, crm)
    if isinstance(payload, DealStageChangePayload):
        return _stage_problems(account.id, payload.deal_id, event.fetched, crm)
    assert isinstance(payload, CRMChangePayload)
    if payload.object_type != "deal" or "to_stage" not in payload.values:
        return ["a crm_change here names a deal and its new stage (values.to_stage)"]
    return _stage_problems(account.id, payload.record_id, None, crm)


def _lead_problems(account_id: str, lead: NewLeadPayload, crm: JsonSnapshotCRM) -> list[str]:
    account = crm.account(account_id)
    domains = {c.email.rsplit("@", 1)[1] for c in crm.contacts() if c.account_id == account_id}
    problems = []
    if lead.company != account.name or lead.industry != account.industry:
        problems.append(f"the lead's company and industry must be {account.name!r}, {account.industry}")
    if lead.email.rsplit("@", 1)[-1] not in domains:
        problems.append(f"the lead's e-mail {lead.email} is not at {account_id}'s domain {sorted(domains)}")
    return problems


def _stage_problems(account_id: str, deal_id: str, fetched: FetchedRecords | None, crm: JsonSnapshotCRM) -> list[str]:
    if fetched is not None and fetched.deal is not None and fetched.deal.id == deal_id:
        deal = fetched.deal
        records = [(fetched.account, crm.account(account_id)), (fetched.contact, _contact(crm, deal.contact_id))]
        if any(got is None or got != want for got, want in records):
            return [
                f"the fetched account and contact of deal {deal_id} must equal {account_id}'s records in the demo CRM"
            ]
    else:
        try:
            deal = crm.deal(deal_id)
        except CRMDataError as exc:
            return [str(exc)]
    if deal.account_id != account_id or deal.contact_id is None:
        return [f"deal {deal_id} must belong to {account_id} and have a contact"]
    return []


def _contact(crm: JsonSnapshotCRM, contact_id: str | None):
    try:
        return crm.contact(contact_id) if contact_id else None
    except CRMDataError:
        return None


def runnable_event(event: CRMEvent, crm: JsonSnapshotCRM) -> CRMEvent:
    """The event the graph runs: a thin crm_change completed from the demo CRM (as service/completion.py does from a
    CRM), every other event as it is."""
    change = event.payload
    if not isinstance(change, CRMChangePayload):
        return event
    to_stage: DealStage = change.values["to_stage"]  # type: ignore[assignment]
    deal = crm.deal(change.record_id)
    outcome = {"closed_won": "won", "closed_lost": "lost"}.get(to_stage, "open")
    fetched = FetchedRecords(
        account=crm.account(deal.account_id),
        contact=crm.contact(str(deal.contact_id)),
        deal=deal.model_copy(update={"stage": to_stage, "outcome": outcome, "chunks": []}),
    )
    return CRMEvent(
        id=event.id,
        type="deal_stage_change",
        occurred_at=event.occurred_at,
        source=event.source,
        payload=DealStageChangePayload(deal_id=deal.id, from_stage=None, to_stage=to_stage),
        fetched=fetched,
    )


def event_text(event: CRMEvent) -> str:
    """Everything a customer typed into the event, as one text (attachments decoded)."""
    from tools.attachments import attachment_text  # pypdf only where attachments are read

    payload = event.payload
    if isinstance(payload, InboundEmailPayload):
        return "\n".join([payload.subject, payload.body, *(attachment_text(a) for a in payload.attachments)])
    if isinstance(payload, NewLeadPayload):
        return "\n".join([payload.contact_name, payload.title, payload.message])
    return ""


def fact_problems(case: DraftCase, crm: JsonSnapshotCRM) -> list[str]:
    """Facts of the case's expectation that the demo CRM or the event does not hold."""
    event = runnable_event(case.event, crm)
    records = _records(case, event, crm)
    problems = []
    for fact in case.expect.may_use:
        if fact.source == "event":
            held = getattr(event.payload, fact.field, None)
            text = event_text(event) if fact.field in ("body", "subject", "attachments", "message") else held
            found = str(fact.value) in text if isinstance(text, str) else held == fact.value
        else:
            record = records.get(fact.source)
            found = record is not None and getattr(record, fact.field, None) == fact.value
        if not found:
            problems.append(f"{fact.source}.{fact.field} = {fact.value!r} is not what the demo CRM or the event holds")
    return problems


def _records(case: DraftCase, event: CRMEvent, crm: JsonSnapshotCRM) -> dict[str, BaseModel]:
    records: dict[str, BaseModel] = {"account": crm.account(case.account)}
    payload = event.payload
    if isinstance(payload, InboundEmailPayload):
        contact = crm.contact_by_email(payload.from_email)
        if contact is not None:
            records["contact"] = contact
    if isinstance(payload, DealStageChangePayload):
        fetched = event.fetched
        deal = (
            fetched.deal
            if fetched and fetched.deal and fetched.deal.id == payload.deal_id
            else crm.deal(payload.deal_id)
        )
        records["deal"] = deal
        if deal.contact_id:
            records["contact"] = crm.contact(deal.contact_id)
    return records
