"""Messy CRM job titles → canonical role and seniority, by a configurable synonym table."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

from configs.settings import TitleRule


class TitleMatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str
    seniority: str
    decision_maker: bool
    synonym: str | None  # the table entry that matched; None when nothing did


def canonical_words(text: str) -> str:
    """'Dir. of Ops' → 'dir of ops': punctuation and case never decide a match."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def normalize_title(raw: str, rules: list[TitleRule]) -> TitleMatch:
    """The longest synonym found as whole words wins, so 'vp engineering' beats 'engineer'."""
    title = f" {canonical_words(raw)} "
    best: tuple[int, TitleRule, str] | None = None
    for rule in rules:
        for synonym in rule.synonyms:
            words = canonical_words(synonym)
            if f" {words} " in title and (best is None or len(words) > best[0]):
                best = (len(words), rule, synonym)
    if best is None:
        return TitleMatch(role="unknown", seniority="individual", decision_maker=False, synonym=None)
    _, rule, synonym = best
    return TitleMatch(role=rule.role, seniority=rule.seniority, decision_maker=rule.decision_maker, synonym=synonym)
