"""Turn rep decisions into trl-ready JSONL datasets (SFT, DPO, KTO) with a manifest of what went where.

Rows use trl's own field names in the conversational format and carry nothing else, so
`datasets.load_dataset("json", ...)` feeds SFTTrainer, DPOTrainer and KTOTrainer directly.

`excluded` in the manifest counts, by reason:
  superseded  records replaced by a later correction for the same run
  no_consent  records whose lead withdrew training consent
  unused      records that give this format nothing (a reject in SFT, an unpaired adopt or reject in DPO)
  duplicate   rows dropped because an identical row was already exported
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path

from feedback.store import FeedbackRecord
from finetune.records import DatasetFile, DatasetFormat, DatasetManifest
from tools.files import write_atomically

TRAIN_FILE, EVAL_FILE, MANIFEST_FILE = "train.jsonl", "eval.jsonl", "manifest.json"
_WORD = re.compile(r"\w+")
_HINTS: dict[DatasetFormat, str] = {
    "sft": "SFT learns from adopted or edited drafts: adopt or edit some drafts (salesloop decide), or export kto to use rejects",
    "dpo": "DPO needs edits, or rejects whose prompt resembles an adopted one: edit some drafts (salesloop decide) or lower pair_threshold",
    "kto": "decide more runs (salesloop decide)",
}

Row = dict[str, object]


class ExportError(Exception):
    """The feedback cannot make a dataset yet; the message says why and what to do."""


class _Built:
    """One file's rows in order, and the ids of the records whose text they hold."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.ids: dict[str, None] = {}  # an ordered set: first appearance in the file
        self.duplicates = 0

    def add(self, row: Row, ids: Iterable[str], seen: set[str]) -> None:
        digest = hashlib.sha256(_dumps(row).encode()).hexdigest()
        if digest in seen:
            self.duplicates += 1
            return
        seen.add(digest)
        self.rows.append(row)
        self.ids.update(dict.fromkeys(ids))


def export_dataset(
    records: list[FeedbackRecord],
    fmt: DatasetFormat,
    out_dir: Path,
    *,
    eval_fraction: float,
    consent: Callable[[str], bool],
    created_at: datetime,
    pair_threshold: float = 0.5,
    mask: Callable[[Row], Row] | None = None,
) -> DatasetManifest:
    """Write train.jsonl, eval.jsonl and manifest.json to `out_dir`; nothing is written if there is nothing to train on.

    With `mask`, every row passes through it before it is written (personal data → placeholders).
    """
    if not 0 <= eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in [0, 1); got {eval_fraction}")
    if not 0 < pair_threshold <= 1:
        raise ValueError(f"pair_threshold must be in (0, 1]; got {pair_threshold}")
    if not records:
        raise ExportError("the feedback store holds no decisions yet; decide some runs first (salesloop decide)")
    current = _latest_per_run(records)
    usable = sorted((r for r in current if consent(r.lead_id)), key=lambda r: (r.decided_at, r.id))
    if not usable:
        raise ExportError(
            f"all {len(current)} decision(s) come from leads who withdrew training consent; nothing may be exported "
            "until reps decide runs for consenting leads (salesloop decide)"
        )
    train_records, eval_records = _split(usable, eval_fraction)
    seen: set[str] = set()  # shared so an eval row never repeats a train row
    train, evaluation = _Built(), _Built()
    contributing: set[str] = set()
    for part, built in ((train_records, train), (eval_records, evaluation)):
        for row, ids in _rows(part, fmt, pair_threshold):
            contributing.update(ids)
            built.add(mask(row) if mask else row, ids, seen)
    excluded = {
        "superseded": len(records) - len(current),
        "no_consent": len(current) - len(usable),
        "unused": len(usable) - len(contributing),
        "duplicate": train.duplicates + evaluation.duplicates,
    }
    if not train.rows:
        raise ExportError(
            f"no {fmt} rows for training from {len(train_records)} decision(s) ({_counts(Counter(r.decision for r in train_records))}; "
            f"left out: {_counts(excluded)}); {_HINTS[fmt]}"
        )
    return _write(out_dir, fmt, created_at, train, evaluation, excluded, masked=mask is not None)


def read_rows(path: Path) -> list[dict]:
    """The rows of one exported JSONL file, in file order."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ExportError(f"{path} line {number} is not JSON ({exc}); export the dataset again") from None
    return rows


def _latest_per_run(records: list[FeedbackRecord]) -> list[FeedbackRecord]:
    # A correction is a later record for the same run; the store is append-only, so the newest one is the truth.
    latest: dict[str, FeedbackRecord] = {}
    for record in sorted(records, key=lambda r: (r.recorded_at, r.id)):
        latest[record.run_id] = record
    return list(latest.values())


def _split(records: list[FeedbackRecord], eval_fraction: float) -> tuple[list[FeedbackRecord], list[FeedbackRecord]]:
    # By time, not at random: eval then measures what the model would face next. Train keeps at least one record.
    n_eval = max(0, min(math.ceil(len(records) * eval_fraction), len(records) - 1))
    return records[: len(records) - n_eval], records[len(records) - n_eval :]


def _rows(records: list[FeedbackRecord], fmt: DatasetFormat, pair_threshold: float) -> Iterable[tuple[Row, list[str]]]:
    # Rejects pair only with accepted records of the same split, so no eval text leaks into train.
    accepted = [(r, text) for r in records if (text := _accepted_text(r)) is not None]
    for record in records:
        if fmt == "sft":
            yield from _sft_rows(record)
        elif fmt == "dpo":
            yield from _dpo_rows(record, accepted, pair_threshold)
        else:
            yield from _kto_rows(record)


def _accepted_text(record: FeedbackRecord) -> str | None:
    """What the rep approved: the draft for an adopt, the final text for an edit, None for a reject."""
    if record.decision == "adopt":
        return record.draft
    if record.decision == "edit":
        return record.final_text
    return None


def _is_real_edit(record: FeedbackRecord) -> bool:
    # An edit saved unchanged says nothing against the draft; treat it like an adopt.
    return record.decision == "edit" and record.final_text != record.draft


def _sft_rows(record: FeedbackRecord) -> Iterable[tuple[Row, list[str]]]:
    text = _accepted_text(record)
    if text is not None:
        yield {"messages": _prompt(record) + _assistant(text)}, [record.id]


def _dpo_rows(record: FeedbackRecord, accepted: list[tuple[FeedbackRecord, str]], pair_threshold: float) -> Iterable[tuple[Row, list[str]]]:
    text = _accepted_text(record)
    if text is not None and _is_real_edit(record):
        yield _pair(record, text, record.draft), [record.id]
    elif text is None:
        match = _most_similar(record, accepted, pair_threshold)
        if match is not None:
            yield _pair(record, match[1], record.draft), [record.id, match[0].id]


def _kto_rows(record: FeedbackRecord) -> Iterable[tuple[Row, list[str]]]:
    text = _accepted_text(record)
    if text is not None:
        yield _unpaired(record, text, True), [record.id]
    if text is None or _is_real_edit(record):
        yield _unpaired(record, record.draft, False), [record.id]


def _most_similar(
    rejected: FeedbackRecord, accepted: list[tuple[FeedbackRecord, str]], threshold: float
) -> tuple[FeedbackRecord, str] | None:
    """The accepted record whose last user message shares the most words with the rejected one's, if close enough."""
    words = _last_user_words(rejected)
    # A candidate whose approved text is the rejected draft itself would make chosen == rejected.
    scored = [(_jaccard(words, _last_user_words(r)), r.decided_at, r.id, (r, text)) for r, text in accepted if text != rejected.draft]
    best = max(scored, key=lambda s: s[:3], default=None)  # ties go to the newest, then the highest id
    return best[3] if best is not None and best[0] >= threshold else None


def _last_user_words(record: FeedbackRecord) -> frozenset[str]:
    user = [m.content for m in record.messages if m.role == "user"]
    return frozenset(_WORD.findall(user[-1].lower())) if user else frozenset()


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    union = a | b
    return len(a & b) / len(union) if union else 0.0


def _prompt(record: FeedbackRecord) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in record.messages]


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _pair(record: FeedbackRecord, chosen: str, rejected: str) -> Row:
    return {"prompt": _prompt(record), "chosen": _assistant(chosen), "rejected": _assistant(rejected)}


def _unpaired(record: FeedbackRecord, completion: str, desirable: bool) -> Row:
    return {"prompt": _prompt(record), "completion": _assistant(completion), "label": desirable}


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in counts.items() if n) or "none"


def _dumps(row: Row) -> str:
    # Sorted keys and no ASCII escaping: the same row always gives the same bytes, and text stays readable.
    return json.dumps(row, sort_keys=True, ensure_ascii=False)


def _write(out_dir: Path, fmt: DatasetFormat, created_at: datetime, train: _Built, evaluation: _Built, excluded: dict[str, int],
           masked: bool) -> DatasetManifest:
    files = []
    for name, built in ((TRAIN_FILE, train), (EVAL_FILE, evaluation)):
        data = "".join(_dumps(row) + "\n" for row in built.rows).encode("utf-8")
        write_atomically(out_dir / name, data)
        files.append(DatasetFile(name=name, count=len(built.rows), sha256=hashlib.sha256(data).hexdigest()))
    manifest = DatasetManifest(
        format=fmt,
        created_at=created_at,
        files=files,
        train_record_ids=list(train.ids),
        eval_record_ids=list(evaluation.ids),
        excluded=excluded,
        masked=masked,
    )
    # The manifest goes last: a reader that finds it knows both data files are complete.
    write_atomically(out_dir / MANIFEST_FILE, manifest.model_dump_json(indent=2).encode("utf-8"))
    return manifest
