"""A suite of simulated sales reps: public test doubles whose preferences are data (configs/reps/suite.yaml).

Each rep reads a draft together with its run's context (the contact, the account, what the customer wrote, the
similar cases and the proposed slot) and adopts it, edits it into shape, or rejects it with the reasons. Every rep
has at least one preference that depends on the event, so no single constant text can please it. An edit rewrites
only the parts that break the rep's preferences and keeps the rest, the way a person edits a draft.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal, Protocol, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agents.inbox import HumanResponse, adopt, edit, reject
from configs.loader import load_yaml_model
from tools.crm.source import CRMDataError

if TYPE_CHECKING:
    from agents.state import RunState

SUITE_FILE = Path(__file__).resolve().parent.parent / "configs" / "reps" / "suite.yaml"
# Longest first, so "Pte. Ltd." is stripped before "Ltd.".
LEGAL_SUFFIXES = sorted(["S.A. de C.V.", "sp. z o.o.", "Pte. Ltd.", "Pvt. Ltd.", "Pty Ltd", "Inc.", "Ltd.", "Ltd", "GmbH",
                         "SAS", "S.A.S.", "B.V.", "K.K.", "Ltda.", "SpA", "S.A.", "LLC", "AG", "plc"], key=len, reverse=True)
# What a rep's edit templates may say (View.fields).
TEMPLATE_FIELDS = {"first_name", "contact", "account", "topic", "case_result", "case_marker", "consultant", "slot_day", "slot_time"}
MARKER = re.compile(r"\s*\[[A-Z]\d+\]")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
# A sentence ends at . ! or ? followed by whitespace or the end, with the citation markers that close it.
SENTENCE = re.compile(r"\S.*?(?:[.!?]+(?:\s*\[[A-Z]\d+\])*(?=\s|$)|$)", re.S)
ABBREVIATIONS = {"Inc.", "Ltd.", "Pte.", "Pvt.", "Co.", "Corp.", "Ltda.", "K.K.", "B.V.", "S.A.", "C.V.", "o.o.", "S.A.S.",
                 "e.g.", "i.e.", "Dr.", "Mr.", "Ms.", "Mrs.", "St.", "vs."}
ITEM = re.compile(r"^(?:[-*\u2022]|\d+[.)])\s+(.*)$")
GREETING_WORDS = r"(?:hi|hello|hey|dear|good (?:morning|afternoon|evening)|greetings)"
GREETING_LINE = re.compile(rf"^{GREETING_WORDS}\b", re.I)
# "Hi Chloe, thanks for ..." greets Chloe; "Hi Chloe, Ana, Li, ..." greets a list of people, which greets nobody.
GREETING_INLINE = re.compile(rf"^({GREETING_WORDS}\b[^,.!?\n]{{0,40}},)\s+(?![A-Z][\w'-]*\s*,)(\S.*)$", re.I | re.S)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- the run's context, as a rep reads it -------------------------------------------------------------------------


class ReviewCase(_Model):
    marker: str = Field(description="the case's marker in the prompt, e.g. C1")
    outcome: Literal["won", "lost"]
    account_id: str | None = None
    account_name: str | None = Field(default=None, description="the case's customer: a name the draft must not give away")
    summary: str
    chunks: list[str] = Field(default_factory=list)


class ReviewSlot(_Model):
    start: datetime = Field(description="timezone-aware, on the lead's clock")
    end: datetime


class ReviewContext(_Model):
    """What a rep knows when reviewing a draft: the run's lead, request, retrieved cases and plan, not only the text."""

    contact_name: str
    account_id: str | None = None
    account_name: str
    request: str = Field(default="", description="what the customer wrote")
    facts: list[str] = Field(default_factory=list, description="the lead facts' values the model was shown")
    cases: list[ReviewCase] = Field(default_factory=list)
    consultant_name: str | None = None
    slots: list[ReviewSlot] = Field(default_factory=list)

    @classmethod
    def from_run_state(cls, state: RunState, crm: _Accounts | None = None) -> ReviewContext:
        """The context of a run after retrieval (and planning, if it ran); `crm` names the cases' customers."""
        lead = state.lead
        if lead is None:
            raise ValueError(f"run {state.run_id} has no lead yet; build the review context after the normalize step")
        consultant = state.plan.consultant.consultant.name if state.plan and state.plan.consultant else None
        return cls(
            contact_name=lead.contact_name, account_id=lead.account_id, account_name=lead.account_name, request=lead.request,
            facts=[f.value for f in lead.facts],
            cases=[ReviewCase(marker=c.marker, outcome=c.outcome, account_id=c.account_id, account_name=_account_name(crm, c.account_id),
                              summary=c.summary, chunks=[chunk.text for chunk in c.chunks]) for c in state.cases],
            consultant_name=consultant, slots=[ReviewSlot(start=s.start, end=s.end) for s in (state.plan.slots if state.plan else [])],
        )


class _Accounts(Protocol):
    def account(self, account_id: str): ...


def _account_name(crm: _Accounts | None, account_id: str) -> str | None:
    if crm is None:
        return None
    try:
        return crm.account(account_id).name
    except CRMDataError:  # an account gone from the mirror since indexing: the rep cannot check for that name
        return None


# --- what a rep derives from the context --------------------------------------------------------------------------


class Topic(_Model):
    """Something a customer can ask about: terms match as word prefixes, in the request and in the draft."""

    name: str
    terms: list[str] = Field(min_length=1)
    phrase: str = Field(description="how a rep's edit names the topic")


def short_name(account: str) -> str:
    """The account's name without its legal suffix, as people write it."""
    for suffix in LEGAL_SUFFIXES:
        if account.endswith(" " + suffix):
            return account[: -len(suffix) - 1].strip()
    return account.strip()


def _aliases(account: str) -> list[str]:
    short = short_name(account)
    first = short.split()[0] if short.split() else short
    return list(dict.fromkeys([account, short, *([first] if len(first) >= 4 else [])]))


def mentions(text: str, phrase: str, case: bool = False) -> bool:
    """`phrase` as a word prefix in `text` (a phrase starting with a letter must start a word)."""
    start = r"(?<!\w)" if phrase[:1].isalnum() else ""
    return re.search(start + re.escape(phrase), text, 0 if case else re.I) is not None


def names(text: str, phrase: str, case: bool = False) -> bool:
    """`phrase` as whole words in `text`."""
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text, 0 if case else re.I) is not None


def names_alias(text: str, alias: str) -> bool:
    """An account alias in `text`; a one-word stem only capitalised, so 'summit' the word is not Summit Cardio."""
    return names(text, alias, case=" " not in alias)


def numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in NUMBER.findall(MARKER.sub("", text))}


def plain(text: str) -> str:
    """The text a reader sees: citation markers removed."""
    return MARKER.sub("", text)


def word_count(text: str) -> int:
    return len(plain(text).split())


def slot_day(start: datetime) -> str:
    return f"{start:%A} {start.day} {start:%B}"


def slot_time(start: datetime) -> str:
    return f"{start:%H:%M}"


@dataclass
class View:
    """A context as one rep suite reads it: names, the topics asked about, the numbers it may cite."""

    ctx: ReviewContext
    topics: Sequence[Topic]

    @cached_property
    def first_name(self) -> str:
        return self.ctx.contact_name.split()[0] if self.ctx.contact_name.split() else self.ctx.contact_name

    @cached_property
    def account_aliases(self) -> list[str]:
        return _aliases(self.ctx.account_name)

    @cached_property
    def other_customers(self) -> list[str]:
        """Names of the cases' customers other than this one, longest first so a full name is replaced before its stem."""
        own = set(self.account_aliases)
        found = {alias for case in self.ctx.cases if case.account_name and case.account_id != self.ctx.account_id
                 for alias in _aliases(case.account_name) if alias not in own}
        return sorted(found, key=len, reverse=True)

    @cached_property
    def raised(self) -> list[Topic]:
        return [t for t in self.topics if any(mentions(self.ctx.request, term) for term in t.terms)]

    @cached_property
    def results(self) -> list[tuple[str, str, set[str]]]:
        """(sentence, case marker, its numbers): the won cases' measured results, their closing sentences first."""
        won = [c for c in self.ctx.cases if c.outcome == "won"]
        for pick in (lambda s: s[-1:], lambda s: [x for x in s if not x.startswith(("We sold", "We pitched"))]):
            found = [(sentence.strip(), case.marker, numbers(sentence)) for case in won
                     for sentence in pick(sentences(case.summary)) if numbers(sentence)]
            if found:
                return found
        return []

    @cached_property
    def known_numbers(self) -> set[str]:
        texts = [self.ctx.request, *self.ctx.facts, *(c.summary for c in self.ctx.cases), *(x for c in self.ctx.cases for x in c.chunks)]
        texts += [f"{slot_day(s.start)} {slot_time(s.start)} {s.start:%Y-%m-%d} {slot_time(s.end)}" for s in self.ctx.slots]
        return set().union(*(numbers(t) for t in texts))

    def fields(self) -> dict[str, str]:
        """What a rep's edit templates may say: {first_name}, {account}, {topic}, {case_result}, {slot_day}, …"""
        result, slot = (self.results or [None])[0], self.ctx.slots[0].start if self.ctx.slots else None
        return {
            "first_name": self.first_name, "contact": self.ctx.contact_name, "account": short_name(self.ctx.account_name),
            "topic": self.raised[0].phrase if self.raised else "your request",
            "case_result": _as_result(result[0]) if result else "", "case_marker": result[1] if result else "",
            "consultant": self.ctx.consultant_name or "our consultant",
            "slot_day": slot_day(slot) if slot else "", "slot_time": slot_time(slot) if slot else "",
        }


# --- a draft as a rep edits it -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    kind: Literal["greeting", "sentence", "heading", "item"]
    text: str
    block: int = 0  # sentences of one block are one paragraph
    origin: int | None = None  # its index in the draft as written; None for what the rep added


@dataclass
class Doc:
    segments: list[Segment] = field(default_factory=list)

    @property
    def text(self) -> str:
        return render(self.segments)

    @property
    def body(self) -> list[Segment]:
        return [s for s in self.segments if s.kind in ("sentence", "item")]


def parse(draft: str) -> Doc:
    segments: list[Segment] = []
    lines = [line.strip() for line in draft.strip().splitlines() if line.strip()]
    for block, line in enumerate(lines):
        if not segments and GREETING_LINE.match(line) and len(line.split()) <= 6:
            segments.append(Segment("greeting", line, block, 0))
            continue
        inline = GREETING_INLINE.match(line) if not segments else None
        if inline:
            segments.append(Segment("greeting", inline.group(1), block, 0))
            line = inline.group(2)
        item = ITEM.match(line)
        if item:
            segments.append(Segment("item", item.group(1).strip(), block, len(segments)))
        elif line.endswith(":") and len(line.split()) <= 5:
            segments.append(Segment("heading", line, block, len(segments)))
        else:
            segments += [Segment("sentence", text, block, len(segments) + i) for i, text in enumerate(sentences(line))]
    return Doc(segments)


def sentences(text: str) -> list[str]:
    """`text` cut into sentences; a cut after an abbreviation ("Pte. Ltd.", "Dr.") is undone, so names stay whole."""
    found: list[str] = []
    for match in SENTENCE.finditer(text):
        piece = match.group(0).strip()
        if found and found[-1].split()[-1] in ABBREVIATIONS:
            found[-1] += " " + piece
        else:
            found.append(piece)
    return found


def render(segments: Sequence[Segment]) -> str:
    lines: list[str] = []
    previous: Segment | None = None
    for seg in segments:
        if seg.kind == "sentence" and previous is not None and previous.kind == "sentence" and previous.block == seg.block:
            lines[-1] += " " + seg.text
        else:
            lines.append(f"- {seg.text}" if seg.kind == "item" else seg.text)
        previous = seg
    return "\n".join(lines)


def prepend_sentence(doc: Doc, text: str) -> Doc:
    """A sentence at the start of the body, after any greeting, in the first paragraph."""
    at = 1 if doc.segments and doc.segments[0].kind == "greeting" else 0
    while at < len(doc.segments) and doc.segments[at].kind == "sentence" and doc.segments[at].origin is None:
        at += 1  # after what the rep already added, so additions read in the order of the rules
    following = doc.segments[at] if at < len(doc.segments) else None
    block = following.block if following is not None and following.kind == "sentence" else -1
    return Doc([*doc.segments[:at], Segment("sentence", text, block), *doc.segments[at:]])


def append_sentence(doc: Doc, text: str) -> Doc:
    """A sentence at the end of the last paragraph, before a closing list; a new paragraph if there is none."""
    last_prose = max((i for i, s in enumerate(doc.segments) if s.kind == "sentence"), default=None)
    if last_prose is None:
        at = 1 if doc.segments and doc.segments[0].kind == "greeting" else 0
        return Doc([*doc.segments[:at], Segment("sentence", text, -1), *doc.segments[at:]])
    block = doc.segments[last_prose].block
    return Doc([*doc.segments[: last_prose + 1], Segment("sentence", text, block), *doc.segments[last_prose + 1 :]])


def without(doc: Doc, drop: Callable[[Segment], bool]) -> Doc:
    return Doc([s for s in doc.segments if not drop(s)])


# --- preferences: each rule checks a draft and repairs what it breaks ---------------------------------------------


class _Rule(_Model):
    # Class constants, not fields: a suite file cannot declare a negative rule event-dependent.
    # rewrite: changes or drops what is there; add: puts in what is missing; trim: shortens what is left
    phase: ClassVar[str] = "add"
    # Whether the rule depends on the event, so that a constant text cannot meet it.
    event_dependent: ClassVar[bool] = False

    @model_validator(mode="after")
    def _templates_use_known_fields(self) -> _Rule:
        texts = [getattr(self, "fix", None), *getattr(self, "items", [])]
        for text in filter(None, texts):
            unknown = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None} - TEMPLATE_FIELDS
            if unknown:
                raise ValueError(f"{text!r} uses {sorted(unknown)}; a rep's text may use {sorted(TEMPLATE_FIELDS)}")
        return self

    def applies(self, view: View) -> bool:
        """Whether the event gives the rule something to ask for (a rule that does not apply is met)."""
        return True

    def problem(self, doc: Doc, view: View) -> str | None:
        raise NotImplementedError

    def repair(self, doc: Doc, view: View) -> Doc:
        raise NotImplementedError


class GreetsContact(_Rule):
    kind: Literal["greets_contact"]
    form: str = Field(default="Hi", description="the greeting the rep writes when the draft has none for the contact")
    event_dependent: ClassVar[bool] = True

    def problem(self, doc: Doc, view: View) -> str | None:
        first = doc.segments[0] if doc.segments else None
        # The greeting is the contact's name and nothing else: a line greeting many people greets nobody.
        rest = re.escape(view.ctx.contact_name[len(view.first_name):].strip())
        who = rf"{re.escape(view.first_name)}(?:\s+{rest})?" if rest else re.escape(view.first_name)
        if first is not None and first.kind == "greeting" and re.fullmatch(rf"{GREETING_WORDS}\s+{who}\s*[,:!.]?", first.text, re.I):
            return None
        return f"does not greet {view.first_name} by name"

    def repair(self, doc: Doc, view: View) -> Doc:
        rest = doc.segments[1:] if doc.segments and doc.segments[0].kind == "greeting" else doc.segments
        return Doc([Segment("greeting", f"{self.form} {view.first_name},", -2), *rest])


class NamesAccount(_Rule):
    kind: Literal["names_account"]
    fix: str = Field(description="the sentence the rep adds, e.g. 'Here is what we propose for {account}.'")
    event_dependent: ClassVar[bool] = True

    def problem(self, doc: Doc, view: View) -> str | None:
        text = plain(doc.text)
        return None if any(names_alias(text, a) for a in view.account_aliases) else f"does not name {short_name(view.ctx.account_name)}"

    def repair(self, doc: Doc, view: View) -> Doc:
        return prepend_sentence(doc, self.fix.format(**view.fields()))


class RefersToRequest(_Rule):
    kind: Literal["refers_to_request"]
    fix: str = Field(description="the sentence the rep adds, e.g. 'You asked about {topic}.'")
    event_dependent: ClassVar[bool] = True

    def problem(self, doc: Doc, view: View) -> str | None:
        if not view.raised:  # nothing the suite knows how to recognise: the rep cannot hold it against the draft
            return None
        text = plain(doc.text)
        if any(mentions(text, term) for topic in view.raised for term in topic.terms):
            return None
        return f"does not refer to what the customer asked about ({', '.join(t.name for t in view.raised)})"

    def repair(self, doc: Doc, view: View) -> Doc:
        return prepend_sentence(doc, self.fix.format(**view.fields()))


class CitesCaseResult(_Rule):
    kind: Literal["cites_case_result"]
    fix: str = Field(description="the sentence the rep adds, e.g. 'A similar customer [{case_marker}]: {case_result}'")
    event_dependent: ClassVar[bool] = True

    def applies(self, view: View) -> bool:
        return bool(view.results)

    def problem(self, doc: Doc, view: View) -> str | None:
        if not view.results or any(_cites(s.text, r) for s in doc.body for r in view.results):
            return None
        sentence, marker, found = view.results[0]
        return f"cites no measured result of a similar case (such as {marker}: {sorted(found)[0]})"

    def repair(self, doc: Doc, view: View) -> Doc:
        return append_sentence(doc, self.fix.format(**view.fields()))


def _cites(sentence: str, result: tuple[str, str, set[str]]) -> bool:
    """A sentence cites a result when it states one of its numbers and says which case or what was measured:
    the case's marker, or two of the result's words. A number alone could be anything."""
    text, marker, found = result
    if not numbers(sentence) & found:
        return False
    return f"[{marker}]" in sentence or len(_content_words(sentence) & _content_words(text)) >= 2


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", plain(text).lower()) if len(w) >= 5}


def _as_result(sentence: str) -> str:
    """A case's closing sentence as a rep quotes it: without the deal's outcome word ('Won; ...')."""
    quoted = re.sub(r"^(?:Won|Closed|Signed)[;,:]\s*", "", sentence)
    return quoted[:1].upper() + quoted[1:]


class ProposesSlot(_Rule):
    kind: Literal["proposes_slot"]
    fix: str = Field(description="the sentence the rep adds, e.g. '{consultant} is free on {slot_day} at {slot_time}.'")
    event_dependent: ClassVar[bool] = True

    def applies(self, view: View) -> bool:
        return bool(view.ctx.slots and view.ctx.consultant_name)

    def problem(self, doc: Doc, view: View) -> str | None:
        if not self.applies(view):
            return None
        start, text = view.ctx.slots[0].start, plain(doc.text)
        consultant = view.ctx.consultant_name.split()[0]
        day = names(text, f"{start:%A}") or names(text, f"{start:%a}")
        hour = start.hour % 12 or 12
        time = names(text, slot_time(start)) or re.search(rf"(?<!\d){hour}(?::{start:%M})?\s*{start:%p}", text, re.I) is not None
        if names(text, consultant) and day and time:
            return None
        return f"does not propose the call with {consultant} on {start:%A} at {slot_time(start)}"

    def repair(self, doc: Doc, view: View) -> Doc:
        return append_sentence(doc, self.fix.format(**view.fields()))


class AnyOf(_Rule):
    """One of several ways to meet a preference; the rep's edit takes the first that applies to the event."""

    kind: Literal["any_of"]
    rules: list[Annotated[Union[CitesCaseResult, ProposesSlot, NamesAccount, RefersToRequest], Field(discriminator="kind")]] = Field(
        min_length=2)
    event_dependent: ClassVar[bool] = True

    def problem(self, doc: Doc, view: View) -> str | None:
        # Only the ways this event offers count: no proposed slot must not make "or proposes the slot" true.
        problems = [rule.problem(doc, view) for rule in self.rules if rule.applies(view)]
        if not problems or any(p is None for p in problems):
            return None
        return " and ".join(problems)

    def repair(self, doc: Doc, view: View) -> Doc:
        for rule in self.rules:
            if rule.applies(view):
                return rule.repair(doc, view)
        return doc


class NoInventedNumbers(_Rule):
    kind: Literal["no_invented_numbers"]
    phase: ClassVar[str] = "rewrite"

    def _invented(self, text: str, view: View) -> set[str]:
        return numbers(text) - view.known_numbers

    def problem(self, doc: Doc, view: View) -> str | None:
        invented = self._invented(doc.text, view)
        return f"states figures found in no fact or case ({', '.join(sorted(invented))})" if invented else None

    def repair(self, doc: Doc, view: View) -> Doc:
        return without(doc, lambda s: s.kind in ("sentence", "item") and bool(self._invented(s.text, view)))


class ForbiddenTerms(_Rule):
    kind: Literal["forbidden_terms"]
    label: str = Field(description="what the terms are, for the reason: 'discounts', 'hype'")
    terms: list[str] = Field(min_length=1, description="word prefixes, matched without regard to case")
    phase: ClassVar[str] = "rewrite"

    def _found(self, text: str) -> list[str]:
        return [t for t in self.terms if mentions(plain(text), t)]

    def problem(self, doc: Doc, view: View) -> str | None:
        found = self._found(doc.text)
        return f"mentions {self.label} ({', '.join(found)})" if found else None

    def repair(self, doc: Doc, view: View) -> Doc:
        return without(doc, lambda s: s.kind != "greeting" and bool(self._found(s.text)))


class NoOtherCustomers(_Rule):
    kind: Literal["no_other_customers"]
    replacement: str = Field(default="a similar customer", description="what the rep writes instead of another customer's name")
    phase: ClassVar[str] = "rewrite"

    def _found(self, text: str, view: View) -> list[str]:
        found: list[str] = []
        for name in view.other_customers:  # longest first: "Kestrel" is not reported again inside "Kestrel University"
            if names(plain(text), name, case=True) and not any(name in longer for longer in found):
                found.append(name)
        return found

    def problem(self, doc: Doc, view: View) -> str | None:
        found = self._found(doc.text, view)
        return f"names other customers ({', '.join(found)})" if found else None

    def repair(self, doc: Doc, view: View) -> Doc:
        return Doc([replace(s, text=self._anonymise(s.text, view)) for s in doc.segments])

    def _anonymise(self, text: str, view: View) -> str:
        for name in view.other_customers:
            text = re.sub(rf"(?<!\w){re.escape(name)}(?!\w)", self.replacement, text)
        # A name that opened the sentence leaves a lower-case start.
        return text[:1].upper() + text[1:] if text.startswith(self.replacement) else text


class NoExclamation(_Rule):
    kind: Literal["no_exclamation"]
    phase: ClassVar[str] = "rewrite"

    def problem(self, doc: Doc, view: View) -> str | None:
        return "uses exclamation marks" if "!" in doc.text else None

    def repair(self, doc: Doc, view: View) -> Doc:
        return Doc([replace(s, text=re.sub(r"!+", "," if s.kind == "greeting" else ".", s.text)) for s in doc.segments])


class MaxWords(_Rule):
    kind: Literal["max_words"]
    limit: int = Field(ge=5, description="must be below what the draft's token cap can produce (tests/test_reps.py checks)")
    phase: ClassVar[str] = "trim"

    def problem(self, doc: Doc, view: View) -> str | None:
        count = word_count(doc.text)
        return f"longer than {self.limit} words ({count})" if count > self.limit else None

    def repair(self, doc: Doc, view: View, needed: Callable[[Doc], set[str]] = lambda d: set()) -> Doc:
        """Drops the draft's own sentences from the end, first those no other preference needs, then any."""
        for spare_only in (True, False):
            for seg in reversed([s for s in doc.segments if s.kind in ("sentence", "item") and s.origin is not None]):
                if word_count(doc.text) <= self.limit:
                    return _without_empty_headings(doc)
                trial = without(doc, lambda s, seg=seg: s is seg)
                if not spare_only or needed(trial) <= needed(doc):
                    doc = trial
        return _without_empty_headings(doc)


def _without_empty_headings(doc: Doc) -> Doc:
    """A heading whose items were all dropped heads nothing."""
    kept = [s for i, s in enumerate(doc.segments)
            if s.kind != "heading" or (i + 1 < len(doc.segments) and doc.segments[i + 1].kind == "item")]
    return Doc(kept)


class NextStepsList(_Rule):
    kind: Literal["next_steps_list"]
    heading: str = "Next steps:"
    min_items: int = Field(default=2, ge=1)
    max_items: int = Field(default=4, ge=1)
    max_item_words: int = Field(default=12, ge=3)
    items: list[str] = Field(min_length=1, description="items the rep adds; the first must open with {first_name} or {account}")
    event_dependent: ClassVar[bool] = True

    def _names_lead(self, text: str, view: View) -> bool:
        # A step the customer owns opens with their name: four short items hold four names, not a whole CRM.
        opening = plain(text).strip()
        return any(re.match(rf"{re.escape(n)}(?!\w)", opening) for n in [view.first_name, *view.account_aliases])

    def problem(self, doc: Doc, view: View) -> str | None:
        items = [s for s in doc.segments if s.kind == "item"]
        ok = (self.min_items <= len(items) <= self.max_items and all(word_count(i.text) <= self.max_item_words for i in items)
              and any(self._names_lead(i.text, view) for i in items))
        if ok:
            return None
        return (f"no next-steps list of {self.min_items} to {self.max_items} items of at most {self.max_item_words} words, "
                f"one opening with {view.first_name} or {short_name(view.ctx.account_name)}")

    def repair(self, doc: Doc, view: View) -> Doc:
        items = [s for s in doc.segments if s.kind == "item" and word_count(s.text) <= self.max_item_words]
        items = sorted(items, key=lambda s: not self._names_lead(s.text, view))[: self.max_items]  # stable: keeps their order
        items = [s for s in doc.segments if any(s is i for i in items)]
        fields = view.fields()
        if not any(self._names_lead(i.text, view) for i in items):
            items = [Segment("item", self.items[0].format(**fields)), *items][: self.max_items]
        for template in self.items[1:]:
            if len(items) >= self.min_items:
                break
            items.append(Segment("item", template.format(**fields)))
        prose = [s for s in doc.segments if s.kind not in ("item", "heading")]
        # The list goes after the body, but before a closing question, which stays the last word.
        at = len(prose) - 1 if prose and prose[-1].kind == "sentence" and plain(prose[-1].text).strip().endswith("?") else len(prose)
        return Doc([*prose[:at], Segment("heading", self.heading), *items, *prose[at:]])


class EndsWithQuestion(_Rule):
    kind: Literal["ends_with_question"]
    fix: str = Field(description="the question the rep ends with, e.g. 'Would a call next week suit you, {first_name}?'")
    max_questions: int = Field(default=1, ge=1)
    event_dependent: ClassVar[bool] = True

    def problem(self, doc: Doc, view: View) -> str | None:
        body = doc.body
        last = plain(body[-1].text).strip() if body else ""
        if _asks(last, view.first_name) and plain(doc.text).count("?") <= self.max_questions:
            return None
        return f"does not end with one question to {view.first_name}"

    def repair(self, doc: Doc, view: View) -> Doc:
        body = doc.body
        last = body[-1] if body else None
        doc = without(doc, lambda s: s is not last and s.kind in ("sentence", "item") and "?" in s.text)
        if last is not None and plain(last.text).strip().endswith("?") and not _asks(plain(last.text).strip(), view.first_name):
            asked = re.sub(r"\?((?:\s*\[[A-Z]\d+\])*)\s*$", rf", {view.first_name}?\1", last.text)
            return Doc([replace(s, text=asked) if s is last else s for s in doc.segments])
        if last is not None and plain(last.text).strip().endswith("?"):
            return doc
        return append_closing(doc, self.fix.format(**view.fields()))


def _asks(question: str, first_name: str) -> bool:
    """A question put to the contact: their first name opens it ('Chloe, ...?') or closes it ('..., Chloe?')."""
    name = re.escape(first_name)
    return question.endswith("?") and bool(re.match(rf"{name}\s*,", question) or re.search(rf",\s*{name}\s*\?$", question))


def append_closing(doc: Doc, text: str) -> Doc:
    last = doc.segments[-1] if doc.segments else None
    block = last.block if last is not None and last.kind == "sentence" else 10**6
    return Doc([*doc.segments, Segment("sentence", text, block)])


Rule = Annotated[
    Union[GreetsContact, NamesAccount, RefersToRequest, CitesCaseResult, ProposesSlot, AnyOf, NoInventedNumbers, ForbiddenTerms,
          NoOtherCustomers, NoExclamation, MaxWords, NextStepsList, EndsWithQuestion],
    Field(discriminator="kind"),
]


# --- reps and the suite --------------------------------------------------------------------------------------------


class RepProfile(_Model):
    id: str = Field(min_length=1, description="the rep id decisions are stored under")
    kind: Literal["account_aware", "content", "style", "structure", "negative", "closing"]
    description: str
    rules: list[Rule] = Field(min_length=1)
    reject_after: int = Field(default=3, ge=1, description="this many broken preferences and the rep rejects instead of editing")
    max_dropped_share: float = Field(default=0.5, ge=0, le=1, description="the rep rejects an edit that would drop more of the draft")

    @model_validator(mode="after")
    def _depends_on_the_event(self) -> RepProfile:
        if not any(rule.event_dependent for rule in self.rules):
            raise ValueError(f"rep {self.id} has no preference that depends on the event, so one constant text would please it; "
                             "add greets_contact, names_account, refers_to_request, cites_case_result, proposes_slot, "
                             "next_steps_list or ends_with_question")
        return self


class RepSuite(_Model):
    topics: list[Topic] = Field(min_length=1, description="what customers ask about; refers_to_request looks for them")
    reps: list[RepProfile] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> RepSuite:
        ids = [r.id for r in self.reps]
        if len(set(ids)) != len(ids):
            raise ValueError(f"rep ids repeat: {sorted(i for i in set(ids) if ids.count(i) > 1)}; give each rep its own id")
        return self


PHASES = ("rewrite", "add", "trim")


class Rep:
    """One simulated rep: adopts a draft that meets its preferences, edits one it can fix, rejects the rest with reasons."""

    def __init__(self, profile: RepProfile, topics: Sequence[Topic]):
        self.profile = profile
        self.topics = list(topics)

    @property
    def rep_id(self) -> str:
        return self.profile.id

    def view(self, context: ReviewContext) -> View:
        return View(context, self.topics)

    def problems(self, draft: str, context: ReviewContext) -> list[str]:
        if not plain(draft).strip():
            return ["empty"]
        return self._problems(parse(draft), self.view(context))

    def review(self, draft: str, context: ReviewContext) -> HumanResponse:
        problems = self.problems(draft, context)
        if not problems:
            return adopt(self.rep_id)
        if problems == ["empty"] or len(problems) >= self.profile.reject_after:
            return reject(self.rep_id, "; ".join(problems))
        fixed, dropped = self._fix(draft, context)
        if dropped > self.profile.max_dropped_share:
            return reject(self.rep_id, "; ".join([*problems, f"an edit would drop {dropped:.0%} of the draft"]))
        return edit(self.rep_id, fixed)

    def fix(self, draft: str, context: ReviewContext) -> str:
        """The draft as this rep would send it: what breaks a preference rewritten, the rest kept."""
        return self._fix(draft, context)[0]

    def _problems(self, doc: Doc, view: View) -> list[str]:
        return [p for rule in self.profile.rules if (p := rule.problem(doc, view)) is not None]

    def _fix(self, draft: str, context: ReviewContext) -> tuple[str, float]:
        view, doc = self.view(context), parse(draft)
        original = {s.origin for s in doc.body}
        # Rewrites first (they drop sentences), then additions, then trimming, which may undo an addition's room:
        # a few passes settle it.
        for _ in range(3):
            for phase in PHASES:
                for rule in (r for r in self.profile.rules if r.phase == phase):
                    if rule.problem(doc, view) is not None:
                        doc = rule.repair(doc, view, self._needed(view)) if phase == "trim" else rule.repair(doc, view)
            if not self._problems(doc, view):
                break
        kept = {s.origin for s in doc.body} & original
        return doc.text, (1 - len(kept) / len(original)) if original else 0.0

    def _needed(self, view: View) -> Callable[[Doc], set[str]]:
        """The additions a text still lacks: trimming may drop a sentence only if this does not grow."""
        adds = [r for r in self.profile.rules if r.phase == "add"]
        return lambda doc: {p for r in adds if (p := r.problem(doc, view)) is not None}


def load_suite(path: Path = SUITE_FILE) -> RepSuite:
    """The rep suite file, validated (ConfigError naming the file and key when it is wrong)."""
    return load_yaml_model(path, RepSuite)


def load_reps(path: Path = SUITE_FILE) -> list[Rep]:
    suite = load_suite(path)
    return [Rep(profile, suite.topics) for profile in suite.reps]
