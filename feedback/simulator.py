"""The first simulated sales rep: one rep with hidden preferences, judging the draft text alone.

Kept for bench/hfrl_loop.py and tests/test_learning_loop.py. Its preferences can be met by one constant
sentence (its own `opening`, which every edit prepends), so a round can learn to emit that sentence: issue 15.
Measure learning with the suite in feedback/reps.py, whose reps read the run's context and cannot be
pleased by a constant text.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from agents.inbox import HumanResponse, adopt, edit, reject


class RepPreferences(BaseModel):
    """What this rep wants from every draft; the model is never told."""

    model_config = ConfigDict(extra="forbid")

    must_mention: list[str] = Field(default_factory=lambda: ["pilot", "SLA"], description="words every draft must contain")
    max_words: int = Field(default=60, ge=5)
    forbidden: list[str] = Field(default_factory=lambda: ["discount", "free of charge"], description="promises the rep never makes")
    opening: str = Field(default="We propose a six-week pilot with a 99.9% delivery SLA.",
                         description="the sentence the rep leads with when a draft lacks a required word")
    reject_after: int = Field(default=4, ge=1, description="this many broken preferences and the rep rejects instead of editing")


class SimulatedRep:
    def __init__(self, preferences: RepPreferences, rep_id: str = "rep-simulated"):
        self.preferences = preferences
        self.rep_id = rep_id

    def problems(self, draft: str) -> list[str]:
        p, lowered = self.preferences, draft.lower()
        found = [f"does not mention {word!r}" for word in p.must_mention if word.lower() not in lowered]
        found += [f"promises {word!r}" for word in p.forbidden if word.lower() in lowered]
        if len(draft.split()) > p.max_words:
            found.append(f"longer than {p.max_words} words ({len(draft.split())})")
        if not draft.strip():
            found.append("empty")
        return found

    def review(self, draft: str) -> HumanResponse:
        problems = self.problems(draft)
        if not problems:
            return adopt(self.rep_id)
        if len(problems) >= self.preferences.reject_after:
            return reject(self.rep_id, "; ".join(problems))
        return edit(self.rep_id, self.fix(draft))

    def fix(self, draft: str) -> str:
        """The rep's edit: lead with the offer, then keep the draft's sentences that fit, minus forbidden promises."""
        p = self.preferences
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", draft.strip()) if s and not any(w.lower() in s.lower() for w in p.forbidden)]
        budget = p.max_words - len(p.opening.split())
        kept: list[str] = []
        for sentence in sentences:
            if len(" ".join(kept + [sentence]).split()) > budget:
                break
            kept.append(sentence)
        return " ".join([p.opening, *kept]).strip()
