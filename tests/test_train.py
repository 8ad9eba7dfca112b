"""The LoRA training loop on the real SmolLM2: SFT, DPO and KTO learn, resume is exact, bad inputs fail clearly.

Kept small for two CPU cores: six short rows, batches of two, rank 4, a handful of steps per run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from finetune.records import FinetuneSettings, LoraSettings, StageSettings
from finetune.train import (
    IGNORE,
    RunState,
    Sequence,
    TrainingError,
    _collate,
    _join,
    _prompt_completion_ids,
    _resume,
    _sft_sequence,
    completion_logprobs,
    train_adapter,
)

SYSTEM = {"role": "system", "content": "You are a concise B2B sales assistant for an industrial IoT vendor."}
QA = [
    ("What does the pilot cost?", "The pilot costs 12,000 EUR for eight weeks, sensors included."),
    ("Can we start next month?", "Yes, we can start on the first Monday of next month."),
    ("Who installs the sensors?", "Our field engineers install the sensors in one day."),
    ("Do you integrate with SAP?", "Yes, we ship a certified SAP PM connector."),
    ("What uptime do you guarantee?", "We guarantee 99.5 percent uptime in the SLA."),
    ("Is there a free trial?", "We offer a two-week proof of value at no cost."),
]
BAD_REPLY = "I don't know, ask someone else."


def prompt(question: str) -> list[dict]:
    return [SYSTEM, {"role": "user", "content": question}]


def reply(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


ROWS = {
    "sft": [{"messages": prompt(q) + reply(a)} for q, a in QA],
    "dpo": [{"prompt": prompt(q), "chosen": reply(a), "rejected": reply(BAD_REPLY)} for q, a in QA],
    "kto": [{"prompt": prompt(q), "completion": reply(a if i % 2 == 0 else BAD_REPLY), "label": i % 2 == 0} for i, (q, a) in enumerate(QA)],
}
MAX_LENGTH = 128
# peft asks transformers for a renamed attribute; not ours to fix, and it would bury real warnings.
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")


def settings(*stages: StageSettings, **overrides: object) -> FinetuneSettings:
    values = {"lora": LoraSettings(r=4, alpha=8), "stages": list(stages), "max_length": MAX_LENGTH, "checkpoint_every": 2, **overrides}
    return FinetuneSettings(**values)


def stage(method: str, epochs: float, learning_rate: float = 5e-4) -> StageSettings:
    return StageSettings(method=method, epochs=epochs, batch_size=2, learning_rate=learning_rate)


class Recorder:
    """A progress callback that keeps every call and can interrupt the run like Ctrl-C."""

    def __init__(self, interrupt_after: int | None = None):
        self.calls: list[tuple[str, int, int, dict[str, float]]] = []
        self.interrupt_after = interrupt_after

    def __call__(self, stage: str, step: int, total: int, metrics: dict[str, float]) -> None:
        self.calls.append((stage, step, total, metrics))
        if len(self.calls) == self.interrupt_after:
            raise KeyboardInterrupt


def train(model_dir: Path, root: Path, config: FinetuneSettings, **kwargs) -> tuple[Path, object, Recorder]:
    recorder = kwargs.pop("progress", Recorder())
    out = root / "adapter"
    result = train_adapter(model_dir, ROWS, config, out, work_dir=root / "work", progress=recorder, **kwargs)
    return out, result, recorder


def logps(model_dir: Path, adapter: Path, rows: list[tuple[list[dict], list[dict]]]) -> tuple[list[float], list[float]]:
    """Completion log-probs with the adapter and without it (the base), from one loaded model."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), adapter)
    tuned = [completion_logprobs(model, tokenizer, p, c, MAX_LENGTH) for p, c in rows]
    with model.disable_adapter():
        base = [completion_logprobs(model, tokenizer, p, c, MAX_LENGTH) for p, c in rows]
    return tuned, base


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def sft_run(model_dir, tmp_path_factory):
    return train(model_dir, tmp_path_factory.mktemp("sft"), settings(stage("sft", epochs=3, learning_rate=1e-3)))


# ---------------------------------------------------------------- tokenization


def test_sft_labels_cover_exactly_the_assistant_turns(tokenizer):
    messages = [SYSTEM, {"role": "user", "content": "Price?"}, {"role": "assistant", "content": "12,000 EUR."}, {"role": "user", "content": "Start?"}, {"role": "assistant", "content": "Next Monday."}]
    sequence = _sft_sequence(tokenizer, messages, MAX_LENGTH)
    assert tokenizer.decode(sequence.input_ids) == tokenizer.apply_chat_template(messages, tokenize=False)
    trained = [t for t, label in zip(sequence.input_ids, sequence.labels) if label != IGNORE]
    assert [label for label in sequence.labels if label != IGNORE] == trained
    assert tokenizer.decode(trained) == "12,000 EUR.<|im_end|>\nNext Monday.<|im_end|>\n"
    # The prompt before each reply, the generation header included, carries no loss.
    first_reply = sequence.labels.index(trained[0])
    assert tokenizer.decode(sequence.input_ids[:first_reply]).endswith("<|im_start|>assistant\n")


def test_truncation_keeps_the_completions_end(tokenizer):
    long_prompt = prompt("Tell me about the pilot. " * 40)
    prompt_ids, completion_ids = _prompt_completion_ids(tokenizer, long_prompt, reply("It costs 12,000 EUR."))
    sequence = _join(prompt_ids, completion_ids, 32)
    assert len(sequence.input_ids) == 32
    assert sequence.input_ids[-len(completion_ids) :] == completion_ids
    assert sequence.labels[-len(completion_ids) :] == completion_ids
    assert set(sequence.labels[: -len(completion_ids)]) == {IGNORE}


def test_batches_pad_to_their_longest_row_only():
    batch = _collate([Sequence([5, 6, 7], [IGNORE, 6, 7]), Sequence([5, 6, 7, 8, 9], [IGNORE] * 3 + [8, 9])], pad_id=0, device=torch.device("cpu"))
    assert batch.input_ids.shape == (2, 5)
    assert batch.attention_mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch.labels[0].tolist() == [IGNORE, 6, 7, IGNORE, IGNORE]
    assert batch.tokens == 8


# ---------------------------------------------------------------- the three methods


def test_sft_learns_and_saves_a_loadable_adapter(sft_run, model_dir):
    out, result, recorder = sft_run
    losses = [metrics["loss"] for _, _, _, metrics in recorder.calls]
    assert [(s, step, total) for s, step, total, _ in recorder.calls] == [("sft", i, 9) for i in range(1, 10)]
    assert sum(losses[-3:]) < sum(losses[:3])  # last epoch below the first
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    assert not list((out.parent / "work").glob("checkpoint-*"))  # removed on success
    assert (result.steps, result.examples) == (9, 18)
    assert result.tokens > 0 and result.tokens_per_s > 0 and result.metrics["sft_loss"] == pytest.approx(sum(losses[-3:]) / 3)
    tuned, base = logps(model_dir, out, [(prompt(q), reply(a)) for q, a in QA])
    assert sum(tuned) > sum(base) + 1.0  # the taught replies became more likely


def test_sft_adapter_changes_the_logits(sft_run, model_dir, tokenizer):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), sft_run[0])
    inputs = tokenizer.apply_chat_template(prompt("Is there a free trial?"), add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        tuned = model(**inputs).logits[0, -1]
        with model.disable_adapter():
            base = model(**inputs).logits[0, -1]
    assert (tuned - base).abs().max() > 0.1


def test_dpo_widens_the_chosen_rejected_margin(model_dir, tmp_path):
    out, result, recorder = train(model_dir, tmp_path, settings(stage("dpo", epochs=2)))
    assert result.steps == 6 and result.metrics["dpo_reward_accuracy"] > 0.5
    assert recorder.calls[0][3]["reward_margin"] == pytest.approx(0.0, abs=1e-4)  # a fresh adapter is the reference
    chosen, chosen_base = logps(model_dir, out, [(prompt(q), reply(a)) for q, a in QA])
    rejected, rejected_base = logps(model_dir, out, [(prompt(q), reply(BAD_REPLY)) for q, _ in QA])
    assert sum(chosen) - sum(rejected) > sum(chosen_base) - sum(rejected_base) + 1.0


def test_kto_raises_desirable_against_undesirable(model_dir, tmp_path):
    out, result, recorder = train(model_dir, tmp_path, settings(stage("kto", epochs=2)))
    assert all(torch.isfinite(torch.tensor(m["loss"])) for *_, m in recorder.calls)
    assert result.metrics["kto_kl"] >= 0
    rows = [(r["prompt"], r["completion"]) for r in ROWS["kto"]]
    tuned, base = logps(model_dir, out, rows)
    gains = [t - b for t, b in zip(tuned, base)]
    desirable = [g for g, r in zip(gains, ROWS["kto"]) if r["label"]]
    undesirable = [g for g, r in zip(gains, ROWS["kto"]) if not r["label"]]
    assert sum(desirable) / len(desirable) > sum(undesirable) / len(undesirable)


# ---------------------------------------------------------------- resume and warm start


def test_resume_after_interrupt_ends_with_the_uninterrupted_weights(model_dir, tmp_path):
    # 1.25 SFT epochs = 4 steps, then half a DPO epoch = 2 steps: a mid-stage resume and a stage change.
    config = settings(stage("sft", epochs=1.25), stage("dpo", epochs=0.5))
    straight, straight_result, _ = train(model_dir, tmp_path / "straight", config)

    root = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        train(model_dir, root, config, progress=Recorder(interrupt_after=3))
    assert not (root / "adapter").exists()  # no half adapter
    assert [p.name for p in (root / "work").iterdir()] == ["checkpoint-00-000002"]

    resumed_progress = Recorder()
    resumed, resumed_result, _ = train(model_dir, root, config, progress=resumed_progress)
    assert [(s, step) for s, step, _, _ in resumed_progress.calls] == [("sft", 3), ("sft", 4), ("dpo", 1), ("dpo", 2)]
    assert (resumed_result.steps, resumed_result.tokens) == (straight_result.steps, straight_result.tokens) == (6, straight_result.tokens)
    expected, actual = load_file(straight / "adapter_model.safetensors"), load_file(resumed / "adapter_model.safetensors")
    assert expected.keys() == actual.keys()
    assert all(torch.allclose(expected[k], actual[k], atol=1e-6) for k in expected)
    assert not list((root / "work").iterdir())


def test_a_checkpoint_of_other_inputs_is_dropped(tmp_path):
    stale = tmp_path / "checkpoint-00-000002"
    stale.mkdir()
    (stale / "state.json").write_text(RunState(fingerprint="other inputs", step=2).model_dump_json())
    state, optimizer = _resume(tmp_path, "these inputs", model=None)
    assert (state.fingerprint, state.step, optimizer) == ("these inputs", 0, None)
    assert not stale.exists()


def test_warm_start_continues_from_the_parent(sft_run, model_dir, tmp_path):
    parent = sft_run[0]
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "stale.txt").write_text("an earlier, interrupted round's output")
    # One DPO step at a tiny learning rate: the result must sit on the parent, not on a fresh adapter.
    out, result, _ = train(model_dir, tmp_path, settings(stage("dpo", epochs=1 / 3, learning_rate=1e-7)), parent_adapter=parent)
    assert result.steps == 1
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]  # replaced whole
    before, after = load_file(parent / "adapter_model.safetensors"), load_file(out / "adapter_model.safetensors")
    assert before.keys() == after.keys()
    assert all(torch.allclose(before[k], after[k], atol=1e-4) for k in before)
    assert any(before[k].abs().max() > 1e-3 for k in before if "lora_B" in k)  # a fresh adapter's B is zero


def copy_parent(sft_run, tmp_path: Path) -> Path:
    parent = tmp_path / "parent"
    shutil.copytree(sft_run[0], parent)
    return parent


def test_parent_from_another_base_is_refused(sft_run, model_dir, tmp_path):
    parent = copy_parent(sft_run, tmp_path)
    config_path = parent / "adapter_config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "base_model_name_or_path": "/models/Other-Model-1B"}))
    with pytest.raises(TrainingError, match=r"Other-Model-1B.*smollm2"):
        train(model_dir, tmp_path, settings(stage("sft", epochs=1)), parent_adapter=parent)


def test_parent_with_other_shapes_is_refused(sft_run, model_dir, tmp_path):
    parent = copy_parent(sft_run, tmp_path)
    tensors = load_file(parent / "adapter_model.safetensors")
    name = next(k for k in tensors if "lora_A" in k)
    tensors[name] = torch.zeros(4, 7)
    save_file(tensors, parent / "adapter_model.safetensors")
    with pytest.raises(TrainingError, match=r"does not fit.*expected \(4, 576\), found \(4, 7\)"):
        train(model_dir, tmp_path, settings(stage("sft", epochs=1)), parent_adapter=parent)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_parent_weights_are_refused(sft_run, model_dir, tmp_path, damage):
    parent = copy_parent(sft_run, tmp_path)
    weights = parent / "adapter_model.safetensors"
    weights.write_bytes(b"not a safetensors file" if damage == "garbage" else weights.read_bytes()[:1000])
    with pytest.raises(TrainingError, match="unreadable"):
        train(model_dir, tmp_path, settings(stage("sft", epochs=1)), parent_adapter=parent)


# ---------------------------------------------------------------- inputs refused before any work


def test_empty_or_missing_rows_are_refused(model_dir, tmp_path):
    with pytest.raises(TrainingError, match="stage 'sft' has no rows"):
        train_adapter(model_dir, {"sft": []}, settings(stage("sft", epochs=1)), tmp_path / "a", work_dir=tmp_path / "w")
    with pytest.raises(TrainingError, match="stage 'kto' has no rows"):
        train_adapter(model_dir, {"sft": ROWS["sft"]}, settings(stage("sft", epochs=1), stage("kto", epochs=1)), tmp_path / "a", work_dir=tmp_path / "w")


def test_malformed_rows_are_refused_with_their_index(model_dir, tmp_path):
    rows = {"dpo": [ROWS["dpo"][0], {"prompt": prompt("Price?"), "chosen": reply("12k")}]}
    with pytest.raises(TrainingError, match=r"dpo row 1 is unusable.*rejected"):
        train_adapter(model_dir, rows, settings(stage("dpo", epochs=1)), tmp_path / "a", work_dir=tmp_path / "w")
    rows = {"sft": [{"messages": prompt("Price?")}]}
    with pytest.raises(TrainingError, match="sft row 0 is unusable: the conversation has no assistant message"):
        train_adapter(model_dir, rows, settings(stage("sft", epochs=1)), tmp_path / "a", work_dir=tmp_path / "w")
