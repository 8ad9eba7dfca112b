"""The evaluation gate: a candidate adapter against the one in service, on held-out rep feedback.

Metrics (each on the candidate round's held-out rows):
- mean log-likelihood per token of the reps' accepted texts (SFT eval rows) — the primary metric;
- preference accuracy: the chosen text is more likely than the rejected one (DPO eval rows);
- generation similarity: cosine similarity of fresh greedy drafts to the reps' finals;
- forgetting: the mean log-likelihood on earlier rounds' held-out sets must not drop by more than a margin.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from agents.services import Services
from feedback.export import read_rows
from finetune.records import AdapterRef, FinetuneSettings
from prompts.templates import ChatMessage


class AdapterScores(BaseModel):
    model_config = ConfigDict(extra="forbid")

    adapter: str | None
    mean_loglik: float | None
    preference_accuracy: float | None
    generation_similarity: float | None
    finals: int
    pairs: int
    generations: int


class EvalReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    candidate: AdapterScores
    baseline: AdapterScores
    forgetting: dict[str, float]  # earlier round's adapter version → log-likelihood drop
    passed: bool
    reasons: list[str]


def dataset_dir(services: Services, manifest_sha256: str) -> Path:
    return services.settings.data_dir / "datasets" / manifest_sha256[:16]


def eval_rows(directory: Path, fmt: str) -> list[dict]:
    path = directory / fmt / "eval.jsonl"
    return read_rows(path) if path.exists() else []


def score(services: Services, ref: AdapterRef | None, finals: list[dict], pairs: list[dict], settings: FinetuneSettings) -> AdapterScores:
    llm = services.llm
    mean_loglik = _mean_loglik(llm, ref, finals, settings.max_length)
    wins = [llm.completion_logprob(p["prompt"], p["chosen"], ref, settings.max_length) >
            llm.completion_logprob(p["prompt"], p["rejected"], ref, settings.max_length) for p in pairs]
    drafted = finals[: settings.eval_generations]
    similarity = _generation_similarity(services, ref, drafted, settings.eval_max_new_tokens) if drafted else None
    return AdapterScores(adapter=ref.version if ref else None, mean_loglik=mean_loglik,
                         preference_accuracy=sum(wins) / len(wins) if wins else None,
                         generation_similarity=similarity, finals=len(finals), pairs=len(pairs), generations=len(drafted))


def _mean_loglik(llm, ref: AdapterRef | None, finals: list[dict], max_length: int) -> float | None:
    """Per token, so long and short finals weigh alike."""
    if not finals:
        return None
    total = tokens = 0.0
    for row in finals:
        prompt, completion = row["messages"][:-1], row["messages"][-1:]
        total += llm.completion_logprob(prompt, completion, ref, max_length)
        tokens += llm.count_tokens(completion[0]["content"])
    return total / max(tokens, 1)


def _generation_similarity(services: Services, ref: AdapterRef | None, finals: list[dict], max_new_tokens: int) -> float:
    drafts, targets = [], []
    for row in finals:
        messages = [ChatMessage.model_validate(m) for m in row["messages"][:-1]]
        drafts.append(services.llm.generate(messages, max_new_tokens, deadline_s=120, adapter=ref).text)
        targets.append(row["messages"][-1]["content"])
    vectors = services.embedder.embed(drafts + targets)
    pairs = zip(vectors[: len(drafts)], vectors[len(drafts) :])
    return sum(sum(a * b for a, b in zip(u, v)) for u, v in pairs) / len(drafts)


def evaluate(services: Services, version: str, settings: FinetuneSettings) -> EvalReport:
    registry = services.adapters
    candidate = registry.verify(version)
    current = registry.promoted()
    baseline_version = candidate.parent_version if current in (None, version) else current
    baseline_ref = registry.ref(baseline_version) if baseline_version else None
    directory = dataset_dir(services, candidate.dataset_manifest_sha256)
    finals, pairs = eval_rows(directory, "sft"), eval_rows(directory, "dpo")
    cand = score(services, registry.ref(version), finals, pairs, settings)
    base = score(services, baseline_ref, finals, pairs, settings)
    forgetting = _forgetting(services, version, baseline_ref, settings)
    reasons = _verdict(cand, base, forgetting, settings)
    return EvalReport(candidate=cand, baseline=base, forgetting=forgetting, passed=not reasons, reasons=reasons)


def _forgetting(services: Services, version: str, baseline: AdapterRef | None, settings: FinetuneSettings) -> dict[str, float]:
    """For every earlier round in the candidate's lineage: how much worse it models that round's held-out finals."""
    registry, drops = services.adapters, {}
    ancestor = registry.get(version).parent_version
    while ancestor is not None:
        metadata = registry.get(ancestor)
        finals = eval_rows(dataset_dir(services, metadata.dataset_manifest_sha256), "sft")
        if finals:
            before = _mean_loglik(services.llm, baseline, finals, settings.max_length)
            after = _mean_loglik(services.llm, registry.ref(version), finals, settings.max_length)
            drops[ancestor] = before - after
        ancestor = metadata.parent_version
    return drops


def _verdict(cand: AdapterScores, base: AdapterScores, forgetting: dict[str, float], settings: FinetuneSettings) -> list[str]:
    reasons = []
    if cand.mean_loglik is None:
        reasons.append("no held-out accepted texts to evaluate on; decide more runs before promoting")
    elif cand.mean_loglik - base.mean_loglik < settings.promote_margin:
        reasons.append(f"mean log-likelihood {cand.mean_loglik:.4f} does not beat {base.mean_loglik:.4f} "
                       f"by the margin {settings.promote_margin}")
    if cand.preference_accuracy is not None and cand.preference_accuracy < base.preference_accuracy:
        reasons.append(f"preference accuracy fell from {base.preference_accuracy:.2f} to {cand.preference_accuracy:.2f}")
    reasons += [f"forgets round {v}: log-likelihood drop {d:.4f} > {settings.forgetting_margin}"
                for v, d in forgetting.items() if d > settings.forgetting_margin]
    return reasons
