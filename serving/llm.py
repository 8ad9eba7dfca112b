"""The LLM protocol and the registry that picks a backend by the config's name."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Callable, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from configs.settings import LLMSettings
from finetune.records import AdapterRef
from prompts.templates import ChatMessage


class LLMError(Exception):
    """The model could not be loaded or could not answer."""


class Generation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    model_id: str
    adapter_id: str | None = Field(description="the adapter version that generated this; None = the base model")
    adapter_sha256: str | None = Field(description="content hash of that adapter's files, checked when they were loaded")
    input_tokens: int
    output_tokens: int
    stopped_by: Literal["eos", "max_tokens", "max_sentences", "deadline"]
    seconds: float


# A sentence ends at . ! or ?, with the citation markers that close it, where whitespace and the next sentence follow.
_SENTENCE_DONE = re.compile(r"[.!?](?:\s*\[[^\]]*\])*(?=\s+[^\s\[])")


def sentence_cut(text: str, max_sentences: int | None) -> int | None:
    """Where `text` is cut to keep `max_sentences` sentences, once a further one has begun; None: keep generating."""
    if max_sentences is None:
        return None
    ends = [m.end() for m in _SENTENCE_DONE.finditer(text)]
    return ends[max_sentences - 1] if len(ends) >= max_sentences else None


def limit_sentences(text: str, max_sentences: int | None, stopped_by: str) -> tuple[str, str]:
    """The text a backend returns under a sentence limit, and why generation stopped."""
    cut = sentence_cut(text, max_sentences)
    return (text[:cut].strip(), "max_sentences") if cut is not None else (text.strip(), stopped_by)


class LLM(Protocol):
    model_id: str
    model_version: str  # the base weights' hash: a promoted adapter's base_model_sha256 must equal it
    local: bool  # False: chats leave the process, so personal data is masked before they go
    weights: str  # what computes, for the trace: the runtime and the weights file (or server) it runs

    def generate(
        self, messages: list[ChatMessage], max_new_tokens: int, deadline_s: float, adapter: AdapterRef | None = None,
        max_sentences: int | None = None,
    ) -> Generation:
        """Greedy completion of a chat; stops at EOS, the token budget, the deadline or after `max_sentences` sentences.

        A sentence limit ends generation once the next sentence has begun, and the text is cut after the last
        allowed sentence (and the [marker]s that close it); what is kept is what an unlimited call would have begun with.

        With `adapter`, that LoRA adapter is applied on top of the shared base for this call only; files that do not
        hash to `adapter.content_sha256` raise LLMError, so a run never falls back to the base or a stale adapter.
        """

    def completion_logprob(self, prompt: list[dict], completion: list[dict], adapter: AdapterRef | None, max_length: int) -> float:
        """Summed log-probability of the `completion` messages after the chat-rendered `prompt`, scored as in training."""

    def count_tokens(self, text: str) -> int:
        """The number of tokens in `text`, special tokens excluded."""


Factory = Callable[[LLMSettings, Path], LLM]
_BACKENDS: dict[str, Factory] = {}
_LOADED: dict[tuple[str, str], LLM] = {}
_LOCK = threading.Lock()


def register_backend(name: str, factory: Factory) -> None:
    if name in _BACKENDS:
        raise ValueError(f"LLM backend {name!r} is already registered")
    _BACKENDS[name] = factory


def load_llm(settings: LLMSettings, data_dir: Path) -> LLM:
    """The model for these settings, loaded at most once per process and shared by all runs."""
    key = (settings.model_dump_json(), str(data_dir) if _writes_into(settings) else "")
    with _LOCK:
        if key not in _LOADED:
            if settings.backend not in _BACKENDS:
                raise LLMError(f"unknown LLM backend {settings.backend!r}; known: {', '.join(sorted(_BACKENDS))}")
            _LOADED[key] = _BACKENDS[settings.backend](settings, data_dir)
        return _LOADED[key]


def _writes_into(settings: LLMSettings) -> bool:
    """Whether loading writes a derived model into the data dir: then each data dir has its own."""
    if settings.backend == "transformers":
        return settings.hf_dir is None  # the GGUF is materialized there
    return settings.backend == "llamacpp" and settings.llamacpp_weights != "shipped"  # re-encoded there


def _transformers(settings: LLMSettings, data_dir: Path) -> LLM:
    # Imported on first use: commands that never generate should not pay for torch.
    from serving.transformers_backend import TransformersLLM

    return TransformersLLM.from_settings(settings, data_dir)


def _llamacpp(settings: LLMSettings, data_dir: Path) -> LLM:
    from serving.llamacpp_backend import LlamaCppLLM

    return LlamaCppLLM.from_settings(settings, data_dir)


def _openai(settings: LLMSettings, data_dir: Path) -> LLM:
    from serving.openai_backend import OpenAICompatibleLLM

    return OpenAICompatibleLLM(settings)


register_backend("transformers", _transformers)
register_backend("llamacpp", _llamacpp)
register_backend("openai", _openai)
