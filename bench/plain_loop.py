"""The baseline for training speed: the plainest peft SFT loop, next to our train_adapter on the same batches."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from finetune.records import FinetuneSettings, StageSettings
from finetune.train import train_adapter


def plain_sft_tokens_per_s(base_dir: Path, rows: list[dict], settings: FinetuneSettings, steps: int) -> float:
    """model(**batch, labels).loss → backward → step, with padding to the batch's longest row only."""
    torch.manual_seed(settings.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    lora = settings.lora
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32),
                           LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules, task_type="CAUSAL_LM"))
    stage = _sft_stage(settings)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=stage.learning_rate)
    texts = [tokenizer.apply_chat_template(r["messages"], tokenize=False) for r in rows]
    tokens, started = 0, time.monotonic()
    for step in range(steps):
        batch = [texts[(step * stage.batch_size + i) % len(texts)] for i in range(stage.batch_size)]
        enc = tokenizer(batch, padding="longest", truncation=True, max_length=settings.max_length, return_tensors="pt")
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        model(**enc, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        tokens += int(enc["attention_mask"].sum())
    return tokens / (time.monotonic() - started)


def ours_sft_tokens_per_s(base_dir: Path, rows: list[dict], settings: FinetuneSettings, steps: int) -> float:
    """train_adapter's SFT stage on the same rows for the same number of steps."""
    stage = _sft_stage(settings)
    epochs = steps * stage.batch_size / len(rows)
    sft_only = settings.model_copy(update={"stages": [stage.model_copy(update={"epochs": epochs})], "checkpoint_every": 10_000})
    with tempfile.TemporaryDirectory() as tmp:
        result = train_adapter(base_dir, {"sft": rows}, sft_only, Path(tmp) / "adapter", work_dir=Path(tmp) / "work")
    return result.tokens_per_s


def _sft_stage(settings: FinetuneSettings) -> StageSettings:
    return next(s for s in settings.stages if s.method == "sft")
