"""Checks every backend makes before it applies an adapter: the right base, and files that match their registration."""

from __future__ import annotations

from pathlib import Path

from finetune.records import AdapterRef
from finetune.registry import AdapterError, content_sha256
from serving.llm import LLMError


def check_adapter(adapter: AdapterRef, served_base_sha256: str) -> None:
    """Raise LLMError unless `adapter` was trained on the served base and its files hash to its registration."""
    if adapter.base_model_sha256 != served_base_sha256:
        raise LLMError(f"adapter {adapter.version} was trained on base model {adapter.base_model_sha256[:12]}, but this process serves "
                       f"{served_base_sha256[:12]}; roll back, or retrain the adapter on the configured base")
    try:
        actual = content_sha256(Path(adapter.path))
    except AdapterError as exc:
        raise LLMError(f"adapter {adapter.version}: {exc}") from None
    if actual != adapter.content_sha256:
        raise LLMError(
            f"adapter {adapter.version} in {adapter.path} does not match its registration: content sha256 {actual} "
            f"!= {adapter.content_sha256}; restore its files or roll back to another version"
        )
