"""The two provenance records: a reference to a data source and the trace of one graph step."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SourceKind = Literal["crm_record", "document_chunk", "case", "prompt", "model", "rule", "tool", "human", "feedback"]
StepStatus = Literal["ok", "error", "skipped", "waiting"]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    return sha256_bytes(text.encode("utf-8"))


def sha256_file(path: Path) -> str:
    """Hash in chunks: a Llama-3-8B GGUF is several GB."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class SourceRef(BaseModel):
    """One piece of data a step used: enough for an auditor to find it again."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: SourceKind
    id: str = Field(min_length=1, description="record, chunk, case, prompt, model or rule id")
    field: str | None = Field(default=None, description="field name or locator inside the source")
    version: str | None = Field(default=None, description="version or content hash of the source")
    note: str | None = Field(default=None, description="the value read or why it was used")

    def label(self) -> str:
        text = f"{self.kind}:{self.id}"
        if self.field:
            text += f"#{self.field}"
        if self.version:
            text += f"@{self.version[:12]}"
        return text


class StepTrace(BaseModel):
    """What one graph node did in one run."""

    model_config = ConfigDict(extra="forbid")

    step: str
    run_id: str
    inputs: list[SourceRef] = Field(min_length=1)
    output_summary: str
    model_id: str | None = None
    adapter_id: str | None = None
    prompt_name: str | None = None
    prompt_sha256: str | None = None
    started_at: datetime
    ended_at: datetime
    status: StepStatus = "ok"
    fallback: bool = False
    notes: list[str] = Field(default_factory=list)
