"""Records of the learning loop: fine-tuning settings, dataset manifests, adapter metadata."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DatasetFormat = Literal["sft", "dpo", "kto"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraSettings(Strict):
    r: int = Field(default=8, ge=1, le=256)
    alpha: int = Field(default=16, ge=1)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], min_length=1)


class StageSettings(Strict):
    """One training stage; stages run in order on the same adapter (e.g. SFT, then DPO)."""

    method: DatasetFormat
    epochs: float = Field(default=1.0, gt=0)
    learning_rate: float = Field(default=2e-4, gt=0)
    batch_size: int = Field(default=4, ge=1)
    beta: float = Field(default=0.1, gt=0, description="DPO/KTO temperature")


class FinetuneSettings(Strict):
    lora: LoraSettings = LoraSettings()
    stages: list[StageSettings] = Field(min_length=1)
    max_length: int = Field(default=512, ge=16, description="longer examples are truncated, never padded up to this")
    seed: int = 0
    warm_start: bool = Field(default=True, description="start from the promoted adapter instead of the base model")
    replay_share: float = Field(default=0.3, ge=0, le=1, description="share of earlier rounds' data mixed in")
    eval_fraction: float = Field(default=0.2, ge=0, lt=1, description="newest records held out for evaluation")
    checkpoint_every: int = Field(default=20, ge=1, description="optimizer steps between resumable checkpoints")
    promote_margin: float = Field(default=0.0, ge=0, description="mean log-likelihood gain per token a candidate must show")
    forgetting_margin: float = Field(default=0.05, ge=0, description="largest allowed log-likelihood drop on earlier rounds' held-out sets")
    eval_generations: int = Field(default=4, ge=0, description="held-out prompts drafted by each adapter for the generation check")
    eval_max_new_tokens: int = Field(default=60, ge=1)
    device: str = "cpu"


class DatasetFile(Strict):
    name: str
    count: int
    sha256: str


class DatasetManifest(Strict):
    """What an export wrote: files with counts and hashes, and which feedback records went where."""

    format: DatasetFormat
    created_at: datetime
    files: list[DatasetFile]
    train_record_ids: list[str]
    eval_record_ids: list[str]
    excluded: dict[str, int] = Field(description="records left out, by reason: no_consent, duplicate, …")
    prompts: dict[str, str] = Field(default_factory=dict, description="prompt files used to build the rows: name → sha256")
    masked: bool = Field(default=False, description="personal data in the rows was replaced by placeholders")


class AdapterMetadata(Strict):
    """metadata.json beside every adapter: enough to reproduce it and to trace what it learned from."""

    version: str
    kind: Literal["feedback", "corpus"]
    base_model_id: str
    base_model_sha256: str
    parent_version: str | None
    dataset_manifest_sha256: str
    record_ids: list[str]
    hyperparameters: FinetuneSettings
    metrics: dict[str, float]
    created_at: datetime
    content_sha256: str = Field(description="sha256 over adapter_config.json and adapter_model.safetensors")


class AdapterRef(Strict):
    """Which adapter a generation must use; the backend checks the hash when it loads the files."""

    version: str
    path: str
    content_sha256: str
    base_model_sha256: str = Field(description="the base model it was trained on; serving refuses any other")
