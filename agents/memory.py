"""The draft step's in-context memory: which of the rep's past finals go into this prompt, within its token budget."""

from __future__ import annotations

import time
from collections.abc import Callable

from agents.services import Services
from agents.state import RunState
from configs.settings import MemorySettings
from feedback.memory import Example, Recall, lead_text, recall
from prompts import load_prompt
from prompts.templates import ChatMessage
from provenance import SourceRef

PROMPT = "rep_examples"


def deciding_rep(services: Services, state: RunState) -> str:
    """Who will decide this draft: the account's owner, else the rep that decides when none is named."""
    return state.lead.owner_rep_id or services.settings.rep_id


def with_rep_examples(services: Services, state: RunState, messages: list[ChatMessage],
                      notes: list[str]) -> tuple[list[ChatMessage], list[SourceRef]]:
    """The chat with the rep's examples put in front of its user message, and the sources to trace for them."""
    settings = services.settings.memory
    if not settings.enabled:
        return messages, []
    try:
        started = time.perf_counter()
        found = recall(services.feedback, services.embedder, services.crm, services.consent, settings,
                       deciding_rep(services, state), state.route.prompt, lead_text(messages), services.clock())
        seconds = time.perf_counter() - started  # before counting tokens: the first count loads the model
        shown, block = fit_examples(found.examples[: settings.examples], messages, services.llm.count_tokens, settings)
    except Exception as exc:  # noqa: BLE001 - examples help the model; without them the draft goes on as before
        notes.append(f"rep memory unavailable ({type(exc).__name__}: {str(exc)[:200]}); drafting without examples")
        return messages, []
    notes.append(_summary(found, shown, deciding_rep(services, state), seconds))
    if block is None:
        return messages, []
    return _prepend(messages, block), [load_prompt(PROMPT).source_ref(), *(e.source_ref() for e in shown)]


def fit_examples(examples: list[Example], messages: list[ChatMessage], count_tokens: Callable[[str], int],
                 settings: MemorySettings) -> tuple[list[Example], str | None]:
    """The most similar examples whose block fits both budgets, and the block; the prompt itself is never cut."""
    kept = list(examples)
    base = sum(count_tokens(m.content) for m in messages) if kept else 0
    while kept:
        block = render_examples(kept)
        used = count_tokens(block)
        if used <= settings.max_tokens and base + used <= settings.prompt_budget_tokens:
            return kept, block
        kept.pop()  # over a budget: the least similar example goes first
    return [], None


def render_examples(examples: list[Example]) -> str:
    (message,) = load_prompt(PROMPT).render(examples=examples)
    return message.content


def _prepend(messages: list[ChatMessage], block: str) -> list[ChatMessage]:
    """The block opens the first user message: one chat shape for every chat template, the customer data stays last."""
    at = next(i for i, m in enumerate(messages) if m.role == "user")
    first = messages[at].model_copy(update={"content": f"{block}\n\n{messages[at].content}"})
    return [*messages[:at], first, *messages[at + 1 :]]


def _summary(found: Recall, shown: list[Example], rep_id: str, seconds: float) -> str:
    left_out = "; ".join(f"{n} {why}" for why, n in found.left_out.items())
    trimmed = len(found.examples) - len(shown)
    return (f"rep memory: {len(shown)} of {rep_id}'s past finals shown, from {found.considered} recent adopt or edit"
            " decision(s)"
            f"{f'; {trimmed} more left out for K or the token budget' if trimmed else ''}"
            f"{f'; left out: {left_out}' if left_out else ''}; retrieval {seconds * 1000:.0f} ms")
