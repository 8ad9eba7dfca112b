"""The reference backend: a Hugging Face causal LM on the CPU (or GPU), greedy decoding."""

from __future__ import annotations

import threading
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteria, StoppingCriteriaList

from configs.settings import LLMSettings
from finetune.base_model import base_model_dir, model_version
from finetune.records import AdapterRef
from prompts.templates import ChatMessage
from serving.adapter_files import check_adapter
from serving.llm import Generation, LLMError, limit_sentences, sentence_cut

if TYPE_CHECKING:
    from peft import PeftModel


class TransformersLLM:
    local = True
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
        # The same function writes base_model_sha256 into adapter metadata, so promotion checks compare like with like.
        self.model_version = model_version(model_dir)
        self.weights = f"transformers, {model_dir.name} (fp32)"
        self.repetition_penalty = repetition_penalty
        # One generate at a time per model: concurrent runs share the weights, not the forward pass,
        # and the active adapter is part of the model's state.
        self._lock = threading.Lock()
        # Created with the first adapter: peft injects LoRA layers into self.model in place, so the base is never reloaded.
        self._peft: PeftModel | None = None
        # (version, content sha256) -> peft adapter name; an entry exists only once all its weights are in.
        self._adapters: dict[tuple[str, str], str] = {}

    @classmethod
    def from_settings(cls, settings: LLMSettings, data_dir: Path) -> TransformersLLM:
        return cls(base_model_dir(settings, data_dir), settings.model_id, settings.repetition_penalty, settings.threads)

    def generate(
        self, messages: list[ChatMessage], max_new_tokens: int, deadline_s: float, adapter: AdapterRef | None = None,
        max_sentences: int | None = None,
    ) -> Generation:
        started = time.monotonic()
        inputs = self.tokenizer.apply_chat_template(
            [m.model_dump() for m in messages], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        prompt_len = inputs["input_ids"].shape[1]
        # Adapters load before inference mode starts: parameters created inside it would be inference tensors,
        # which peft could not freeze or delete later.
        with self._lock, self._activate(adapter), torch.inference_mode():
            output = self.model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                repetition_penalty=self.repetition_penalty,
                max_time=deadline_s,
                pad_token_id=self.tokenizer.eos_token_id,
                stopping_criteria=StoppingCriteriaList([_SentenceLimit(self.tokenizer, prompt_len, max_sentences)] if max_sentences else []),
            )
        new_tokens = output[0, prompt_len:]
        seconds = time.monotonic() - started
        text, stopped_by = limit_sentences(self.tokenizer.decode(new_tokens, skip_special_tokens=True), max_sentences,
                                           _stop_reason(new_tokens, self.tokenizer.eos_token_id, max_new_tokens, seconds, deadline_s))
        return Generation(
            text=text,
            model_id=self.model_id,
            adapter_id=adapter.version if adapter else None,
            adapter_sha256=adapter.content_sha256 if adapter else None,
            input_tokens=prompt_len,
            output_tokens=len(new_tokens),
            stopped_by=stopped_by,
            seconds=seconds,
        )

    def completion_logprob(self, prompt: list[dict], completion: list[dict], adapter: AdapterRef | None, max_length: int) -> float:
        # Training's own scoring, so the evaluation gate measures the texts exactly as the adapter learned them.
        from finetune.train import completion_logprobs

        with self._lock, self._activate(adapter):
            return completion_logprobs(self.model, self.tokenizer, prompt, completion, max_length)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _activate(self, adapter: AdapterRef | None) -> AbstractContextManager:
        """Switch the shared model to `adapter` for one generation; the base runs with every adapter disabled."""
        if adapter is None:
            # peft's disable_adapter needs an active adapter; with none loaded the model is the plain base.
            return self._peft.disable_adapter() if self._peft is not None and self._peft.peft_config else nullcontext()
        name = self._load(adapter)
        self._peft.set_adapter(name, inference_mode=True)
        return nullcontext()

    def _load(self, adapter: AdapterRef) -> str:
        """The peft name of `adapter`, loading its files on first use after checking their hash."""
        key = (adapter.version, adapter.content_sha256)
        if key in self._adapters:
            return self._adapters[key]
        check_adapter(adapter, self.model_version)
        # Version plus hash: two data dirs served by this process's model may each have their own v0001.
        name = f"{adapter.version}-{adapter.content_sha256[:12]}"
        try:
            missing = self._load_weights(Path(adapter.path), name)
        except Exception as exc:  # peft, safetensors and torch each raise their own types for a bad adapter
            self._forget(name)
            raise LLMError(f"cannot load adapter {adapter.version} from {adapter.path}: {_summary(exc)}; it does not fit this base model — retrain it or roll back") from None
        if missing:
            self._forget(name)
            raise LLMError(f"adapter {adapter.version} in {adapter.path} lacks {len(missing)} of its LoRA weights, e.g. {missing[0]}; it was saved incompletely — retrain it or roll back")
        self._adapters[key] = name
        return name

    def _load_weights(self, path: Path, name: str) -> list[str]:
        """Load an adapter under `name`; returns the LoRA weights the files did not provide."""
        if self._peft is None:
            # Imported here: peft takes ~2 s to import, and only processes that serve an adapter need it.
            from peft import PeftConfig, get_peft_model

            # Wrapping adds this adapter's (untrained) layers; its weights come from load_adapter like every later one's.
            self._peft = get_peft_model(self.model, PeftConfig.from_pretrained(str(path)), adapter_name=name)
        result = self._peft.load_adapter(str(path), adapter_name=name, torch_device=str(self.model.device))
        return [key for key in result.missing_keys if f".{name}." in key]

    def _forget(self, name: str) -> None:
        """Drop a half-loaded adapter so that nothing can ever activate it."""
        if self._peft is not None and name in self._peft.peft_config:
            self._peft.delete_adapter(name)


def _summary(exc: Exception) -> str:
    """The exception's first two lines: torch lists every mismatched tensor, hundreds of lines for one cause."""
    return f"{type(exc).__name__}: " + " ".join(line.strip() for line in str(exc).splitlines()[:2]).rstrip(".")


class _SentenceLimit(StoppingCriteria):
    """Stops generate() once the text after the prompt holds `max_sentences` sentences and a further one has begun."""

    def __init__(self, tokenizer, prompt_len: int, max_sentences: int | None):
        self.tokenizer, self.prompt_len, self.max_sentences = tokenizer, prompt_len, max_sentences

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        text = self.tokenizer.decode(input_ids[0, self.prompt_len :], skip_special_tokens=True)
        done = sentence_cut(text, self.max_sentences) is not None
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


def _stop_reason(tokens: torch.Tensor, eos_id: int | None, max_new_tokens: int, seconds: float, deadline_s: float) -> str:
    if len(tokens) and eos_id is not None and int(tokens[-1]) == eos_id:
        return "eos"
    if len(tokens) >= max_new_tokens:
        return "max_tokens"
    return "deadline" if seconds >= deadline_s else "eos"
