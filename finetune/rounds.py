"""One round of the learning loop: feedback → datasets → LoRA training → a new registered adapter version."""

from __future__ import annotations

import json
import math
import random
import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from agents.services import Services
from feedback.consent import consent_checker
from feedback.export import ExportError, export_dataset, read_rows
from feedback.store import FeedbackRecord
from finetune.base_model import base_model_dir, model_version
from finetune.corpus import PROMPT as CORPUS_PROMPT
from finetune.corpus import corpus_rows
from finetune.records import AdapterMetadata, DatasetFile, DatasetManifest, FinetuneSettings
from finetune.registry import AdapterRegistry
from finetune.train import TrainResult, train_adapter
from prompts import load_prompt
from provenance import sha256_bytes, sha256_text
from tools.files import write_atomically

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
Progress = Callable[[str, int, int, dict[str, float]], None]


class RoundResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    adapter: AdapterMetadata
    manifests: dict[str, DatasetManifest]
    dataset_dir: str
    training: TrainResult


def lineage_record_ids(registry: AdapterRegistry, version: str | None) -> set[str]:
    """Every feedback record an adapter and its ancestors learned from."""
    ids: set[str] = set()
    while version is not None:
        metadata = registry.get(version)
        ids.update(metadata.record_ids)
        version = metadata.parent_version
    return ids


def select_records(records: list[FeedbackRecord], seen: set[str], replay_share: float, seed: int) -> list[FeedbackRecord]:
    """New decisions, plus a seeded share of the ones earlier rounds trained on (against forgetting)."""
    new = [r for r in records if r.id not in seen]
    if seen and not new:
        raise ExportError(f"no new feedback since the promoted adapter ({len(records)} decisions, all trained on); "
                          "decide more runs, or set warm_start: false to retrain from the base on all data")
    earlier = [r for r in records if r.id in seen]
    replay = random.Random(seed).sample(earlier, round(replay_share * len(earlier)))
    return sorted(new + replay, key=lambda r: (r.decided_at, r.id))


def export_round(records: list[FeedbackRecord], formats: list[str], datasets_root: Path, eval_fraction: float,
                 consent: Callable[[str], bool]) -> tuple[Path, dict[str, DatasetManifest], str]:
    """Export every format that has rows into a directory named by the manifests' hash, so a rerun finds the same data.

    A format without rows is left out (e.g. no DPO pairs when the rep adopted every draft it did not reject): the
    round trains the stages that have data. Only when no format has rows does the first format's error stand.
    """
    created_at = max((r.decided_at for r in records), default=EPOCH)  # from the data, not the clock: reruns hash the same
    staging = datasets_root / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    manifests: dict[str, DatasetManifest] = {}
    errors: list[ExportError] = []
    for fmt in formats:
        try:
            manifests[fmt] = export_dataset(records, fmt, staging / fmt, eval_fraction=eval_fraction, consent=consent,
                                            created_at=created_at)
        except ExportError as exc:
            errors.append(exc)
    if not manifests:
        raise errors[0]
    digest = sha256_text(json.dumps({f: m.model_dump(mode="json") for f, m in manifests.items()}, sort_keys=True))
    target = datasets_root / digest[:16]
    if target.exists():
        shutil.rmtree(staging)
    else:
        staging.rename(target)
    return target, manifests, digest


def feedback_round(services: Services, settings: FinetuneSettings, progress: Progress | None = None) -> RoundResult:
    registry = services.adapters
    parent = registry.promoted() if settings.warm_start else None
    records = select_records(services.feedback.all(), lineage_record_ids(registry, parent), settings.replay_share, settings.seed)
    formats = list(dict.fromkeys(stage.method for stage in settings.stages))
    dataset_dir, manifests, digest = export_round(records, formats, services.settings.data_dir / "datasets",
                                                  settings.eval_fraction, consent_checker(services.crm, services.consent))
    rows = {fmt: read_rows(dataset_dir / fmt / "train.jsonl") for fmt in manifests}
    # The stages that have data; the adapter's hyperparameters then say which ones trained.
    settings = settings.model_copy(update={"stages": [stage for stage in settings.stages if stage.method in manifests]})
    record_ids = sorted({i for m in manifests.values() for i in m.train_record_ids})
    return _train_and_register(services, settings, rows, "feedback", parent, digest, record_ids, dataset_dir, manifests, progress)


def corpus_round(services: Services, settings: FinetuneSettings, folder: Path, progress: Progress | None = None) -> RoundResult:
    """SFT on company documents; trains from the promoted adapter when warm_start, like a feedback round."""
    sft = [stage for stage in settings.stages if stage.method == "sft"]
    if not sft:
        raise ExportError("corpus fine-tuning needs an sft stage in the fine-tuning config; add `- {method: sft}` to stages")
    settings = settings.model_copy(update={"stages": sft})
    rows, ids = corpus_rows(folder)
    cut = len(rows) - (math.ceil(len(rows) * settings.eval_fraction) if len(rows) > 1 else 0)
    dataset_dir, manifest, digest = _write_corpus_dataset(services.settings.data_dir / "datasets", rows, ids, cut)
    parent = services.adapters.promoted() if settings.warm_start else None
    return _train_and_register(services, settings, {"sft": rows[:cut]}, "corpus", parent, digest, ids[:cut], dataset_dir,
                               {"sft": manifest}, progress)


def _write_corpus_dataset(root: Path, rows: list[dict], ids: list[str], cut: int) -> tuple[Path, DatasetManifest, str]:
    files = {name: "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in part).encode()
             for name, part in (("train.jsonl", rows[:cut]), ("eval.jsonl", rows[cut:]))}
    prompt = load_prompt(CORPUS_PROMPT)
    manifest = DatasetManifest(
        format="sft", created_at=EPOCH,  # content-addressed: no clock in the hash
        files=[DatasetFile(name=n, count=data.count(b"\n"), sha256=sha256_bytes(data)) for n, data in files.items()],
        train_record_ids=ids[:cut], eval_record_ids=ids[cut:], excluded={}, prompts={prompt.name: prompt.sha256},
    )
    digest = sha256_text(manifest.model_dump_json())
    target = root / digest[:16] / "sft"
    for name, data in {**files, "manifest.json": manifest.model_dump_json(indent=2).encode()}.items():
        write_atomically(target / name, data)
    return target.parent, manifest, digest


def _train_and_register(services: Services, settings: FinetuneSettings, rows: dict[str, list[dict]], kind: str,
                        parent: str | None, digest: str, record_ids: list[str], dataset_dir: Path,
                        manifests: dict[str, DatasetManifest], progress: Progress | None) -> RoundResult:
    registry = services.adapters
    base_dir = base_model_dir(services.settings.llm, services.settings.data_dir)
    # Same data, settings and parent → same work dir, so an interrupted round resumes where it stopped.
    work_dir = services.settings.data_dir / "finetune-work" / sha256_text(f"{digest}{settings.model_dump_json()}{parent}")[:16]
    parent_dir = Path(registry.ref(parent).path) if parent else None
    training = train_adapter(base_dir, rows, settings, work_dir / "adapter", parent_adapter=parent_dir,
                             work_dir=work_dir / "checkpoints", progress=progress)
    metadata = AdapterMetadata(
        version="pending", kind=kind, base_model_id=services.settings.llm.model_id, base_model_sha256=model_version(base_dir),
        parent_version=parent, dataset_manifest_sha256=digest, record_ids=record_ids, hyperparameters=settings,
        metrics={**training.metrics, "tokens_per_s": training.tokens_per_s, "train_seconds": training.seconds},
        created_at=services.clock(), content_sha256="pending",
    )
    registered = registry.register(work_dir / "adapter", metadata)
    shutil.rmtree(work_dir, ignore_errors=True)
    return RoundResult(adapter=registered, manifests=manifests, dataset_dir=str(dataset_dir), training=training)
