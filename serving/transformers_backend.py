"""The reference backend: a Hugging Face causal LM on the CPU (or GPU), greedy decoding."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from configs.settings import LLMSettings
from finetune.base_model import gguf_path, materialize, source_hash
from provenance import sha256_bytes
from prompts.templates import ChatMessage
from serving.llm import Generation, LLMError


class TransformersLLM:
    def __init__(self, model_dir: Path, model_id: str, repetition_penalty: float = 1.0, threads: int | None = None):
        if threads:
            torch.set_num_threads(threads)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
            self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        except (OSError, ValueError) as exc:  # ValueError: a directory without a usable tokenizer
            raise LLMError(f"cannot load the model from {model_dir}: {exc}; delete that directory to re-materialize it, or fix llm.hf_dir") from None
        self.model.eval()
        self.model_id = model_id
        # The GGUF's hash when we materialized it, else the config's: enough to tell two models apart.
        self.model_version = source_hash(model_dir) or sha256_bytes((model_dir / "config.json").read_bytes())
        self.adapter_id: str | None = None
        self.repetition_penalty = repetition_penalty
        # One generate at a time per model: concurrent runs share the weights, not the forward pass.
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: LLMSettings, data_dir: Path) -> TransformersLLM:
        if settings.hf_dir is not None:
            model_dir = settings.hf_dir
        else:
            gguf = gguf_path(settings.gguf_package, settings.gguf_file or "")
            model_dir = materialize(gguf, data_dir / "models" / settings.model_id)
        return cls(model_dir, settings.model_id, settings.repetition_penalty, settings.threads)

    def generate(self, messages: list[ChatMessage], max_new_tokens: int, deadline_s: float) -> Generation:
        started = time.monotonic()
        inputs = self.tokenizer.apply_chat_template(
            [m.model_dump() for m in messages], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        prompt_len = inputs["input_ids"].shape[1]
        with self._lock, torch.inference_mode():
            output = self.model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                repetition_penalty=self.repetition_penalty,
                max_time=deadline_s,
                pad_token_id=self.tokenizer.eos_token_id,
            )
        new_tokens = output[0, prompt_len:]
        seconds = time.monotonic() - started
        return Generation(
            text=self.tokenizer.decode(new_tokens, skip_special_tokens=True).strip(),
            model_id=self.model_id,
            adapter_id=self.adapter_id,
            input_tokens=prompt_len,
            output_tokens=len(new_tokens),
            stopped_by=_stop_reason(new_tokens, self.tokenizer.eos_token_id, max_new_tokens, seconds, deadline_s),
            seconds=seconds,
        )


def _stop_reason(tokens: torch.Tensor, eos_id: int | None, max_new_tokens: int, seconds: float, deadline_s: float) -> str:
    if len(tokens) and eos_id is not None and int(tokens[-1]) == eos_id:
        return "eos"
    if len(tokens) >= max_new_tokens:
        return "max_tokens"
    return "deadline" if seconds >= deadline_s else "eos"
