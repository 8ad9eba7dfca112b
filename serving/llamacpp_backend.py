"""The fast local backend: llama.cpp (llama-cpp-python) runs the GGUF itself, the promoted adapter as a GGUF LoRA.

The prompt is rendered and tokenized by the GGUF's own Hugging Face tokenizer and chat template, exactly as the
transformers backend does, so both backends feed the model the same token ids. Adapters are exported from their
PEFT files once (finetune/gguf_export.py, cached beside them) and switched per call on the one loaded base: llama.cpp
applies a LoRA at graph time, so switching is a pointer swap, never a reload.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from configs.settings import LLMSettings
from finetune.base_model import gguf_path
from finetune.gguf_export import ExportError, exported_gguf
from finetune.records import AdapterRef
from prompts.templates import ChatMessage
from provenance import sha256_file
from serving.adapter_files import check_adapter
from serving.gguf_weights import WeightsError, served_gguf
from serving.llm import Generation, LLMError, limit_sentences, sentence_cut

if TYPE_CHECKING:
    import llama_cpp


def _import_llama_cpp():
    try:
        import llama_cpp
    except ImportError:
        raise LLMError("llm.backend is llamacpp but llama-cpp-python is not installed; install it with: "
                       "pip install 'salesloop[llamacpp]' (it compiles llama.cpp, about 6 minutes), or use backend: transformers") from None
    return llama_cpp


class LlamaCppLLM:
    local = True

    def __init__(self, gguf: Path, model_id: str, repetition_penalty: float = 1.0, threads: int | None = None, context_tokens: int = 4096,
                 weights_file: Path | None = None):
        """`gguf` is the model as configured; llama.cpp computes with `weights_file`, a re-encoding of it, when given."""
        llama_cpp = _import_llama_cpp()
        from transformers import AutoTokenizer

        served = weights_file or gguf
        try:
            # llama-cpp-python defaults to half the cores; the model is the only thing computing while it decodes.
            cores = threads or os.cpu_count() or 1
            self._llama = llama_cpp.Llama(str(served), n_ctx=context_tokens, n_threads=cores, n_threads_batch=cores, n_batch=512, verbose=False)
            # The GGUF carries its tokenizer and chat template; reading them through transformers gives the exact
            # token ids the reference backend (and training) uses.
            self.tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        except (OSError, ValueError) as exc:
            raise LLMError(f"llama.cpp cannot load {gguf}: {exc}; check llm.gguf_file, or reinstall the package that ships it") from None
        # Freed while the interpreter is intact: llama-cpp-python's own __del__ at exit finds its bindings gone.
        atexit.register(self._llama.close)
        self.gguf = gguf
        self.served_file = served  # what llama.cpp computes with: the GGUF, or its re-encoding
        self.model_id = model_id
        # The configured GGUF's hash: the transformers backend records the same for its materialized copy, so adapters
        # trained there are accepted here and nowhere else. A re-encoding serves the same model and keeps its version.
        self.model_version = sha256_file(gguf)
        self.weights = f"llama.cpp, {served.name}" + (f" (re-encoded from {gguf.name})" if weights_file else "")
        self.repetition_penalty = repetition_penalty
        self.context_tokens = context_tokens
        # One decode at a time: the context (KV cache, active adapter) is shared state.
        self._lock = threading.Lock()
        self._adapters: dict[tuple[str, str], llama_cpp.llama_adapter_lora_p] = {}
        self._active: tuple[str, str] | None = None

    @classmethod
    def from_settings(cls, settings: LLMSettings, data_dir: Path) -> LlamaCppLLM:
        _import_llama_cpp()  # before any re-encoding: that needs llama.cpp too
        gguf = gguf_path(settings.gguf_package, settings.gguf_file or "")
        try:
            served = served_gguf(gguf, settings.llamacpp_weights, data_dir / "models")
        except WeightsError as exc:
            raise LLMError(str(exc)) from None
        return cls(gguf, settings.model_id, settings.repetition_penalty, settings.threads, settings.context_tokens,
                   weights_file=None if served == gguf else served)

    def generate(self, messages: list[ChatMessage], max_new_tokens: int, deadline_s: float, adapter: AdapterRef | None = None,
                 max_sentences: int | None = None) -> Generation:
        started = time.monotonic()
        prompt = self.prompt_tokens(messages)
        if len(prompt) + max_new_tokens > self.context_tokens:
            raise LLMError(f"the prompt has {len(prompt)} tokens and the draft may add {max_new_tokens}, more than "
                           f"llm.context_tokens={self.context_tokens}; raise it or shorten the prompt")
        with self._lock:
            self._activate(adapter)
            tokens, stopped_by = self._decode(prompt, max_new_tokens, started + deadline_s, max_sentences)
        seconds = time.monotonic() - started
        text, stopped_by = limit_sentences(self.tokenizer.decode(tokens, skip_special_tokens=True), max_sentences, stopped_by)
        return Generation(
            text=text,
            model_id=self.model_id,
            adapter_id=adapter.version if adapter else None,
            adapter_sha256=adapter.content_sha256 if adapter else None,
            input_tokens=len(prompt),
            output_tokens=len(tokens),
            stopped_by=stopped_by,
            seconds=seconds,
        )

    def prompt_tokens(self, messages: list[ChatMessage]) -> list[int]:
        return list(self.tokenizer.apply_chat_template([m.model_dump() for m in messages], add_generation_prompt=True, tokenize=True,
                                                       return_dict=True)["input_ids"])

    def _decode(self, prompt: list[int], max_new_tokens: int, deadline: float, max_sentences: int | None) -> tuple[list[int], str]:
        """Greedy tokens after `prompt`; llama.cpp reuses the KV cache of a shared prefix (the system prompt)."""
        tokens: list[int] = []
        stream = self._llama.generate(prompt, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=self.repetition_penalty)
        for token in stream:
            if token == self._llama.token_eos():
                return tokens, "eos"
            tokens.append(token)
            if len(tokens) >= max_new_tokens:
                return tokens, "max_tokens"
            if max_sentences and sentence_cut(self.tokenizer.decode(tokens, skip_special_tokens=True), max_sentences) is not None:
                return tokens, "max_sentences"
            if time.monotonic() >= deadline:
                return tokens, "deadline"
        return tokens, "eos"

    def completion_logprob(self, prompt: list[dict], completion: list[dict], adapter: AdapterRef | None, max_length: int) -> float:
        raise LLMError("the llamacpp backend does not score completions; evaluate adapters with the transformers backend")

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _activate(self, adapter: AdapterRef | None) -> None:
        key = (adapter.version, adapter.content_sha256) if adapter else None
        if key == self._active:
            return
        llama_cpp = _import_llama_cpp()
        if adapter is None:
            status = llama_cpp.llama_set_adapters_lora(self._llama.ctx, None, 0, None)
        else:
            handles = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self._load(adapter))
            status = llama_cpp.llama_set_adapters_lora(self._llama.ctx, handles, 1, (ctypes.c_float * 1)(1.0))
        if status != 0:
            raise LLMError(f"llama.cpp refused to switch to adapter {adapter.version if adapter else 'none'} (status {status})")
        # The cached KV of the last prompt was computed under the other adapter: never reuse it.
        self._llama.reset()
        self._active = key

    def _load(self, adapter: AdapterRef) -> llama_cpp.llama_adapter_lora_p:
        key = (adapter.version, adapter.content_sha256)
        if key in self._adapters:
            return self._adapters[key]
        check_adapter(adapter, self.model_version)
        try:
            path = exported_gguf(Path(adapter.path), adapter.content_sha256, self.gguf)
        except ExportError as exc:
            raise LLMError(f"cannot export adapter {adapter.version} for llama.cpp: {exc}") from None
        handle = _import_llama_cpp().llama_adapter_lora_init(self._llama.model, str(path).encode())
        if not handle:
            raise LLMError(f"llama.cpp cannot load adapter {adapter.version} from {path}; delete that file to export it again, or roll back")
        self._adapters[key] = handle
        return handle
