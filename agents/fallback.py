"""When the model cannot write a draft: decide that it cannot, and write a template draft from the same data.

A run never fails because the model did: a model error, a timeout or unusable text becomes a fallback draft
the rep can still adopt, edit or reject, with the reason in the trace and on the draft.
"""

from __future__ import annotations

import re
from collections import Counter

from agents.state import CaseHit, LeadFact
from prompts import load_prompt
from prompts.templates import PromptTemplate

FALLBACK_PROMPT = "fallback_proposal"
_MIN_WORDS = 4


def unusable_reason(text: str, stopped_by: str, deadline_s: float) -> str | None:
    """Why the model's text cannot go to a rep as a draft, or None if it can."""
    words = re.findall(r"[^\W\d_]+", text)
    if not text.strip():
        return f"no text before the {deadline_s:g}s deadline" if stopped_by == "deadline" else "the model returned no text"
    if len(words) < _MIN_WORDS:
        return f"the model returned {len(words)} word(s), too few for a draft"
    letters = sum(ch.isalpha() for ch in text) / max(1, sum(not ch.isspace() for ch in text))
    if letters < 0.6:
        return f"the model's text is garbled: only {letters:.0%} of its characters are letters"
    word, count = Counter(w.lower() for w in words).most_common(1)[0]
    if len(words) >= 8 and count / len(words) > 0.4:
        return f"the model's text is garbled: {word!r} is {count} of its {len(words)} words"
    return None


def fallback_draft(facts: list[LeadFact], cases: list[CaseHit], company: str) -> tuple[str, PromptTemplate]:
    """The template draft and the prompt file it came from (its hash goes into the trace like any prompt's)."""
    template = load_prompt(FALLBACK_PROMPT)
    (message,) = template.render(facts=facts, cases=cases, company=company)
    return " ".join(line.strip() for line in message.content.splitlines() if line.strip()), template
