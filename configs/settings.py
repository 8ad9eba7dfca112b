"""The settings schema. Every model forbids unknown keys so a typo is an error, not a silent default."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from provenance.masking import MaskingSettings
from tools.crm.records import Industry, Region
from tools.scheduling_records import ClauseRule


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LLMSettings(Strict):
    backend: Literal["transformers", "llamacpp", "openai"] = "transformers"
    model_id: str = Field(description="the id recorded in every trace (and the served model name for openai)")
    # Exactly one source: a GGUF inside an installed package, a GGUF file, or an HF directory.
    gguf_package: str | None = None
    gguf_file: str | None = None
    hf_dir: Path | None = None
    max_new_tokens: int = Field(default=120, ge=1, le=4096)
    deadline_s: float = Field(default=60.0, gt=0)
    repetition_penalty: float = Field(default=1.2, ge=1.0)
    threads: int | None = Field(default=None, ge=1)
    context_tokens: int = Field(default=4096, ge=256, description="llamacpp backend: the context window it allocates")
    llamacpp_weights: Literal["shipped", "f16"] = Field(
        default="shipped", description="llamacpp backend: run the GGUF as shipped, or re-encoded once into data_dir/models "
        "to a type llama.cpp evaluates prompts fast with on CPUs (serving/gguf_weights.py)")
    base_url: str | None = Field(default=None, description="openai backend: the server's /v1 URL, e.g. http://gpu-box:8000/v1")
    api_key_env: str | None = Field(default=None, description="openai backend: environment variable holding the API key")

    @model_validator(mode="after")
    def _one_source(self) -> LLMSettings:
        if self.backend == "openai":
            if not self.base_url:
                raise ValueError("llm.backend is openai: set llm.base_url to the server's /v1 URL")
        elif self.backend == "llamacpp":
            if self.gguf_file is None:
                raise ValueError("llm.backend is llamacpp: set llm.gguf_file (with llm.gguf_package or a path); llama.cpp runs GGUF files only")
        elif self.hf_dir is None and self.gguf_file is None:
            raise ValueError("set llm.hf_dir (an HF model directory) or llm.gguf_file (with llm.gguf_package or a path)")
        return self


class EmbedderSettings(Strict):
    backend: Literal["sentence-transformers"] = "sentence-transformers"
    model_id: str
    package: str | None = Field(default=None, description="installed package that ships the model")
    path: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EmbedderSettings:
        if (self.package is None) == (self.path is None):
            raise ValueError("set exactly one of embedder.package or embedder.path")
        return self


class VectorStoreSettings(Strict):
    backend: Literal["qdrant", "qdrant_edge"] = Field(
        default="qdrant", description="qdrant: qdrant-client (local mode by path, or a server by url); qdrant_edge: Qdrant's engine in-process, HNSW")
    path: Path | None = Field(default=Path("qdrant"), description="store directory (relative to data_dir); qdrant_edge keeps one shard per collection in it")
    url: str | None = Field(default=None, description="Qdrant server URL (backend qdrant only); wins over path")
    collection: str = "cases"
    top_k: int = Field(default=5, ge=1, le=100)
    hnsw_ef: int = Field(default=128, ge=1, description="HNSW search beam: higher finds more of the true top-k, slower")

    @model_validator(mode="after")
    def _edge_is_local(self) -> VectorStoreSettings:
        if self.backend == "qdrant_edge" and self.url:
            raise ValueError(f"vector_store.backend is qdrant_edge, which runs in-process: remove vector_store.url ({self.url}) "
                             "or set backend: qdrant to use that server")
        return self


class CheckpointSettings(Strict):
    backend: Literal["sqlite"] = "sqlite"
    path: Path = Path("checkpoints.sqlite")


class DatabaseSettings(Strict):
    """Where checkpoints, the run index, the event queue and feedback live: SQLite files under data_dir
    (checkpoint.path, service.queue_path, feedback.sqlite), or one PostgreSQL database shared by every process."""

    backend: Literal["sqlite", "postgres"] = "sqlite"
    url_env: str = Field(default="SALESLOOP_POSTGRES_URL",
                         description="postgres: environment variable holding the connection URL (never the URL itself: it holds the password)")


class HubSpotSettings(Strict):
    """The HubSpot connector: CRM API v3 with a private app's access token."""

    base_url: str = "https://api.hubapi.com"
    token_env: str = Field(default="SALESLOOP_HUBSPOT_TOKEN", description="environment variable holding the private app token")
    external_id_property: str = Field(
        default="salesloop_external_id",
        description="a text property on notes, tasks, meetings and emails that holds our write's id: searched before "
                    "each create, so a retried write-back finds what it wrote instead of writing it twice")


class SalesforceSettings(Strict):
    """The Salesforce connector: REST API sObjects and composite, OAuth 2.0 client credentials flow."""

    login_url: str = Field(default="https://login.salesforce.com", description="where the token comes from (a My Domain URL)")
    api_version: str = Field(default="v60.0", pattern=r"^v\d+\.\d$")
    client_id_env: str = "SALESLOOP_SALESFORCE_CLIENT_ID"
    client_secret_env: str = "SALESLOOP_SALESFORCE_CLIENT_SECRET"
    external_id_field: str = Field(
        default="Salesloop_External_Id__c",
        description="an External ID text field on Task and Event: writes are upserts on it, so a retry writes nothing twice")


class CRMSettings(Strict):
    backend: Literal["json_snapshot"] = "json_snapshot"
    path: Path = Path("crm")
    connector: Literal["snapshot", "hubspot", "salesforce"] = Field(
        default="snapshot", description="the CRM read for thin webhooks and written back to after a rep decides; "
                                        "snapshot = the JSON mirror, which records its writes in crm/writes.jsonl")
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    max_retries: int = Field(default=3, ge=0, le=10, description="retries of one request (5xx, timeouts, rate limits) before the event's queue backoff takes over")
    max_wait_s: float = Field(default=10.0, ge=0, description="the longest a rate limit's wait is honoured in-process; longer waits go back to the queue")
    deal_update_on_adopt: dict[str, JsonValue] = Field(
        default_factory=dict, description="deal fields, in the CRM's own names, set when a rep adopts or edits a draft for a deal, "
                                          "e.g. {StageName: Proposal/Price Quote} (Salesforce) or {dealstage: presentationscheduled} "
                                          "(HubSpot); empty = the deal is not changed")
    hubspot: HubSpotSettings = HubSpotSettings()
    salesforce: SalesforceSettings = SalesforceSettings()


class TitleRule(Strict):
    """A canonical role; a raw title matches when it contains any synonym as whole words."""

    role: str
    seniority: Literal["c_level", "vp", "director", "head", "manager", "individual", "intern"]
    decision_maker: bool = False
    synonyms: list[str] = Field(min_length=1)


class SizeBand(Strict):
    min_employees: int = Field(ge=1)
    points: float = Field(ge=0, le=1)


class GradingSettings(Strict):
    """Weights add to 100; each signal yields a fraction 0..1 of its weight."""

    weights: dict[Literal["industry_fit", "size", "budget", "engagement", "intent", "decision_maker"], float]
    industry_fit: dict[Industry, float]
    size_bands: list[SizeBand] = Field(min_length=1)
    budget_full_at_usd: int = Field(gt=0)
    engagement_points: dict[Literal["web_visit", "email_open", "demo_request", "inbound_email", "stage_change"], float]
    engagement_full_at: float = Field(gt=0, description="engagement points worth the signal's full weight")
    intent_keywords: list[str] = Field(min_length=1)
    intent_full_at: int = Field(default=3, ge=1)
    grade_thresholds: dict[Literal["A", "B", "C"], float]

    @model_validator(mode="after")
    def _weights_sum(self) -> GradingSettings:
        total = sum(self.weights.values())
        if abs(total - 100) > 1e-6:
            raise ValueError(f"grading.weights must add up to 100, they add up to {total}")
        return self


class SchedulingSettings(Strict):
    consultants: Path = Path("crm/consultants.json")
    calendar_dir: Path = Path("crm/calendars")
    meeting_minutes: int = Field(default=60, ge=15, le=480)
    slots: int = Field(default=3, ge=1, le=20)
    horizon_days: int = Field(default=14, ge=1, le=90)
    lead_hours: tuple[int, int] = (9, 17)


class ClauseSettings(Strict):
    library: Path = Path("crm/clauses.json")
    rules: list[ClauseRule] = Field(min_length=1)


class AttributionSettings(Strict):
    """Sentence-level sources: markers first, then embedding similarity against the facts and chunks the model saw."""

    min_similarity: float = Field(default=0.5, ge=0, le=1, description="cosine similarity a fact or chunk needs to support a sentence")
    max_sources: int = Field(default=3, ge=1, le=20, description="most similar sources kept per sentence")


class DraftingSettings(Strict):
    """How the draft is written: one prompt for the whole text, or plan → write → verify (issue 14)."""

    mode: Literal["single_prompt", "plan"] = Field(
        default="single_prompt",
        description="plan: a deterministic content plan, one sentence per item, each verified against its sources")
    item_max_new_tokens: int = Field(default=48, ge=8, le=256, description="plan mode: tokens per sentence")


class MemorySettings(Strict):
    """In-context memory: the rep's recent approved texts for similar leads, shown to the model as examples."""

    enabled: bool = Field(default=False, description="off by default: see the README's 'In-context memory' for why")
    examples: int = Field(default=3, ge=1, le=10, description="at most this many examples (K) in a draft prompt")
    max_age_days: int = Field(default=90, ge=1, description="only decisions recorded in this many days before the draft")
    candidates: int = Field(default=20, ge=1, le=200,
                            description="the rep's most recent decisions compared by similarity: each is one embedding")
    max_tokens: int = Field(default=256, ge=16, description="tokens the examples block may add to the prompt")
    prompt_budget_tokens: int = Field(
        default=1024, ge=128,
        description="the whole draft prompt with examples; over it, examples are dropped first (least similar first)")
    min_similarity: float = Field(default=0.0, ge=-1, le=1, description="cosine similarity of the two leads' texts")


FINETUNE_CPU = Path(__file__).resolve().parent / "finetune" / "cpu.yaml"


class LearningSettings(Strict):
    """Continuous learning in `salesloop serve`: a LoRA round once enough new rep decisions have accumulated."""

    enabled: bool = Field(default=False, description="off by default: rounds use the CPU the service drafts with")
    every_decisions: int = Field(
        default=20, ge=1,
        description="new decisions that make a round due: ones no round of the served lineage or of a candidate used")
    promotion: Literal["approval", "auto"] = Field(
        default="approval", description="after the gate passes: approval = a person runs `salesloop adapters promote "
                                        "<version>` (which runs the gate again); auto = the service promotes it")
    finetune_config: Path = Field(
        default=FINETUNE_CPU, description="the fine-tuning YAML a round uses; relative to the settings file")
    check_every_s: float = Field(
        default=60.0, gt=0, description="how often decisions made outside this process (the CLI, other replicas) are "
                                        "counted; decisions through this service are counted at once")

    @field_validator("finetune_config")
    @classmethod
    def _config_exists(cls, path: Path) -> Path:
        if not path.is_file():
            raise ValueError(f"{path} is not a file; point learning.finetune_config at a fine-tuning YAML "
                             f"such as {FINETUNE_CPU}")
        return path


class TelemetrySettings(Strict):
    """Where `trace --format otel` sends its spans."""

    exporter: Literal["console", "file", "otlp"] = "file"
    path: Path = Path("telemetry/spans.jsonl")
    otlp_endpoint: str | None = Field(default=None, description="OTLP/HTTP traces endpoint, e.g. http://collector:4318/v1/traces")

    @model_validator(mode="after")
    def _endpoint(self) -> TelemetrySettings:
        if self.exporter == "otlp" and not self.otlp_endpoint:
            raise ValueError("telemetry.exporter is otlp: set telemetry.otlp_endpoint")
        return self


class WebhookSource(Strict):
    """One CRM that posts to /webhooks/<name>: how it signs its requests and how its payloads map to our events."""

    kind: Literal["hubspot", "salesforce", "generic"]
    secret_env: str = Field(description="environment variable holding the signing secret (never the secret itself)")
    mapping: Path | None = Field(default=None, description="mapping YAML; default configs/webhooks/<kind>.yaml")


def _default_sources() -> dict[str, WebhookSource]:
    return {
        "generic": WebhookSource(kind="generic", secret_env="SALESLOOP_WEBHOOK_SECRET"),
        "hubspot": WebhookSource(kind="hubspot", secret_env="SALESLOOP_HUBSPOT_APP_SECRET"),
        "salesforce": WebhookSource(kind="salesforce", secret_env="SALESLOOP_SALESFORCE_SECRET"),
    }


class ServiceSettings(Strict):
    """`salesloop serve`: HTTP, the durable event queue and its workers, API tokens."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    public_url: str | None = Field(default=None, description="the URL CRMs call, if a proxy sits in front (HubSpot signs it)")
    sources: dict[str, WebhookSource] = Field(default_factory=_default_sources)
    tokens_file: Path = Path("tokens.yaml")
    queue_path: Path = Path("queue.sqlite")
    workers: int = Field(default=1, ge=1, le=16)
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    max_attempts: int = Field(default=5, ge=1)
    backoff_base_s: float = Field(default=2.0, gt=0)
    backoff_max_s: float = Field(default=300.0, gt=0)
    lease_s: float = Field(default=30.0, gt=0, description=(
        "a worker's hold on a claimed event, renewed every lease_s / 3 while it works: a dead worker's events are taken "
        "back after at most this long (at start-up, those of dead processes on the same host at once)"))


class Settings(Strict):
    data_dir: Path = Path(".salesloop")
    rep_id: str = Field(default="rep-demo", description="who decides when no --rep is given")
    llm: LLMSettings
    embedder: EmbedderSettings
    vector_store: VectorStoreSettings = VectorStoreSettings()
    checkpoint: CheckpointSettings = CheckpointSettings()
    database: DatabaseSettings = DatabaseSettings()
    crm: CRMSettings = CRMSettings()
    titles: list[TitleRule] = Field(min_length=1)
    grading: GradingSettings
    scheduling: SchedulingSettings = SchedulingSettings()
    clauses: ClauseSettings
    regions: dict[Region, list[str]] = Field(default_factory=dict, description="informational")
    consent_policy: Path = Field(default=Path(__file__).resolve().parent / "consent.yaml",
                                 description="consent and purpose policy; a relative path is relative to the settings file")
    masking: MaskingSettings = MaskingSettings()
    drafting: DraftingSettings = DraftingSettings()
    triggers: Path = Field(default=Path(__file__).resolve().parent / "triggers.yaml",
                           description="trigger rules: which events start which route; a relative path is relative to the settings file")
    places: Path = Field(default=Path(__file__).resolve().parent / "places.yaml",
                         description="country/state → sales region and time zone table; a relative path is relative to the settings file")
    attribution: AttributionSettings = AttributionSettings()
    memory: MemorySettings = MemorySettings()
    learning: LearningSettings = LearningSettings()
    service: ServiceSettings = ServiceSettings()
    telemetry: TelemetrySettings = TelemetrySettings()

    def resolve(self, path: Path) -> Path:
        """Relative paths in the config live under the data directory."""
        return path if path.is_absolute() else self.data_dir / path
