"""Everything the nodes use, built once per process and handed to the graph as its runtime context."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from typing import Callable

from agents.triggers import TriggerRules
from configs.loader import load_yaml_model
from configs.settings import Settings
from feedback.store import FeedbackStore
from finetune.registry import AdapterRegistry
from prompts import load_prompt
from provenance.audit import AuditLog
from provenance.consent import ConsentPolicy
from provenance.masking import MaskVault
from serving.llm import LLM, load_llm
from tools.calendar import Calendar, IcsCalendar
from tools.clauses import check_rules, load_clause_library
from tools.consultants import load_consultants
from tools.crm.connector import CRMConnector, open_connector
from tools.crm.places import PlaceTable
from tools.crm.source import CRMSource, JsonSnapshotCRM
from tools.data_dir import ensure_current
from tools.embedder import Embedder, load_embedder
from tools.scheduling_records import Clause, Consultant
from tools.sql import open_database, postgres_url
from tools.vector_store import VectorStore, open_vector_store


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Services:
    settings: Settings
    clock: Callable[[], datetime] = field(default=utc_now)

    def __post_init__(self) -> None:
        # Before anything reads the data dir: an older layout is migrated forward, a newer one refused.
        self.data_dir_info = ensure_current(self.settings.data_dir, self.settings.resolve(self.settings.crm.path), clock=self.clock)
        if self.settings.database.backend == "postgres":
            postgres_url(self.settings.database)  # a missing URL fails at start-up, not at the first write

    @cached_property
    def crm(self) -> CRMSource:
        return JsonSnapshotCRM(self.settings.resolve(self.settings.crm.path))

    @cached_property
    def places(self) -> PlaceTable:
        return load_yaml_model(self.settings.places, PlaceTable)

    @cached_property
    def connector(self) -> CRMConnector:
        return open_connector(self.settings, self.settings.resolve(self.settings.crm.path), self.clock)

    @cached_property
    def llm(self) -> LLM:
        return load_llm(self.settings.llm, self.settings.data_dir)

    @cached_property
    def embedder(self) -> Embedder:
        return load_embedder(self.settings.embedder)

    @cached_property
    def vectors(self) -> VectorStore:
        return open_vector_store(self.settings.vector_store, self.settings.data_dir)

    @cached_property
    def calendar(self) -> Calendar:
        return IcsCalendar(self.settings.resolve(self.settings.scheduling.calendar_dir))

    @cached_property
    def consultants(self) -> list[Consultant]:
        return load_consultants(self.settings.resolve(self.settings.scheduling.consultants))

    @cached_property
    def clause_library(self) -> dict[str, Clause]:
        library = load_clause_library(self.settings.resolve(self.settings.clauses.library))
        check_rules(self.settings.clauses.rules, library)
        return library

    @cached_property
    def feedback(self) -> FeedbackStore:
        return FeedbackStore(open_database(self.settings.database, self.settings.data_dir / "feedback.sqlite"))

    @cached_property
    def consent(self) -> ConsentPolicy:
        return load_yaml_model(self.settings.consent_policy, ConsentPolicy)

    @cached_property
    def triggers(self) -> TriggerRules:
        rules = load_yaml_model(self.settings.triggers, TriggerRules)
        for route in rules.routes.values():
            if route.prompt is not None:
                load_prompt(route.prompt)  # a route naming a missing or broken prompt fails at start-up, not mid-run
        return rules

    @cached_property
    def masks(self) -> MaskVault:
        return MaskVault(self.settings.resolve(self.settings.masking.vault))

    @cached_property
    def audit(self) -> AuditLog:
        return AuditLog(self.settings.data_dir / "audit.sqlite")

    @cached_property
    def adapters(self) -> AdapterRegistry:
        return AdapterRegistry(self.settings.data_dir / "adapters", audit=self.audit)

    def close(self) -> None:
        """Release the vector store (Qdrant local mode locks its directory) and the CRM connector's connections."""
        if "vectors" in self.__dict__:
            self.vectors.close()
        if "connector" in self.__dict__:
            self.connector.close()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
