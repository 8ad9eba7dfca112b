"""Write and verify: the model turns each content-plan item into one sentence, and the verifier keeps it or not.

Each sentence is bound to the plan item that produced it, so its sources are the item's sources: nothing is guessed
after the fact. The verifier (agents/verify.py) checks every claim of a sentence against that item's quoted facts;
a sentence that fails is written again once with the unsupported claims named, and if it fails again the item's
template sentence (the planner's own wording of its facts) takes its place. What was removed, and why, goes to the
step's notes, so the rep and an auditor see it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from agents.attribution import split_sentences
from agents.content_plan import ContentPlan, PlanItem
from agents.state import DraftSentence, LeadProfile
from agents.verify import Name, SentenceCheck, VerifiedSentence, verify_sentence
from prompts import load_prompt
from prompts.templates import ChatMessage, PromptTemplate
from provenance import SourceRef
from serving.llm import LLM, Generation

PROMPT = "write_sentence"
OUR_COMPANY = "Loop Systems"  # the seller, named in the prompts: never a third party


class WrittenItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item: int = Field(description="index of the plan item")
    verified: VerifiedSentence
    sources: list[SourceRef]
    generated: int = Field(description="model calls made for it: 0 when the model failed, 1, or 2 after a rewrite")


class WrittenDraft(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    sentences: list[DraftSentence]
    items: list[WrittenItem]
    messages: list[ChatMessage] = Field(description="the first item's chat, as the model saw it")
    generations: list[Generation]
    notes: list[str]


Generate = Callable[[list[ChatMessage], int, float], Generation]


def write_plan(plan: ContentPlan, lead: LeadProfile, generate: Generate, max_new_tokens: int, deadline_s: float,
               forbidden_names: list[str]) -> WrittenDraft:
    """One verified sentence per plan item, in plan order, after a greeting to the contact."""
    prompt = load_prompt(PROMPT)
    known = [Name(text=lead.contact_name, kind="person"), Name(text=lead.account_name, kind="company"),
             Name(text=OUR_COMPANY, kind="company")]
    forbidden = [Name(text=n, kind="company") for n in forbidden_names if len(n) >= 2 and n != lead.account_name]
    deadline = time.monotonic() + deadline_s
    written, generations, notes = [], [], []
    first_messages: list[ChatMessage] = []
    for index, item in enumerate(plan.items):
        writer = _ItemWriter(prompt, item, lead, generate, max_new_tokens, deadline)
        verified = verify_sentence(writer.first(), _sources(item, lead), writer.rewrite, item.template, known, forbidden)
        if verified.outcome != "template" and not covers(verified.text, item.template):
            notes.append(f"plan item {index} ({item.kind}): the model's sentence left out the item's facts "
                         f"({verified.text[:80]!r}); its template sentence stands")
            verified = VerifiedSentence(text=item.template, outcome="template", checks=verified.checks,
                                        removed=verified.removed)
        written.append(WrittenItem(item=index, verified=verified, sources=item.sources, generated=len(writer.generations)))
        generations += writer.generations
        first_messages = first_messages or writer.messages
        notes += _item_notes(index, item, verified, writer.error)
    greeting = _greeting(lead)
    body = " ".join(w.verified.text.strip() for w in written)
    sentences = [*greeting, *(DraftSentence(text=w.verified.text.strip(), sources=w.sources, method="plan") for w in written)]
    text = f"{greeting[0].text}\n\n{body}" if greeting else body
    return WrittenDraft(text=text, sentences=sentences, items=written, messages=first_messages, generations=generations,
                        notes=notes)


class _ItemWriter:
    """The model's sentence for one item, and its one rewrite; a failed call yields the template, never an error."""

    def __init__(self, prompt: PromptTemplate, item: PlanItem, lead: LeadProfile, generate: Generate,
                 max_new_tokens: int, deadline: float):
        self.prompt, self.item, self.lead = prompt, item, lead
        self.generate, self.max_new_tokens, self.deadline = generate, max_new_tokens, deadline
        self.generations: list[Generation] = []
        self.messages: list[ChatMessage] = []
        self.error: str | None = None

    def first(self) -> str:
        return self._ask([])

    def rewrite(self, failed: SentenceCheck) -> str:
        return self._ask([v.claim.text for v in failed.violations])

    def _ask(self, avoid: list[str]) -> str:
        left = self.deadline - time.monotonic()
        if self.error or left <= 0:
            self.error = self.error or "the deadline passed"
            return self.item.template
        messages = self.prompt.render(contact=self.lead.contact_name, company=self.lead.account_name, item=self.item,
                                      avoid=avoid)
        self.messages = self.messages or messages
        try:
            generation = self.generate(messages, self.max_new_tokens, left)
        except Exception as exc:  # noqa: BLE001 - the template is always there; the note says why it was used
            self.error = f"{type(exc).__name__}: {str(exc)[:200]}"
            return self.item.template
        self.generations.append(generation)
        sentences = split_sentences(generation.text)
        return sentences[0] if sentences and sentences[0].strip() else self.item.template


def covers(sentence: str, template: str, share: float = 0.5) -> bool:
    """The sentence says what its item says: every number of the template, and at least `share` of its content words.

    The verifier keeps a sentence that states nothing unsupported, which a sentence that drops the item's point also
    does ("Thank you for your patience."); this keeps the item's point in the draft."""
    words = {w for w in _WORD.findall(template.lower()) if len(w) > 3 and w not in _STOP}
    numbers = set(_NUMBER.findall(template))
    said = sentence.lower()
    found = sum(w in said for w in words)
    return all(n in sentence for n in numbers) and (not words or found / len(words) >= share)


_WORD = re.compile(r"\w+")
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
_STOP = {"that", "this", "with", "from", "have", "your", "will", "what", "when", "which", "about", "there", "their",
         "they", "been", "were", "would", "could", "should", "into", "than", "then", "them", "also", "just", "only"}


def _sources(item: PlanItem, lead: LeadProfile) -> list[str]:
    """What a sentence for this item may state: the item's quoted facts, and whom it writes to."""
    return [*item.facts, item.template, lead.contact_name, lead.account_name, OUR_COMPANY]


def _greeting(lead: LeadProfile) -> list[DraftSentence]:
    first = lead.contact_name.split()[0] if lead.contact_name.strip() else ""
    if not first:
        return []
    ref = lead.refs.get("contact_name")
    return [DraftSentence(text=f"Hi {first},", sources=[ref] if ref else [], method="plan")]


def _item_notes(index: int, item: PlanItem, verified: VerifiedSentence, error: str | None) -> list[str]:
    notes = []
    if error:
        notes.append(f"plan item {index} ({item.kind}): the model was not used ({error}); its template sentence stands")
    if verified.removed:
        why = "; ".join(f"{v.claim.kind} '{v.claim.text}': {v.why}" for v in verified.removed)
        notes.append(f"plan item {index} ({item.kind}): {verified.outcome} after the verifier removed: {why}")
    return notes


def generator(llm: LLM, adapter) -> Generate:
    """The served model, one sentence per call, with the run's adapter."""
    return lambda messages, max_new_tokens, deadline_s: llm.generate(messages, max_new_tokens, deadline_s, adapter=adapter,
                                                                     max_sentences=1)
