"""Dataset export: rep decisions from the real feedback store become trl-ready SFT, DPO and KTO files."""

from __future__ import annotations

import hashlib
import math
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from feedback.export import EVAL_FILE, MANIFEST_FILE, TRAIN_FILE, ExportError, export_dataset, read_rows
from feedback.store import FeedbackRecord, FeedbackStore
from finetune.records import DatasetManifest
from prompts.templates import ChatMessage
from provenance import SourceRef

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
EXPORTED_AT = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
SYSTEM = "You are a sales assistant for Northwind Automation. Write short, factual emails and cite facts as [L1], [C1]."

# Last user messages: the first two share most words (a reject of one pairs with an adopt of the other).
DEMO_ACME = "Write a first email to Dana Kim, Head of Operations at Acme Plastics, who requested a demo of our palletizing cell [L1]."
DEMO_ACME_AGAIN = "Write a first email to Dana Kim, Head of Operations at Acme Plastics, who asked for a demo of the palletizing cell [L1]."
PRICING_BETA = "Reply to Omar Haddad at Beta Schools, who asks whether the tutoring license is priced per seat or per campus [L1]."
RENEWAL_GAMMA = "Follow up with Lena Vogel at Gamma Medical about renewing the sterilizer monitoring contract before March [C1]."
PILOT_DELTA = "Propose a two-week pilot of predictive maintenance to Raj Patel, plant manager at Delta Gears [L1] [C1]."


def _record(
    n: int, decision: str, user: str, draft: str, final: str | None = None, *, day: float | None = None, **changes
) -> FeedbackRecord:
    """Record n, decided on day n (or `day`) after T0 and stored a minute later."""
    decided_at = T0 + timedelta(days=n if day is None else day)
    fields = dict(
        id=f"fb-{n:04d}",
        run_id=f"run-{n:04d}",
        event_id=f"evt-{n:04d}",
        lead_id=f"lead-{n:04d}",
        rep_id="rep-demo",
        decision=decision,
        reason=None if decision == "adopt" else "off tone",
        messages=[ChatMessage(role="system", content=SYSTEM), ChatMessage(role="user", content=user)],
        draft=draft,
        final_text={"adopt": draft, "edit": final, "reject": None}[decision],
        model_id="SmolLM2-135M-Instruct-Q4_1",
        model_version="a" * 64,
        adapter_id=None,
        prompt_name="draft_email",
        prompt_sha256="b" * 64,
        sources=[SourceRef(kind="crm_record", id=f"lead:lead-{n:04d}", field="message"), SourceRef(kind="human", id="rep-demo")],
        decided_at=decided_at,
        recorded_at=decided_at + timedelta(minutes=1),
    )
    fields.update(changes)
    return FeedbackRecord(**fields)


def _adopt(n: int, user: str = DEMO_ACME, **changes) -> FeedbackRecord:
    return _record(n, "adopt", user, f"Hi Dana, thanks for asking for a demo [L1]. Does Tuesday work? (#{n})", **changes)


def _edit(n: int, user: str = PRICING_BETA, **changes) -> FeedbackRecord:
    draft = f"Hello Omar, our license is priced per seat [L1]. (#{n})"
    return _record(n, "edit", user, draft, f"Hi Omar, the tutoring license is priced per campus, not per seat [L1]. (#{n})", **changes)


def _reject(n: int, user: str = DEMO_ACME_AGAIN, **changes) -> FeedbackRecord:
    return _record(n, "reject", user, f"Dear Sir, buy our robots now!!! (#{n})", **changes)


def _stored(tmp_path: Path, records: list[FeedbackRecord]) -> list[FeedbackRecord]:
    """The records as the real store gives them back."""
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    for record in records:
        assert store.append(record)
    return store.all()


def _export(
    records: list[FeedbackRecord], fmt: str, out_dir: Path, *, eval_fraction: float = 0.0, no_consent: frozenset[str] = frozenset(), **kw
) -> DatasetManifest:
    consent = lambda lead_id: lead_id not in no_consent  # noqa: E731 - the CLI passes a CRM lookup of the same shape
    return export_dataset(records, fmt, out_dir, eval_fraction=eval_fraction, consent=consent, created_at=EXPORTED_AT, **kw)


def _prompt(record: FeedbackRecord) -> list[dict]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": record.messages[-1].content}]


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


@pytest.fixture
def three(tmp_path) -> list[FeedbackRecord]:
    """One of each decision, with prompts far apart so the reject pairs with nothing."""
    return _stored(tmp_path, [_adopt(1), _edit(2), _reject(3, user=RENEWAL_GAMMA)])


def test_sft_rows_are_messages_from_adopts_and_edit_finals(tmp_path, three):
    adopt, edit, _ = three
    manifest = _export(three, "sft", tmp_path / "out")
    rows = read_rows(tmp_path / "out" / TRAIN_FILE)
    assert rows == [
        {"messages": _prompt(adopt) + _assistant(adopt.draft)},
        {"messages": _prompt(edit) + _assistant(edit.final_text)},
    ]
    assert [m["role"] for m in rows[0]["messages"]] == ["system", "user", "assistant"]
    assert manifest.train_record_ids == ["fb-0001", "fb-0002"]
    assert manifest.excluded == {"superseded": 0, "no_consent": 0, "unused": 1, "duplicate": 0}


def test_dpo_edit_prefers_the_final_and_unpaired_records_are_unused(tmp_path, three):
    _, edit, _ = three
    manifest = _export(three, "dpo", tmp_path / "out")
    assert read_rows(tmp_path / "out" / TRAIN_FILE) == [
        {"prompt": _prompt(edit), "chosen": _assistant(edit.final_text), "rejected": _assistant(edit.draft)}
    ]
    assert manifest.train_record_ids == ["fb-0002"]
    assert manifest.excluded["unused"] == 2  # the adopt has no reject near it, the reject no accepted prompt near it


def test_kto_labels_approved_text_desirable_and_drafts_the_rep_changed_undesirable(tmp_path, three):
    adopt, edit, reject = three
    _export(three, "kto", tmp_path / "out")
    rows = read_rows(tmp_path / "out" / TRAIN_FILE)
    assert all(set(row) == {"prompt", "completion", "label"} for row in rows)
    assert [(row["prompt"], row["completion"], row["label"]) for row in rows] == [
        (_prompt(adopt), _assistant(adopt.draft), True),
        (_prompt(edit), _assistant(edit.final_text), True),
        (_prompt(edit), _assistant(edit.draft), False),
        (_prompt(reject), _assistant(reject.draft), False),
    ]


def test_edit_saved_unchanged_counts_as_an_adopt(tmp_path):
    unchanged = _record(1, "edit", PRICING_BETA, "Hi Omar, it is per campus [L1].", "Hi Omar, it is per campus [L1].")
    records = _stored(tmp_path, [unchanged])
    _export(records, "kto", tmp_path / "kto")
    assert [row["label"] for row in read_rows(tmp_path / "kto" / TRAIN_FILE)] == [True]
    with pytest.raises(ExportError, match="no dpo rows for training from 1 decision"):
        _export(records, "dpo", tmp_path / "dpo")


def test_reject_pairs_with_the_most_similar_accepted_prompt(tmp_path):
    near = _adopt(1, user=DEMO_ACME)
    nearer = _record(2, "edit", DEMO_ACME_AGAIN + " Keep it short.", "Hi Dana [L1].", "Hi Dana, is Tuesday good for the demo [L1]?")
    far = _adopt(3, user=PILOT_DELTA)
    records = _stored(tmp_path, [near, nearer, far, _reject(4, user=DEMO_ACME_AGAIN), _reject(5, user=RENEWAL_GAMMA)])
    manifest = _export(records, "dpo", tmp_path / "out")
    rows = read_rows(tmp_path / "out" / TRAIN_FILE)
    reject = records[3]
    pair = {"prompt": _prompt(reject), "chosen": _assistant(nearer.final_text), "rejected": _assistant(reject.draft)}
    assert rows == [{"prompt": _prompt(nearer), "chosen": _assistant(nearer.final_text), "rejected": _assistant(nearer.draft)}, pair]
    assert manifest.train_record_ids == ["fb-0002", "fb-0004"]
    assert manifest.excluded["unused"] == 3  # two adopts nobody paired with, and the dissimilar reject


def test_pair_threshold_decides_whether_a_reject_pairs(tmp_path):
    records = _stored(tmp_path, [_adopt(1, user=DEMO_ACME), _reject(2, user=DEMO_ACME_AGAIN), _edit(3)])
    assert _export(records, "dpo", tmp_path / "loose", pair_threshold=0.5).files[0].count == 2
    assert _export(records, "dpo", tmp_path / "strict", pair_threshold=0.95).files[0].count == 1


def test_a_reject_never_pairs_across_the_train_eval_split(tmp_path):
    records = _stored(tmp_path, [_edit(1), _adopt(2, user=DEMO_ACME), _reject(3, user=DEMO_ACME_AGAIN)])
    together = _export(records, "dpo", tmp_path / "together")
    assert [f.count for f in together.files] == [2, 0]
    # The reject is the newest record, so it alone is held out; its only near match is in train and must stay there.
    split = _export(records, "dpo", tmp_path / "split", eval_fraction=0.2)
    assert [f.count for f in split.files] == [1, 0]
    assert (split.train_record_ids, split.eval_record_ids, split.excluded["unused"]) == (["fb-0001"], [], 2)


def test_leads_without_consent_are_left_out_and_counted(tmp_path, three):
    manifest = _export(three, "kto", tmp_path / "out", no_consent=frozenset({"lead-0002"}))
    rows = read_rows(tmp_path / "out" / TRAIN_FILE)
    assert manifest.excluded["no_consent"] == 1
    assert manifest.train_record_ids == ["fb-0001", "fb-0003"]
    assert all("Omar" not in row["prompt"][1]["content"] for row in rows)
    with pytest.raises(ExportError, match="all 3 decision.*withdrew training consent"):
        _export(three, "kto", tmp_path / "none", no_consent=frozenset({"lead-0001", "lead-0002", "lead-0003"}))
    assert not (tmp_path / "none").exists()


def test_identical_rows_are_exported_once(tmp_path):
    first = _adopt(1)
    # The same chat and draft decided again for another run: same SFT row, so it must not count twice.
    again = _record(2, "adopt", DEMO_ACME, first.draft)
    manifest = _export(_stored(tmp_path, [first, again, _edit(3)]), "sft", tmp_path / "out")
    assert manifest.files[0].count == 2
    assert manifest.excluded["duplicate"] == 1
    assert manifest.train_record_ids == ["fb-0001", "fb-0003"]


def test_a_later_correction_for_the_same_run_supersedes(tmp_path):
    original = _edit(1)
    correction = _reject(9, user=PRICING_BETA, run_id=original.run_id, lead_id=original.lead_id, decided_at=original.decided_at)
    records = _stored(tmp_path, [original, correction, _adopt(2)])
    manifest = _export(records, "kto", tmp_path / "out")
    rows = read_rows(tmp_path / "out" / TRAIN_FILE)
    assert manifest.excluded["superseded"] == 1
    assert manifest.train_record_ids == ["fb-0009", "fb-0002"]  # the correction keeps the run's decision time
    assert (rows[0]["completion"], rows[0]["label"]) == (_assistant(correction.draft), False)
    assert all(row["completion"] != _assistant(original.final_text) for row in rows)


def test_newest_records_go_to_eval_and_the_manifest_matches_the_files(tmp_path):
    # Stored out of time order: the split must follow decided_at, not insertion or id order.
    records = _stored(tmp_path, [_adopt(1, day=9), _edit(2, day=1), _reject(3, day=3), _adopt(4, user=PILOT_DELTA, day=5), _edit(5, day=7)])
    out = tmp_path / "out"
    manifest = _export(records, "kto", out, eval_fraction=0.3)  # ceil(5 * 0.3) = 2 newest records
    assert manifest.train_record_ids == ["fb-0002", "fb-0003", "fb-0004"]
    assert manifest.eval_record_ids == ["fb-0005", "fb-0001"]
    assert [len(read_rows(out / TRAIN_FILE)), len(read_rows(out / EVAL_FILE))] == [4, 3]
    assert DatasetManifest.model_validate_json((out / MANIFEST_FILE).read_text()) == manifest
    assert manifest.format == "kto" and manifest.created_at == EXPORTED_AT
    for file in manifest.files:
        data = (out / file.name).read_bytes()
        assert file.sha256 == hashlib.sha256(data).hexdigest()
        assert file.count == len(data.splitlines())
    assert sorted(p.name for p in out.iterdir()) == [EVAL_FILE, MANIFEST_FILE, TRAIN_FILE]


@pytest.mark.parametrize(("n", "fraction", "n_eval"), [(1, 0.2, 0), (2, 0.2, 1), (5, 0.0, 0), (10, 0.2, 2), (4, 0.9, 3)])
def test_eval_size(tmp_path, n, fraction, n_eval):
    records = [_adopt(i, user=f"{DEMO_ACME} Variant {i}.") for i in range(1, n + 1)]
    manifest = _export(_stored(tmp_path, records), "sft", tmp_path / "out", eval_fraction=fraction)
    assert len(manifest.eval_record_ids) == n_eval
    assert len(manifest.train_record_ids) == n - n_eval


def test_rows_shared_by_train_and_eval_stay_in_train_only(tmp_path):
    old = _adopt(1)
    manifest = _export(_stored(tmp_path, [old, _record(2, "adopt", DEMO_ACME, old.draft)]), "sft", tmp_path / "out", eval_fraction=0.5)
    assert [f.count for f in manifest.files] == [1, 0]
    assert manifest.excluded["duplicate"] == 1


@pytest.mark.parametrize("fmt", ["sft", "dpo", "kto"])
def test_same_feedback_gives_byte_identical_files(tmp_path, fmt):
    records = _stored(tmp_path, [_adopt(1), _edit(2), _reject(3), _adopt(4, user=PILOT_DELTA), _edit(5, user=RENEWAL_GAMMA)])
    shuffled = records[::-1]
    random.Random(7).shuffle(shuffled)
    _export(records, fmt, tmp_path / "a", eval_fraction=0.2)
    _export(shuffled, fmt, tmp_path / "b", eval_fraction=0.2)
    for name in (TRAIN_FILE, EVAL_FILE, MANIFEST_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_empty_store_raises_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=r"holds no decisions yet.*salesloop decide"):
        _export(FeedbackStore(tmp_path / "feedback.sqlite").all(), "sft", out)
    assert not out.exists()


def test_format_with_nothing_to_learn_raises_with_the_fix(tmp_path):
    rejects = _stored(tmp_path, [_reject(1), _reject(2, user=PILOT_DELTA)])
    with pytest.raises(ExportError, match=r"no sft rows for training from 2 decision\(s\) \(2 reject; left out: 2 unused\).*export kto"):
        _export(rejects, "sft", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_out_of_range_settings_are_refused(tmp_path, three):
    with pytest.raises(ValueError, match=r"eval_fraction must be in \[0, 1\); got 1.0"):
        _export(three, "sft", tmp_path / "out", eval_fraction=1.0)
    with pytest.raises(ValueError, match=r"pair_threshold must be in \(0, 1\]; got 0"):
        _export(three, "dpo", tmp_path / "out", pair_threshold=0)
    assert not (tmp_path / "out").exists()


def test_read_rows_names_the_broken_line(tmp_path):
    path = tmp_path / TRAIN_FILE
    path.write_text('{"messages": []}\n{"messages": [\n')
    with pytest.raises(ExportError, match=r"train.jsonl line 2 is not JSON"):
        read_rows(path)


# --- trl loads the exported files as they are and trains on them -------------------------------------------------


def _trl_records() -> list[FeedbackRecord]:
    # Short chats: CPU training time grows with tokens, and two steps only need to show the files load and train.
    def short(n: int, decision: str, user: str, draft: str, final: str | None = None) -> FeedbackRecord:
        messages = [ChatMessage(role="system", content="Write one short sales line."), ChatMessage(role="user", content=user)]
        return _record(n, decision, user, draft, final, messages=messages)

    return [
        short(1, "edit", "Price for Beta Schools?", "It is per seat.", "It is per campus [L1]."),
        short(2, "adopt", "Demo for Acme Plastics?", "Tuesday works for the demo [L1]."),
        short(3, "reject", "Demo for Acme Plastics, please?", "Buy robots now!!!"),  # pairs with the adopt in DPO
        short(4, "edit", "Renewal for Gamma Medical?", "Renew now.", "Renew before March to keep the rate [C1]."),
        short(5, "adopt", "Pilot for Delta Gears?", "A two-week pilot fits [L1]."),
        short(6, "edit", "Downtime at Delta Gears?", "Pilots help.", "A pilot cut downtime 30% [C1]."),
    ]


def _trainer(fmt: str, model_dir: Path, train_file: Path, tmp_path: Path):
    # Imported here: trl and peft take seconds to import, and only these tests need them.
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer, SFTConfig, SFTTrainer

    dataset = load_dataset("json", data_files=str(train_file), split="train", cache_dir=str(tmp_path / "hf-datasets"))
    common = dict(
        output_dir=str(tmp_path / "run"),
        max_steps=2,
        per_device_train_batch_size=2,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        max_length=128,
        logging_steps=1,
        bf16=False,  # trl turns bf16 on by default; keep fp32 on CPU
        activation_checkpointing=False,  # trl turns it on by default (as gradient_checkpointing); only slower for 135M
    )
    trainer_cls, config_cls = {"sft": (SFTTrainer, SFTConfig), "dpo": (DPOTrainer, DPOConfig), "kto": (KTOTrainer, KTOConfig)}[fmt]
    return trainer_cls(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        args=config_cls(**common),
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )


@pytest.mark.parametrize(("fmt", "rows"), [("sft", 5), ("dpo", 4), ("kto", 9)])
def test_trl_trains_on_the_exported_file_without_glue(tmp_path, model_dir, fmt, rows):
    manifest = _export(_stored(tmp_path, _trl_records()), fmt, tmp_path / "data")
    assert manifest.files[0].count == rows  # at least two batches of two
    trainer = _trainer(fmt, model_dir, tmp_path / "data" / TRAIN_FILE, tmp_path)
    result = trainer.train()
    assert trainer.state.global_step == 2
    assert math.isfinite(result.training_loss)
    assert all(math.isfinite(log["loss"]) for log in trainer.state.log_history if "loss" in log)


def test_a_round_exports_the_formats_that_have_rows_and_fails_only_when_none_has(tmp_path):
    from finetune.rounds import export_round

    adopted = _stored(tmp_path, [_adopt(1), _adopt(2, user=PILOT_DELTA), _adopt(3, user=RENEWAL_GAMMA)])
    target, manifests, _ = export_round(adopted, ["sft", "dpo"], tmp_path / "datasets", 0.0, lambda _: True)
    assert list(manifests) == ["sft"]  # every draft adopted: DPO has no pairs, SFT still trains
    assert (target / "sft" / TRAIN_FILE).exists() and not (target / "dpo").exists()

    rejected = _stored(tmp_path / "r", [_reject(4)])
    with pytest.raises(ExportError, match="no sft rows for training from 1 decision"):
        export_round(rejected, ["sft", "dpo"], tmp_path / "datasets2", 0.0, lambda _: True)
