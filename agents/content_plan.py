"""The content plan: what a reply must say, item by item, each with its sources and a template sentence.

Deterministic: from the run's facts (the event, the lead, the similar cases, the proposed slot and clauses) and
configs/content_plan.yaml. A writer later turns each item into a sentence and a verifier checks that sentence
against the item's sources; an item's `template` is the sentence used when the writer's fails twice, built only
from the item's facts and the config's wording. A topic the planner does not know gets an `unknown` plan that says so.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from agents.injection import core_name
from agents.state import CaseHit, LeadProfile, RunState
from agents.verify import addresses_reply, extract_claims, screen_input
from configs.loader import load_yaml_model
from provenance import SourceRef, sha256_file
from tools.crm.records import DealStage, InboundEmailPayload, NewLeadPayload

PLAN_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "content_plan.yaml"
ItemKind = Literal["request", "change", "case_fact", "next_step", "clause", "unknown"]
Part = Literal["case_facts", "next_step", "clauses"]
ALL_PARTS: list[Part] = ["case_facts", "next_step", "clauses"]
MAX_CUSTOMER_QUOTES = 4  # sentences quoted from what the customer wrote, all items together
MAX_CASE_FACTS = 3
MAX_QUOTE_CHARS = 300


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- the plan --------------------------------------------------------------------------------------------------


class PlanItem(Strict):
    """One thing the reply says, the facts it may use (quoted verbatim from its sources), and its fallback sentence."""

    kind: ItemKind
    facts: list[str] = Field(min_length=1, description="short strings quoted verbatim from the sources")
    sources: list[SourceRef] = Field(min_length=1)
    template: str = Field(min_length=1, description="a plain sentence of these facts and the config's wording only")
    instruction: str = Field(description="what the writer should do with this item")

    @model_validator(mode="after")
    def _template_states_no_other_number(self) -> PlanItem:
        # The cheap half of the grounding rule, checked wherever an item is made: any digit in the template comes
        # from a fact. tests/test_content_plan.py checks the rest against the sources' text.
        rest = self.template
        for fact in sorted(self.facts, key=len, reverse=True):
            rest = rest.replace(fact, "")
        if any(ch.isdigit() for ch in rest):
            raise ValueError(f"template {self.template!r} states a number none of its facts {self.facts} holds")
        return self


class ContentPlan(Strict):
    topic: str = Field(description="a topic of configs/content_plan.yaml, stage_<stage>, new_lead_need, cold_lead "
                                   "or unknown")
    known: bool = Field(description="false: the planner does not know the event type or topic; the items say only that")
    event_type: str
    items: list[PlanItem] = Field(min_length=1)
    also_mentioned: list[str] = Field(default_factory=list,
                                      description="other known topics the customer's text touches")
    notes: list[str] = Field(default_factory=list, description="what was not known or left out, and why")
    rule: SourceRef = Field(description="the config entry that decided the topic, with the terms it matched")

    def sources(self) -> list[SourceRef]:
        """Every source the plan read, once: the inputs of the step that makes it."""
        return list(dict.fromkeys([self.rule, *(ref for item in self.items for ref in item.sources)]))


# --- the config ------------------------------------------------------------------------------------------------

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uff66-\uff9f]")


def _norm(text: str) -> str:
    """Full-width forms folded (Japanese mail often has them) and lower case, so terms match either way."""
    return unicodedata.normalize("NFKC", text).lower()


def _term_pattern(term: str) -> re.Pattern[str]:
    text = _norm(term.strip())
    prefix = text.endswith("*")
    body = re.escape(text.rstrip("*")).replace(r"\ ", r"\s+")
    if _CJK.search(text):  # no spaces between words: a substring is the best we can do
        return re.compile(body)
    # A hyphen joins words: "live" must not match inside "go-live".
    return re.compile(rf"(?<![\w-]){body}" + ("" if prefix else r"(?![\w-])"))


class Terms(list):
    """Terms with their compiled patterns; `found` lists the terms a text holds."""

    @cached_property
    def patterns(self) -> list[tuple[str, re.Pattern[str]]]:
        return [(t, _term_pattern(t)) for t in self]

    def found(self, text: str) -> list[str]:
        folded = _norm(text)
        return [t for t, pattern in self.patterns if pattern.search(folded)]


def _terms(value: list[str]) -> Terms:
    bad = [t for t in value if not str(t).strip().rstrip("*").strip()]
    if bad:
        raise ValueError("a term is empty; remove it")
    return Terms(str(t) for t in value)


TermList = Annotated[list[str], AfterValidator(_terms)]


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def _check_template(template: str, allowed: set[str], where: str) -> str:
    try:
        used = _fields(template)
    except ValueError as exc:
        raise ValueError(f"{where}: {template!r} is not a format string ({exc}); write fields as {{name}}") from None
    if used - allowed:
        raise ValueError(f"{where}: {template!r} uses {sorted(used - allowed)}; it may use only {sorted(allowed)}")
    if any(ch.isdigit() for ch in template):
        raise ValueError(f"{where}: {template!r} states a number; a number must come from a fact, as a field")
    return template


class Topic(Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: Literal["request", "change"]
    date: Literal["latest", "first"] | None = Field(default=None, description="extract a date: latest (a delay's new "
                                                                                 "date) or first (a deadline)")
    terms: TermList = Field(min_length=1)
    case_terms: TermList = Field(default_factory=Terms, description="terms of case text that bear on the topic, "
                                                                    "besides `terms`")
    instruction: str
    template: str
    date_template: str | None = None
    include: list[Part] = Field(default_factory=lambda: list(ALL_PARTS))

    @model_validator(mode="after")
    def _templates(self) -> Topic:
        _check_template(self.template, {"quote", "contact"}, f"topic {self.name} template")
        if self.date_template is not None:
            _check_template(self.date_template, {"date", "quote", "contact"}, f"topic {self.name} date_template")
        if self.date and self.date_template is None:
            raise ValueError(f"topic {self.name} extracts a date; give it a date_template that uses {{date}}")
        return self


class Unhandled(Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str
    terms: TermList = Field(min_length=1)


class LeadPlan(Strict):
    kind: Literal["request", "change"]
    case_terms: TermList = Field(default_factory=Terms)
    instruction: str
    template: Annotated[str, AfterValidator(lambda v: _check_template(v, {"quote", "contact"}, "new_lead template"))]
    include: list[Part] = Field(default_factory=lambda: list(ALL_PARTS))


class NewLeadConfig(Strict):
    need_terms: TermList = Field(min_length=1)
    cold_terms: TermList = Field(min_length=1)
    need: LeadPlan
    cold: LeadPlan


class StagePlan(Strict):
    instruction: str
    template: Annotated[str, AfterValidator(
        lambda v: _check_template(v, {"product", "deal", "contact"}, "stage template"))]
    case_terms: TermList = Field(default_factory=Terms)
    include: list[Part] = Field(default_factory=list)


class SharedTemplates(Strict):
    request: str
    detail: str
    case_fact: str
    next_step: str
    clauses: str
    unknown: str
    unknown_no_rep: str

    @model_validator(mode="after")
    def _fields_allowed(self) -> SharedTemplates:
        allowed = {"request": {"quote"}, "detail": {"quote"}, "case_fact": {"quote"},
                   "next_step": {"consultant", "slot"}, "clauses": {"clauses"}, "unknown": {"contact", "rep"},
                   "unknown_no_rep": {"contact"}}
        for name, fields in allowed.items():
            _check_template(getattr(self, name), fields, f"templates.{name}")
        return self


class SharedInstructions(Strict):
    request: str
    detail: str
    case_fact: str
    next_step: str
    clauses: str
    unknown: str


class PlanConfig(Strict):
    version: Literal[1]
    email_topics: list[Topic] = Field(min_length=1)
    unhandled: list[Unhandled] = Field(default_factory=list)
    new_lead: NewLeadConfig
    stages: dict[DealStage, StagePlan]
    templates: SharedTemplates
    instructions: SharedInstructions
    ask_terms: TermList = Field(min_length=1)
    detail_terms: TermList = Field(default_factory=Terms)
    closing_terms: TermList = Field(default_factory=Terms)
    sha256: str | None = Field(default=None, description="set when loaded: the file's hash, the version in SourceRefs")

    @model_validator(mode="after")
    def _complete(self) -> PlanConfig:
        names = [t.name for t in self.email_topics] + [u.name for u in self.unhandled]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"topic names {repeated} repeat (email_topics and unhandled together); give each its own")
        missing = [s for s in DealStage.__args__ if s not in self.stages]  # type: ignore[attr-defined]
        if missing:
            raise ValueError(f"stages lacks {missing}; every deal stage needs an entry")
        return self


def load_plan_config(path: Path = PLAN_CONFIG) -> PlanConfig:
    """The planner's config, validated (ConfigError naming the file and key when it is wrong)."""
    config = load_yaml_model(path, PlanConfig)
    return config.model_copy(update={"sha256": sha256_file(path)})


# --- reading what the customer wrote ---------------------------------------------------------------------------

_ABBREVIATIONS = re.compile(r"(?:\b(?:Inc|Ltd|Pte|Co|Corp|Dr|Mr|Mrs|Ms|Dir|Sr|Jr|St|No|approx|incl|e\.g|i\.e|vs|Nr"
                            r"|bzw|z\.B)|\b[A-Z])\.$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])")


def sentences(text: str) -> list[str]:
    """The sentences of a text, each a verbatim substring of it: split at line ends and sentence punctuation."""
    out: list[str] = []
    for line in text.splitlines():
        start = 0
        for m in _SENTENCE_END.finditer(line):
            if _ABBREVIATIONS.search(line[start:m.start()]):  # "Pte. Ltd. was" is one sentence
                continue
            out.append(line[start:m.start()])
            start = m.end()
        out.append(line[start:])
    return [s.strip() for s in out if s.strip()]


@dataclass(frozen=True)
class Segment:
    text: str
    where: Literal["subject", "body", "attachment", "message", "deal"]


def customer_segments(state: RunState, config: PlanConfig) -> list[Segment]:
    """What the customer wrote that a plan may quote: sentences of lead.request (the text its SourceRef names),
    signature cut, without the sentences that read as instructions or ask for a commitment (see `quotable`)."""
    return [s for s in _segments(state, config) if quotable(s.text)]


def quotable(text: str) -> bool:
    """Whether a customer's sentence may stand in a plan. Not when the input screening flags it or it speaks to whoever
    writes our reply, nor when it states a discount, "free", a refund, a guarantee or a promise: quoted back, the draft
    would carry the customer's (or an attacker's) words in our name, and the verifier accepts what an item quotes. The
    rep still reads them: the inbox shows the customer's text and the screening's warning."""
    if screen_input({"sentence": text}) or addresses_reply(text):  # telling us what to write is not an ask to quote
        return False
    return not any(c.kind in ("discount", "free", "commitment") for c in extract_claims(text))


def _segments(state: RunState, config: PlanConfig) -> list[Segment]:
    lead = state.lead
    payload = state.event.payload
    lines = lead.request.splitlines()
    if isinstance(payload, InboundEmailPayload):
        subject = lines[0].removeprefix("Subject: ") if lines and lines[0].startswith("Subject: ") else None
        names = tuple(f"Attachment {a.filename}: " for a in payload.attachments)
        body = [ln for ln in lines[1:] if not ln.startswith(names)] if subject is not None else lines
        attached = [ln.split(": ", 1)[1] for ln in lines if names and ln.startswith(names)]
        out = [Segment(subject, "subject")] if subject else []
        out += [Segment(s, "body") for s in sentences("\n".join(_cut_signature(body, lead, config)))]
        return out + [Segment(s, "attachment") for a in attached for s in sentences(a)]
    if isinstance(payload, NewLeadPayload):
        return [Segment(s, "message") for s in sentences(lead.request)]
    return [Segment(s, "deal") for s in sentences(lead.request)]


def _cut_signature(lines: list[str], lead: LeadProfile, config: PlanConfig) -> list[str]:
    """The body up to the closing line or the sender's name; greetings pass through (no item picks them)."""
    kept: list[str] = []
    for line in lines:
        short = len(line.split()) <= 4 or len(line.strip()) <= 16
        if kept and short and (config.closing_terms.found(line) or lead.contact_name.lower() in line.lower()):
            break
        kept.append(line)
    return kept


# --- dates ---------------------------------------------------------------------------------------------------

_MONTHS = {
    1: "january jan januar jänner janvier enero janeiro января",
    2: "february feb februar février febrero fevereiro февраля",
    3: "march mar märz mars marzo março марта",
    4: "april apr avril abril апреля",
    5: "may mai mayo maio мая",
    6: "june jun juni juin junio junho июня",
    7: "july jul juli juillet julio julho июля",
    8: "august aug août agosto августа",
    9: "september sep sept septembre septiembre setiembre setembro сентября",
    10: "october oct oktober octobre octubre outubro октября",
    11: "november nov novembre noviembre novembro ноября",
    12: "december dec dezember décembre diciembre dezembro декабря",
}
_MONTH_OF = {name: month for month, names in _MONTHS.items() for name in names.split()}
_MONTH = "|".join(sorted(map(re.escape, _MONTH_OF), key=len, reverse=True))
_DATE_PATTERNS = [
    re.compile(r"(?<!\d)(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})(?!\d)"),
    re.compile(r"(?:(?P<y>\d{4})\s*年\s*)?(?P<m>\d{1,2})\s*月\s*(?P<d>\d{1,2})\s*日"),
    re.compile(r"(?<![\d.])(?P<d>\d{1,2})\.(?P<m>\d{1,2})\.(?P<y>\d{4})(?!\d)"),
    re.compile(rf"(?<!\d)(?P<d>\d{{1,2}})(?:st|nd|rd|th|er|\.)?\s+(?:de\s+)?(?P<mn>{_MONTH})(?![\w])\.?"
               rf"(?:,?\s+(?:de\s+)?(?P<y>\d{{4}})(?!\d))?", re.IGNORECASE),
    re.compile(rf"(?<![\w])(?P<mn>{_MONTH})\.?\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?(?!\d)(?:,?\s+(?P<y>\d{{4}})(?!\d))?",
               re.IGNORECASE),
]


@dataclass(frozen=True)
class FoundDate:
    text: str = ""
    when: date = date.min


def find_dates(text: str, today: date) -> list[FoundDate]:
    """Dates written in the text, in text order, as written; a date without a year is the next one after `today`
    (a month back allowed: a customer may name a date just past)."""
    spans: list[tuple[int, int, FoundDate]] = []
    for pattern in _DATE_PATTERNS:
        for m in pattern.finditer(text):
            if any(m.start() < end and start < m.end() for start, end, _ in spans):
                continue
            found = _to_date(m, today)
            if found is not None:
                spans.append((m.start(), m.end(), FoundDate(m.group(0).strip(), found)))
    return [found for _, _, found in sorted(spans, key=lambda s: s[0])]


def _to_date(m: re.Match[str], today: date) -> date | None:
    groups = m.groupdict()
    month = _MONTH_OF[groups["mn"].lower()] if groups.get("mn") else int(groups["m"])
    year = int(groups["y"]) if groups.get("y") else today.year
    try:
        found = date(year, month, int(groups["d"]))
    except ValueError:
        return None
    if not groups.get("y") and found < today - timedelta(days=31):
        found = found.replace(year=year + 1) if not (found.month == 2 and found.day == 29) else found
    return found


# --- choosing the topic -----------------------------------------------------------------------------------------


@dataclass
class Score:
    name: str
    points: int
    terms: list[str]


def _score(terms: Terms, name: str, segments: list[Segment]) -> Score:
    subject = {t for s in segments if s.where == "subject" for t in terms.found(s.text)}
    anywhere = {t for s in segments for t in terms.found(s.text)}
    return Score(name, len(anywhere) + 2 * len(subject), sorted(anywhere))


def _best(scores: list[Score]) -> Score | None:
    top = max(scores, key=lambda s: s.points, default=None)  # max keeps the first of equals: config order breaks ties
    return top if top is not None and top.points > 0 else None


# --- building the plan ----------------------------------------------------------------------------------------


def plan_content(state: RunState, config: PlanConfig | None = None, other_customers: Sequence[str] = ()) -> ContentPlan:
    """The content plan of a run after normalize (and, where the route goes on, retrieve and plan_schedule).

    `other_customers`: names of other accounts (the similar cases' customers); no case sentence naming one is quoted,
    since a template is not checked again and would give the name away."""
    if state.lead is None:
        raise ValueError(f"run {state.run_id} has no lead profile: plan content after the normalize step")
    config = config or load_plan_config()
    planner = _Planner(state, config, other_customers)
    kind = state.event.type
    if kind == "inbound_email":
        return planner.email()
    if kind == "new_lead":
        return planner.new_lead()
    if kind == "deal_stage_change" and state.lead.deal_stage is not None:
        return planner.stage()
    return planner.unknown(
        f"event type {kind}: the planner plans new leads, inbound e-mails and deal stage changes "
        "(a crm_change is completed into one of those before a run starts)", matched=[])


class _Planner:
    def __init__(self, state: RunState, config: PlanConfig, other_customers: Sequence[str] = ()):
        self.state, self.config, self.lead = state, config, state.lead
        names = {form for n in other_customers if n != state.lead.account_name for form in (n, core_name(n)) if len(form) >= 3}
        self.others = re.compile("|".join(rf"(?<!\w){re.escape(n)}(?!\w)" for n in sorted(names)), re.I) if names else None
        self.notes: list[str] = []

    # topics

    def email(self) -> ContentPlan:
        segments = customer_segments(self.state, self.config)
        scores = [_score(t.terms, t.name, segments) for t in self.config.email_topics]
        best = _best(scores)
        unhandled = _best([_score(u.terms, u.name, segments) for u in self.config.unhandled])
        if unhandled and (best is None or unhandled.points > best.points):
            return self._unhandled(unhandled)
        if best is None:
            return self.unknown("no topic of configs/content_plan.yaml matched what the customer wrote", matched=[])
        topic = next(t for t in self.config.email_topics if t.name == best.name)
        also = [s.name for s in scores if s.points > 0 and s.name != best.name]
        items = self._customer_items(segments, topic.terms, topic, topic.kind, topic.instruction)
        items += self._parts(topic.include, [*topic.terms, *topic.case_terms], segments)
        return self._plan(topic.name, items, self._rule(topic.name, best.terms), also)

    def new_lead(self) -> ContentPlan:
        lead_config = self.config.new_lead
        segments = customer_segments(self.state, self.config)
        topic_terms = Terms(t for topic in self.config.email_topics for t in topic.terms)
        need = _score(Terms([*lead_config.need_terms, *topic_terms]), "new_lead_need", segments)
        cold = _score(lead_config.cold_terms, "cold_lead", segments)
        unhandled = _best([_score(u.terms, u.name, segments) for u in self.config.unhandled])
        if unhandled and unhandled.points > need.points:
            return self._unhandled(unhandled)
        if not segments or (cold.points and not need.points):
            return self._cold(segments, cold)
        if not need.points:
            return self.unknown("the lead's message states no need the planner recognises", matched=[])
        plan = lead_config.need
        need_terms = Terms([*lead_config.need_terms, *topic_terms])
        items = self._customer_items(segments, need_terms, plan, plan.kind, plan.instruction)
        # Cases bear on the need through the topics the message touches and the words it uses, not through "need".
        touched = [t for t in self.config.email_topics if t.terms.found(" ".join(s.text for s in segments))]
        case_terms = [*plan.case_terms, *(term for t in touched for term in [*t.terms, *t.case_terms])]
        items += self._parts(plan.include, case_terms, segments)
        return self._plan("new_lead_need", items, self._rule("new_lead_need", need.terms), [])

    def stage(self) -> ContentPlan:
        lead = self.lead
        stage = lead.deal_stage
        entry = self.config.stages[stage]
        deal, product = _deal_name_product(lead.request)
        fields = {"product": product, "deal": deal, "contact": lead.contact_name}
        used = [name for name in ("deal", "product", "contact") if "{" + name + "}" in entry.template]
        rule = self._rule(f"stage_{stage}", [stage])
        facts = [fields[name] for name in used] + [str(stage)]
        sources = [lead.refs["request"], lead.refs["deal_stage"], rule]
        if "contact" in used:
            sources.append(lead.refs["contact_name"])
        item = PlanItem(kind="change", facts=_unique(facts), sources=sources, template=entry.template.format(**fields),
                        instruction=entry.instruction)
        items = [item, *self._parts(entry.include, entry.case_terms, [Segment(lead.request, "deal")])]
        return self._plan(f"stage_{stage}", items, rule, [])

    def unknown(self, why: str, matched: list[str], name: str = "unknown") -> ContentPlan:
        lead = self.lead
        templates = self.config.templates
        facts, sources = [lead.contact_name], [lead.refs["contact_name"]]
        if lead.owner_rep_id:
            facts.append(lead.owner_rep_id)
            sources.append(lead.refs["owner_rep_id"])
            template = templates.unknown.format(contact=lead.contact_name, rep=lead.owner_rep_id)
        else:
            template = templates.unknown_no_rep.format(contact=lead.contact_name)
        quotes = self._unknown_quotes(matched)
        if quotes:  # what they wrote, so the rep and the writer see what was not planned; nothing is answered
            facts += quotes
            sources.append(lead.refs["request"])
        rule = self._rule(name, matched, note=why)
        item = PlanItem(kind="unknown", facts=facts, sources=[*sources, rule], template=template,
                        instruction=self.config.instructions.unknown)
        return ContentPlan(topic="unknown", known=False, event_type=self.state.event.type, items=[item],
                           notes=[why, *self.notes], rule=rule)

    def _unknown_quotes(self, matched: list[str]) -> list[str]:
        if self.state.event.type not in ("inbound_email", "new_lead") or not self.lead.request:
            return []
        segments = customer_segments(self.state, self.config)
        body = [s.text for s in segments if s.where in ("body", "message")]
        subject = [s.text for s in segments if s.where == "subject"]
        hits = [t for t in body if Terms(matched).found(t)] if matched else []
        return [_clip(t) for t in _unique(hits[:2] or [*subject, *body][:2])]

    def _unhandled(self, score: Score) -> ContentPlan:
        entry = next(u for u in self.config.unhandled if u.name == score.name)
        why = f"the message is {entry.description} ({', '.join(score.terms)}), which the planner has no plan for"
        return self.unknown(why, score.terms, name=f"unhandled:{entry.name}")

    def _cold(self, segments: list[Segment], cold: Score) -> ContentPlan:
        lead, entry = self.lead, self.config.new_lead.cold
        facts = [lead.contact_name, *(s.text for s in segments[:1])]
        rule = self._rule("cold_lead", cold.terms, note="an empty message" if not segments else None)
        sources = [lead.refs["contact_name"], *([lead.refs["request"]] if segments else []), rule]
        item = PlanItem(kind=entry.kind, facts=facts, sources=sources, instruction=entry.instruction,
                        template=entry.template.format(contact=lead.contact_name))
        self.notes.append("a cold lead: no stated need, so no case facts, slot or clauses are planned")
        return self._plan("cold_lead", [item], rule, [])

    def _plan(self, topic: str, items: list[PlanItem], rule: SourceRef, also: list[str]) -> ContentPlan:
        return ContentPlan(topic=topic, known=True, event_type=self.state.event.type, items=items, also_mentioned=also,
                           notes=self.notes, rule=rule)

    def _rule(self, name: str, matched: list[str], note: str | None = None) -> SourceRef:
        return SourceRef(kind="rule", id=f"content_plan:{name}", field="terms", version=self.config.sha256,
                         note=note or (f"matched: {', '.join(matched)}" if matched else None))

    # items

    def _customer_items(self, segments: list[Segment], terms: Terms, topic: Topic | LeadPlan, kind: str,
                        instruction: str) -> list[PlanItem]:
        """The topic's item (its sentences, and the date it extracts), then one item per further ask or detail."""
        ref = self.lead.refs["request"]
        quotable = [s for s in segments if s.where in ("body", "message")] or segments
        on_topic = [s.text for s in quotable if terms.found(s.text)]
        found = self._date(segments, terms, getattr(topic, "date", None))
        with_date = [s.text for s in quotable if found and found.text in s.text][:1]
        subject = [s.text for s in segments if s.where == "subject"]
        lead_quotes = _unique([*with_date, *on_topic])[:2] or subject[:1] or [s.text for s in quotable[:1]]
        if not lead_quotes:
            self.notes.append("the customer's text holds no sentence to quote")
            return []
        fields = {"quote": _clip(lead_quotes[0]), "contact": self.lead.contact_name}
        facts = [_clip(q) for q in lead_quotes]
        template = topic.template.format(**fields)
        if found is not None:
            facts.insert(0, found.text)
            template = topic.date_template.format(date=found.text, **fields)
        elif getattr(topic, "date", None):
            self.notes.append(f"no date stated for {getattr(topic, 'name', 'the topic')}; none is planned")
        items = [PlanItem(kind=kind, facts=_unique(facts), sources=[ref], template=template, instruction=instruction)]
        return items + self._asks(quotable, lead_quotes, ref)

    def _asks(self, quotable: list[Segment], taken: list[str], ref: SourceRef) -> list[PlanItem]:
        config, items = self.config, []
        room = MAX_CUSTOMER_QUOTES - len(taken)
        for segment in quotable:
            text = segment.text
            if room <= 0 or text in taken:
                continue
            ask = "?" in text or "？" in text or bool(config.ask_terms.found(text))
            detail = bool(re.search(r"\d", text)) or bool(config.detail_terms.found(text))
            if ask or detail:
                items.append(self._ask_item(_clip(text), "request" if ask else "detail", ref))
                room -= 1
        return items

    def _ask_item(self, quote: str, name: str, ref: SourceRef) -> PlanItem:
        """An ask that touches a known topic says which ("You asked about pricing: ..."), so the writer answers that."""
        config = self.config
        topic = next((t for t in config.email_topics if t.terms.found(quote)), None)
        template = topic.template if topic is not None and name == "request" else getattr(config.templates, name)
        instruction = getattr(config.instructions, name)
        if topic is not None:
            instruction += f" It is about {topic.name}: {topic.instruction}"
        return PlanItem(kind="request", facts=[quote], sources=[ref], instruction=instruction,
                        template=template.format(quote=quote, contact=self.lead.contact_name))

    def _date(self, segments: list[Segment], terms: Terms, rule: str | None) -> FoundDate | None:
        if rule is None:
            return None
        today = self.state.event.occurred_at.date()
        ordered = sorted(segments, key=lambda s: s.where == "attachment")  # quote the body's wording over a PDF's
        on_topic = [d for s in ordered if terms.found(s.text) for d in find_dates(s.text, today)]
        candidates = on_topic or [d for s in ordered for d in find_dates(s.text, today)]
        if not candidates:
            return None
        if rule == "first":
            return candidates[0]
        latest = max(d.when for d in candidates)
        return next(d for d in candidates if d.when == latest)

    def _parts(self, include: list[Part], terms: list[str], segments: list[Segment]) -> list[PlanItem]:
        items: list[PlanItem] = []
        if "case_facts" in include:
            items += self._case_facts(Terms(terms), segments)
        if "next_step" in include:
            items += self._next_step()
        if "clauses" in include:
            items += self._clauses()
        return items

    def _case_facts(self, terms: Terms, segments: list[Segment]) -> list[PlanItem]:
        if not self.state.cases:
            self.notes.append("no similar cases were retrieved; no case facts planned")
            return []
        # Words the customer used bear on the topic, except their own company's name (a PDF's title repeats it).
        words = _content_words(" ".join(s.text for s in segments if s.where != "attachment"))
        words -= _content_words(self.lead.account_name)
        picks = [p for case in self.state.cases if (p := _best_sentence(case, terms, words, self.others)) is not None]
        picks.sort(key=lambda p: -p.score)  # stable: retrieval order (won first, most similar) breaks ties
        # Demo cases share sentence shapes; three that differ only in their numbers tell the writer one thing.
        shapes: set[str] = set()
        picks = [p for p in picks if not (_shape(p.text) in shapes or shapes.add(_shape(p.text)))]
        if not picks:
            self.notes.append("no similar case's text bears on the topic; no case facts planned")
        config = self.config
        return [PlanItem(kind="case_fact", facts=[p.text], sources=p.sources, instruction=config.instructions.case_fact,
                         template=config.templates.case_fact.format(quote=p.text)) for p in picks[:MAX_CASE_FACTS]]

    def _next_step(self) -> list[PlanItem]:
        plan = self.state.plan
        if plan is None or plan.consultant is None or not plan.slots:
            why = "; ".join(plan.notes) if plan and plan.notes else "no consultant or slot was planned"
            self.notes.append(f"no next step planned: {why}")
            return []
        consultant, slot = plan.consultant.consultant, plan.slots[0]
        label = slot.label()
        sources = [SourceRef(kind="tool", id="consultant_match", field=consultant.id, note=consultant.name),
                   SourceRef(kind="tool", id="calendar", field=consultant.calendar_file, note=label)]
        return [PlanItem(kind="next_step", facts=[consultant.name, label], sources=sources,
                         instruction=self.config.instructions.next_step,
                         template=self.config.templates.next_step.format(consultant=consultant.name, slot=label))]

    def _clauses(self) -> list[PlanItem]:
        plan = self.state.plan
        if plan is None or not plan.clauses:
            self.notes.append("no clauses were picked")
            return []
        titles = _unique([c.clause.title for c in plan.clauses])
        sources = [SourceRef(kind="rule", id=f"clause_rule:{c.rule_id}", field=c.clause.id, version=c.clause.version,
                             note=c.clause.title) for c in plan.clauses]
        return [PlanItem(kind="clause", facts=titles, sources=sources, instruction=self.config.instructions.clauses,
                         template=self.config.templates.clauses.format(clauses=_join(titles)))]


# --- helpers --------------------------------------------------------------------------------------------------

# normalize writes a stage change's request as "Deal <name> for <product> moved to <stage>." (agents/normalize.py).
_STAGE_REQUEST = re.compile(r"^Deal (?P<deal>.+) for (?P<product>.+) moved to (?P<stage>[a-z_]+)\.$")


def _deal_name_product(request: str) -> tuple[str, str]:
    m = _STAGE_REQUEST.match(request)
    if m is None:
        raise ValueError(f"stage change request {request!r} is not as agents/normalize.py writes it; "
                         "update _STAGE_REQUEST to match")
    return m["deal"], m["product"]


@dataclass
class _Pick:
    text: str
    score: float
    sources: list[SourceRef]


_QUANTITY = re.compile(r"(?<![A-Za-z/\d])\d")  # a number, not a name like Q3 or S/4HANA
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")  # a meeting's date is not a result


def _shape(text: str) -> str:
    return re.sub(r"[\d$€£%.,]+", "#", text)


def _best_sentence(case: CaseHit, terms: Terms, words: set[str], others: re.Pattern[str] | None) -> _Pick | None:
    """The case's sentence that bears most on the topic: a topic term, a number, words the customer used; never one
    that names another customer (`others`)."""
    case_ref = SourceRef(kind="case", id=case.case_id, note=f"{case.outcome}, similar case {case.marker}")
    texts = [(case.summary, [case_ref], 0.0)]
    # Meeting notes are mostly who attended when; a proposal or an answer states what was offered and achieved.
    for c in case.chunks:
        chunk_ref = SourceRef(kind="document_chunk", id=c.id, field=c.kind, note=f"of case {case.case_id}")
        texts.append((c.text, [case_ref, chunk_ref], -0.5 if c.kind == "meeting_notes" else 0.0))
    best: _Pick | None = None
    for text, sources, bias in texts:
        for sentence in sentences(text):
            if len(sentence) > MAX_QUOTE_CHARS or (others is not None and others.search(sentence)):
                continue
            on_topic = bool(terms.found(sentence))
            shared = len(words & _content_words(sentence))
            if not on_topic and shared < (3 if terms else 2):
                continue
            number = bool(_QUANTITY.search(_ISO_DATE.sub("", sentence)))
            # "Objection: ..." is what that customer feared; the answer after it is the fact worth citing.
            score = 2 * on_topic + number + min(shared, 4) * 0.25 + bias - sentence.startswith("Objection:")
            if best is None or score > best.score:
                best = _Pick(sentence, score, sources)
    return best


_STOP = {"about", "their", "there", "which", "would", "could", "should", "these", "those", "other", "where", "while",
         "after", "before", "with", "from", "into", "your", "our", "have", "been", "being", "what", "when", "will"}


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9][a-z0-9-]{4,}", _norm(text)) if w not in _STOP}


def _clip(text: str) -> str:
    """A quote short enough for one plan item; cut at a clause boundary, so it is still a verbatim substring."""
    if len(text) <= MAX_QUOTE_CHARS:
        return text
    cut = max(text.rfind(mark, 0, MAX_QUOTE_CHARS) for mark in (", ", "; ", ": "))
    return text[:cut] if cut > 40 else text[:MAX_QUOTE_CHARS]


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def _join(values: list[str]) -> str:
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " and " + values[-1]
