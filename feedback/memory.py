"""In-context memory: a rep's recent approved texts for leads like this one, as examples for the next draft.

The feedback store is the memory: the rep's own adopt and edit decisions, newest first, within `max_age_days`. A
decision is used only if its lead allows `model_training` (the purpose fine-tuning checks: showing a decision to the
model is learning from it), it was drafted with the same prompt (the same kind of text), and its lead is a CRM contact
whose contact data can be redacted from the text. Erased decisions are gone from the store, so they are never found.
What is left is ranked by how similar the two leads are: the embedder compares the `<customer_data>` block of the chat
each was drafted from.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from configs.settings import MemorySettings
from feedback.consent import consent_checker
from feedback.store import FeedbackRecord, FeedbackStore
from prompts.templates import ChatMessage
from provenance import SourceRef, sha256_text
from provenance.consent import ConsentPolicy
from provenance.masking import redact
from tools.crm.source import CRMDataError, CRMSource
from tools.embedder import Embedder

CUSTOMER_BLOCK = re.compile(r"<customer_data>(.*?)</customer_data>", re.DOTALL)
# Citation markers point at the facts of the lead the text was written for: copied into this draft they would cite ours.
MARKERS = re.compile(r"\s*\[[^\[\]\n]{1,40}\]")


class Example(BaseModel):
    """One past final as the model may see it: redacted, and tied to the decision it came from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    record_id: str
    run_id: str
    lead_id: str
    decision: str
    text: str = Field(description="the final, markers removed, its lead's contact data replaced by plain words")
    final_sha256: str = Field(description="hash of the final as stored: the audit log's decision entry has it too")
    similarity: float
    recorded_at: datetime

    def source_ref(self) -> SourceRef:
        similar = f"lead similarity {self.similarity:.2f}"
        note = f"run {self.run_id}; {self.decision} decision; {similar}; contact data redacted"
        return SourceRef(kind="feedback", id=self.record_id, field=self.decision, version=self.final_sha256, note=note)


class Recall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    examples: list[Example] = Field(description="usable examples, most similar first")
    considered: int = Field(description="the rep's recent adopted or edited decisions read from the store")
    left_out: dict[str, int] = Field(default_factory=dict, description="why the others were not usable, with counts")


def lead_text(messages: list[ChatMessage]) -> str:
    """What a chat says about its lead: its <customer_data> block, else its last user message."""
    users = [m.content for m in messages if m.role == "user"]
    found = CUSTOMER_BLOCK.search("\n".join(users))
    return " ".join((found.group(1) if found else users[-1] if users else "").split())


def recall(store: FeedbackStore, embedder: Embedder, crm: CRMSource, policy: ConsentPolicy, settings: MemorySettings,
           rep_id: str, prompt_name: str, query: str, now: datetime) -> Recall:
    """The rep's usable past finals drafted with `prompt_name`, most similar to `query` (this lead's text) first."""
    records = store.recent_finals(rep_id, now - timedelta(days=settings.max_age_days), settings.candidates)
    usable, left_out = _screen(records, prompt_name, crm, policy)
    examples = [e for e in _ranked(usable, query, embedder) if e.similarity >= settings.min_similarity]
    left_out["below min_similarity"] += len(usable) - len(examples)
    return Recall(examples=examples, considered=len(records), left_out={k: n for k, n in left_out.items() if n})


def _screen(records: list[FeedbackRecord], prompt_name: str, crm: CRMSource,
            policy: ConsentPolicy) -> tuple[list[tuple[FeedbackRecord, str]], Counter[str]]:
    """The records that may be shown, each with its redacted final, and why the others may not."""
    may_learn = consent_checker(crm, policy)
    left_out: Counter[str] = Counter()
    usable: list[tuple[FeedbackRecord, str]] = []
    for record in records:
        if not record.final_text or not record.final_text.strip():
            left_out["no final text"] += 1
        elif record.prompt_name != prompt_name:  # a reply to an objection is no example for a proposal
            left_out[f"not a {prompt_name} draft"] += 1
        elif not may_learn(record.lead_id):
            left_out["no model_training consent"] += 1
        elif (text := redacted_final(record, crm)) is None:
            left_out["lead not in the CRM: its contact data cannot be redacted"] += 1
        else:
            usable.append((record, text))
    return usable, left_out


def redacted_final(record: FeedbackRecord, crm: CRMSource) -> str | None:
    """The final without markers and without its lead's name, e-mail, phone and company; None if they are unknown."""
    try:
        contact = crm.contact(record.lead_id)
        account = crm.account(contact.account_id)
    except CRMDataError:  # a form lead, or one erased since: fail closed, the text may hold data we cannot find
        return None
    known = {"full_name": contact.full_name, "email": contact.email, "phone": contact.phone,
             "account_name": account.name}
    return redact(MARKERS.sub("", record.final_text or "").strip(), known)


def _ranked(usable: list[tuple[FeedbackRecord, str]], query: str, embedder: Embedder) -> list[Example]:
    if not usable:
        return []
    # One call: the embedder caches texts, so a rep's recent decisions are embedded once per process.
    query_vector, *vectors = embedder.embed([query, *(lead_text(record.messages) for record, _ in usable)])
    examples = [_example(record, text, _dot(query_vector, vector)) for (record, text), vector in zip(usable, vectors)]
    return sorted(examples, key=lambda e: (-e.similarity, -e.recorded_at.timestamp()))


def _example(record: FeedbackRecord, text: str, similarity: float) -> Example:
    return Example(record_id=record.id, run_id=record.run_id, lead_id=record.lead_id, decision=record.decision,
                   text=text, final_sha256=sha256_text(record.final_text or ""), similarity=round(similarity, 4),
                   recorded_at=record.recorded_at)


def _dot(a: list[float], b: list[float]) -> float:
    """Cosine similarity: the embedder returns unit-length vectors."""
    return float(sum(x * y for x, y in zip(a, b)))
